"""Where Based keeps its files (platformdirs). Override everything with BASED_HOME (tests)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "Based"
APP_AUTHOR = "Based"


def _home_override() -> Path | None:
    v = os.environ.get("BASED_HOME")
    return Path(v) if v else None


def data_dir() -> Path:
    h = _home_override()
    p = h / "data" if h else Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))
    p.mkdir(parents=True, exist_ok=True)
    return p


def config_dir() -> Path:
    h = _home_override()
    p = h / "config" if h else Path(platformdirs.user_config_dir(APP_NAME, APP_AUTHOR))
    p.mkdir(parents=True, exist_ok=True)
    return p


def cache_dir() -> Path:
    h = _home_override()
    p = h / "cache" if h else Path(platformdirs.user_cache_dir(APP_NAME, APP_AUTHOR))
    p.mkdir(parents=True, exist_ok=True)
    return p


def documents_dir() -> Path:
    """Where files the user saves (exports, reports) go by default: the user's Documents folder
    (platformdirs: XDG_DOCUMENTS_DIR on Linux, Documents on macOS and Windows), or the home folder
    when there is none. Under BASED_HOME it is BASED_HOME/documents (tests never write to the
    real one)."""
    h = _home_override()
    if h:
        p = h / "documents"
        p.mkdir(parents=True, exist_ok=True)
        return p
    p = Path(platformdirs.user_documents_dir())
    return p if p.is_dir() else Path.home()


def default_models_dir() -> Path:
    p = data_dir() / "models"
    p.mkdir(parents=True, exist_ok=True)
    return p


def settings_file() -> Path:
    return config_dir() / "settings.json"


def read_user_text(path: str | os.PathLike[str], what: str) -> str:
    """A UTF-8 text file the user named (a template, a prompt set), with one-sentence errors."""
    from desktop.core.errors import BasedError

    p = Path(path)
    if not p.is_file():
        raise BasedError(f"{p.name} was not found. Check the path to the {what} file.")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BasedError(f"{p.name} is not UTF-8 text: save it as UTF-8 and try again.") from exc
    except OSError as exc:
        from desktop.core.errors import plain_reason

        raise BasedError(f"{p.name} could not be read ({plain_reason(exc)}).") from exc


def history_db() -> Path:
    return data_dir() / "history.sqlite3"
