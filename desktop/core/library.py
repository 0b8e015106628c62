"""The local model library: the app's models folder, files opened by hand, and GGUFs already in
the Hugging Face cache. Listing reads directory entries only, never model files, so it is instant
and works offline."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from desktop.core.errors import BasedError
from desktop.core.gguf_info import human_bytes, quant_from_filename
from desktop.core.settings import Settings


class LibraryError(BasedError):
    pass


@dataclass(frozen=True)
class LocalModel:
    path: str
    name: str  # file name
    size: int
    quant: str
    source: str  # "library" | "opened" | "hf-cache"
    repo: str = ""  # owner/name when known (library subfolder or HF cache)

    @property
    def label(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "name": self.name, "size": self.size, "quant": self.quant,
                "source": self.source, "repo": self.repo}


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


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _entry(p: Path, source: str, repo: str = "") -> LocalModel:
    return LocalModel(str(p), p.name, _size(p), quant_from_filename(p.name) or "", source, repo)


def scan_hf_cache(cache: Path | None = None) -> list[LocalModel]:
    cache = cache or hf_cache_dir()
    out: list[LocalModel] = []
    try:
        repos = sorted(cache.glob("models--*"))
    except OSError:
        return out
    for rd in repos:
        repo = rd.name[len("models--"):].replace("--", "/", 1)
        snaps = rd / "snapshots"
        try:
            files = sorted(snaps.rglob("*.gguf"))
        except OSError:
            continue
        seen: set[str] = set()
        for f in files:
            if f.name in seen or not f.exists():  # a dangling symlink is not a model
                continue
            seen.add(f.name)
            out.append(_entry(f, "hf-cache", repo))
    return out


def list_local_models(settings: Settings, *, include_hf_cache: bool = True) -> list[LocalModel]:
    """Every GGUF Based knows about. Half-written downloads (``*.incomplete``) never appear."""
    found: dict[str, LocalModel] = {}
    try:
        folder = settings.resolved_models_dir()
        for p in sorted(folder.rglob("*.gguf")):
            if p.is_file():
                rel = p.relative_to(folder).parts
                repo = "/".join(rel[:2]) if len(rel) == 3 else ""
                found[str(p)] = _entry(p, "library", repo)
    except OSError:
        pass
    for extra in settings.extra_model_files:
        p = Path(extra)
        if p.is_file():
            found.setdefault(str(p), _entry(p, "opened"))
    if include_hf_cache:
        for m in scan_hf_cache():
            found.setdefault(m.path, m)
    return list(found.values())


def remove_model(settings: Settings, path: str) -> int:
    """Take a model out of the library and return the bytes freed on disk.

    Files in the models folder or the Hugging Face cache are deleted. A file opened by hand from
    elsewhere is only forgotten (0 bytes freed): Based never deletes files it did not download.
    """
    p = Path(path)
    freed = 0
    if path in settings.extra_model_files:
        settings.extra_model_files.remove(path)
    models = settings.resolved_models_dir().resolve()
    cache = hf_cache_dir().resolve()
    try:
        real = p.resolve()
    except OSError as exc:
        raise LibraryError(f"{p.name} could not be found ({exc.strerror}).") from exc
    in_models = models in real.parents
    in_cache = cache in p.absolute().parents
    if not (in_models or in_cache):
        if settings.base_model == path:
            settings.base_model = ""
        if settings.instruct_model == path:
            settings.instruct_model = ""
        return 0
    try:
        freed = real.stat().st_size
        if in_cache and p.is_symlink():
            p.unlink()
            real.unlink()
        else:
            real.unlink()
    except FileNotFoundError:
        freed = 0
    except OSError as exc:
        raise LibraryError(f"{p.name} could not be deleted ({exc.strerror}); close other apps using it and try again.") from exc
    if in_models:  # tidy empty repo folders
        parent = real.parent
        while parent != models and models in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
    if settings.base_model == path:
        settings.base_model = ""
    if settings.instruct_model == path:
        settings.instruct_model = ""
    return freed


def describe_removal(name: str, freed: int) -> str:
    if freed:
        return f"Removed {name} and freed {human_bytes(freed)}."
    return f"Removed {name} from the library (the file itself was left where it is)."
