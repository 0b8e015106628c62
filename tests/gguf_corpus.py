"""A seeded corpus of damaged GGUF files, built from one valid tiny model, for the fuzz test.

The corpus is written byte by byte with its own small GGUF writer (independent of the code under
test), so it can say what no well-behaved writer would: duplicate keys, nested arrays, wrong
types, overlapping tensor data, absurd model parameters. Every case has a *kind* (header, kv,
tensor-info, alignment, truncation, byte-flip, model-param, vocab, architecture) for the report.

``tiny_vocab_file`` cuts llama.cpp's SPM test vocabulary to a few hundred tokens (byte tokens
included), so a whole model is ~100 KB and llama.cpp loads it in milliseconds.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B",
        U64: "Q", I64: "q", F64: "d"}
# ggml type -> (block size, bytes per block) for the types the corpus writes
_TYPE_SIZE = {0: (1, 4), 1: (1, 2), 8: (32, 34), 30: (1, 2)}


def enc_str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def enc_value(vtype: int, value: Any, sub: int | None = None) -> bytes:
    """The bytes of one value after its type tag."""
    if vtype == STR:
        return enc_str(value)
    if vtype == ARR:
        assert sub is not None
        items = b"".join(enc_value(sub, v) for v in value)
        return struct.pack("<IQ", sub, len(value)) + items
    fmt = _FMT[vtype]
    if vtype == BOOL:
        value = int(value)
    return struct.pack("<" + fmt, value)


@dataclass
class KV:
    key: bytes
    vtype: int
    payload: bytes

    @classmethod
    def of(cls, key: str | bytes, vtype: int, value: Any, sub: int | None = None) -> KV:
        k = key.encode() if isinstance(key, str) else key
        return cls(k, vtype, enc_value(vtype, value, sub))

    def to_bytes(self) -> bytes:
        return enc_str(self.key) + struct.pack("<I", self.vtype) + self.payload


@dataclass
class Tensor:
    name: bytes
    dims: tuple[int, ...]
    ttype: int
    raw: bytes
    offset: int | None = None  # None: laid out in order by Doc.to_bytes

    def info_bytes(self, offset: int) -> bytes:
        out = enc_str(self.name) + struct.pack("<I", len(self.dims))
        for d in self.dims:
            out += struct.pack("<q" if d < 0 else "<Q", d)
        return out + struct.pack("<IQ", self.ttype & 0xFFFFFFFF, offset)


@dataclass
class Doc:
    version: int
    kvs: list[KV]
    tensors: list[Tensor]
    alignment: int = 32  # used to lay out the data section (whatever general.alignment says)
    magic: bytes = b"GGUF"
    n_tensors: int | None = None  # header counts; None: the real counts
    n_kv: int | None = None

    def copy(self) -> Doc:
        return replace(self, kvs=list(self.kvs), tensors=list(self.tensors))

    def find(self, key: str) -> int:
        k = key.encode()
        for i, kv in enumerate(self.kvs):
            if kv.key == k:
                return i
        return -1

    def get(self, key: str) -> Any:
        i = self.find(key)
        if i < 0:
            return None
        kv = self.kvs[i]
        if kv.vtype == STR:
            (n,) = struct.unpack_from("<Q", kv.payload)
            return kv.payload[8 : 8 + n].decode()
        if kv.vtype in _FMT:
            return struct.unpack_from("<" + _FMT[kv.vtype], kv.payload)[0]
        return kv.payload

    def set(self, key: str, vtype: int, value: Any, sub: int | None = None) -> Doc:
        kv = KV.of(key, vtype, value, sub)
        i = self.find(key)
        if i < 0:
            self.kvs.append(kv)
        else:
            self.kvs[i] = kv
        return self

    def drop(self, key: str) -> Doc:
        self.kvs = [kv for kv in self.kvs if kv.key != key.encode()]
        return self

    def offsets(self) -> list[int]:
        out, pos = [], 0
        for t in self.tensors:
            if t.offset is not None:
                out.append(t.offset)
                pos = max(pos, t.offset + len(t.raw))
            else:
                out.append(pos)
                pos += len(t.raw)
            pos = -(-pos // self.alignment) * self.alignment
        return out

    def header_bytes(self) -> bytes:
        n_t = len(self.tensors) if self.n_tensors is None else self.n_tensors
        n_k = len(self.kvs) if self.n_kv is None else self.n_kv
        out = bytearray(self.magic + struct.pack("<IQQ", self.version, n_t, n_k))
        for kv in self.kvs:
            out += kv.to_bytes()
        for t, off in zip(self.tensors, self.offsets(), strict=True):
            out += t.info_bytes(off)
        return bytes(out)

    def to_bytes(self) -> bytes:
        head = self.header_bytes()
        if not self.tensors:
            return head
        start = -(-len(head) // self.alignment) * self.alignment
        offs = self.offsets()
        total = sum(len(t.raw) + self.alignment for t in self.tensors)
        # an offset far past the data (a damaged file) gets no bytes written for its tensor
        end = max(o + len(t.raw) if o <= total else 0 for o, t in zip(offs, self.tensors, strict=True))
        data = bytearray(-(-end // self.alignment) * self.alignment)
        for o, t in zip(offs, self.tensors, strict=True):
            if 0 <= o < len(data):
                data[o : o + len(t.raw)] = t.raw
        return head + b"\0" * (start - len(head)) + bytes(data)


# -- reading a valid file ----------------------------------------------------------------------


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> Any:
        v = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize("<" + fmt)
        return v

    def string(self) -> bytes:
        n = self.take("Q")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v

    def skip(self, vtype: int) -> None:
        if vtype == STR:
            self.string()
        elif vtype == ARR:
            sub, n = self.take("I"), self.take("Q")
            for _ in range(n):
                self.skip(sub)
        else:
            self.take(_FMT[vtype])


def parse(path: Path) -> Doc:
    """A valid GGUF file as a Doc (no checks: the corpus starts from a file we wrote)."""
    buf = Path(path).read_bytes()
    r = _Reader(buf)
    assert buf[:4] == b"GGUF"
    r.pos = 4
    version, n_t, n_k = r.take("I"), r.take("Q"), r.take("Q")
    kvs = []
    for _ in range(n_k):
        key = r.string()
        vtype = r.take("I")
        start = r.pos
        r.skip(vtype)
        kvs.append(KV(key, vtype, buf[start : r.pos]))
    doc = Doc(version, kvs, [])
    align = doc.get("general.alignment") or 32
    infos = []
    for _ in range(n_t):
        name = r.string()
        nd = r.take("I")
        dims = tuple(r.take("Q") for _ in range(nd))
        ttype, off = r.take("I"), r.take("Q")
        infos.append((name, dims, ttype, off))
    start = -(-r.pos // align) * align
    for name, dims, ttype, off in infos:
        block, size = _TYPE_SIZE[ttype]
        n = math.prod(dims) // block * size
        doc.tensors.append(Tensor(name, dims, ttype, buf[start + off : start + off + n]))
    doc.alignment = align
    return doc


# -- the tiny base model -----------------------------------------------------------------------


def tiny_vocab_file(out: Path, source: Path, n_tokens: int = 400) -> Path:
    """llama.cpp's SPM test vocabulary cut to its first ``n_tokens`` tokens (a vocab-only GGUF)."""
    doc = parse(source)
    kept = []
    for kv in doc.kvs:
        if not kv.key.startswith(b"tokenizer."):
            continue
        if kv.vtype == ARR:
            sub, n = struct.unpack_from("<IQ", kv.payload)
            if n > n_tokens:
                r = _Reader(kv.payload)
                r.pos = 12
                for _ in range(n_tokens):
                    r.skip(sub)
                kv = KV(kv.key, ARR, struct.pack("<IQ", sub, n_tokens) + kv.payload[12 : r.pos])
        kept.append(kv)
    out.write_bytes(Doc(3, [KV.of("general.architecture", STR, "llama"), *kept], []).to_bytes())
    return out


