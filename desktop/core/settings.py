"""One typed settings object, stored as JSON under platformdirs.

A corrupt or unreadable file falls back to defaults and records a notice the UI shows.
Unknown keys are ignored; missing keys take their defaults.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from desktop.core import paths


@dataclass
class Settings:
    base_model: str = ""  # path of the chosen base GGUF
    instruct_model: str = ""  # path of the chosen instruct GGUF
    base_mode: str = "urial"  # raw | twin-template | qa | urial
    system_prompt: str = ""
    user_prompt: str = ""
    preset: str = "deterministic"  # deterministic | creative | custom
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 1
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    seed: int = 0
    max_tokens: int = 200
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    run_mode: str = "auto"  # auto | parallel | sequential
    models_dir: str = ""  # empty: the default under the user data dir
    extra_model_files: list[str] = field(default_factory=list)  # opened with "Open GGUF file..."
    shift_prompt_source: str = "chat"  # chat | base-mode
    show_heatmap: bool = False

    def resolved_models_dir(self) -> Path:
        p = Path(self.models_dir).expanduser() if self.models_dir else paths.default_models_dir()
        p.mkdir(parents=True, exist_ok=True)
        return p

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        out = cls()
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            default = getattr(out, f.name)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else value
            elif isinstance(default, str):
                ok = isinstance(value, str)
            elif isinstance(default, list):
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            else:
                ok = False
            if ok:
                setattr(out, f.name, value)
        return out


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    notice: str | None  # set when the file was corrupt and defaults were used


def load(path: Path | None = None) -> LoadedSettings:
    path = path or paths.settings_file()
    if not path.exists():
        return LoadedSettings(Settings(), None)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, ValueError, UnicodeDecodeError):
        return LoadedSettings(
            Settings(),
            f"Your settings file could not be read, so Based started with default settings "
            f"(the old file was kept as {path.name}.bad).",
        )
    return LoadedSettings(Settings.from_dict(data), None)


def save(settings: Settings, path: Path | None = None) -> None:
    """Write atomically: a crash never leaves a half-written settings file."""
    path = path or paths.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(settings.to_dict(), fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_or_default(path: Path | None = None) -> LoadedSettings:
    """Like :func:`load`, but keeps a corrupt file aside as ``settings.json.bad``."""
    path = path or paths.settings_file()
    result = load(path)
    if result.notice is not None:
        try:
            os.replace(path, path.with_name(path.name + ".bad"))
        except OSError:
            pass
    return result
