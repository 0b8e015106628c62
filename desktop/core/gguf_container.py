"""The GGUF container, read the way ggml's own reader reads it (ggml/src/gguf.cpp).

:func:`read_container` walks a file's header with bounds checks over a memory map and refuses
what ``gguf_init_from_reader`` refuses (and so what llama.cpp cannot open), plus what llama.cpp's
model loader adds: tensor data inside the file and 32-byte aligned (it maps the data in place).
Model parameters are not judged here (see :mod:`desktop.core.gguf_checks`).
"""

from __future__ import annotations

import array
import mmap
import os
import struct
import sys
from pathlib import Path
from typing import Any

from desktop.core import words
from desktop.core.errors import GGUFError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_KV = 1_000_000
MAX_TENSORS = 1_000_000
# limits of ggml's gguf reader and of llama.cpp (ggml/include/ggml.h, ggml/src/gguf.cpp,
# ggml/src/ggml-impl.h) in the version llama-cpp-python 0.3.36 vendors
MAX_DIMS = 4  # GGML_MAX_DIMS
GGML_MAX_NAME = 64  # tensor names are shorter than this
GGUF_MAX_STRING_LENGTH = 1 << 30
GGUF_MAX_ARRAY_ELEMENTS = 1 << 30
DEFAULT_ALIGNMENT = 32  # GGUF_DEFAULT_ALIGNMENT
TENSOR_ALIGNMENT = 32  # llama.cpp maps tensor data in place; ggml needs it 32-byte aligned
GGML_TYPE_COUNT = 43
_REMOVED_TYPES = {4, 5, 31, 32, 33, 36, 37, 38}  # ggml types no longer read from files
# ggml types the installed gguf package does not list yet: type -> (block size, bytes per block)
_GGML_EXTRA_TYPES = {42: (64, 18)}  # Q2_0
_INT64_MAX = (1 << 63) - 1
_U64 = struct.Struct("<Q")

# GGUF value types -> struct format for scalars
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "b",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
_UINT32, _BOOL = 4, 7
_FIX = "Download it again, or get another conversion of the model."


def shown(text: str, limit: int = 60) -> str:
    """Text from a file as it may appear in a message: printable, on one line, short."""
    s = "".join(ch if ch.isprintable() else "?" for ch in text)
    return s if len(s) <= limit else s[: limit - 1] + "\u2026"


def damaged(name: str, problem: str) -> GGUFError:
    """The one sentence for a file whose container is broken."""
    return GGUFError(f"{name} is damaged: {problem}. {_FIX}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"




class GGUFArray:
    """An array value from a GGUF file's metadata.

    ``values`` holds the items for numeric arrays (an ``array.array``, or a tuple of bools) and
    for the string arrays Based reads (the vocabulary, named chat templates: text decoded with
    replacement characters, and ``raw``, the bytes as llama.cpp sees them); it is None for the
    rest, which are only walked over."""

    __slots__ = ("subtype", "count", "values", "raw")

    def __init__(self, subtype: int, count: int, values: Any = None,
                 raw: list[bytes] | None = None) -> None:
        self.subtype, self.count, self.values, self.raw = subtype, count, values, raw

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"GGUFArray(type={self.subtype}, count={self.count})"


# string arrays whose items are kept (everything else is walked over)
_KEEP_ARRAYS = {"tokenizer.ggml.tokens", "tokenizer.chat_templates"}
_KEEP_NUMERIC_MAX = 1 << 20  # numeric arrays longer than this are walked over (scores stay)
_SKIP_NUMERIC = {"tokenizer.ggml.scores"}
_ARRAY_CODES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "b", 10: "Q", 11: "q",
                12: "d"}


class ParsedGGUF:
    """What the walk over a GGUF file's header found (a file ggml's reader accepts)."""

    def __init__(
        self,
        version: int,
        kv: dict[str, Any],
        types: dict[str, int],
        tensors: list[tuple[str, int, int]],
        *,
        alignment: int = DEFAULT_ALIGNMENT,
        data_offset: int = 0,
        size: int = 0,
        shapes: list[tuple[int, ...]] | None = None,
    ) -> None:
        self.version = version
        self.kv = kv  # key -> int | float | bool | str | GGUFArray
        self.types = types  # key -> GGUF value type (9 for arrays: see kv[key].subtype)
        self.tensors = tensors  # (name, n_elements, ggml type)
        self.alignment = alignment
        self.data_offset = data_offset
        self.size = size
        self.shapes = shapes or []  # each tensor's dimensions, in the order of ``tensors``


