"""The local model library: the app's models folder, files opened by hand, and GGUFs already in
the Hugging Face cache.

Listing reads directory entries, folds the parts of each split model into one entry
(:mod:`desktop.core.gguf_split`), and keeps only models that pass validation
(:func:`desktop.core.model_check.check`, cached by size and modification time, so a scan reads a
header only once per file). Every other ``.gguf`` file is reported as skipped, never listed.
:func:`forget_unusable` drops remembered files (opened by hand, the chosen base and instruct) that
vanished or no longer validate. Works offline."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from desktop.core import gguf_split, model_check
from desktop.core.errors import BasedError
from desktop.core.gguf_info import human_bytes
from desktop.core.settings import Settings


class LibraryError(BasedError):
    pass


@dataclass(frozen=True)
class LocalModel:
    """One model on this machine. For a split model, ``path`` and ``name`` are part 1's, ``size``
    counts every part and ``parts`` lists them in order (``()`` for a model in one file)."""

    path: str
    name: str  # file name (part 1's for a split model)
    size: int  # bytes, all parts together
    quant: str
    source: str  # "library" | "opened" | "hf-cache"
    repo: str = ""  # owner/name when known (library subfolder or HF cache)
    parts: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The name lists show: the file name, or ``Model-Q4_K_M (3 parts)``."""
        return gguf_split.display_name(self.name)

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "name": self.name, "label": self.label, "size": self.size,
                "quant": self.quant, "source": self.source, "repo": self.repo,
                "parts": list(self.parts)}


@dataclass(frozen=True)
class Skipped:
    """A ``.gguf`` file a scan found but does not list, and why (one sentence)."""

    path: str
    reason: str


@dataclass(frozen=True)
class LibraryScan:
    models: list[LocalModel] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def repo_dir(models_dir: Path, repo_id: str) -> Path:
    """Where a download from ``repo_id`` is kept: ``<models>/<owner>/<name>/``."""
    owner, _, name = repo_id.partition("/")
    safe = [p.replace(os.sep, "_").replace("..", "_") for p in (owner, name or owner)]
    return models_dir.joinpath(*safe)


def hf_cache_dir() -> Path:
    """huggingface-hub's cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


class _Collector:
    """Folds candidate files into models and checks each model once."""

    def __init__(self) -> None:
        self.scan = LibraryScan()
        self.seen: set[str] = set()

    def add(self, files: list[Path], source: str, repo_of: dict[str, str] | None = None,
            rel_of: dict[str, str] | None = None) -> None:
        """``repo_of``/``rel_of``: a file's repo and its path inside the repo (for the quant)."""
        repo_of, rel_of = repo_of or {}, rel_of or {}
        for group in gguf_split.group_model_files([str(f) for f in files]):
            first = group.name
            if first in self.seen:
                continue
            self.seen.add(first)
            if first not in group.files:  # later parts without their part 1
                self.scan.skipped.extend(Skipped(f, model_check.check(f) or "") for f in group.files)
                continue
            reason = model_check.check(first)
            if reason:
                self.scan.skipped.append(Skipped(first, reason))
                continue
            parts = tuple(str(p) for p in gguf_split.model_parts(first)) if group.split_count > 1 else ()
            self.scan.models.append(LocalModel(
                first, Path(first).name, gguf_split.model_bytes(first),
                gguf_split.model_quant(rel_of.get(first, Path(first).name)), source,
                repo_of.get(first, ""), parts,
            ))


def _models_folder(settings: Settings, col: _Collector) -> None:
    try:
        folder = settings.resolved_models_dir()
        files = sorted(p for p in folder.rglob("*.gguf") if p.is_file())
    except OSError:
        return
    repo_of: dict[str, str] = {}
    rel_of: dict[str, str] = {}
    for p in files:
        rel = p.relative_to(folder).parts
        if len(rel) >= 3:  # <owner>/<name>/[subfolders/]file, as downloads lay them out
            repo_of[str(p)] = "/".join(rel[:2])
            rel_of[str(p)] = "/".join(rel[2:])
    col.add(files, "library", repo_of, rel_of)


