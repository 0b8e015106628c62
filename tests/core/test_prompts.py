"""Prompt formats for both sides, with the models' own tokenizers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from desktop.core import urial
from desktop.core.errors import SystemPromptUnsupported, TemplateError
from desktop.core.gguf_info import read_gguf
from desktop.core.prompts import (
    BaseMode,
    Conversation,
    Message,
    file_tokenizer,
    inspect_prompt,
    render_base,
    render_instruct,
)

GEMMA2 = (Path(__file__).resolve().parents[1] / "data" / "templates" / "google-gemma-2-2b-it.jinja")


@pytest.fixture(scope="module")
def phi(vocab_dir: Path):
    return read_gguf(vocab_dir / "ggml-vocab-phi-3.gguf")


@pytest.fixture(scope="module")
def qwen(vocab_dir: Path):
    return read_gguf(vocab_dir / "ggml-vocab-qwen2.gguf")


@pytest.fixture(scope="module")
def spm(vocab_dir: Path):
    return read_gguf(vocab_dir / "ggml-vocab-llama-spm.gguf")


def tok(path: str):
    return file_tokenizer(path)


def test_instruct_uses_the_models_template(qwen) -> None:
    r = render_instruct(qwen, Conversation("Hi there", system="Be kind."))
    assert r.text == (
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert r.template.source == "model" and r.warnings == ()
    assert r.add_bos is False  # qwen2 adds no BOS


def test_multi_turn_history(qwen) -> None:
    conv = Conversation("And 3+3?", history=(Message("user", "2+2?"), Message("assistant", "4")))
    r = render_instruct(qwen, conv)
    assert r.text.count("<|im_start|>user") == 2
    assert "<|im_start|>assistant\n4<|im_end|>" in r.text
    assert r.text.endswith("<|im_start|>assistant\n")


def test_template_writes_bos_so_tokenizer_does_not(phi) -> None:
    r = render_instruct(phi, Conversation("Hello"))
    assert r.text.startswith("<s>")
    assert r.add_bos is False
    ins = inspect_prompt(r, tok(phi.path), bos_token_id=phi.bos_token_id, n_ctx=4096)
    assert [t.id for t in ins.tokens[:2]] != [1, 1]
    assert ins.tokens[0].id == 1 and ins.tokens[0].special
    assert not any("two BOS" in w for w in ins.warnings)


def test_double_bos_is_detected_and_warned(phi) -> None:
    r = render_instruct(phi, Conversation("Hello"))
    forced = replace(r, add_bos=True)  # what a naive tool does
    ins = inspect_prompt(forced, tok(phi.path), bos_token_id=phi.bos_token_id, n_ctx=4096)
    assert [t.id for t in ins.tokens[:2]] == [1, 1]
    assert any("two BOS" in w for w in ins.warnings)


def test_missing_template_falls_back_with_a_visible_warning(spm) -> None:
    r = render_instruct(spm, Conversation("Hello"))
    assert r.template.source == "default"
    assert "ChatML" in r.template.name
    assert any("no chat template" in w and "ChatML" in w for w in r.warnings)
    assert r.text.endswith("<|im_start|>assistant\n")


def test_system_refusal_in_words(spm) -> None:
    info = replace(spm, chat_template=GEMMA2.read_text())
    with pytest.raises(SystemPromptUnsupported, match="does not accept a system prompt"):
        render_instruct(info, Conversation("Hi", system="Be terse."))
    merged = render_instruct(info, Conversation("Hi", system="Be terse."), merge_system_if_refused=True)
    assert "Be terse.\n\nHi" in merged.text
    assert any("system prompt" in w for w in merged.warnings)
    ok = render_instruct(info, Conversation("Hi"))
    assert ok.text.startswith("<s><start_of_turn>user\nHi")


def test_token_count_against_context(qwen) -> None:
    r = render_instruct(qwen, Conversation("word " * 50))
    ins = inspect_prompt(r, tok(qwen.path), bos_token_id=qwen.bos_token_id, n_ctx=20)
    assert ins.token_count > 20 and not ins.fits
    assert any("context holds 20" in w for w in ins.warnings)
    roomy = inspect_prompt(r, tok(qwen.path), bos_token_id=qwen.bos_token_id, n_ctx=4096)
    assert roomy.fits


def test_special_tokens_recognised(qwen) -> None:
    r = render_instruct(qwen, Conversation("Hi"))
    ins = inspect_prompt(r, tok(qwen.path), bos_token_id=qwen.bos_token_id, n_ctx=4096)
    specials = [t.piece for t in ins.tokens if t.special]
    # this template adds a default system turn: system, user, then the assistant header
    assert specials.count("<|im_start|>") == 3 and specials.count("<|im_end|>") == 2
    assert "".join(t.piece for t in ins.tokens) == r.text


def test_raw_mode(spm) -> None:
    r = render_base(BaseMode.RAW, Conversation("Once upon a time"), base=spm)
    assert r.text == "Once upon a time" and r.stop == () and r.add_bos is True
    assert render_base("raw", Conversation("x", system="Sys"), base=spm).text == "Sys\n\nx"


def test_qa_mode(spm) -> None:
    r = render_base(BaseMode.QA, Conversation("Why is the sky blue?"), base=spm)
    assert r.text == "Question: Why is the sky blue?\nAnswer:"
    assert "\nQuestion:" in r.stop


def test_urial_mode(spm) -> None:
    r = render_base(BaseMode.URIAL, Conversation("How do magnets work?"), base=spm)
    assert r.text.startswith(urial.PREAMBLE)
    assert r.text.count("# Query:\n```") == 4 and r.text.count("# Answer:\n```") == 4
    assert r.text.endswith("# Query:\n```\nHow do magnets work?\n```\n\n# Answer:\n```\n")
    assert "# Query:" in r.stop
    assert urial.URIAL_SAMPLING.temperature == 0.3 and urial.URIAL_SAMPLING.repeat_penalty == 1.1


def test_twin_template_mode(spm, phi) -> None:
    base = replace(spm, name="Base")
    r = render_base(BaseMode.TWIN, Conversation("Hello"), base=base, twin=phi)
    assert r.text == render_instruct(phi, Conversation("Hello")).text
    assert r.template.source == "twin"
    assert "<|end|>" in r.stop and "<|user|>" in r.stop
    assert r.add_bos is False  # the twin's template already wrote <s>


def test_twin_template_without_a_twin_is_a_clear_error(spm) -> None:
    with pytest.raises(TemplateError, match="instruct twin"):
        render_base(BaseMode.TWIN, Conversation("Hello"), base=spm, twin=None)


def test_every_mode_has_a_sentence() -> None:
    for m in BaseMode:
        assert m.describe().endswith(")") or m.describe().endswith(".")
        assert len(m.describe().split(". ")) <= 2
