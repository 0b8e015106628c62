"""The curated catalog is data: it loads, validates, and a new pair needs no code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop.core.catalog import CatalogError, find_pair, load_catalog, parse_catalog

REQUIRED = {"smollm2-135m", "smollm2-360m", "qwen2.5-0.5b", "qwen2.5-1.5b", "llama3.2-1b",
            "gemma3-270m", "gemma3-1b", "tinyllama-1.1b"}


def _pair(pid: str = "new-pair", **kw: object) -> dict[str, object]:
    d: dict[str, object] = {
        "id": pid, "family": "Fam", "params": "1B", "params_b": 1.0, "licence": "MIT",
        "note": "a note",
        "base": {"repo": "org/base-GGUF", "files": [{"quant": "Q4_K_M", "file": "b.Q4_K_M.gguf", "size": 10}]},
        "instruct": {"repo": "org/inst-GGUF", "files": [{"quant": "Q4_K_M", "file": "i.Q4_K_M.gguf", "size": 20},
                                                       {"quant": "Q8_0", "file": "i.Q8_0.gguf", "size": 40}]},
    }
    d.update(kw)
    return d


def test_shipped_catalog_has_the_starter_pairs() -> None:
    pairs = load_catalog()
    ids = {p.id for p in pairs}
    assert ids >= REQUIRED, REQUIRED - ids
    for p in pairs:
        assert p.base.repo != p.instruct.repo or p.base.files != p.instruct.files
        assert p.quants(), p.id
        assert p.total_size() > 10_000_000, p.id  # real model files, sizes in bytes
        assert p.note and p.licence
        if not p.verified:
            assert p.unverified, f"{p.id} is unverified but does not say what"


def test_a_new_pair_is_data_only(tmp_path: Path) -> None:
    f = tmp_path / "catalog.json"
    f.write_text(json.dumps({"format_version": 1, "pairs": [_pair()]}), encoding="utf-8")
    (p,) = load_catalog(f)
    assert p.title == "Fam 1B"
    assert p.quants() == ["Q4_K_M"]  # only quants present on both sides
    assert p.total_size() == 30
    assert find_pair("new-pair", [p]) is p
    with pytest.raises(CatalogError, match="no Q8_0 files on both sides"):
        p.files_for("Q8_0")


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"pairs": "x"}, "no list of pairs"),
        ({"pairs": [_pair(base={"repo": "nope", "files": []})]}, "lists no files"),
        ({"pairs": [_pair(base={"repo": "a/b", "files": [{"quant": "Q4", "file": "x.bin", "size": 1}]})]}, "not a .gguf"),
        ({"pairs": [_pair(), _pair()]}, "appears twice"),
        ({"pairs": [{k: v for k, v in _pair().items() if k != "family"}]}, "has no 'family'"),
        ({"pairs": [_pair(params=3)]}, "should be text"),
    ],
)
def test_broken_catalog_gets_one_sentence(bad: dict[str, object], words: str) -> None:
    with pytest.raises(CatalogError, match=words):
        parse_catalog(bad)


def test_unknown_pair_names_the_choices() -> None:
    with pytest.raises(CatalogError, match="smollm2-135m"):
        find_pair("gpt-9")
