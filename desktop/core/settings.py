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
from desktop.core.prompts import DEFAULT_BASE_MODE, BaseMode
from desktop.core.sampling import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_PRESET,
    LOAD_RULES,
    PRESETS,
    SAMPLING_RULES,
    InvalidSetting,
    shown,
)

GPU_CHOICES = ("auto", "cpu", "layers")
_PRESET = dict(PRESETS[DEFAULT_PRESET].values)  # the window starts on the default preset

# 1: up to issue 13 (base side defaulted to URIAL, saved whether chosen or not);
# 2: the base side defaults to the twin's chat template, and a saved base_mode is a choice.
SETTINGS_VERSION = 2


@dataclass
class Settings:
    base_model: str = ""  # path of the chosen base GGUF
    instruct_model: str = ""  # path of the chosen instruct GGUF
    base_mode: str = DEFAULT_BASE_MODE.value  # raw | twin-template | qa | urial
    system_prompt: str = ""
    user_prompt: str = ""
    preset: str = DEFAULT_PRESET  # a key of desktop.core.sampling.PRESETS, or "custom"
    temperature: float = float(_PRESET["temperature"])
    top_p: float = float(_PRESET["top_p"])
    top_k: int = int(_PRESET["top_k"])
    min_p: float = float(_PRESET["min_p"])
    repeat_penalty: float = float(_PRESET["repeat_penalty"])
    seed: int = int(_PRESET["seed"])
    max_tokens: int = DEFAULT_MAX_TOKENS
    n_ctx: int = 4096
    gpu: str = "auto"  # where models run: auto | cpu | layers (n_gpu_layers of them on the GPU)
    n_gpu_layers: int = -1  # with gpu == "layers": how many (-1: all)
    run_mode: str = "auto"  # auto | parallel | sequential
    models_dir: str = ""  # empty: the default under the user data dir
    extra_model_files: list[str] = field(default_factory=list)  # opened with "Open GGUF file..."
    shift_prompt_source: str = "chat"  # chat | base-mode
    show_heatmap: bool = False
    version: int = SETTINGS_VERSION  # of the file's meaning (see SETTINGS_VERSION)

    def load_gpu_layers(self) -> int:
        """``LoadOptions.n_gpu_layers`` for :attr:`gpu`: Auto (-2), CPU only (0) or the count."""
        if self.gpu == "cpu":
            return 0
        if self.gpu == "layers":
            return self.n_gpu_layers
        return -2

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
        if "gpu" not in data and isinstance(data.get("n_gpu_layers"), int) and data["n_gpu_layers"] != 0:
            out.gpu = "layers"  # a file from before the GPU choice: a count someone wrote there
        elif "gpu" not in data:
            out.n_gpu_layers = -1  # ... or the old default 0, which meant "no GPU backend here"
        return out


# the sampling and load values a settings file holds, checked by desktop.core.sampling's rules
CHECKED_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens",
                  "n_ctx", "n_gpu_layers")


def check_values(settings: Settings, data: dict[str, Any] | None = None) -> list[str]:
    """Reset every sampling or load value that breaks the rules (as stored in ``data``, the
    file's raw JSON object, when given) to its default; one sentence for each reset value."""
    defaults = Settings()
    fixed: list[str] = []
    for name in CHECKED_FIELDS:
        raw = data[name] if data is not None and name in data else getattr(settings, name)
        rule = SAMPLING_RULES.get(name) or LOAD_RULES[name]
        try:
            rule.check(name, raw)
        except InvalidSetting as exc:
            default = getattr(defaults, name)
            setattr(settings, name, default)
            fixed.append(exc.sentence(prefix="In your settings file, ")[:-1]
                         + f", so Based used {shown(default)} instead.")
    if settings.gpu not in GPU_CHOICES:
        fixed.append(f"Your settings file names a place to run models that Based does not know "
                     f"({shown(settings.gpu)}), so Based uses Auto.")
        settings.gpu = "auto"
    if settings.preset != "custom" and settings.preset not in PRESETS:
        fixed.append(f"Your settings file names a sampling preset Based does not know "
                     f"({shown(settings.preset)}), so Based shows your values as Custom.")
        settings.preset = "custom"
    return fixed


def upgrade(settings: Settings, data: dict[str, Any]) -> list[str]:
    """Bring a file written by an older Based to today's meaning; one sentence per change.

    Version 1 saved ``base_mode`` whether or not the user had chosen it, and its default was
    URIAL, so a version-1 "urial" is the old default, not a choice: it becomes today's default
    (the twin's chat template). Other modes were chosen by hand and are kept."""
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version >= SETTINGS_VERSION:
        return []
    changed: list[str] = []
    if settings.base_mode == BaseMode.URIAL.value:
        settings.base_mode = DEFAULT_BASE_MODE.value
        changed.append(
            f"The base model now gets the same prompt as the instruct model "
            f"({DEFAULT_BASE_MODE.label.lower()}), so the two answers differ only by the model. "
            f"URIAL is still one choice away under \"Base model sees\"."
        )
    settings.version = SETTINGS_VERSION
    return changed


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    notice: str | None  # set when the file was corrupt and defaults were used
    fixed: tuple[str, ...] = ()  # one sentence per value that broke the rules and was reset
    upgraded: tuple[str, ...] = ()  # one sentence per meaning an older Based gave a value

    @property
    def message(self) -> str | None:
        """Everything the user should read about the settings file, or None."""
        parts = [m for m in (self.notice, *self.fixed, *self.upgraded) if m]
        return " ".join(parts) or None


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
    settings = Settings.from_dict(data)
    fixed = tuple(check_values(settings, data))
    return LoadedSettings(settings, None, fixed, tuple(upgrade(settings, data)))


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
