"""The GGUF fuzz corpus: every damaged file gets one clear sentence or loads; nothing aborts.

The corpus (tests/gguf_corpus.py) is built at test time from three valid tiny models (SentencePiece,
byte-level BPE, Llama-3-style BPE) with a fixed seed: header, key-value entries, tensor infos,
alignment, truncations, byte flips, model parameters, tokenizers, every llama.cpp architecture name,
and random combinations; plus tiny models of 29 other architectures (tests/gguf_arch_specs.py:
gemma 1-3, phi-2/3, qwen2/3, olmo, gpt-2, falcon, ...), valid and damaged in the ways their own
graphs are sensitive to. Each file is validated, loaded, tokenized, generated from and scored in a
child process (tests/gguf_fuzz_runner.py), so an abort shows up as a failed file, not a dead test
run.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest

from desktop.core.tinymodel import build_tiny_model, vocab_file
from tests.gguf_arch_specs import load_specs
from tests.gguf_corpus import Case, build_corpus, tiny_vocab_file
from tests.gguf_fuzz_runner import Outcome, run_batch

SEED = 20240612
_BYTES_REPR = re.compile(r"(?<![\w'])b['\"]")  # a Python bytes literal, like b'GGML'

BASES = (("spm", "llama-spm", 400), ("bpe", "qwen2", 600), ("llama3", "llama-bpe", 600))
KINDS = {"valid": 3, "header": 15, "kv": 25, "alignment": 15, "tensor-info": 30,
         "truncation": 30, "byte-flip": 60, "model-param": 400, "vocab": 150,
         "architecture": 150, "random": 100, "arch-model": 500}


def _bases(out: Path) -> dict[str, Path]:
    bases = {}
    for name, vocab, n_tokens in BASES:
        v = tiny_vocab_file(out / f"vocab-{name}.gguf", vocab_file(vocab), n_tokens)
        bases[name] = build_tiny_model(out / f"base-{name}.gguf", vocab_path=v, n_layer=2,
                                       n_embd=32, n_head=2, n_ff=32, chat_template=None,
                                       name=f"Fuzz base {name}")
    return bases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Case, Path]]:
    out = tmp_path_factory.mktemp("gguf-fuzz")
    return build_corpus(_bases(out), seed=SEED, arch_specs=load_specs()).write(out / "corpus")


@pytest.fixture(scope="module")
def outcomes(corpus: list[tuple[Case, Path]]) -> list[Outcome]:
    return run_batch([p for _, p in corpus], workers=2)


def test_corpus_covers_every_kind_and_is_reproducible(
    corpus: list[tuple[Case, Path]], tmp_path: Path
) -> None:
    counts = collections.Counter(c.kind for c, _ in corpus)
    for kind, at_least in KINDS.items():
        assert counts[kind] >= at_least, (kind, counts[kind])
    again = build_corpus(_bases(tmp_path), seed=SEED, arch_specs=load_specs()).cases
    assert [(c.name, c.data) for c in again] == [(c.name, c.data) for c, _ in corpus]


def test_every_file_loads_or_gets_one_sentence(
    corpus: list[tuple[Case, Path]], outcomes: list[Outcome]
) -> None:
    problems = []
    for (case, path), out in zip(corpus, outcomes, strict=True):
        if out.outcome in ("crash", "hang", "exception"):
            problems.append(f"{case.name}: {out.outcome}: {out.message[:300]}")
            continue
        if case.expect == "refused" and out.outcome != "refused":
            problems.append(f"{case.name}: validation let it through ({out.outcome})")
        if case.expect == "error" and out.outcome == "loaded":
            problems.append(f"{case.name}: loaded, but llama.cpp should not accept it")
        if out.outcome in ("refused", "load-error"):
            msg = out.message
            if (path.name not in msg or "\n" in msg or "Traceback" in msg
                    or _BYTES_REPR.search(msg) or len(msg) > 400):
                problems.append(f"{case.name}: not one plain sentence: {msg!r}")
        if out.rss_kb > 256 * 1024:
            problems.append(f"{case.name}: grew memory by {out.rss_kb // 1024} MB")
    summary = collections.Counter((c.kind, o.outcome) for (c, _), o in zip(corpus, outcomes,
                                                                            strict=True))
    print("\nfuzz outcomes:", dict(sorted(summary.items())))
    assert not problems, "\n".join(problems)


def test_the_valid_bases_load_and_generate(
    corpus: list[tuple[Case, Path]], outcomes: list[Outcome]
) -> None:
    valid = [o for (c, _), o in zip(corpus, outcomes, strict=True) if c.kind == "valid"]
    assert [o.outcome for o in valid] == ["loaded"] * len(BASES)
    kinds_loaded = {c.kind for (c, _), o in zip(corpus, outcomes, strict=True)
                    if o.outcome == "loaded"}
    # the corpus is not all refusals: harmless changes still load
    assert {"model-param", "vocab", "byte-flip", "random", "architecture", "arch-model"} <= \
        kinds_loaded
    arch_valid = [o.outcome for (c, _), o in zip(corpus, outcomes, strict=True)
                  if c.kind == "arch-model" and c.name.endswith("-valid")]
    assert arch_valid == ["loaded"] * len(load_specs())