def _hf_cache(col: _Collector, cache: Path | None = None) -> None:
    cache = cache or hf_cache_dir()
    try:
        repos = sorted(cache.glob("models--*"))
    except OSError:
        return
    for rd in repos:
        repo = rd.name[len("models--"):].replace("--", "/", 1)
        snaps = rd / "snapshots"
        try:
            files = sorted(snaps.rglob("*.gguf"))
        except OSError:
            continue
        seen: set[str] = set()
        keep: list[Path] = []
        rel_of: dict[str, str] = {}
        for f in files:
            rel = "/".join(f.relative_to(snaps).parts[1:])  # below <snapshot>/
            if rel in seen or not f.exists():  # a dangling symlink is not a model
                continue
            seen.add(rel)
            keep.append(f)
            rel_of[str(f)] = rel
        col.add(keep, "hf-cache", {str(f): repo for f in keep}, rel_of)


def scan_hf_cache(cache: Path | None = None) -> list[LocalModel]:
    """Models in huggingface-hub's cache (each file once, across snapshots)."""
    col = _Collector()
    _hf_cache(col, cache)
    return col.scan.models


def scan_library(settings: Settings, *, include_hf_cache: bool = True) -> LibraryScan:
    """Every model Based knows about, and the ``.gguf`` files it skipped with the reason.

    Half-written downloads (``*.incomplete``) never appear; a split model appears once, as its
    part 1, when all its parts are there and agree; files that fail validation are skipped."""
    col = _Collector()
    _models_folder(settings, col)
    col.add([p for p in map(Path, settings.extra_model_files) if p.is_file()], "opened")
    if include_hf_cache:
        _hf_cache(col)
    return col.scan


def list_local_models(settings: Settings, *, include_hf_cache: bool = True) -> list[LocalModel]:
    """Every model Based knows about (see :func:`scan_library`)."""
    return scan_library(settings, include_hf_cache=include_hf_cache).models


def forget_unusable(settings: Settings) -> list[Skipped]:
    """Forget remembered files that vanished or no longer validate: files opened by hand and the
    chosen base and instruct models. Returns each file forgotten with the reason
    (:func:`describe_forgotten` words it for a notice); the caller saves the settings."""
    remembered = dict.fromkeys([*settings.extra_model_files, settings.base_model, settings.instruct_model])
    remembered.pop("", None)
    bad = {p: r for p in remembered if (r := model_check.check(p))}
    settings.extra_model_files = [p for p in settings.extra_model_files if p not in bad]
    if settings.base_model in bad:
        settings.base_model = ""
    if settings.instruct_model in bad:
        settings.instruct_model = ""
    return [Skipped(p, r) for p, r in bad.items()]


def describe_forgotten(item: Skipped) -> str:
    return f"Based took {Path(item.path).name} off your model list: {item.reason}"


def remove_model(settings: Settings, path: str) -> int:
    """Take a model out of the library and return the bytes freed on disk.

    Files in the models folder or the Hugging Face cache are deleted: every part of a split model
    (``path`` is its part 1). A file opened by hand from elsewhere is only forgotten (0 bytes
    freed): Based never deletes files it did not download. Raises :class:`LibraryError`.
    """
    if path in settings.extra_model_files:
        settings.extra_model_files.remove(path)
    if settings.base_model == path:
        settings.base_model = ""
    if settings.instruct_model == path:
        settings.instruct_model = ""
    models = settings.resolved_models_dir().resolve()
    cache = hf_cache_dir().resolve()
    freed = 0
    for p in gguf_split.model_parts(path):
        try:
            real = p.resolve()
        except OSError as exc:
            raise LibraryError(f"{p.name} could not be found ({exc.strerror}).") from exc
        in_models = models in real.parents
        in_cache = cache in p.absolute().parents
        if not (in_models or in_cache):
            continue
        try:
            size = real.stat().st_size
            if in_cache and p.is_symlink():
                p.unlink()
            real.unlink()
            freed += size
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LibraryError(
                f"{p.name} could not be deleted ({exc.strerror}); close other apps using it and try again."
            ) from exc
        if in_models:  # tidy empty repo folders
            parent = real.parent
            while parent != models and models in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent
    return freed


def describe_removal(name: str, freed: int) -> str:
    if freed:
        return f"Removed {name} and freed {human_bytes(freed)}."
    return f"Removed {name} from the library (the file itself was left where it is)."
