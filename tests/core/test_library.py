"""The local library: models folder, opened files, the Hugging Face cache; removal frees space."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from desktop.core import model_check
from desktop.core import settings as settings_mod
from desktop.core.fit import Verdict, assess_fit, kv_bytes_per_token
from desktop.core.gguf_split import model_parts, split_path
from desktop.core.library import (
    describe_forgotten,
    describe_removal,
    forget_unusable,
    hf_cache_dir,
    list_local_models,
    remove_model,
    repo_dir,
    scan_library,
)
from desktop.core.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(models_dir=str(tmp_path / "models"))


def test_lists_library_opened_and_hf_cache_but_not_partials(tmp_path: Path, tiny_llama_spm: Path) -> None:
    data = tiny_llama_spm.read_bytes()
    s = _settings(tmp_path)
    d = repo_dir(s.resolved_models_dir(), "org/Model-GGUF")
    d.mkdir(parents=True)
    (d / "model.Q4_K_M.gguf").write_bytes(data)
    (d / "half.Q8_0.gguf.incomplete").write_bytes(data[:10])
    (d / "notes.gguf").write_text("not a model\n")
    opened = tmp_path / "elsewhere" / "mine-Q8_0.gguf"
    opened.parent.mkdir()
    opened.write_bytes(data)
    s.extra_model_files.append(str(opened))
    snap = hf_cache_dir() / "models--org--Cached-GGUF" / "snapshots" / "abc123"
    blobs = hf_cache_dir() / "models--org--Cached-GGUF" / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir(parents=True)
    (blobs / "deadbeef").write_bytes(data)
    os.symlink(blobs / "deadbeef", snap / "cached.Q5_K_M.gguf")
    os.symlink(blobs / "missing", snap / "dangling.gguf")

    scan = scan_library(s)
    models = {m.name: m for m in scan.models}
    assert set(models) == {"model.Q4_K_M.gguf", "mine-Q8_0.gguf", "cached.Q5_K_M.gguf"}
    assert models["model.Q4_K_M.gguf"].source == "library"
    assert models["model.Q4_K_M.gguf"].repo == "org/Model-GGUF"
    assert models["model.Q4_K_M.gguf"].quant == "Q4_K_M"
    assert models["mine-Q8_0.gguf"].source == "opened"
    assert models["cached.Q5_K_M.gguf"].source == "hf-cache"
    assert models["cached.Q5_K_M.gguf"].repo == "org/Cached-GGUF"
    assert models["cached.Q5_K_M.gguf"].size == len(data)
    assert [Path(k.path).name for k in scan.skipped] == ["notes.gguf"]
    assert "notes.gguf" in scan.skipped[0].reason and "GGUF" in scan.skipped[0].reason


def _copy_split(first: Path, dest: Path, prefix: str) -> list[Path]:
    """Copy a split model's parts into ``dest`` under another name prefix (names stay consistent)."""
    dest.mkdir(parents=True, exist_ok=True)
    parts = model_parts(first)
    out = []
    for i, p in enumerate(parts):
        q = dest / split_path(prefix, i, len(parts))
        shutil.copy(p, q)
        out.append(q)
    return out


def test_a_split_model_is_listed_once_with_all_its_bytes(tmp_path: Path, tiny_split: Path,
                                                        tiny_llama_spm: Path) -> None:
    s = _settings(tmp_path)
    d = repo_dir(s.resolved_models_dir(), "org/Big-GGUF")
    parts = _copy_split(tiny_split, d / "Q8_0", "Big")  # in a subfolder, quant in the folder name
    (d / "single").mkdir()
    shutil.copy(tiny_llama_spm, d / "single" / "small.Q4_0.gguf")
    broken = _copy_split(tiny_split, d / "Broken", "Broken")
    broken[1].unlink()

    scan = scan_library(s, include_hf_cache=False)
    [big] = [m for m in scan.models if m.name.startswith("Big")]
    assert big.name == "Big-00001-of-00003.gguf" and big.path == str(parts[0])
    assert big.label == "Big (3 parts)" and big.quant == "Q8_0" and big.repo == "org/Big-GGUF"
    assert big.parts == tuple(str(p) for p in parts)
    assert big.size == sum(p.stat().st_size for p in parts)
    [small] = [m for m in scan.models if m.name == "small.Q4_0.gguf"]
    assert small.repo == "org/Big-GGUF" and small.parts == ()  # subfolders keep their repo
    assert len(scan.models) == 2  # no part listed on its own, no broken model
    [skip] = scan.skipped
    assert skip.path == str(broken[0]) and "Part 2 of 3 of Broken is missing" in skip.reason
    assert big.to_dict()["parts"] == [str(p) for p in parts]


