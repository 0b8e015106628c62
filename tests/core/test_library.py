"""The local library: models folder, opened files, the Hugging Face cache; removal frees space."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from desktop.core.fit import Verdict, assess_fit, kv_bytes_per_token
from desktop.core.library import (
    describe_removal,
    hf_cache_dir,
    list_local_models,
    remove_model,
    repo_dir,
)
from desktop.core.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(models_dir=str(tmp_path / "models"))


def test_lists_library_opened_and_hf_cache_but_not_partials(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    d = repo_dir(s.resolved_models_dir(), "org/Model-GGUF")
    d.mkdir(parents=True)
    (d / "model.Q4_K_M.gguf").write_bytes(b"x" * 100)
    (d / "half.Q8_0.gguf.incomplete").write_bytes(b"x" * 10)
    opened = tmp_path / "elsewhere" / "mine-Q8_0.gguf"
    opened.parent.mkdir()
    opened.write_bytes(b"y" * 7)
    s.extra_model_files.append(str(opened))
    snap = hf_cache_dir() / "models--org--Cached-GGUF" / "snapshots" / "abc123"
    blobs = hf_cache_dir() / "models--org--Cached-GGUF" / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir(parents=True)
    (blobs / "deadbeef").write_bytes(b"z" * 33)
    os.symlink(blobs / "deadbeef", snap / "cached.Q5_K_M.gguf")
    os.symlink(blobs / "missing", snap / "dangling.gguf")

    models = {m.name: m for m in list_local_models(s)}
    assert set(models) == {"model.Q4_K_M.gguf", "mine-Q8_0.gguf", "cached.Q5_K_M.gguf"}
    assert models["model.Q4_K_M.gguf"].source == "library"
    assert models["model.Q4_K_M.gguf"].repo == "org/Model-GGUF"
    assert models["model.Q4_K_M.gguf"].quant == "Q4_K_M"
    assert models["mine-Q8_0.gguf"].source == "opened"
    assert models["cached.Q5_K_M.gguf"].source == "hf-cache"
    assert models["cached.Q5_K_M.gguf"].repo == "org/Cached-GGUF"
    assert models["cached.Q5_K_M.gguf"].size == 33


def test_remove_frees_space_and_never_deletes_foreign_files(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    d = repo_dir(s.resolved_models_dir(), "org/Model-GGUF")
    d.mkdir(parents=True)
    f = d / "model.Q4_K_M.gguf"
    f.write_bytes(b"x" * 1234)
    s.base_model = str(f)
    assert remove_model(s, str(f)) == 1234
    assert not f.exists() and not d.exists()  # empty repo folders are tidied
    assert s.base_model == ""
    assert "freed 1.2 KB" in describe_removal(f.name, 1234) or "freed" in describe_removal(f.name, 1234)

    mine = tmp_path / "mine.gguf"
    mine.write_bytes(b"y" * 10)
    s.extra_model_files.append(str(mine))
    assert remove_model(s, str(mine)) == 0
    assert mine.exists()  # only forgotten
    assert str(mine) not in s.extra_model_files
    assert "left where it is" in describe_removal(mine.name, 0)


def test_remove_from_hf_cache_deletes_blob(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    snap = hf_cache_dir() / "models--o--r" / "snapshots" / "c"
    blobs = hf_cache_dir() / "models--o--r" / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir(parents=True)
    (blobs / "b1").write_bytes(b"z" * 50)
    link = snap / "m.gguf"
    os.symlink(blobs / "b1", link)
    assert remove_model(s, str(link)) == 50
    assert not (blobs / "b1").exists() and not link.is_symlink()


@pytest.mark.parametrize(
    "free, verdict",
    [(10 * 2**30, Verdict.FITS), (int(1.25 * 2**30), Verdict.TIGHT), (2**29, Verdict.TOO_BIG)],
)
def test_fit_verdicts(free: int, verdict: Verdict) -> None:
    r = assess_fit(800 * 2**20, n_ctx=4096, params_b=1.0, free_bytes=free)
    assert r.verdict is verdict
    assert r.need_bytes == 800 * 2**20 + 4096 * kv_bytes_per_token(1.0) + 64 * 2**20 + 80 * 2**20
    assert "free" in r.sentence and r.sentence.endswith(".")


def test_fit_counts_the_context_and_the_other_model() -> None:
    small = assess_fit(100 * 2**20, n_ctx=512, params_b=0.1, free_bytes=2**30)
    big_ctx = assess_fit(100 * 2**20, n_ctx=32768, params_b=0.1, free_bytes=2**30)
    assert big_ctx.kv_bytes == 64 * small.kv_bytes
    both = assess_fit(100 * 2**20, n_ctx=512, params_b=0.1, free_bytes=2**30, also_loaded=900 * 2**20)
    assert both.need_bytes > small.need_bytes and both.verdict is not Verdict.FITS
