"""Checks on the message a user gives, before any work (CLI and window alike).

An empty (or whitespace-only) message is refused with one sentence, except in raw mode: there an
empty message means "let the base model write from nothing", and :func:`check_user_prompt`
returns a note that says so.
"""

from __future__ import annotations

from desktop.core.errors import BasedError

RAW = "raw"  # desktop.core.prompts.BaseMode.RAW's value (no import: prompts pulls in jinja2)


class EmptyPrompt(BasedError):
    """The message is empty or only whitespace, outside raw mode."""


def check_user_prompt(user: str, base_mode: str | None, *, system: str | None = None,
                      instruct_side: bool = True) -> str:
    """Refuse a blank message, or return the note raw mode gives it.

    ``base_mode`` is the base side's mode (a BaseMode value) or None when only a chat template
    is involved (``based prompt`` without ``--mode``, the token-shift analysis).
    ``instruct_side``: whether an instruct model gets the message too (the note says what it
    receives). Returns "" for an ordinary message. Raises :class:`EmptyPrompt` (one sentence)
    when the message is blank and ``base_mode`` is not raw.
    """
    if user.strip():
        return ""
    if base_mode != RAW:
        hint = (" (only raw mode lets the base model write from nothing)"
                if base_mode is not None else "")
        raise EmptyPrompt(f"Type a message first: the prompt is empty{hint}.")
    if system and system.strip():
        base = "the base model continues your system prompt alone"
    elif user:
        base = "the base model continues your whitespace as typed"
    else:
        base = "the base model writes from nothing (it sees only the start-of-text token, BOS)"
    tail = ", and the instruct model gets an empty message" if instruct_side else ""
    return f"Your message is empty, so in raw mode {base}{tail}."