def test_removing_a_split_model_deletes_every_part(tmp_path: Path, tiny_split: Path) -> None:
    s = _settings(tmp_path)
    d = repo_dir(s.resolved_models_dir(), "org/Big-GGUF")
    parts = _copy_split(tiny_split, d / "Q8_0", "Big")
    total = sum(p.stat().st_size for p in parts)
    s.base_model = str(parts[0])
    assert remove_model(s, str(parts[0])) == total
    assert not any(p.exists() for p in parts) and not d.exists()
    assert s.base_model == ""
    assert list_local_models(s) == []

    # in the Hugging Face cache: every part's link and blob
    snap = hf_cache_dir() / "models--o--big" / "snapshots" / "c1"
    blobs = hf_cache_dir() / "models--o--big" / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir(parents=True)
    links = []
    for i, p in enumerate(model_parts(tiny_split)):
        shutil.copy(p, blobs / f"b{i}")
        links.append(snap / split_path("Big", i, 3))
        os.symlink(blobs / f"b{i}", links[-1])
    [cached] = list_local_models(s)
    assert cached.source == "hf-cache" and cached.size == total and cached.label == "Big (3 parts)"
    assert remove_model(s, cached.path) == total
    assert not any(link.is_symlink() for link in links) and not list(blobs.iterdir())


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


# ----- files that are not models (issue 12, item 6) ---------------------------------------------


def test_a_file_that_is_not_a_model_is_never_listed_or_remembered(tmp_path: Path, tiny_llama_spm: Path) -> None:
    s = _settings(tmp_path)
    folder = tmp_path / "Downloads"
    folder.mkdir()
    text = folder / "story.gguf"
    text.write_text("Once upon a time there was a file that wanted to be a model.\n" * 20)
    good = folder / "good.gguf"
    shutil.copy(tiny_llama_spm, good)
    s.extra_model_files += [str(text), str(good)]
    s.base_model, s.instruct_model = str(text), str(good)
    assert [m.path for m in list_local_models(s)] == [str(good)]
    [item] = forget_unusable(s)
    assert item.path == str(text) and item.reason.startswith("story.gguf")
    assert describe_forgotten(item).startswith("Based took story.gguf off your model list: story.gguf")
    assert (s.extra_model_files, s.base_model, s.instruct_model) == ([str(good)], "", str(good))
    settings_mod.save(s)
    again = settings_mod.load().settings  # after a restart it is still gone
    assert str(text) not in [*again.extra_model_files, again.base_model, again.instruct_model]
    assert forget_unusable(again) == []

    # a remembered file that no longer validates, or vanished, is dropped on the next scan
    good.write_text("overwritten with notes\n")
    [item] = forget_unusable(again)
    assert item.path == str(good) and again.extra_model_files == [] and again.instruct_model == ""
    gone = folder / "gone.gguf"
    shutil.copy(tiny_llama_spm, gone)
    again.extra_model_files.append(str(gone))
    assert forget_unusable(again) == []
    gone.unlink()
    [item] = forget_unusable(again)
    assert item.reason.startswith("gone.gguf is no longer in") and again.extra_model_files == []


def test_a_tokenizer_only_file_is_not_listed_as_a_model(tmp_path: Path, vocab_dir: Path) -> None:
    s = _settings(tmp_path)
    s.extra_model_files.append(str(vocab_dir / "ggml-vocab-phi-3.gguf"))
    scan = scan_library(s, include_hf_cache=False)
    assert scan.models == [] and "only a tokenizer" in scan.skipped[0].reason


def test_each_model_is_read_once_until_it_changes(tmp_path: Path, tiny_llama_spm: Path, tiny_split: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import gguf_info

    calls: list[str] = []
    real = gguf_info.validate_gguf

    def counting(path: object) -> object:
        calls.append(Path(str(path)).name)
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(gguf_info, "validate_gguf", counting)
    f = tmp_path / "m.gguf"
    shutil.copy(tiny_llama_spm, f)
    assert model_check.check(f) is None and model_check.check(f) is None
    model_check.forget_cache()  # a new process: the answer comes from the cache file
    assert model_check.check(f) is None and calls == ["m.gguf"]
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert model_check.check(f) is None and calls == ["m.gguf", "m.gguf"]
    f.write_bytes(b"GGUF" + b"\0" * 10)
    assert "m.gguf" in (model_check.check(f) or "")

    # a split model is checked again when a part comes or goes
    parts = _copy_split(tiny_split, tmp_path / "s", "S")
    moved = parts[2].rename(tmp_path / "aside.gguf")
    assert "Part 3 of 3 of S is missing" in (model_check.check(parts[0]) or "")
    moved.rename(parts[2])
    assert model_check.check(parts[0]) is None