class _Cursor:
    def __init__(self, buf: Any, size: int, name: str) -> None:
        self.buf, self.size, self.pos, self.name = buf, size, 0, name

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(
                f"{self.name} is truncated: its {what} runs past the end of the file "
                f"(byte {self.pos + max(n, 0):,} of {self.size:,}). Download it again."
            )

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize("<" + fmt)
        self.need(n, what)
        v = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += n
        return v

    def string(self, what: str) -> bytes:
        n = self.unpack("Q", what)
        if n > GGUF_MAX_STRING_LENGTH and self.pos + n <= self.size:
            raise damaged(self.name, f"its {what} holds a string of {words.count(n, 'byte')}")
        self.need(n, what)
        v = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return v

    def value(self, vtype: int, key: str, what: str) -> Any:
        """One metadata value, as ggml's gguf reader reads it (gguf.cpp, gguf_init_from_reader)."""
        if vtype in _SCALARS:
            v = self.unpack(_SCALARS[vtype], what)
            return bool(v) if vtype == _BOOL else v
        if vtype == _STRING:
            return self.string(what).decode("utf-8", "replace")
        if vtype != _ARRAY:
            raise damaged(
                self.name, f"its metadata entry {shown(key)} has an unknown value type ({vtype})"
            )
        sub = self.unpack("i", what)
        count = self.unpack("Q", what)
        if sub == _ARRAY:
            raise damaged(
                self.name, f"its metadata entry {shown(key)} is an array of arrays, "
                "which GGUF files cannot hold"
            )
        if sub not in _SCALARS and sub != _STRING:
            raise damaged(
                self.name, f"its metadata entry {shown(key)} has an unknown value type ({sub})"
            )
        if count > GGUF_MAX_ARRAY_ELEMENTS:
            raise damaged(
                self.name, f"its metadata entry {shown(key)} claims {words.count(count, 'item')}"
            )
        if sub == _STRING:
            self.need(count * 8, what)
            return self._strings(count, keep=key in _KEEP_ARRAYS, what=what)
        width = struct.calcsize("<" + _SCALARS[sub])
        self.need(count * width, what)
        start, self.pos = self.pos, self.pos + count * width
        if count > _KEEP_NUMERIC_MAX or key in _SKIP_NUMERIC:
            return GGUFArray(sub, count)
        values = array.array(_ARRAY_CODES[sub], self.buf[start : self.pos])
        if sys.byteorder != "little":
            values.byteswap()
        return GGUFArray(sub, count, tuple(v != 0 for v in values) if sub == _BOOL else values)

    def _strings(self, count: int, *, keep: bool, what: str) -> GGUFArray:
        buf, pos, size = self.buf, self.pos, self.size
        unpack = _U64.unpack_from
        if not keep:
            for _ in range(count):
                if pos + 8 > size:
                    self.pos = pos
                    self.need(8, what)
                (n,) = unpack(buf, pos)
                pos += 8 + n
                if pos > size:
                    self.pos = pos - n
                    self.need(n, what)
            self.pos = pos
            return GGUFArray(_STRING, count)
        raw: list[bytes] = []
        for _ in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, what)
            (n,) = unpack(buf, pos)
            pos += 8
            if n > size - pos:
                self.pos = pos
                self.need(n, what)
            raw.append(buf[pos : pos + n])
            pos += n
        self.pos = pos
        return GGUFArray(_STRING, count, [b.decode("utf-8", "replace") for b in raw], raw)


def read_container(path: str | os.PathLike[str]) -> ParsedGGUF:
    from desktop.core.gguf_sniff import describe_non_gguf

    p = Path(path)
    name = p.name or str(p)
    if not p.exists():
        raise GGUFError(f"{name} was not found. Check the path and try again.")
    if p.is_dir():
        raise GGUFError(f"{name} is a folder, not a model file. Pick a .gguf file inside it.")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise GGUFError(f"{name} cannot be read ({exc.strerror}). Check its permissions.") from exc
    if size == 0:
        raise GGUFError(
            f"{name} is empty (0 bytes): the download probably failed. Download it again."
        )
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
            if head[:4] != GGUF_MAGIC:
                if len(head) < 4 and GGUF_MAGIC.startswith(head):
                    raise GGUFError(
                        f"{name} is truncated: it ends inside its header. Download it again."
                    )
                raise GGUFError(describe_non_gguf(name, head))
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _walk(mm, size, name)
    except GGUFError:
        raise
    except OSError as exc:
        raise GGUFError(f"{name} cannot be read ({exc.strerror or exc}).") from exc


def _type_sizes() -> dict[int, tuple[int, int]]:
    """ggml type -> (block size, bytes per block), for the types ggml reads from files."""
    import gguf

    sizes = {int(t): bs for t, bs in gguf.GGML_QUANT_SIZES.items()}
    sizes.update(_GGML_EXTRA_TYPES)
    return sizes


_TYPE_SIZES: dict[int, tuple[int, int]] = {}


