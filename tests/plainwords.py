"""What a message a user reads may not contain: an environment variable, an exception's name,
a Python byte string or a traceback. Shared by the source scan, the error-path tests and the
window tests."""

from __future__ import annotations

import re

# HF_HUB_OFFLINE, BASED_HOME, $HOME, %APPDATA% (quantization names such as Q4_K_M do not match:
# an environment variable starts with two letters before its first underscore)
ENV_VAR = re.compile(r"\b[A-Z]{2,}(?:_[A-Z0-9]+)+\b|\$[A-Z_]{2,}\b|%[A-Z_]{2,}%")
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception)\b|\bTraceback\b|\bErrno\b")
BYTE_STRING = re.compile(r"(?<![A-Za-z0-9_])b'[^']*'|(?<![A-Za-z0-9_])b\"[^\"]*\"|\\x[0-9a-f]{2}")


def jargon(text: str) -> list[str]:
    """Every piece of ``text`` a user should not have to read, named by kind ([] when clean)."""
    found = []
    for kind, rx in (("environment variable", ENV_VAR), ("exception name", EXCEPTION_NAME),
                     ("Python byte string", BYTE_STRING)):
        found += [f"{kind}: {m.group(0)}" for m in rx.finditer(text)]
    return found
