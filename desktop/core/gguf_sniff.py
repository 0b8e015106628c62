"""What a file that is not a GGUF model looks like, in plain words.

People rename all sorts of files to ``.gguf``, or save an error page from a download site under
the model's name. :func:`describe_non_gguf` looks at the first bytes (signatures of common
formats: text, HTML, JSON, Git LFS pointers, zip, safetensors, PyTorch, older GGML files,
archives) and says what the file is and what to do. It never quotes the bytes themselves.
"""

from __future__ import annotations

import json
import struct

_ARCHIVES = (
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
)
# llama.cpp's formats before GGUF, as the first four bytes read on disk (little-endian magics)
_OLD_GGML = (b"lmgg", b"fmgg", b"tjgg", b"algg")


def describe_non_gguf(name: str, head: bytes) -> str:
    """One sentence for a file named ``name`` whose first bytes ``head`` are not "GGUF".

    ``head``: the file's first bytes (up to a few KB). Returns the sentence; raises nothing.
    """
    kind, advice = _classify(head)
    return f"{name} is not a GGUF model file; {kind}. {advice}"


_PICK = "Pick a .gguf model file."
_AGAIN = "Download the model's .gguf file again."


def _classify(head: bytes) -> tuple[str, str]:
    if head[:4] in _OLD_GGML:
        return ("it is a model in llama.cpp's old GGML format, which current llama.cpp no "
                "longer reads", "Get a GGUF version of the model.")
    if head[:4] == b"FUGG":
        return "it is a big-endian file from another kind of computer", _PICK
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        if b"data.pkl" in head or b"/data/" in head:
            return ("it is a PyTorch checkpoint", "Download the model's .gguf version, or convert "
                    "it with llama.cpp's conversion script.")
        return "it is a zip archive", "Unpack it and pick the .gguf file inside."
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return ("it is a PyTorch (pickle) file", "Download the model's .gguf version, or convert "
                "it with llama.cpp's conversion script.")
    if _is_safetensors(head):
        return ("it is a safetensors file (weights for PyTorch or transformers)",
                "Download the model's .gguf version, or convert it with llama.cpp's conversion "
                "script.")
    for sig, what in _ARCHIVES:
        if head.startswith(sig):
            return f"it is {what}", "Unpack it and pick the .gguf file inside."
    if len(head) > 262 and head[257:262] == b"ustar":
        return "it is a tar archive", "Unpack it and pick the .gguf file inside."
    text = _as_text(head)
    if text is not None:
        low = text.lstrip().lower()
        if low.startswith("version https://git-lfs"):
            return ("it is a Git LFS pointer, a small text file that stands in for the model",
                    "Download the file itself, for example from the model page's download link.")
        if low.startswith(("<!doctype html", "<html", "<head", "<?xml")) or "<html" in low[:1000]:
            return ("it is a web page, probably an error page saved instead of the model",
                    _AGAIN)
        if low.startswith(("{", "[")) and _json_like(text):
            return ("it is a JSON text file, probably an error message saved instead of the model",
                    _AGAIN)
        return "it looks like text", _PICK
    return "its first bytes are not those of a GGUF file", (
        "Pick a .gguf model file, or download it again if it should be one.")


def _is_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack_from("<Q", head)
    return 2 <= n < 100_000_000 and head[8:10] in (b'{"', b"{ ", b"{\n")


def _as_text(head: bytes) -> str | None:
    """The bytes as text when they look like text (UTF-8 or UTF-16 with a BOM), else None."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return head.decode("utf-16", "ignore")
        except UnicodeError:
            return None
    chunk = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    text = chunk.decode("utf-8", "ignore")
    if not text or len(text.encode("utf-8")) < len(chunk) - 3:  # invalid UTF-8 (a cut-off tail is fine)
        return None
    bad = sum(1 for ch in text if ch < " " and ch not in "\t\n\r\f")
    return text if bad <= len(text) // 100 else None


def _json_like(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        s = text.strip()
        return s[:1] in "{[" and ('"' in s[:200] or s[1:2] in "]}")