def _walk(mm: Any, size: int, name: str) -> ParsedGGUF:
    """Walk the header with bounds checks, refusing what ggml's gguf reader refuses.

    Mirrors ``gguf_init_from_reader`` (ggml/src/gguf.cpp) and the checks llama.cpp's model loader
    adds (``llama_tensor_weight``: tensor data inside the file; mmap: tensor data 32-byte aligned).
    """
    if not _TYPE_SIZES:
        _TYPE_SIZES.update(_type_sizes())
    c = _Cursor(mm, size, name)
    c.pos = 4
    version = c.unpack("I", "header")
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and version >> 16 in SUPPORTED_VERSIONS:
            raise GGUFError(
                f"{name} is a big-endian GGUF file, which Based cannot run on this computer."
            )
        raise GGUFError(
            f"{name} uses GGUF version {version}, which Based cannot read (it reads versions 2 and 3). "
            "Get a newer conversion of the model."
        )
    n_tensors = c.unpack("Q", "header")
    n_kv = c.unpack("Q", "header")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise damaged(
            name, f"its header claims {words.count(n_tensors, 'tensor')} and {words.count(n_kv, 'metadata entry', 'metadata entries')}"
        )
    kv: dict[str, Any] = {"GGUF.version": version}
    types: dict[str, int] = {}
    seen: set[bytes] = set()
    for i in range(n_kv):
        raw_key = c.string("metadata")
        if not raw_key:
            raise damaged(name, f"metadata entry {i + 1} has an empty name")
        key = raw_key.decode("utf-8", "replace")
        if raw_key in seen:
            raise damaged(name, f"its metadata names {shown(key)} twice")
        seen.add(raw_key)
        vtype = c.unpack("i", "metadata")
        kv[key] = c.value(vtype, key, "metadata")
        types[key] = vtype
    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in types:
        alignment = kv["general.alignment"]
        if types["general.alignment"] != _UINT32:
            raise damaged(
                name, "its data alignment (general.alignment) is not stored as a "
                "32-bit unsigned number"
            )
    if alignment <= 0 or alignment & (alignment - 1):
        raise damaged(
            name, f"its data alignment ({alignment}) is not a power of two"
        )
    infos: list[tuple[str, int, int, int]] = []  # name, offset, bytes, ggml type
    tensors: list[tuple[str, int, int]] = []
    shapes: list[tuple[int, ...]] = []
    names: set[bytes] = set()
    for _ in range(n_tensors):
        raw_name = c.string("tensor list")
        tname = raw_name.decode("utf-8", "replace")
        if len(raw_name) >= GGML_MAX_NAME:
            raise damaged(
                name, f"a tensor name is {words.count(len(raw_name), 'byte')} long "
                f"(llama.cpp allows {GGML_MAX_NAME - 1})"
            )
        if raw_name in names:
            raise damaged(name, f"it holds two tensors named {shown(tname)}")
        names.add(raw_name)
        n_dims = c.unpack("I", "tensor list")
        if n_dims > MAX_DIMS:
            raise damaged(name, f"tensor {shown(tname)} has {words.count(n_dims, 'dimension')}")
        ne = [c.unpack("q", "tensor list") for _d in range(n_dims)]
        if any(d < 0 for d in ne):
            raise damaged(name, f"tensor {shown(tname)} has a negative size")
        n_el = 1
        for d in ne:
            n_el *= d
        if n_el > _INT64_MAX:
            raise damaged(name, f"tensor {shown(tname)} has an impossible shape")
        ttype = c.unpack("i", "tensor list")
        offset = c.unpack("Q", "tensor list")
        sizes = _TYPE_SIZES.get(ttype)
        if sizes is None:
            if 0 <= ttype < GGML_TYPE_COUNT and ttype not in _REMOVED_TYPES:
                raise GGUFError(
                    f"{name} uses a tensor type ({ttype}) that this version of Based does not know. "
                    "Update Based or pick another quantization."
                )
            raise damaged(
                name, f"tensor {shown(tname)} has an unknown tensor type ({ttype})"
            )
        block, type_size = sizes
        if (ne[0] if ne else 1) % block:
            raise damaged(
                name, f"tensor {shown(tname)} does not fit its quantization blocks"
            )
        nbytes = n_el // block * type_size
        infos.append((tname, offset, nbytes, ttype))
        tensors.append((tname, n_el, ttype))
        shapes.append(tuple(ne))
    data_offset = c.pos
    if n_tensors:
        data_offset = (c.pos + alignment - 1) // alignment * alignment
        if data_offset > size:
            raise GGUFError(
                f"{name} is truncated: it ends before its tensor data begins. Download it again."
            )
    expected = 0
    for tname, offset, nbytes, _t in infos:
        if offset != expected:
            raise damaged(
                name, f"tensor {shown(tname)} does not start where its data should be "
                "(tensor data out of order, overlapping or with gaps)"
            )
        expected += (nbytes + alignment - 1) // alignment * alignment
    for tname, offset, nbytes, _t in infos:
        end = data_offset + offset + nbytes
        if end > size:
            have, need = human_bytes(size), human_bytes(end)
            if have == need:
                have, need = words.count(size, "byte"), words.count(end, "byte")
            raise GGUFError(
                f"{name} is truncated: its tensor data needs {need} but the file has "
                f"{have}. Download it again."
            )
        if (data_offset + offset) % TENSOR_ALIGNMENT:
            raise damaged(
                name, f"tensor {shown(tname)} is not aligned to {words.count(TENSOR_ALIGNMENT, 'byte')} "
                f"in the file (its data alignment is {alignment}), so llama.cpp cannot map it"
            )
    return ParsedGGUF(version, kv, types, tensors, alignment=alignment, data_offset=data_offset,
                      size=size, shapes=shapes)


