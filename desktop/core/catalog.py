"""The curated catalog of base/instruct twins, shipped as data (``desktop/assets/catalog.json``).

A new pair is added by editing the JSON only. Loading validates every entry and reports a broken
catalog in one sentence instead of failing somewhere later.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from desktop.core.errors import BasedError


class CatalogError(BasedError):
    """The catalog file is malformed."""


@dataclass(frozen=True)
class CatalogFile:
    quant: str
    file: str  # a split model: its part 1 ("...-00001-of-00003.gguf"); every part is downloaded
    size: int  # bytes, all parts together (exact when verified, an estimate otherwise)
    verified: bool = False  # name and exact size checked against Hugging Face
    name_known: bool = True  # the file name was seen in the repo (False: inferred from its naming)

    @property
    def size_exact(self) -> bool:
        return self.verified


@dataclass(frozen=True)
class CatalogModel:
    repo: str
    files: tuple[CatalogFile, ...]

    def file_for(self, quant: str) -> CatalogFile | None:
        for f in self.files:
            if f.quant.lower() == quant.lower():
                return f
        return None


@dataclass(frozen=True)
class CatalogPair:
    id: str
    family: str
    params: str
    params_b: float
    licence: str
    licence_url: str
    gated: bool
    licence_notice: str
    note: str
    base: CatalogModel
    instruct: CatalogModel
    recommended_quant: str
    verified: bool
    unverified: tuple[str, ...] = field(default=())

    @property
    def title(self) -> str:
        return f"{self.family} {self.params}"

    def quants(self) -> list[str]:
        """Quantizations available for both sides, recommended first."""
        both = [f.quant for f in self.base.files if self.instruct.file_for(f.quant) is not None]
        both.sort(key=lambda q: (q != self.recommended_quant, q))
        return both

    def files_for(self, quant: str | None = None) -> tuple[CatalogFile, CatalogFile]:
        q = quant or self.recommended_quant
        b, i = self.base.file_for(q), self.instruct.file_for(q)
        if b is None or i is None:
            have = ", ".join(self.quants()) or "none"
            raise CatalogError(f"{self.title} has no {q} files on both sides; choose one of: {have}.")
        return b, i

    def total_size(self, quant: str | None = None) -> int:
        b, i = self.files_for(quant)
        return b.size + i.size

    def size_words(self, quant: str | None = None) -> str:
        """The pair's download size, "about ..." when a file's size is an estimate."""
        from desktop.core.gguf_info import human_bytes

        b, i = self.files_for(quant)
        exact = b.size_exact and i.size_exact
        return ("" if exact else "about ") + human_bytes(b.size + i.size)

    def what_is_known(self, quant: str | None = None) -> str:
        """In plain words, how sure the catalog is of this pair's files at ``quant`` (the file
        names, the sizes) and what happens if it is wrong. One or two sentences."""
        q = quant or self.recommended_quant
        b, i = self.files_for(q)
        guessed = [side for side, f in (("base", b), ("instruct", i)) if not f.name_known]
        if guessed:
            which = ("both file names follow" if len(guessed) == 2
                     else f"the {guessed[0]} file's name follows")
            safer = [x for x in self.quants() if x != q
                     and all(f.name_known for f in self.files_for(x))]
            alt = f", and {safer[0]} is a safe choice" if safer else ""
            return (f"At {q}, {which} the uploader's usual naming but could not be "
                    f"checked: if Hugging Face has no such file, the download says so{alt}. "
                    "Every file is checked against Hugging Face's checksum as it downloads.")
        if b.size_exact and i.size_exact:
            return ("Both files were checked against Hugging Face: names and sizes are exact, and "
                    "every download is checked against its checksum.")
        return ("The file names are confirmed, and the size shown is a close estimate. Every file "
                "is checked against Hugging Face's checksum as it downloads.")


_KIND_WORDS = {str: "text", int: "a whole number", float: "a number", list: "a list", dict: "an object",
               bool: "true or false"}


def _req(d: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in d:
        raise CatalogError(f"The model catalog is broken: {where} has no '{key}'. Reinstall Based.")
    v = d[key]
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise CatalogError(f"The model catalog is broken: {where}.{key} should be {_KIND_WORDS.get(kind, 'something else')}. "
                           "Reinstall Based.")
    return v


def _model(d: Any, where: str) -> CatalogModel:
    if not isinstance(d, dict):
        raise CatalogError(f"The model catalog is broken: {where} is not an object. Reinstall Based.")
    files = []
    raw_files = _req(d, "files", list, where)
    for n, f in enumerate(raw_files):
        w = f"{where}.files[{n}]"
        if not isinstance(f, dict):
            raise CatalogError(f"The model catalog is broken: {w} is not an object. Reinstall Based.")
        name = _req(f, "file", str, w)
        if not name.lower().endswith(".gguf"):
            raise CatalogError(f"The model catalog is broken: {w} is not a .gguf file. Reinstall Based.")
        files.append(
            CatalogFile(
                quant=_req(f, "quant", str, w),
                file=name,
                size=int(_req(f, "size", int, w)),
                verified=bool(f.get("verified", False)),
                name_known=bool(f.get("verified", False) or f.get("name_known", True)),
            )
        )
    if not files:
        raise CatalogError(f"The model catalog is broken: {where} lists no files. Reinstall Based.")
    repo = _req(d, "repo", str, where)
    if repo.count("/") != 1:
        raise CatalogError(f"The model catalog is broken: {where}.repo '{repo}' is not owner/name. Reinstall Based.")
    return CatalogModel(repo=repo, files=tuple(files))


def parse_catalog(data: Any) -> list[CatalogPair]:
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
        raise CatalogError("The model catalog is broken: it has no list of pairs. Reinstall Based.")
    out: list[CatalogPair] = []
    seen: set[str] = set()
    for n, p in enumerate(data["pairs"]):
        where = f"pairs[{n}]"
        if not isinstance(p, dict):
            raise CatalogError(f"The model catalog is broken: {where} is not an object. Reinstall Based.")
        pid = _req(p, "id", str, where)
        if pid in seen:
            raise CatalogError(f"The model catalog is broken: the id '{pid}' appears twice. Reinstall Based.")
        seen.add(pid)
        out.append(
            CatalogPair(
                id=pid,
                family=_req(p, "family", str, where),
                params=_req(p, "params", str, where),
                params_b=float(p.get("params_b", 0.0) or 0.0),
                licence=_req(p, "licence", str, where),
                licence_url=str(p.get("licence_url", "")),
                gated=bool(p.get("gated", False)),
                licence_notice=str(p.get("licence_notice", "")),
                note=str(p.get("note", "")),
                base=_model(p.get("base"), where + ".base"),
                instruct=_model(p.get("instruct"), where + ".instruct"),
                recommended_quant=str(p.get("recommended_quant", "Q4_K_M")),
                verified=bool(p.get("verified", False)),
                unverified=tuple(str(x) for x in p.get("unverified", []) or []),
            )
        )
    return out


def load_catalog(path: str | Path | None = None) -> list[CatalogPair]:
    """The shipped catalog, or another file with the same schema: ``path``, else the file named by
    the ``BASED_CATALOG`` environment variable (for tests and power users)."""
    if path is None and os.environ.get("BASED_CATALOG"):
        path = os.environ["BASED_CATALOG"]
    try:
        if path is not None:
            text = Path(path).read_text(encoding="utf-8")
        else:
            text = resources.files("desktop.assets").joinpath("catalog.json").read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"The model catalog could not be read ({exc.strerror or exc}). Reinstall Based.") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CatalogError(f"The model catalog is not valid JSON (line {getattr(exc, 'lineno', '?')}). Reinstall Based.") from exc
    return parse_catalog(data)


def find_pair(name: str, pairs: list[CatalogPair] | None = None) -> CatalogPair:
    pairs = pairs if pairs is not None else load_catalog()
    key = name.strip().lower()
    for p in pairs:
        if key in (p.id.lower(), p.title.lower(), p.title.lower().replace(" ", "-")):
            return p
    ids = ", ".join(p.id for p in pairs)
    raise CatalogError(f"There is no pair called '{name}' in the catalog; try one of: {ids}.")
