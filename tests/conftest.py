"""Shared fixtures: tiny real GGUF models (built once per session) and an isolated Based home."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.core.tinymodel import build_tiny_model

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own Based home and no network for Hugging Face."""
    home = tmp_path / "based-home"
    monkeypatch.setenv("BASED_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return home


@pytest.fixture(scope="session")
def vocab_dir() -> Path:
    return DATA / "vocab"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_phi3(tiny_dir: Path) -> Path:
    """Instruct-like: phi-3 tokenizer with its chat template (which writes {{ bos_token }})."""
    return build_tiny_model(
        tiny_dir / "tiny-instruct-phi3.gguf", vocab="phi-3", seed=1, name="Tiny Instruct",
        finetune="Instruct",
    )


@pytest.fixture(scope="session")
def tiny_phi3_base(tiny_dir: Path) -> Path:
    """Base-like: same phi-3 tokenizer, different weights, no chat template."""
    return build_tiny_model(
        tiny_dir / "tiny-base-phi3.gguf", vocab="phi-3", seed=2, name="Tiny Base",
        chat_template=None,
    )


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_dir: Path) -> Path:
    """ChatML template, qwen2 BPE tokenizer (151,936 tokens)."""
    return build_tiny_model(
        tiny_dir / "tiny-qwen2.gguf", vocab="qwen2", seed=3, n_embd=32, name="Tiny Qwen2 Instruct",
    )


@pytest.fixture(scope="session")
def tiny_llama_spm(tiny_dir: Path) -> Path:
    """A different tokenizer from phi-3 (llama SPM, 32,000 tokens), no template."""
    return build_tiny_model(
        tiny_dir / "tiny-llama-spm.gguf", vocab="llama-spm", seed=4, name="Tiny Llama SPM",
        chat_template=None,
    )


@pytest.fixture(scope="session")
def tiny_split(tiny_dir: Path) -> Path:
    """A tiny model split by gguf's own writer into 3 parts of at most 8 tensors
    (``Tiny-Split-F16-00001-of-00003.gguf`` ...); part 1's path. Same weights as ``tiny_unsplit``."""
    return build_tiny_model(
        tiny_dir / "split" / "Tiny-Split-F16.gguf", vocab="phi-3", seed=5, name="Tiny Split",
        chat_template=None, split_max_tensors=8,
    )


@pytest.fixture(scope="session")
def tiny_unsplit(tiny_dir: Path) -> Path:
    """``tiny_split``'s model in one file."""
    return build_tiny_model(
        tiny_dir / "Tiny-Split-F16.gguf", vocab="phi-3", seed=5, name="Tiny Split",
        chat_template=None,
    )