@dataclass
class Case:
    name: str
    kind: str
    data: bytes
    note: str = ""
    expect: str = ""  # "error" when the file must be refused, "" when either outcome is fine


@dataclass
class Corpus:
    cases: list[Case] = field(default_factory=list)

    def add(self, kind: str, name: str, data: bytes | Doc, note: str = "",
            expect: str = "") -> None:
        raw = data.to_bytes() if isinstance(data, Doc) else data
        self.cases.append(Case(f"{len(self.cases):04d}-{kind}-{name}", kind, raw, note, expect))

    def write(self, out_dir: Path) -> list[tuple[Case, Path]]:
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for c in self.cases:
            p = out_dir / f"{c.name}.gguf"
            p.write_bytes(c.data)
            files.append((c, p))
        return files


# -- mutations ---------------------------------------------------------------------------------

ARCH_KEYS_U32 = (
    "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "rope.dimension_count",
    "attention.key_length", "attention.value_length", "vocab_size", "expert_count",
    "expert_used_count", "expert_shared_count", "expert_group_count", "expert_group_used_count",
    "nextn_predict_layers", "attention.sliding_window", "rope.scaling.original_context_length",
    "leading_dense_block_count", "expert_feed_forward_length", "attention.q_lora_rank",
    "attention.kv_lora_rank", "ssm.conv_kernel", "ssm.inner_size", "ssm.state_size",
    "ssm.time_step_rank", "ssm.group_count", "embedding_length_out", "pooling_type",
    "attention.key_length_swa", "attention.value_length_swa", "rope.dimension_count_swa",
)
ARCH_KEYS_F32 = (
    "attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "rope.freq_base",
    "rope.scaling.factor", "rope.scale_linear", "rope.scaling.attn_factor",
    "attention.scale", "logit_scale", "attn_logit_softcapping", "final_logit_softcapping",
    "rope.scaling.yarn_log_multiplier", "embedding_scale", "residual_scale",
    "attention.max_alibi_bias", "rope.freq_base_swa", "expert_weights_scale",
    "attention.clamp_kqv", "rope.scaling.alpha", "rope.scaling.yarn_beta_fast",
)
U32_VALUES = (0, 1, 3, 7, 33, 64, 513, 4096, 100_000, 2**31 - 1, 2**31, 2**32 - 1)
F32_VALUES = (math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-30, 1e30, -1e-5)


