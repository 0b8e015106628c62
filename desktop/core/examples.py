"""Guided examples for learners and the report's starter prompt set (shipped data files)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from desktop.core.prompts import BaseMode

_MODES = {m.value for m in BaseMode}


@dataclass(frozen=True)
class GuidedExample:
    id: str
    title: str
    user: str
    base_mode: BaseMode
    what_to_look_for: str  # two sentences
    max_tokens: int = 128
    system: str | None = None


def _asset_text(*parts: str) -> str:
    node = resources.files("desktop.assets")
    for p in parts:
        node = node.joinpath(p)
    return node.read_text(encoding="utf-8")


def _str(entry: dict[str, Any], key: str, where: str) -> str:
    v = entry.get(key)
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{where}: '{key}' must be a non-empty string")
    return v


def parse_examples(data: Any) -> list[GuidedExample]:
    """Validate the gallery's JSON (a list of objects) and build the examples."""
    if not isinstance(data, list) or not data:
        raise ValueError("examples.json must hold a non-empty list")
    out: list[GuidedExample] = []
    seen: set[str] = set()
    for n, e in enumerate(data):
        where = f"example {n}"
        if not isinstance(e, dict):
            raise ValueError(f"{where}: not an object")
        unknown = set(e) - {"id", "title", "user", "system", "base_mode", "what_to_look_for",
                            "max_tokens"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        eid = _str(e, "id", where)
        if eid in seen:
            raise ValueError(f"{where}: duplicate id {eid!r}")
        seen.add(eid)
        mode = _str(e, "base_mode", where)
        if mode not in _MODES:
            raise ValueError(f"{where}: base_mode must be one of {sorted(_MODES)}")
        system = e.get("system")
        if system is not None and not isinstance(system, str):
            raise ValueError(f"{where}: 'system' must be a string")
        mt = e.get("max_tokens", 128)
        if not isinstance(mt, int) or isinstance(mt, bool) or not 1 <= mt <= 4096:
            raise ValueError(f"{where}: 'max_tokens' must be an integer from 1 to 4096")
        out.append(GuidedExample(
            id=eid, title=_str(e, "title", where), user=_str(e, "user", where),
            base_mode=BaseMode(mode), what_to_look_for=_str(e, "what_to_look_for", where),
            max_tokens=mt, system=system or None,
        ))
    return out


@lru_cache(maxsize=1)
def _examples() -> tuple[GuidedExample, ...]:
    return tuple(parse_examples(json.loads(_asset_text("examples.json"))))


def load_examples() -> list[GuidedExample]:
    """The guided-examples gallery, in display order."""
    return list(_examples())


def parse_prompt_list(data: Any) -> list[str]:
    if not isinstance(data, list) or not all(isinstance(p, str) and p.strip() for p in data):
        raise ValueError("a prompt set must be a JSON list of non-empty strings")
    return [p for p in data]


def parse_prompt_set(data: Any, source: str) -> list[Any]:
    """A prompt set's JSON: a list whose entries are prompt strings or whole conversations (a
    list of messages, or ``{"messages": [...], "tools": [...]}``; see
    :func:`desktop.core.conversation.parse_messages`). Returns strings and Conversations; raises
    BasedError in one sentence."""
    from desktop.core.conversation import parse_messages
    from desktop.core.errors import BasedError

    if not isinstance(data, list) or not data:
        raise BasedError(
            f"{source} must hold a JSON list of prompts, each a string or a conversation, like "
            '["First", [{"role": "user", "content": "Second"}]].'
        )
    out: list[Any] = []
    for n, entry in enumerate(data, 1):
        if isinstance(entry, str):
            if not entry.strip():
                raise BasedError(f"Prompt {n} in {source} is empty: write it, or remove it.")
            out.append(entry)
        elif isinstance(entry, (list, dict)):
            out.append(parse_messages(entry, source=f"conversation {n} of {source}"))
        else:
            raise BasedError(
                f"Prompt {n} in {source} is neither a string nor a conversation (a list of "
                "messages)."
            )
    return out


def read_prompt_file(path: str) -> list[Any]:
    """A prompt set: a .json list of prompts (strings or conversations), or text with one
    prompt per line."""
    from pathlib import Path

    from desktop.core.errors import BasedError
    from desktop.core.paths import read_user_text

    p = Path(path)
    text = read_user_text(p, "prompt")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError:  # json.JSONDecodeError is a ValueError
            raise BasedError(
                f"{p.name} is not valid JSON: it must hold a list of prompts, like "
                '["First", "Second"].'
            ) from None
        prompts = parse_prompt_set(data, p.name)
    else:
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise BasedError(f"{p.name} holds no prompts.")
    return prompts


def load_starter_prompts() -> list[str]:
    """The report's built-in starter set (about 20 varied prompts)."""
    return parse_prompt_list(json.loads(_asset_text("prompts", "starter.json")))
