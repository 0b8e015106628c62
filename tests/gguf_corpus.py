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
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from desktop.core.gguf_arch_tables import ARCHITECTURES

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


def _numeric_array(doc: Doc, key: str) -> tuple[int, list[Any]]:
    i = doc.find(key)
    payload = doc.kvs[i].payload
    sub, n = struct.unpack_from("<IQ", payload)
    fmt = _FMT[sub]
    return sub, list(struct.unpack_from(f"<{n}{fmt}", payload, 12))


def tiny_vocab_file(out: Path, source: Path, n_tokens: int = 400) -> Path:
    """One of llama.cpp's test vocabularies cut to its first ``n_tokens`` tokens (a vocab-only
    GGUF). Special tokens beyond the cut are appended, with their ids moved; BPE merges are kept
    where both halves and the result are still tokens."""
    doc = parse(source)
    tokens = _string_array(doc, "tokenizer.ggml.tokens")
    keep = list(range(min(n_tokens, len(tokens))))
    special_keys = [kv.key.decode() for kv in doc.kvs
                    if kv.key.startswith(b"tokenizer.ggml.") and kv.key.endswith(b"_token_id")]
    for key in special_keys:
        idx = doc.get(key)
        if isinstance(idx, int) and idx >= len(keep) and idx < len(tokens) and idx not in keep:
            keep.append(idx)
    new_id = {old: new for new, old in enumerate(keep)}
    kept_tokens = [tokens[i] for i in keep]
    out_doc = Doc(3, [KV.of("general.architecture", STR, "llama")], [])
    for kv in doc.kvs:
        key = kv.key.decode()
        if not key.startswith("tokenizer."):
            continue
        if key == "tokenizer.ggml.tokens":
            out_doc.set(key, ARR, kept_tokens, STR)
        elif key in ("tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
            sub, values = _numeric_array(doc, key)
            out_doc.set(key, ARR, [values[i] for i in keep], sub)
        elif key == "tokenizer.ggml.merges":
            have = set(kept_tokens)
            merges = [mg for mg in _string_array(doc, key)
                      if " " in mg[1:] and all(p in have for p in mg.split(" ", 1))
                      and mg.replace(" ", "", 1) in have]
            out_doc.set(key, ARR, merges, STR)
        elif key in special_keys:
            idx = doc.get(key)
            if idx in new_id:
                out_doc.set(key, U32, new_id[idx])
        else:
            out_doc.kvs.append(kv)
    out.write_bytes(out_doc.to_bytes())
    return out


@dataclass
class Case:
    name: str
    kind: str
    data: bytes
    # "refused": validation must refuse it (GGUFError); "error": it must not load (GGUFError or
    # ModelLoadError); "": either a clear error or a load is fine
    expect: str = ""


@dataclass
class Corpus:
    cases: list[Case] = field(default_factory=list)

    def add(self, kind: str, name: str, data: bytes | Doc, expect: str = "") -> None:
        raw = data.to_bytes() if isinstance(data, Doc) else data
        self.cases.append(Case(f"{len(self.cases):04d}-{kind}-{name}", kind, raw, expect))

    def write(self, out_dir: Path) -> list[tuple[Case, Path]]:
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for c in self.cases:
            p = out_dir / f"{c.name}.gguf"
            p.write_bytes(c.data)
            files.append((c, p))
        return files


# -- mutations ---------------------------------------------------------------------------------

# <arch>.* keys llama.cpp reads as unsigned 32-bit numbers, and as 32-bit floats
ARCH_KEYS_U32 = (
    "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "rope.dimension_count",
    "attention.key_length", "attention.value_length", "vocab_size", "expert_count",
    "expert_used_count", "expert_group_count", "expert_group_used_count", "nextn_predict_layers",
    "attention.sliding_window", "rope.scaling.original_context_length",
    "leading_dense_block_count", "expert_feed_forward_length", "attention.q_lora_rank",
    "attention.kv_lora_rank", "attention.key_length_mla", "ssm.conv_kernel", "ssm.inner_size",
    "ssm.state_size", "ssm.time_step_rank", "ssm.group_count", "embedding_length_out",
    "pooling_type", "attention.key_length_swa", "attention.value_length_swa",
    "rope.dimension_count_swa", "interleave_moe_layer_step", "token_shift_count",
)
ARCH_KEYS_F32 = (
    "attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "rope.freq_base",
    "rope.scaling.factor", "rope.scale_linear", "rope.scaling.attn_factor",
    "attention.scale", "logit_scale", "attn_logit_softcapping", "final_logit_softcapping",
    "rope.scaling.yarn_log_multiplier", "embedding_scale", "residual_scale",
    "attention.max_alibi_bias", "rope.freq_base_swa", "expert_weights_scale",
    "attention.clamp_kqv", "rope.scaling.alpha", "rope.scaling.yarn_beta_fast",
)
# the keys the llama architecture reads get every value; the others a few
LLAMA_KEYS = frozenset((
    "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "rope.dimension_count",
    "attention.key_length", "attention.value_length", "vocab_size", "expert_count",
    "expert_used_count", "expert_group_count", "expert_group_used_count", "nextn_predict_layers",
    "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.scaling.factor",
    "rope.scale_linear", "rope.scaling.attn_factor", "rope.dimension_count_swa",
))
U32_VALUES = (0, 1, 3, 7, 33, 64, 513, 4096, 100_000, 2**31 - 1, 2**31, 2**32 - 1)
U32_FEW = (0, 1, 513, 2**32 - 1)
F32_VALUES = (math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-30, 1e30, -1e-5)
F32_FEW = (math.nan, -math.inf, -1.0, 0.0)
SPECIAL_IDS = ("bos", "eos", "unknown", "padding", "eot", "seperator")


def build_corpus(bases: dict[str, Path], *, seed: int = 1234, n_random: int = 150,
                 arch_specs: dict[str, dict[str, Any]] | None = None) -> Corpus:
    """Every kind of damage, from valid tiny llama models written by tinymodel.

    ``bases``: "spm" (SentencePiece tokenizer; every kind is built from it) and optionally
    "bpe" and "llama3" (byte-level BPE without and with an added BOS: tokenizer cases).
    ``arch_specs`` (tests/gguf_arch_specs.py): tiny models of other architectures, each loaded
    valid and with the damage their own graphs are sensitive to."""
    rnd = random.Random(seed)
    c = Corpus()
    docs = {name: parse(path) for name, path in bases.items()}
    spm = docs["spm"]
    for name, d in docs.items():
        c.add("valid", name, d)
    _header_cases(c, spm)
    _kv_cases(c, spm)
    _alignment_cases(c, spm)
    _tensor_cases(c, spm)
    _truncations(c, spm)
    _byte_flips(c, spm, rnd)
    _param_cases(c, spm)
    for name, d in docs.items():
        _vocab_cases(c, d, name)
    for arch in LLAMA_CPP_ARCHS:
        c.add("architecture", arch, with_arch(spm, arch))
    _random_cases(c, list(docs.values()), rnd, n_random)
    for arch, spec in sorted((arch_specs or {}).items()):
        _arch_model_cases(c, arch, spec, spm, rnd)
    return c


def _arch_model_cases(c: Corpus, arch: str, spec: dict[str, Any], base: Doc,
                      rnd: random.Random) -> None:
    from tests.gguf_arch_specs import build

    doc = build(arch, base, spec)

    def a(key: str) -> str:
        return f"{arch}.{key}"

    def add(name: str, d: Doc, expect: str = "") -> None:
        c.add("arch-model", f"{arch}-{name}", d, expect)

    add("valid", doc)
    d = doc.copy()
    d.tensors = [t for t in d.tensors
                 if not re.fullmatch(rb"blk\.0\.attn_(q|k|v|qkv)\.weight", t.name)]
    add("no-attention-in-layer-0", d, "error")
    for one_d, t in enumerate(doc.tensors):
        if len(t.dims) != 1:
            continue
        for ttype in (1, 30):  # F16, BF16
            d = doc.copy()
            d.tensors[one_d] = replace(t, ttype=ttype, raw=bytes(2 * t.dims[0]))
            add(f"{t.name.decode()}-type-{ttype}", d, "refused")
        break
    emb = next(i for i, t in enumerate(doc.tensors) if t.name == b"token_embd.weight")
    for ttype, width in ((24, 1), (28, 8)):
        d = doc.copy()
        e = d.tensors[emb]
        d.tensors[emb] = replace(e, ttype=ttype, raw=bytes(math.prod(e.dims) * width))
        add(f"token_embd-type-{ttype}", d, "refused")
    for key, vtype, values in (
        ("rope.dimension_count", U32, (0, 8, 15)), ("attention.key_length", U32, (8,)),
        ("attention.value_length", U32, (8,)), ("attention.key_length_swa", U32, (8,)),
        ("attention.sliding_window_pattern", U32, (1, 3)), ("attention.sliding_window", U32, (0, 4)),
        ("attention.head_count", U32, (0,)), ("context_length", U32, (1,)),
        ("expert_count", U32, (2,)), ("attention.layer_norm_epsilon", F32, (math.nan, -1.0)),
        ("attention.layer_norm_rms_epsilon", F32, (math.nan,)),
    ):
        for v in values:
            add(f"{key}-{v}", doc.copy().set(a(key), vtype, v))
    add("head_count_kv-mixed", doc.copy().set(a("attention.head_count_kv"), ARR, [2, 1], U32))
    add("head_count-mixed", doc.copy().set(a("attention.head_count"), ARR, [2, 4], U32))
    add("swa-pattern-none", doc.copy().set(a("attention.sliding_window_pattern"), ARR,
                                           [False, False], BOOL))
    keys = [(k, U32) for k in ARCH_KEYS_U32] + [(k, F32) for k in ARCH_KEYS_F32]
    for i in range(4):
        d = doc.copy()
        for _ in range(rnd.randint(1, 2)):
            key, t2 = rnd.choice(keys)
            d.set(a(key), t2, rnd.choice(U32_VALUES) if t2 == U32 else rnd.choice(F32_VALUES))
        add(f"random-{i}", d)


def _mut(doc: Doc, **kw: Any) -> Doc:
    d = doc.copy()
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def _header_cases(c: Corpus, doc: Doc) -> None:
    for v in (0, 1, 4, 0x03000000, 0xFFFFFFFF):
        c.add("header", f"version-{v:x}", _mut(doc, version=v), "refused")
    for n in (len(doc.tensors) + 1, 2**40, 2**63, 2**64 - 1):
        c.add("header", f"n_tensors-{n}", _mut(doc, n_tensors=n), "refused")
    # one tensor fewer: ggml reads the last tensor's info as padding; llama.cpp then ties the
    # output to the embeddings, and the tensor data, read from a shifted start, is garbage
    c.add("header", "n_tensors-fewer", _mut(doc, n_tensors=len(doc.tensors) - 1))
    for n in (len(doc.kvs) + 1, 2**40, 2**63, 2**64 - 1):
        c.add("header", f"n_kv-{n}", _mut(doc, n_kv=n), "refused")
    c.add("header", "n_kv-fewer", _mut(doc, n_kv=len(doc.kvs) - 1), "refused")
    for m in (b"gguf", b"GGML", b"GGJT", b"FUGG", b"lmgg", b"\0\0\0\0"):
        c.add("header", f"magic-{m.hex()}", _mut(doc, magic=m), "refused")


def _kv_cases(c: Corpus, doc: Doc) -> None:
    arch = doc.get("general.architecture")
    n_layer = doc.get(f"{arch}.block_count")
    good = doc.to_bytes()
    d = doc.copy()
    d.kvs.insert(3, KV.of(f"{arch}.block_count", U32, n_layer))
    c.add("kv", "duplicate-key-same", d, "refused")
    d = doc.copy()
    d.kvs.append(KV.of("general.architecture", STR, "qwen2"))
    c.add("kv", "duplicate-key-arch", d, "refused")
    d = doc.copy()
    d.kvs.append(KV.of("", STR, "x"))
    c.add("kv", "empty-key", d, "refused")
    d = doc.copy()
    d.kvs.append(KV(b"general.nested", ARR,
                    struct.pack("<IQ", ARR, 1) + enc_value(ARR, [1, 2], U8)))
    c.add("kv", "nested-array", d, "refused")
    d = doc.copy()
    d.kvs.append(KV(b"general.nested0", ARR, struct.pack("<IQ", ARR, 0)))
    c.add("kv", "nested-array-empty", d, "refused")
    for t in (13, 255, 2**31, 2**32 - 1):
        d = doc.copy()
        d.kvs.append(KV(b"general.weird", t, b"\0" * 8))
        c.add("kv", f"value-type-{t}", d, "refused")
        d = doc.copy()
        d.kvs.append(KV(b"general.weird", ARR, struct.pack("<IQ", t, 1) + b"\0" * 8))
        c.add("kv", f"array-type-{t}", d, "refused")
    d = doc.copy()
    d.kvs.append(KV(b"general.big", STR, struct.pack("<Q", 2**62)))
    c.add("kv", "string-length-huge", d, "refused")
    for sub, n, label in ((U8, 2**40, "u8"), (STR, 2**31, "strings"), (U32, 2**63 - 1, "u32")):
        d = doc.copy()
        d.kvs.append(KV(b"general.big", ARR, struct.pack("<IQ", sub, n)))
        c.add("kv", f"array-count-huge-{label}", d, "refused")
    key_at = doc.header_bytes().find(b"general.architecture") - 8
    c.add("kv", "key-length-huge",
          good[:key_at] + struct.pack("<Q", 2**62) + good[key_at + 8 :], "refused")
    c.add("kv", "key-length-past-end",
          good[:key_at] + struct.pack("<Q", len(good)) + good[key_at + 8 :], "refused")
    c.add("kv", "arch-wrong-type", doc.copy().set("general.architecture", U32, 7), "refused")
    c.add("kv", "arch-missing", doc.copy().drop("general.architecture"), "refused")
    c.add("kv", "arch-unknown", doc.copy().set("general.architecture", STR, "llama9"), "refused")
    c.add("kv", "name-not-utf8", doc.copy().set("general.name", STR, b"\xff\xfe\x80name"))
    c.add("kv", "key-not-utf8", doc.copy().set("general.\xff", STR, "x"))
    d = doc.copy()
    d.kvs.append(KV(b"general.flag", BOOL, b"\x07"))
    c.add("kv", "bool-7", d)
    c.add("kv", "file-type-wrong-type", doc.copy().set("general.file_type", STR, "F16"),
          "refused")
    c.add("kv", "name-wrong-type", doc.copy().set("general.name", U32, 3), "refused")
    c.add("kv", "split-count-wrong-type", doc.copy().set("split.count", U32, 2), "refused")


def _alignment_cases(c: Corpus, doc: Doc) -> None:
    for al in (1, 2, 4, 8, 16, 64, 128, 4096):
        d = doc.copy().set("general.alignment", U32, al)
        d.alignment = al
        c.add("alignment", f"u32-{al}", d, "refused" if al < 32 else "")
    for al in (0, 3, 24, 48, 2**31 + 1):
        c.add("alignment", f"u32-{al}", doc.copy().set("general.alignment", U32, al), "refused")
    for t, v in ((U64, 32), (I32, 32), (U16, 32), (U8, 32), (F32, 32.0), (STR, "32"),
                 (BOOL, 1)):
        c.add("alignment", f"type-{t}", doc.copy().set("general.alignment", t, v), "refused")
    c.add("alignment", "array", doc.copy().set("general.alignment", ARR, [32], U32), "refused")
    c.add("alignment", "says-64-laid-out-32", doc.copy().set("general.alignment", U32, 64),
          "refused")


def _tensor_cases(c: Corpus, doc: Doc) -> None:
    def tmut(i: int, **kw: Any) -> Doc:
        d = doc.copy()
        d.tensors[i] = replace(d.tensors[i], **kw)
        return d

    last = len(doc.tensors) - 1
    t1 = doc.tensors[1]
    c.add("tensor-info", "name-empty", tmut(1, name=b""), "error")
    c.add("tensor-info", "name-63", tmut(1, name=b"x" * 63), "error")
    c.add("tensor-info", "name-64", tmut(1, name=b"x" * 64), "refused")
    c.add("tensor-info", "name-1000", tmut(1, name=b"x" * 1000), "refused")
    c.add("tensor-info", "name-duplicate", tmut(2, name=doc.tensors[1].name), "refused")
    c.add("tensor-info", "name-unknown", tmut(last, name=b"blk.99.attn_q.weight"), "error")
    c.add("tensor-info", "name-length-huge", _name_len(doc, 1, 2**62), "refused")
    c.add("tensor-info", "dims-0", tmut(1, dims=()), "refused")
    c.add("tensor-info", "dims-5", tmut(1, dims=(*t1.dims, 1, 1, 1, 1)[:5]), "refused")
    c.add("tensor-info", "dims-4-ones", tmut(1, dims=(*t1.dims, 1, 1)[:4]))
    c.add("tensor-info", "dim-zero", tmut(1, dims=(0,) + t1.dims[1:], raw=b""), "error")
    c.add("tensor-info", "dim-negative", tmut(1, dims=(-1,) + t1.dims[1:]), "refused")
    c.add("tensor-info", "dim-overflow", tmut(1, dims=(2**62, 2**62)), "refused")
    c.add("tensor-info", "dim-huge", tmut(1, dims=(2**40,) + t1.dims[1:]), "refused")
    c.add("tensor-info", "shape-transposed", tmut(0, dims=doc.tensors[0].dims[::-1]), "error")
    for tt in (4, 5, 31, 36, 43, 999, 2**31, 2**32 - 1):
        c.add("tensor-info", f"type-{tt}", tmut(1, ttype=tt), "refused")
    f16 = next(i for i, t in enumerate(doc.tensors) if t.ttype == 1)
    c.add("tensor-info", "type-f16-as-f32", tmut(f16, ttype=0), "refused")
    c.add("tensor-info", "type-f16-as-q8_0", tmut(f16, ttype=8), "refused")
    c.add("tensor-info", "type-f16-as-bf16", tmut(f16, ttype=30))
    offs = doc.offsets()
    c.add("tensor-info", "offset-misaligned", tmut(2, offset=offs[2] + 1), "refused")
    c.add("tensor-info", "offset-overlap", tmut(2, offset=offs[1]), "refused")
    c.add("tensor-info", "offset-gap", tmut(last, offset=offs[last] + 64), "refused")
    c.add("tensor-info", "offset-past-end", tmut(last, offset=2**40), "refused")
    c.add("tensor-info", "offset-max", tmut(last, offset=2**64 - 32), "refused")
    d = doc.copy()
    d.tensors[1], d.tensors[2] = (replace(d.tensors[1], offset=offs[2]),
                                  replace(d.tensors[2], offset=offs[1]))
    c.add("tensor-info", "offsets-swapped", d, "refused")
    d = doc.copy()
    d.tensors[1], d.tensors[2] = d.tensors[2], d.tensors[1]
    c.add("tensor-info", "order-swapped", d)
    d = doc.copy()
    d.tensors = [t for t in d.tensors if t.name != b"blk.0.attn_q.weight"]
    c.add("tensor-info", "tensor-missing", d, "error")
    d = doc.copy()
    d.tensors.append(Tensor(b"extra.weight", (32,), 0, b"\0" * 128))
    c.add("tensor-info", "tensor-extra", d, "error")
    d = doc.copy()
    d.tensors = [t for t in d.tensors if t.name != b"output.weight"]
    c.add("tensor-info", "output-tied", d)


def _truncations(c: Corpus, doc: Doc) -> None:
    good = doc.to_bytes()
    head = len(doc.header_bytes())
    cuts = {1, 3, 4, 7, 8, 15, 23, 24, head - 1, head, len(good) - 1, len(good) - 33}
    cuts |= {head * k // 16 for k in range(1, 16)}
    cuts |= {len(good) * k // 8 for k in range(1, 8)}
    for n in sorted(cuts):
        c.add("truncation", f"at-{n}", good[:n], "refused")
    c.add("truncation", "empty", b"", "refused")


def _byte_flips(c: Corpus, doc: Doc, rnd: random.Random, n: int = 80) -> None:
    """Random bytes changed, mostly in the header (flips in the weights only change numbers)."""
    good = doc.to_bytes()
    head = len(doc.header_bytes())
    for i in range(n):
        b = bytearray(good)
        for _ in range(rnd.choice((1, 1, 2, 4))):
            pos = rnd.randrange(head) if i % 6 else rnd.randrange(len(good))
            b[pos] = rnd.choice((0, 0xFF, 0x7F, 0x80, rnd.randrange(256),
                                 b[pos] ^ (1 << rnd.randrange(8))))
        c.add("byte-flip", f"{i}", bytes(b))


def _param_cases(c: Corpus, doc: Doc) -> None:
    """Valid containers with out-of-range, mistyped or missing model parameters."""
    arch = doc.get("general.architecture")
    n_layer = doc.get(f"{arch}.block_count")

    def a(key: str) -> str:
        return f"{arch}.{key}"

    for key in ARCH_KEYS_U32:
        for v in U32_VALUES if key in LLAMA_KEYS else U32_FEW:
            c.add("model-param", f"{key}-{v}", doc.copy().set(a(key), U32, v))
        c.add("model-param", f"{key}-i32-neg", doc.copy().set(a(key), I32, -1))
        if key in LLAMA_KEYS:
            c.add("model-param", f"{key}-string", doc.copy().set(a(key), STR, "8"))
            c.add("model-param", f"{key}-array-short", doc.copy().set(a(key), ARR, [1], U32))
            c.add("model-param", f"{key}-array-layers-0",
                  doc.copy().set(a(key), ARR, [0] * n_layer, U32))
            c.add("model-param", f"{key}-array-layers-f32",
                  doc.copy().set(a(key), ARR, [1.0] * n_layer, F32))
    for key in ARCH_KEYS_F32:
        for fv in F32_VALUES if key in LLAMA_KEYS else F32_FEW:
            c.add("model-param", f"{key}-{fv}", doc.copy().set(a(key), F32, fv))
        c.add("model-param", f"{key}-u32", doc.copy().set(a(key), U32, 1))
        c.add("model-param", f"{key}-f64", doc.copy().set(a(key), F64, 1e-5))
        c.add("model-param", f"{key}-array", doc.copy().set(a(key), ARR, [1e-5] * n_layer, F32))
    for key in ("context_length", "embedding_length", "block_count",
                "attention.layer_norm_rms_epsilon", "attention.head_count"):
        c.add("model-param", f"{key}-missing", doc.copy().drop(a(key)), "error")
    for sv in ("linear", "yarn", "longrope", "none"):
        c.add("model-param", f"rope.scaling.type-{sv}",
              doc.copy().set(a("rope.scaling.type"), STR, sv))
    for sv in ("dynamic", "", "foo"):
        c.add("model-param", f"rope.scaling.type-{sv or 'empty'}",
              doc.copy().set(a("rope.scaling.type"), STR, sv), "refused")
    # the faults the issue lists, by name
    c.add("model-param", "block_count-0", doc.copy().set(a("block_count"), U32, 0), "refused")
    c.add("model-param", "block_count-100000", doc.copy().set(a("block_count"), U32, 100_000),
          "refused")
    c.add("model-param", "experts-1000-none-used",
          doc.copy().set(a("expert_count"), U32, 1000), "refused")
    c.add("model-param", "rms-eps-nan",
          doc.copy().set(a("attention.layer_norm_rms_epsilon"), F32, math.nan), "refused")
    c.add("model-param", "context_length-4294967295",
          doc.copy().set(a("context_length"), U32, 2**32 - 1), "refused")
    c.add("model-param", "experts-8-used-9", doc.copy().set(a("expert_count"), U32, 8)
          .set(a("expert_used_count"), U32, 9), "refused")
    c.add("model-param", "experts-8-used-2", doc.copy().set(a("expert_count"), U32, 8)
          .set(a("expert_used_count"), U32, 2), "error")
    c.add("model-param", "experts-0-used-2", doc.copy().set(a("expert_used_count"), U32, 2),
          "refused")
    c.add("model-param", "experts-groups", doc.copy().set(a("expert_count"), U32, 8)
          .set(a("expert_used_count"), U32, 2).set(a("expert_group_count"), U32, 3), "refused")
    c.add("model-param", "head_count-per-layer-uniform",
          doc.copy().set(a("attention.head_count"), ARR, [2] * n_layer, U32))
    c.add("model-param", "head_count_kv-per-layer-mixed",
          doc.copy().set(a("attention.head_count_kv"), ARR, [2, 1] + [2] * (n_layer - 2), U32),
          "refused")
    c.add("model-param", "value_length-differs",
          doc.copy().set(a("attention.value_length"), U32, 8), "refused")


def _vocab_cases(c: Corpus, doc: Doc, base: str) -> None:
    tokens = _string_array(doc, "tokenizer.ggml.tokens")
    n_vocab = len(tokens)
    model = doc.get("tokenizer.ggml.model")

    def add(name: str, d: Doc, expect: str = "") -> None:
        c.add("vocab", f"{base}-{name}", d, expect)

    for short in SPECIAL_IDS:
        key = f"tokenizer.ggml.{short}_token_id"
        for v in (n_vocab, 2**31 - 1, 2**32 - 1):
            add(f"{short}-{v}", doc.copy().set(key, U32, v))
        add(f"{short}-i32-neg", doc.copy().set(key, I32, -1), "refused")
        add(f"{short}-missing", doc.copy().drop(key))
    add("bos-gone-add-bos", doc.copy().set("tokenizer.ggml.bos_token_id", U32, 2**32 - 1)
        .set("tokenizer.ggml.add_bos_token", BOOL, True))
    add("eos-gone-add-eos", doc.copy().set("tokenizer.ggml.eos_token_id", U32, 2**32 - 1)
        .set("tokenizer.ggml.add_eos_token", BOOL, True))
    add("tokens-duplicate", doc.copy().set("tokenizer.ggml.tokens", ARR,
                                           [*tokens[:300], tokens[299], *tokens[301:]], STR),
        "refused")
    add("tokens-empty-text", doc.copy().set("tokenizer.ggml.tokens", ARR,
                                            [*tokens[:300], "", *tokens[301:]], STR))
    add("tokens-empty-collides", doc.copy().set(
        "tokenizer.ggml.tokens", ARR, [*tokens[:299], "[EMPTY_300]", "", *tokens[301:]], STR),
        "refused")
    add("tokens-missing", doc.copy().drop("tokenizer.ggml.tokens"), "refused")
    add("tokens-u32", doc.copy().set("tokenizer.ggml.tokens", ARR, list(range(n_vocab)), U32),
        "refused")
    add("tokens-empty", doc.copy().set("tokenizer.ggml.tokens", ARR, [], STR), "refused")
    add("tokens-fewer-than-embd",
        doc.copy().set("tokenizer.ggml.tokens", ARR, tokens[:-10], STR)
        .set("tokenizer.ggml.scores", ARR, [0.0] * (n_vocab - 10), F32)
        .set("tokenizer.ggml.token_type", ARR, [1] * (n_vocab - 10), I32), "error")
    add("scores-short", doc.copy().set("tokenizer.ggml.scores", ARR, [0.0] * 5, F32), "error")
    add("scores-u8", doc.copy().set("tokenizer.ggml.scores", ARR, [0] * n_vocab, U8), "error")
    add("scores-i32", doc.copy().set("tokenizer.ggml.scores", ARR, [0] * n_vocab, I32))
    add("scores-nan", doc.copy().set("tokenizer.ggml.scores", ARR, [math.nan] * n_vocab, F32))
    add("types-short", doc.copy().set("tokenizer.ggml.token_type", ARR, [1] * 5, I32), "error")
    add("types-u32", doc.copy().set("tokenizer.ggml.token_type", ARR, [1] * n_vocab, U32),
        "error")
    for tv in (0, 2, 3, 4, 5, 6, 7, 99, -1):
        add(f"types-all-{tv}",
            doc.copy().set("tokenizer.ggml.token_type", ARR, [tv] * n_vocab, I32))
    for key in ("add_bos_token", "add_eos_token", "add_space_prefix"):
        add(f"{key}-u32", doc.copy().set(f"tokenizer.ggml.{key}", U32, 1), "refused")
    add("chat-template-u32", doc.copy().set("tokenizer.chat_template", U32, 1))
    add("chat-template-array", doc.copy().set("tokenizer.chat_template", ARR, ["{{ x }}"], STR))
    if model == "llama":
        for m in ("foo", "", "none", "no_vocab"):
            add(f"model-{m or 'empty'}", doc.copy().set("tokenizer.ggml.model", STR, m), "refused")
        for m in ("bert", "gpt2", "t5", "rwkv", "plamo2", "gemma4", "test", "whitespace",
                  "hybriddna"):
            add(f"model-{m}", doc.copy().set("tokenizer.ggml.model", STR, m))
        add("model-bert-no-byte-tokens", doc.copy().set("tokenizer.ggml.model", STR, "bert")
            .set("tokenizer.ggml.token_type", ARR, [1] * n_vocab, I32))
        add("model-missing", doc.copy().drop("tokenizer.ggml.model"), "refused")
        add("model-wrong-type", doc.copy().set("tokenizer.ggml.model", U32, 1), "refused")
        no_bytes = [t if not t.startswith("<0x") else f"zz{i}" for i, t in enumerate(tokens)]
        add("tokens-no-byte-tokens", doc.copy().set("tokenizer.ggml.tokens", ARR, no_bytes, STR),
            "refused")
        add("types-byte-short-text", doc.copy().set(
            "tokenizer.ggml.token_type", ARR, [6] * n_vocab, I32), "error")
        add("charsmap-short", doc.copy().set("tokenizer.ggml.model", STR, "t5")
            .set("tokenizer.ggml.precompiled_charsmap", ARR, [1, 2], U8), "error")
        add("charsmap-bad", doc.copy().set("tokenizer.ggml.model", STR, "t5")
            .set("tokenizer.ggml.precompiled_charsmap", ARR, [255, 255, 0, 0, 1, 2, 3, 4], U8),
            "error")
        add("suppress-u8", doc.copy().set("tokenizer.ggml.suppress_tokens", ARR, [1], U8),
            "error")
    else:
        add("merges-missing", doc.copy().drop("tokenizer.ggml.merges"), "error")
        add("merges-u32", doc.copy().set("tokenizer.ggml.merges", ARR, [1, 2], U32), "error")
        add("merges-weird", doc.copy().set("tokenizer.ggml.merges", ARR,
                                           ["", " ", "a", "a b c", "\u0120 \u0120"], STR))
        for pre in ("foo", "llama-bpe", "qwen2", "gemma4", "tekken", "default", ""):
            add(f"pre-{pre or 'empty'}", doc.copy().set("tokenizer.ggml.pre", STR, pre))
        add("pre-llama3-no-bos", doc.copy().set("tokenizer.ggml.pre", STR, "llama-bpe")
            .drop("tokenizer.ggml.bos_token_id").drop("tokenizer.ggml.add_bos_token"))


def _random_cases(c: Corpus, docs: list[Doc], rnd: random.Random, n: int) -> None:
    """Random combinations: an architecture swap, then one to three mutated parameters."""
    keys = [(k, U32) for k in ARCH_KEYS_U32] + [(k, F32) for k in ARCH_KEYS_F32]
    for i in range(n):
        d = rnd.choice(docs).copy()
        if rnd.random() < 0.3:
            d = with_arch(d, rnd.choice(LLAMA_CPP_ARCHS))
        arch = d.get("general.architecture")
        n_layer = d.get(f"{arch}.block_count")
        for _ in range(rnd.randint(1, 3)):
            key, t = rnd.choice(keys)
            if t == U32:
                if rnd.random() < 0.2:
                    d.set(f"{arch}.{key}", ARR,
                          [rnd.choice((0, 1, 2, 4, 32)) for _ in range(n_layer)], U32)
                else:
                    d.set(f"{arch}.{key}", U32, rnd.choice((*U32_VALUES, n_layer, 2, 4, 16, 32)))
            else:
                d.set(f"{arch}.{key}", F32, rnd.choice((*F32_VALUES, 1e-6, 0.5, 2.0, 1e4)))
        c.add("random", f"{i}", d)


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


# llama.cpp's architecture names (src/llama-arch.cpp, LLM_ARCH_NAMES), clip included
LLAMA_CPP_ARCHS = tuple(sorted(ARCHITECTURES))