def _per_layer(n: int, v: int) -> list[int]:
    return [v] * n


def build_corpus(base: Path, *, seed: int = 1234, n_random: int = 120) -> Corpus:
    """Every kind of damage, from the valid ``base`` (a llama model written by tinymodel)."""
    rnd = random.Random(seed)
    doc = parse(base)
    good = doc.to_bytes()
    arch = doc.get("general.architecture")
    n_layer = doc.get(f"{arch}.block_count")
    c = Corpus()
    c.add("valid", "base", doc)

    def a(key: str) -> str:
        return f"{arch}.{key}"

    def mut(**kw: Any) -> Doc:
        d = doc.copy()
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    # header
    for v in (0, 1, 4, 0x03000000, 0xFFFFFFFF):
        c.add("header", f"version-{v:x}", mut(version=v), expect="error")
    for n in (len(doc.tensors) + 1, 2**40, 2**63, 2**64 - 1):
        c.add("header", f"n_tensors-{n}", mut(n_tensors=n), expect="error")
    c.add("header", "n_tensors-fewer", mut(n_tensors=len(doc.tensors) - 1), expect="error")
    for n in (len(doc.kvs) + 1, 2**40, 2**63, 2**64 - 1):
        c.add("header", f"n_kv-{n}", mut(n_kv=n), expect="error")
    c.add("header", "n_kv-fewer", mut(n_kv=len(doc.kvs) - 1), expect="error")
    for m in (b"gguf", b"GGML", b"GGJT", b"FUGG", b"\0\0\0\0"):
        c.add("header", f"magic-{m.hex()}", mut(magic=m), expect="error")

    # key-value entries
    d = doc.copy()
    d.kvs.insert(3, KV.of(a("block_count"), U32, n_layer))
    c.add("kv", "duplicate-key-same", d, expect="error")
    d = doc.copy()
    d.kvs.append(KV.of("general.architecture", STR, "qwen2"))
    c.add("kv", "duplicate-key-arch", d, expect="error")
    d = doc.copy()
    d.kvs.append(KV.of("", STR, "x"))
    c.add("kv", "empty-key", d, expect="error")
    d = doc.copy()
    d.kvs.append(KV(b"general.nested", ARR, struct.pack("<IQ", ARR, 1) + enc_value(ARR, [1, 2], U8)))
    c.add("kv", "nested-array", d, expect="error")
    d = doc.copy()
    d.kvs.append(KV(b"general.nested0", ARR, struct.pack("<IQ", ARR, 0)))
    c.add("kv", "nested-array-empty", d, expect="error")
    for t in (13, 255, 2**31, 2**32 - 1):
        d = doc.copy()
        d.kvs.append(KV(b"general.weird", t, b"\0" * 8))
        c.add("kv", f"value-type-{t}", d, expect="error")
        d = doc.copy()
        d.kvs.append(KV(b"general.weird", ARR, struct.pack("<IQ", t, 1) + b"\0" * 8))
        c.add("kv", f"array-type-{t}", d, expect="error")
    d = doc.copy()
    d.kvs.append(KV(b"general.big", STR, struct.pack("<Q", 2**62)))
    c.add("kv", "string-length-huge", d, expect="error")
    d = doc.copy()
    d.kvs.append(KV(b"general.big", ARR, struct.pack("<IQ", U8, 2**40)))
    c.add("kv", "array-count-huge", d, expect="error")
    d = doc.copy()
    d.kvs.append(KV(b"general.big", ARR, struct.pack("<IQ", STR, 2**31)))
    c.add("kv", "string-array-count-huge", d, expect="error")
    d = doc.copy()
    d.kvs.append(KV(b"general.big", ARR, struct.pack("<IQ", U32, (2**64 - 1) // 2)))
    c.add("kv", "array-count-overflow", d, expect="error")
    head = doc.header_bytes()
    key_at = head.find(b"general.architecture") - 8
    c.add("kv", "key-length-huge",
          good[:key_at] + struct.pack("<Q", 2**62) + good[key_at + 8 :], expect="error")
    c.add("kv", "key-length-past-end",
          good[:key_at] + struct.pack("<Q", len(good)) + good[key_at + 8 :], expect="error")
    d = doc.copy().set("general.architecture", U32, 7)
    c.add("kv", "arch-wrong-type", d, expect="error")
    c.add("kv", "arch-missing", doc.copy().drop("general.architecture"), expect="error")
    c.add("kv", "name-not-utf8", doc.copy().set("general.name", STR, b"\xff\xfe\x80name"))
    c.add("kv", "key-not-utf8", doc.copy().set("general.\xff", STR, "x"))
    d = doc.copy()
    d.kvs.append(KV(b"general.flag", BOOL, b"\x07"))
    c.add("kv", "bool-7", d)
    c.add("kv", "file-type-wrong-type", doc.copy().set("general.file_type", STR, "F16"),
          expect="error")
    c.add("kv", "name-wrong-type", doc.copy().set("general.name", U32, 3), expect="error")

    # alignment
    for al in (1, 2, 4, 8, 16, 64, 128, 4096):
        d = doc.copy().set("general.alignment", U32, al)
        d.alignment = al
        c.add("alignment", f"u32-{al}", d, expect="error" if al < 32 else "")
    for al in (0, 3, 24, 48, 2**31 + 1):
        c.add("alignment", f"u32-{al}", doc.copy().set("general.alignment", U32, al),
              expect="error")
    for t, v in ((U64, 32), (I32, 32), (U16, 32), (U8, 32), (F32, 32.0), (STR, "32"), (BOOL, 1)):
        c.add("alignment", f"type-{t}", doc.copy().set("general.alignment", t, v),
              expect="error")
    c.add("alignment", "array", doc.copy().set("general.alignment", ARR, [32], U32),
          expect="error")
    d = doc.copy().set("general.alignment", U32, 64)  # says 64, data laid out at 32
    c.add("alignment", "mismatch", d, expect="error")

    # tensor infos
    def tmut(i: int, **kw: Any) -> Doc:
        d = doc.copy()
        d.tensors[i] = replace(d.tensors[i], **kw)
        return d

    last = len(doc.tensors) - 1
    c.add("tensor-info", "name-empty", tmut(1, name=b""), expect="error")
    c.add("tensor-info", "name-63", tmut(1, name=b"x" * 63), expect="error")
    c.add("tensor-info", "name-64", tmut(1, name=b"x" * 64), expect="error")
    c.add("tensor-info", "name-1000", tmut(1, name=b"x" * 1000), expect="error")
    c.add("tensor-info", "name-duplicate", tmut(2, name=doc.tensors[1].name), expect="error")
    c.add("tensor-info", "name-unknown", tmut(last, name=b"blk.99.attn_q.weight"),
          expect="error")
    c.add("tensor-info", "name-length-huge", doc.header_bytes()[:0] + _name_len(doc, 1, 2**62),
          expect="error")
    t1 = doc.tensors[1]
    c.add("tensor-info", "dims-0", tmut(1, dims=()), expect="error")
    c.add("tensor-info", "dims-5", tmut(1, dims=(*t1.dims, 1, 1, 1, 1)[:5]), expect="error")
    c.add("tensor-info", "dims-4-ones", tmut(1, dims=(*t1.dims, 1, 1)[:4]))
    c.add("tensor-info", "dim-zero", tmut(1, dims=(0,) + t1.dims[1:], raw=b""), expect="error")
    c.add("tensor-info", "dim-negative", tmut(1, dims=(-1,) + t1.dims[1:]), expect="error")
    c.add("tensor-info", "dim-overflow", tmut(1, dims=(2**62, 2**62)), expect="error")
    c.add("tensor-info", "dim-huge", tmut(1, dims=(2**40,) + t1.dims[1:]), expect="error")
    c.add("tensor-info", "shape-transposed", tmut(0, dims=doc.tensors[0].dims[::-1]),
          expect="error")
    for tt in (4, 5, 31, 36, 43, 999, 2**31, 2**32 - 1):
        c.add("tensor-info", f"type-{tt}", tmut(1, ttype=tt), expect="error")
    f16 = next(i for i, t in enumerate(doc.tensors) if t.ttype == 1)
    c.add("tensor-info", "type-f16-as-f32", tmut(f16, ttype=0), expect="error")
    c.add("tensor-info", "type-f16-as-q8_0", tmut(f16, ttype=8), expect="error")
    c.add("tensor-info", "type-f16-as-bf16", tmut(f16, ttype=30))
    offs = doc.offsets()
    c.add("tensor-info", "offset-misaligned", tmut(2, offset=offs[2] + 1), expect="error")
    c.add("tensor-info", "offset-overlap", tmut(2, offset=offs[1]), expect="error")
    c.add("tensor-info", "offset-gap", tmut(last, offset=offs[last] + 64), expect="error")
    c.add("tensor-info", "offset-past-end", tmut(last, offset=2**40), expect="error")
    c.add("tensor-info", "offset-max", tmut(last, offset=2**64 - 32), expect="error")
    d = doc.copy()
    d.tensors[1], d.tensors[2] = (replace(d.tensors[1], offset=offs[2]),
                                  replace(d.tensors[2], offset=offs[1]))
    c.add("tensor-info", "offsets-swapped", d, expect="error")
    d = doc.copy()
    d.tensors[1], d.tensors[2] = d.tensors[2], d.tensors[1]
    c.add("tensor-info", "order-swapped", d)
    d = doc.copy()
    d.tensors = d.tensors[:-1]
    c.add("tensor-info", "tensor-missing", d, expect="error")
    d = doc.copy()
    d.tensors.append(Tensor(b"extra.weight", (32,), 0, b"\0" * 128))
    c.add("tensor-info", "tensor-extra", d, expect="error")
    d = doc.copy()
    d.tensors = [t for t in d.tensors if t.name != b"output.weight"]
    c.add("tensor-info", "output-tied", d)

    # truncations: every structural boundary and evenly spaced cuts
    head = doc.header_bytes()
    cuts = {1, 3, 4, 7, 8, 15, 23, 24, len(head) - 1, len(head), len(good) - 1, len(good) - 33}
    cuts |= {len(head) * k // 16 for k in range(1, 16)}
    cuts |= {len(good) * k // 8 for k in range(1, 8)}
    for n in sorted(cuts):
        c.add("truncation", f"at-{n}", good[:n], expect="error")
    c.add("truncation", "empty", b"", expect="error")

    # byte flips, mostly in the header (flips in the weights only change numbers)
    for i in range(60):
        b = bytearray(good)
        for _ in range(rnd.choice((1, 1, 2, 4))):
            pos = rnd.randrange(len(head)) if i % 6 else rnd.randrange(len(good))
            b[pos] = rnd.choice((0, 0xFF, 0x7F, 0x80, rnd.randrange(256), b[pos] ^ (1 << rnd.randrange(8))))
        c.add("byte-flip", f"{i}", bytes(b))

    # model parameters (the container stays valid)
    for key in ARCH_KEYS_U32:
        for v in U32_VALUES:
            c.add("model-param", f"{key}-{v}", doc.copy().set(a(key), U32, v))
        c.add("model-param", f"{key}-i32-neg", doc.copy().set(a(key), I32, -1))
        c.add("model-param", f"{key}-string", doc.copy().set(a(key), STR, "8"))
        c.add("model-param", f"{key}-array-short", doc.copy().set(a(key), ARR, [1], U32))
        c.add("model-param", f"{key}-array-layers",
              doc.copy().set(a(key), ARR, _per_layer(n_layer, 0), U32))
        c.add("model-param", f"{key}-array-layers-f32",
              doc.copy().set(a(key), ARR, [1.0] * n_layer, F32))
    for key in ARCH_KEYS_F32:
        for v in F32_VALUES:
            c.add("model-param", f"{key}-{v}", doc.copy().set(a(key), F32, v))
        c.add("model-param", f"{key}-u32", doc.copy().set(a(key), U32, 1))
        c.add("model-param", f"{key}-f64", doc.copy().set(a(key), F64, 1e-5))
        c.add("model-param", f"{key}-array", doc.copy().set(a(key), ARR, [1e-5] * n_layer, F32))
    for key in ("context_length", "embedding_length", "block_count",
                "attention.layer_norm_rms_epsilon", "attention.head_count"):
        c.add("model-param", f"{key}-missing", doc.copy().drop(a(key)))
    for v in ("linear", "yarn", "longrope", "none", "dynamic", "", "foo"):
        c.add("model-param", f"rope.scaling.type-{v}", doc.copy().set(a("rope.scaling.type"), STR, v))
    c.add("model-param", "experts-1000-none-used", doc.copy().set(a("expert_count"), U32, 1000),
          expect="error")
    c.add("model-param", "experts-8-used-9",
          doc.copy().set(a("expert_count"), U32, 8).set(a("expert_used_count"), U32, 9))
    c.add("model-param", "experts-8-used-2",
          doc.copy().set(a("expert_count"), U32, 8).set(a("expert_used_count"), U32, 2))
    c.add("model-param", "experts-0-used-2", doc.copy().set(a("expert_used_count"), U32, 2))
    c.add("model-param", "experts-groups",
          doc.copy().set(a("expert_count"), U32, 8).set(a("expert_used_count"), U32, 2)
          .set(a("expert_group_count"), U32, 3))
    c.add("model-param", "block_count-0", doc.copy().set(a("block_count"), U32, 0),
          expect="error")
    c.add("model-param", "block_count-100000", doc.copy().set(a("block_count"), U32, 100_000),
          expect="error")
    c.add("model-param", "rms-eps-nan",
          doc.copy().set(a("attention.layer_norm_rms_epsilon"), F32, math.nan), expect="error")
    c.add("model-param", "context_length-4294967295",
          doc.copy().set(a("context_length"), U32, 2**32 - 1))
    c.add("model-param", "head_count-per-layer-0",
          doc.copy().set(a("attention.head_count"), ARR, [0] * n_layer, U32))
    c.add("model-param", "head_count_kv-per-layer-mixed",
          doc.copy().set(a("attention.head_count_kv"), ARR, [2, 1][:n_layer] + [2] * (n_layer - 2), U32))
    c.add("model-param", "head_count-zero-kv-two",
          doc.copy().set(a("attention.head_count"), U32, 0))

    # vocabulary
    tokens = _string_array(doc, "tokenizer.ggml.tokens")
    n_vocab = len(tokens)
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                "tokenizer.ggml.eot_token_id", "tokenizer.ggml.seperator_token_id"):
        short = key.split(".")[-1]
        for v in (n_vocab, n_vocab + 1000, 2**31 - 1, 2**32 - 1):
            c.add("vocab", f"{short}-{v}", doc.copy().set(key, U32, v))
        c.add("vocab", f"{short}-i32-neg", doc.copy().set(key, I32, -1))
        c.add("vocab", f"{short}-string", doc.copy().set(key, STR, "1"))
    for m in ("foo", "", "bert", "gpt2", "t5", "rwkv", "plamo2", "gemma4", "none", "no_vocab",
              "test", "whitespace", "hybriddna"):
        c.add("vocab", f"model-{m or 'empty'}", doc.copy().set("tokenizer.ggml.model", STR, m))
    c.add("vocab", "model-missing", doc.copy().drop("tokenizer.ggml.model"))
    c.add("vocab", "model-wrong-type", doc.copy().set("tokenizer.ggml.model", U32, 1))
    c.add("vocab", "tokens-missing", doc.copy().drop("tokenizer.ggml.tokens"))
    c.add("vocab", "tokens-u32", doc.copy().set("tokenizer.ggml.tokens", ARR, list(range(n_vocab)), U32))
    c.add("vocab", "tokens-string", doc.copy().set("tokenizer.ggml.tokens", STR, "a"))
    c.add("vocab", "tokens-empty", doc.copy().set("tokenizer.ggml.tokens", ARR, [], STR))
    c.add("vocab", "tokens-duplicate",
          doc.copy().set("tokenizer.ggml.tokens", ARR, [*tokens[:300], tokens[299], *tokens[301:]], STR))
    c.add("vocab", "tokens-empty-text",
          doc.copy().set("tokenizer.ggml.tokens", ARR, [*tokens[:300], "", *tokens[301:]], STR))
    c.add("vocab", "tokens-empty-collides",
          doc.copy().set("tokenizer.ggml.tokens", ARR,
                         [*tokens[:299], "[EMPTY_300]", "", *tokens[301:]], STR))
    no_bytes = [t if not t.startswith("<0x") else f"zz{i}" for i, t in enumerate(tokens)]
    c.add("vocab", "tokens-no-byte-tokens", doc.copy().set("tokenizer.ggml.tokens", ARR, no_bytes, STR))
    c.add("vocab", "tokens-fewer-than-embd",
          doc.copy().set("tokenizer.ggml.tokens", ARR, tokens[:-10], STR)
          .set("tokenizer.ggml.scores", ARR, [0.0] * (n_vocab - 10), F32)
          .set("tokenizer.ggml.token_type", ARR, [1] * (n_vocab - 10), I32))
    c.add("vocab", "scores-short", doc.copy().set("tokenizer.ggml.scores", ARR, [0.0] * 5, F32))
    c.add("vocab", "scores-u8", doc.copy().set("tokenizer.ggml.scores", ARR, [0] * n_vocab, U8))
    c.add("vocab", "scores-i32", doc.copy().set("tokenizer.ggml.scores", ARR, [0] * n_vocab, I32))
    c.add("vocab", "scores-nan", doc.copy().set("tokenizer.ggml.scores", ARR, [math.nan] * n_vocab, F32))
    c.add("vocab", "scores-scalar", doc.copy().set("tokenizer.ggml.scores", F32, 0.0))
    c.add("vocab", "types-short", doc.copy().set("tokenizer.ggml.token_type", ARR, [1] * 5, I32))
    c.add("vocab", "types-u32", doc.copy().set("tokenizer.ggml.token_type", ARR, [1] * n_vocab, U32))
    for tv in (0, 2, 3, 4, 5, 6, 7, 99, -1):
        c.add("vocab", f"types-all-{tv}",
              doc.copy().set("tokenizer.ggml.token_type", ARR, [tv] * n_vocab, I32))
    c.add("vocab", "types-byte-short-text",
          doc.copy().set("tokenizer.ggml.token_type", ARR, [6] * n_vocab, I32)
          .set("tokenizer.ggml.model", STR, "llama"))
    c.add("vocab", "types-byte-bert",
          doc.copy().set("tokenizer.ggml.model", STR, "bert"))
    for key in ("tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                "tokenizer.ggml.add_space_prefix"):
        c.add("vocab", f"{key.split('.')[-1]}-u32", doc.copy().set(key, U32, 1))
    c.add("vocab", "merges-u32", doc.copy().set("tokenizer.ggml.model", STR, "gpt2")
          .set("tokenizer.ggml.merges", ARR, [1, 2], U32))
    c.add("vocab", "merges-weird", doc.copy().set("tokenizer.ggml.model", STR, "gpt2")
          .set("tokenizer.ggml.merges", ARR, ["", " ", "a", "a b c", "\u2581 \u2581"], STR))
    c.add("vocab", "pre-foo", doc.copy().set("tokenizer.ggml.model", STR, "gpt2")
          .set("tokenizer.ggml.merges", ARR, ["a b"], STR).set("tokenizer.ggml.pre", STR, "foo"))
    c.add("vocab", "charsmap-short", doc.copy().set("tokenizer.ggml.model", STR, "t5")
          .set("tokenizer.ggml.precompiled_charsmap", ARR, [1, 2], U8))
    c.add("vocab", "charsmap-bad", doc.copy().set("tokenizer.ggml.model", STR, "t5")
          .set("tokenizer.ggml.precompiled_charsmap", ARR, [255, 255, 0, 0, 1, 2, 3, 4], U8))
    c.add("vocab", "suppress-u8", doc.copy().set("tokenizer.ggml.suppress_tokens", ARR, [1], U8))
    c.add("vocab", "chat-template-u32", doc.copy().set("tokenizer.chat_template", U32, 1))
    c.add("vocab", "chat-template-array",
          doc.copy().set("tokenizer.chat_template", ARR, ["{{ x }}"], STR))

    # other architectures with this llama body: each arch's own required keys and asserts
    for name in LLAMA_CPP_ARCHS:
        c.add("architecture", name, with_arch(doc, name))

    # random combinations of the above
    keys = [(k, U32) for k in ARCH_KEYS_U32] + [(k, F32) for k in ARCH_KEYS_F32]
    for i in range(n_random):
        d = doc.copy()
        if rnd.random() < 0.3:
            d = with_arch(d, rnd.choice(LLAMA_CPP_ARCHS))
        for _ in range(rnd.randint(1, 3)):
            key, t = rnd.choice(keys)
            arch_now = d.get("general.architecture")
            if t == U32:
                v: Any = rnd.choice((*U32_VALUES, n_layer, 2, 4, 16, 32))
                if rnd.random() < 0.2:
                    d.set(f"{arch_now}.{key}", ARR, [rnd.choice((0, 1, 2, 4, 32))] * n_layer, U32)
                else:
                    d.set(f"{arch_now}.{key}", U32, v)
            else:
                d.set(f"{arch_now}.{key}", F32, rnd.choice((*F32_VALUES, 1e-6, 0.5, 2.0, 1e4)))
        c.add("random", f"{i}", d)
    return c


def with_arch(doc: Doc, name: str) -> Doc:
    """The same file claiming architecture ``name``, its ``<arch>.*`` keys renamed to match."""
    old = (doc.get("general.architecture") + ".").encode()
    d = doc.copy()
    d.kvs = [KV(name.encode() + b"." + kv.key[len(old):], kv.vtype, kv.payload)
             if kv.key.startswith(old) else kv for kv in d.kvs]
    return d.set("general.architecture", STR, name)


def _name_len(doc: Doc, i: int, n: int) -> bytes:
    """The file with tensor ``i``'s name length replaced by ``n``."""
    head = doc.header_bytes()
    info_at = len(head) - sum(len(t.info_bytes(0)) for t in doc.tensors[i:])
    good = doc.to_bytes()
    return good[:info_at] + struct.pack("<Q", n) + good[info_at + 8 :]


def _string_array(doc: Doc, key: str) -> list[str]:
    i = doc.find(key)
    payload = doc.kvs[i].payload
    r = _Reader(payload)
    sub, n = r.take("I"), r.take("Q")
    assert sub == STR
    return [r.string().decode("utf-8", "replace") for _ in range(n)]


def iter_kinds(cases: list[Case]) -> Iterator[str]:
    seen: set[str] = set()
    for c in cases:
        if c.kind not in seen:
            seen.add(c.kind)
            yield c.kind


# llama.cpp's architecture names (src/llama-arch.cpp, LLM_ARCH_NAMES) in the vendored version
LLAMA_CPP_ARCHS = tuple("""
llama llama4 deci falcon grok gpt2 gptj gptneox mpt baichuan starcoder refact bert modern-bert
nomic-bert nomic-bert-moe neo-bert jina-bert-v2 jina-bert-v3 eurobert bloom stablelm qwen qwen2
qwen2moe qwen2vl qwen3 qwen3moe qwen3next qwen3vl qwen3vlmoe qwen35 qwen35moe qwen4exp phi2 phi3
phimoe plamo plamo2 plamo3 codeshell orion internlm2 minicpm minicpm3 gemma gemma2 gemma3 gemma3n
gemma4 gemma4-assistant gemma-embedding starcoder2 mamba mamba2 maple jamba falcon-h1 xverse
command-r cohere2 cohere2moe dbrx olmo olmo2 olmoe muse-glimmer openelm arctic deepseek deepseek2
deepseek2-ocr deepseek32 deepseek4 chatglm glm4 glm4moe glm-dsa bitnet t5 t5encoder jais jais2
nemotron nemotron_h nemotron_h_moe exaone exaone4 exaone-moe rwkv6 rwkv6qwen2 rwkv7 arwkv7 granite
granitemoe granitehybrid graniteswitch granite_swa chameleon wavtokenizer-dec plm bailingmoe
bailingmoe2 bailingmoe3 dots1 dots3note arcee afmoe laguna ernie4_5 ernie4_5-moe hunyuan-moe
hunyuan-dense hunyuan_vl hy_v3 hy_v4 smollm3 gpt-oss lfm2 lfm2moe dream smallthinker llada
llada-moe seed_oss grovemoe apertus minimax-01 hrm_text minimax-m2 minimax-m3 cogvlm rnd1
pangu-embedded mistral3 eagle3 dflash mistral4 paddleocr mimo2 step35 spark2_5 llama-embed
maincoder kimi-linear kimi-k3 glm5-next talkie mellum nanbeige qwen3tts pockettts clip
""".split())
