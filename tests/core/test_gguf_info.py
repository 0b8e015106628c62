"""GGUF inspection and validation: every bad file gets one clear sentence, and nothing aborts."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from desktop.core.errors import GGUFError
from desktop.core.gguf_info import (
    quant_from_filename,
    read_gguf,
    read_vocab,
    size_label_from_params,
    validate_gguf,
)
from tests.gguf_fuzz_runner import engine_each_in_a_child


def test_reads_a_tiny_model(tiny_phi3: Path) -> None:
    info = read_gguf(tiny_phi3)
    assert info.name == "Tiny Instruct"
    assert info.finetune == "Instruct"
    assert info.architecture == "llama"
    assert info.file_type == "F16"
    assert info.context_length == 2048
    assert info.file_size == tiny_phi3.stat().st_size
    assert info.tokenizer_model == "llama"
    assert info.vocab_size == 32064
    assert (info.bos_token_id, info.bos_token) == (1, "<s>")
    assert info.eos_token == "<|endoftext|>"
    assert info.add_bos is True
    assert info.chat_template and info.chat_template.startswith("{{ bos_token }}")
    assert info.license == "MIT"
    assert info.n_tensors == 2 * 9 + 3 and not info.vocab_only
    assert info.parameter_count > 32064 * 64
    assert info.looks_instruct


def test_base_model_has_no_template(tiny_phi3_base: Path) -> None:
    info = read_gguf(tiny_phi3_base)
    assert info.chat_template is None
    assert not info.looks_instruct


def test_vocab_only_files(vocab_dir: Path) -> None:
    q = read_gguf(vocab_dir / "ggml-vocab-qwen2.gguf")
    assert q.vocab_only and q.n_tensors == 0
    assert q.tokenizer_model == "gpt2" and q.add_bos is None  # the file does not say
    assert q.chat_template and "<|im_start|>" in q.chat_template
    spm = read_gguf(vocab_dir / "ggml-vocab-llama-spm.gguf")
    assert spm.chat_template is None and spm.add_bos is True
    vocab = read_vocab(vocab_dir / "ggml-vocab-llama-spm.gguf")
    assert len(vocab) == 32000 and vocab[1] == "<s>"


def test_named_templates_are_listed(tmp_path: Path) -> None:
    from desktop.core.tinymodel import build_tiny_model

    p = build_tiny_model(
        tmp_path / "named.gguf", n_layer=1, n_embd=32,
        extra_kv={"tokenizer.chat_template.tool_use": "{{ 'tools' }}",
                  "tokenizer.chat_template.rag": "{{ 'rag' }}"},
    )
    info = read_gguf(p)
    assert info.named_templates == {"tool_use": "{{ 'tools' }}", "rag": "{{ 'rag' }}"}
    assert info.chat_template is not None


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("smollm2-135m-instruct-q8_0.gguf", "Q8_0"),
        ("gemma-3-1b-it-IQ4_XS.gguf", "IQ4_XS"),
        ("Llama-3.2-1B.f16.gguf", "F16"),
        ("model-bf16.gguf", "BF16"),
        ("tinyllama-1.1b-chat-v1.0.Q5_K_S.gguf", "Q5_K_S"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("model.gguf", None),
    ],
)
def test_quant_from_filename(name: str, quant: str | None) -> None:
    assert quant_from_filename(name) == quant


def test_size_labels() -> None:
    assert size_label_from_params(134_515_008) == "135M"
    assert size_label_from_params(1_543_714_304) == "1.5B"
    assert size_label_from_params(1_000_000_000) == "1B"


# -- bad input ---------------------------------------------------------------------------------


def _header(version: int = 3, n_tensors: int = 0, n_kv: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _expect(path: Path, *words: str) -> str:
    with pytest.raises(GGUFError) as ei:
        validate_gguf(path)
    msg = str(ei.value)
    assert path.name in msg
    for w in words:
        assert w in msg
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.gguf", "not found")


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "folder.gguf"
    d.mkdir()
    _expect(d, "folder")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    _expect(p, "empty")


def test_not_gguf(tmp_path: Path) -> None:
    p = tmp_path / "weights.gguf"
    p.write_bytes(b"PK\x03\x04 this is a zip file" * 10)
    _expect(p, "not a GGUF")


def test_wrong_version(tmp_path: Path) -> None:
    p = tmp_path / "old.gguf"
    p.write_bytes(_header(version=1) + b"\0" * 64)
    _expect(p, "version 1")
    p2 = tmp_path / "future.gguf"
    p2.write_bytes(_header(version=7) + b"\0" * 64)
    _expect(p2, "version 7")


def test_truncated_header(tmp_path: Path, tiny_phi3: Path) -> None:
    p = tmp_path / "cut-header.gguf"
    p.write_bytes(tiny_phi3.read_bytes()[:2000])
    _expect(p, "truncated")
    p2 = tmp_path / "tiny.gguf"
    p2.write_bytes(b"GGU")
    _expect(p2, "truncated")


def test_tensor_data_past_end_of_file(tmp_path: Path, tiny_phi3: Path) -> None:
    data = tiny_phi3.read_bytes()
    p = tmp_path / "cut-data.gguf"
    p.write_bytes(data[: len(data) - 1000])
    msg = _expect(p, "truncated", "tensor data")
    assert "Download it again" in msg


def test_absurd_counts(tmp_path: Path) -> None:
    p = tmp_path / "huge.gguf"
    p.write_bytes(_header(n_tensors=2**40, n_kv=2**40))
    _expect(p, "damaged")
    p2 = tmp_path / "longstring.gguf"
    p2.write_bytes(_header(n_kv=1) + struct.pack("<Q", 2**60) + b"key")
    _expect(p2, "truncated")


def test_bad_tensor_type(tmp_path: Path) -> None:
    body = _header(n_tensors=1, n_kv=0)
    name = b"w"
    body += struct.pack("<Q", len(name)) + name + struct.pack("<I", 1) + struct.pack("<Q", 32)
    body += struct.pack("<I", 999) + struct.pack("<Q", 0)
    p = tmp_path / "weird.gguf"
    p.write_bytes(body + b"\0" * 256)
    _expect(p, "tensor type")


def test_bad_files_never_reach_llama_cpp_and_the_process_survives(
    tmp_path: Path, tiny_phi3: Path
) -> None:
    """Loading damaged files through the engine in a child process: clean errors, no abort."""
    data = tiny_phi3.read_bytes()
    files = {
        "cut.gguf": data[: len(data) // 2],
        "empty.gguf": b"",
        "junk.gguf": b"\x00\x01garbage" * 100,
        "v9.gguf": _header(version=9) + b"\0" * 100,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    r = engine_each_in_a_child([tmp_path / n for n in files])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == "ALIVE"
    assert sum(1 for ln in lines if ln.startswith("ERR")) == len(files)
