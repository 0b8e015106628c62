"""Errors a user can cause. Each carries one plain sentence that says what to do."""

from __future__ import annotations

import logging

log = logging.getLogger("based")


class BasedError(Exception):
    """Base class for user-facing errors: ``str(err)`` is one plain sentence."""


class GGUFError(BasedError):
    """A model file is missing, damaged or not a GGUF file."""


class TemplateError(BasedError):
    """A chat template failed to render (syntax error, raise_exception, limits)."""


class TemplateSecurityError(TemplateError):
    """A chat template tried to reach outside the sandbox."""


class TemplateLimitError(TemplateError):
    """A chat template ran too long or produced too much output."""


class SystemPromptUnsupported(TemplateError):
    """The template refuses a system message."""


class ModelLoadError(BasedError):
    """llama.cpp could not load a model."""


class ContextOverflowError(BasedError):
    """The prompt does not fit in the model's context window."""


class DownloadError(BasedError):
    """A download failed; the message says what to do."""


class DownloadCancelled(BasedError):
    """The user cancelled or paused a download."""


class TemplateRefused(TemplateError):
    """The template itself called raise_exception() for this conversation; ``reason`` holds the
    template's own words."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class TokenizerMismatch(BasedError):
    """Two models do not share a tokenizer, so token-level comparisons are impossible."""


def plain_reason(exc: BaseException) -> str:
    """A few plain words on why an unexpected failure happened, to end a sentence with: the
    operating system's own words for a file or disk problem ("No space left on device"), else a
    plain phrase. Never an exception's name, a traceback or Python's repr of a value: the full
    error goes to the log (and ``BASED_DEBUG=1`` makes the CLI raise it)."""
    if isinstance(exc, BasedError):
        return str(exc).rstrip(".")
    if isinstance(exc, MemoryError):
        return "the computer ran out of memory"
    if isinstance(exc, UnicodeError):
        return "the text is not in the UTF-8 encoding"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return "something went wrong inside Based"


def failure_sentence(what: str, exc: BaseException) -> str:
    """One plain sentence for any failure of ``what`` ("The export could not be written"): a
    :class:`BasedError`'s own sentence, else ``what`` with :func:`plain_reason`. The full error
    of an unexpected one goes to the log, for whoever debugs it."""
    if isinstance(exc, BasedError):
        return str(exc)
    if not isinstance(exc, OSError):
        log.error("%s", what, exc_info=exc)
    return f"{what} ({plain_reason(exc)})."


def sqlite_reason(exc: BaseException) -> str:
    """SQLite's reason in plain words (its messages are terse: "database is locked")."""
    text = " ".join(str(a) for a in getattr(exc, "args", ())).lower()
    for key, words in (("locked", "another program is using the history file"),
                       ("full", "the disk is full"),
                       ("readonly", "the history file is read-only"),
                       ("read-only", "the history file is read-only"),
                       ("i/o", "the disk could not be read or written"),
                       ("not a database", "it is damaged or not a history file"),
                       ("malformed", "it is damaged"),
                       ("unable to open", "the file cannot be opened")):
        if key in text:
            return words
    return "the history file could not be used"
