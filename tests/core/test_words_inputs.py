"""Counts in words, and the empty-prompt rule (refused outside raw mode, explained in raw mode)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from desktop.core.inputs import EmptyPrompt, check_user_prompt
from desktop.core.words import count, plural


@pytest.mark.parametrize(
    ("n", "noun", "expected"),
    [
        (1, "thread", "1 thread"),
        (2, "thread", "2 threads"),
        (0, "token", "0 tokens"),
        (2048, "token", "2,048 tokens"),
        (1, "prompt token", "1 prompt token"),
        (3, "prompt token", "3 prompt tokens"),
        (1, "repository", "1 repository"),
        (5, "repository", "5 repositories"),
        (2, "match", "2 matches"),
        (2, "day", "2 days"),
        (1.0, "second", "1 second"),
        (2.5, "second", "2.50 seconds"),
    ],
)
def test_count(n: float, noun: str, expected: str) -> None:
    assert count(n, noun) == expected


def test_irregular_plural() -> None:
    assert count(3, "child", "children") == "3 children" and count(1, "child", "children") == "1 child"
    assert plural("entry") == "entries" and plural("box") == "boxes"


@pytest.mark.parametrize("mode", ["twin-template", "qa", "urial", None])
@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_blank_messages_are_refused_outside_raw_mode(mode: str | None, text: str) -> None:
    with pytest.raises(EmptyPrompt) as ei:
        check_user_prompt(text, mode)
    msg = str(ei.value)
    assert msg.startswith("Type a message first: the prompt is empty") and msg.endswith(".")
    assert ("raw mode" in msg) == (mode is not None)


def test_raw_mode_explains_an_empty_message() -> None:
    note = check_user_prompt("", "raw")
    assert note == ("Your message is empty, so in raw mode the base model writes from nothing (it "
                    "sees only the start-of-text token, BOS), and the instruct model gets an "
                    "empty message.")
    assert "instruct" not in check_user_prompt("", "raw", instruct_side=False)
    assert "system prompt" in check_user_prompt("", "raw", system="You are a pirate.")
    assert "whitespace" in check_user_prompt("  ", "raw")


def test_ordinary_messages_pass_silently() -> None:
    for mode in ("raw", "qa", "urial", "twin-template", None):
        assert check_user_prompt("Hi", mode) == ""


# A count written straight into user text ("{n} threads") says "1 threads" when n is 1; such
# text goes through count(). The exceptions below can never be 1, or belong to work in flight
# elsewhere (named, so they are easy to find and fix).
_COUNT_IN_TEXT = re.compile(
    r"\{[^{}]+\} (tokens|threads|files|parts|prompts|layers|bytes|repositories|downloads|tensors"
    r"|parameters|chars|characters|entries|items|seconds|dimensions|models|comparisons)\b"
)
_ALLOWED = (
    "digits",  # sampling.shown: only for numbers of 16 digits or more
    "items, more than Based allows",  # templates: above the template range limit
    "characters, so Based",  # templates: above the output limit
    "dimensions.",  # gguf_info: more dimensions than GGUF allows
    "metadata entries.",  # gguf_info (the GGUF-validation work): counts of a damaged header
    "template {m['template_tokens']} tokens",  # selftest (packaging work): never 1
    "{m['gen_tokens']} tokens at",  # selftest (packaging work): never 1
    "has no {q} files",  # catalog: {q} is a quantization name, not a count
)


def test_counts_in_user_text_go_through_count() -> None:
    root = Path(__file__).resolve().parents[2] / "desktop"
    found = []
    for path in sorted(root.rglob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _COUNT_IN_TEXT.search(line) and not any(a in line for a in _ALLOWED):
                found.append(f"{path.relative_to(root.parent)}:{lineno}: {line.strip()}")
    assert found == [], "use desktop.core.words.count():\n" + "\n".join(found)
