"""Errors a user can cause. Each carries one plain sentence that says what to do."""

from __future__ import annotations


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
    """The template itself called raise_exception() for this conversation."""


class TokenizerMismatch(BasedError):
    """Two models do not share a tokenizer, so token-level comparisons are impossible."""
