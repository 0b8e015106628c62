"""Is this a model file Based can open? :func:`validate_gguf`'s answer, remembered per file.

The library and the pickers list only files that pass (issue 12: a text file renamed ``.gguf``
must never be remembered as a model). Reading a header costs up to a few tenths of a second for a
large vocabulary, so each answer is kept, keyed by path, size and modification time of every file
of the model (all parts of a split model), in memory and in ``model-checks.json`` in Based's cache
folder. A file that changes, or a part that appears or goes, is checked again; a new version of
Based or of llama-cpp-python starts a fresh cache. No Qt here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from desktop.core import paths
from desktop.core.errors import BasedError
from desktop.core.gguf_split import model_parts

CACHE_NAME = "model-checks.json"
MAX_ENTRIES = 2000

_lock = threading.Lock()
_memo: dict[str, dict[str, Any]] = {}  # cache file -> its contents


def _cache_version() -> str:
    from importlib import metadata

    from desktop import __version__

    try:
        llama = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        llama = "?"
    return f"{__version__}/{llama}"


def _stamp(path: Path) -> list[list[int]]:
    """(size, mtime in ns) of every file of the model; [-1, 0] for one that is not there."""
    out = []
    for p in model_parts(path):
        try:
            st = p.stat()
            out.append([int(st.st_size), int(st.st_mtime_ns)])
        except OSError:
            out.append([-1, 0])
    return out


def _cache_file() -> Path:
    return paths.cache_dir() / CACHE_NAME


def _load(cache: Path) -> dict[str, Any]:
    data = _memo.get(str(cache))
    if data is not None:
        return data
    version = _cache_version()
    data = {"version": version, "files": {}}
    with contextlib.suppress(OSError, ValueError):
        disk = json.loads(cache.read_text(encoding="utf-8"))
        if isinstance(disk, dict) and disk.get("version") == version and isinstance(disk.get("files"), dict):
            data = disk
    _memo[str(cache)] = data
    return data


def _save(cache: Path, data: dict[str, Any]) -> None:
    files = data["files"]
    while len(files) > MAX_ENTRIES:  # oldest first (dicts keep insertion order)
        files.pop(next(iter(files)))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".model-checks-", suffix=".json", dir=str(cache.parent))
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, cache)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def check(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a model Based can load (part 1 of a split model: with all its parts),
    else the one sentence saying why not: missing, not a GGUF file, damaged, a later part of a split
    model, a part missing or mismatched, or a tokenizer without weights.

    Validation is :func:`desktop.core.gguf_info.validate_gguf`; answers are cached (see above).
    """
    from desktop.core.gguf_info import validate_gguf

    p = Path(path)
    key = str(p.absolute())
    stamp = _stamp(p)
    cache = _cache_file()
    with _lock:
        entry = _load(cache)["files"].get(key)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            error = entry.get("error")
            return error if isinstance(error, str) else None
    if stamp[0][0] < 0 and not p.is_dir():
        return f"{p.name} is no longer in {p.parent}."  # not cached: it may come back
    try:
        info = validate_gguf(p)
        error = None
        if info.vocab_only:
            error = (
                f"{p.name} holds only a tokenizer, no weights, so it cannot generate text: "
                "pick a full model file."
            )
    except BasedError as exc:
        error = str(exc)
    except (OSError, ValueError, MemoryError):
        error = f"{p.name} could not be read as a model file: pick another .gguf file."
    with _lock:
        data = _load(cache)
        data["files"].pop(key, None)
        data["files"][key] = {"stamp": stamp, "error": error}
        _save(cache, data)
    return error


def forget_cache() -> None:
    """Drop the in-memory copy (the file stays); the next check reads the cache file again."""
    with _lock:
        _memo.clear()
