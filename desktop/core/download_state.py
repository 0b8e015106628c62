"""Partial downloads on disk: where a file goes, its ``.incomplete`` bytes and JSON sidecar, and
listing or discarding what an earlier call left. Used by :mod:`desktop.core.downloads` (which
re-exports :func:`partial_downloads`, :func:`discard_partial` and :class:`PartialInfo`); no Qt."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from desktop.core.errors import DownloadError
from desktop.core.gguf_split import parse_split_name

SIDECAR_VERSION = 1
PARTIAL_SUFFIX = ".incomplete"
SIDECAR_SUFFIX = ".incomplete.json"


@dataclass(frozen=True)
class PartialInfo:
    """A partial download that a later ``download()`` call continues."""

    repo_id: str
    filename: str
    revision: str
    done_bytes: int
    total_bytes: int
    sha256: str | None
    path: Path  # the .incomplete file


# ----- paths ----------------------------------------------------------------------------------


def _target(dest_dir: Path, filename: str) -> Path:
    rel = PurePosixPath(filename.replace("\\", "/"))
    if not filename or rel.is_absolute() or any(p in ("", ".", "..") for p in rel.parts):
        raise DownloadError(f"{filename!r} is not a file name Based can save: pick another file.")
    return Path(dest_dir).joinpath(*rel.parts)


def _partial_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


def _sidecar_path(final: Path) -> Path:
    return final.with_name(final.name + SIDECAR_SUFFIX)


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == SIDECAR_VERSION else None


def _write_sidecar(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def partial_downloads(dest_dir: Path) -> list[PartialInfo]:
    """Resumable partial downloads under ``dest_dir`` (searched recursively), by file name.

    The parts of a split model come back as one entry named by its part 1, with the bytes of
    every part already here and the whole model's size."""
    out: list[PartialInfo] = []
    root = Path(dest_dir)
    if not root.is_dir():
        return out
    for side in sorted(root.rglob("*" + SIDECAR_SUFFIX)):
        data = _read_sidecar(side)
        if not data:
            continue
        part = side.with_name(side.name[: -len(".json")])
        try:
            if _target(root, str(data["filename"])) != side.with_name(side.name[: -len(SIDECAR_SUFFIX)]):
                continue
            done = part.stat().st_size if part.is_file() else 0
        except (DownloadError, KeyError, OSError):
            continue
        out.append(
            PartialInfo(
                repo_id=str(data.get("repo_id", "")),
                filename=str(data["filename"]),
                revision=str(data.get("revision") or "main"),
                done_bytes=done,
                total_bytes=int(data.get("size") or 0),
                sha256=data.get("sha256"),
                path=part,
            )
        )
        if data.get("model_size"):
            out[-1] = replace(out[-1], total_bytes=int(data["model_size"]))
    return _fold_split(root, out)


def _fold_split(root: Path, found: list[PartialInfo]) -> list[PartialInfo]:
    """One entry per split model, named by its part 1: done = finished parts + partial bytes."""
    out: list[PartialInfo] = []
    models: dict[str, int] = {}  # part 1's name -> index in out
    for info in found:
        sn = parse_split_name(info.filename)
        if sn is None:
            out.append(info)
            continue
        if sn.first in models:
            i = models[sn.first]
            out[i] = replace(out[i], done_bytes=out[i].done_bytes + info.done_bytes,
                             total_bytes=max(out[i].total_bytes, info.total_bytes))
            continue
        finished = 0
        for n in range(sn.split_count):
            with contextlib.suppress(DownloadError, OSError):
                final = _target(root, sn.part(n))
                if final.is_file():
                    finished += final.stat().st_size
        models[sn.first] = len(out)
        out.append(replace(info, filename=sn.first, done_bytes=info.done_bytes + finished))
    return out


def _discard_file(final: Path) -> None:
    """Delete one file's partial download and sidecar."""
    for p in (_partial_path(final), _sidecar_path(final)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def discard_partial(dest_dir: Path, filename: str) -> None:
    """Delete a partial download and its sidecar (nothing happens when there is none).

    For a split model (any part named): every part's partial download, and, while not all parts
    are here, the parts already finished, which are no use alone."""
    sn = parse_split_name(filename)
    names = [filename] if sn is None else [sn.part(i) for i in range(sn.split_count)]
    finals = [_target(Path(dest_dir), n) for n in names]
    for final in finals:
        _discard_file(final)
    if sn is not None and not all(f.is_file() for f in finals):
        for f in finals:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()

