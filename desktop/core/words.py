"""Counts in words for every user-visible text: "1 thread", "2 threads", "1,234 tokens".

One helper so that no message says "1 threads" (CLI, window, reports and errors alike).
"""

from __future__ import annotations

from desktop.core.types import StopReason

_ES = ("s", "x", "z", "ch", "sh")
_VOWELS = "aeiou"


def plural(noun: str) -> str:
    """The regular English plural of ``noun`` ("token" -> "tokens", "entry" -> "entries",
    "match" -> "matches"). Pass irregular plurals to :func:`count` explicitly."""
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in _VOWELS:
        return noun[:-1] + "ies"
    if noun.endswith(_ES):
        return noun + "es"
    return noun + "s"


def count(n: int | float, noun: str, plural_form: str | None = None) -> str:
    """``n`` and ``noun``, singular for exactly 1 and plural otherwise, with thousands
    separators: ``count(1, "thread") == "1 thread"``, ``count(2048, "token") == "2,048 tokens"``.

    ``plural_form`` gives an irregular plural ("1 child", "3 children").
    """
    word = noun if n == 1 else (plural_form or plural(noun))
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.2f} {word}"
    return f"{int(n):,} {word}"


def no_text_reason(stop_reason: StopReason | None) -> str:
    """Why an answer has no text, in one sentence, for the window and the CLI alike."""
    reasons: dict[StopReason | None, str] = {
        StopReason.STOP_STRING: "No text: the model's first words were a stop string, such as the "
                                "end of a chat turn, where Based stops it.",
        StopReason.EOS: "No text: the model ended its answer before writing anything.",
        StopReason.CANCELLED: "Stopped before the model wrote any text.",
    }
    return reasons.get(stop_reason, "The model wrote no text.")
