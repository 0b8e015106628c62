"""Tiny models of other llama.cpp architectures for the GGUF fuzz corpus.

``tests/data/gguf_arch_specs.json`` lists, per architecture, the model parameters and tensors
(names and shapes, for n_embd 32, two heads, two layers) with which llama.cpp loads a model and
runs a decode. They were found by trial against llama.cpp itself, not written from memory:
:func:`discover` starts from the tiny llama model with no tensors, loads it in a child process,
and adds what llama.cpp's own error names ("missing tensor 'x'", "tensor 'x' has wrong shape;
expected ...", "key not found in model: k", "key k has wrong type ... expected type t") until
the load and a decode succeed. Regenerate after a llama-cpp-python upgrade:

    python -m tests.gguf_arch_specs ARCH [ARCH ...]
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tests.gguf_corpus import (
    BOOL,
    F32,
    I32,
    KV,
    STR,
    U16,
    U32,
    Doc,
    Tensor,
    parse,
    with_arch,
)

SPECS = Path(__file__).parent / "data" / "gguf_arch_specs.json"

_PROBE = r"""
import ctypes, sys
import llama_cpp
lines = []
@llama_cpp.llama_log_callback
def cb(level, text, user):
    lines.append(text.decode("utf-8", "replace"))
llama_cpp.llama_log_set(cb, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()
m = llama_cpp.llama_model_load_from_file(sys.argv[1].encode(), llama_cpp.llama_model_default_params())
if not m:
    print("FAIL", " || ".join(l.strip() for l in lines if "error" in l.lower())[-600:])
    raise SystemExit(0)
cp = llama_cpp.llama_context_default_params()
cp.n_ctx, cp.n_batch, cp.n_threads, cp.n_threads_batch = 64, 64, 1, 1
ctx = llama_cpp.llama_init_from_model(m, cp)
if not ctx:
    print("FAIL context", " || ".join(l.strip() for l in lines if "error" in l.lower())[-600:])
    raise SystemExit(0)
toks = (llama_cpp.llama_token * 16)()
n = llama_cpp.llama_tokenize(llama_cpp.llama_model_get_vocab(m), b"Hello world", 11, toks, 16,
                             True, True)
print("OK", llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(toks, n)))
"""
_TYPES = {"u32": U32, "f32": F32, "bool": BOOL, "str": STR, "i32": I32, "u16": U16}


def tensor_bytes(name: str, dims: tuple[int, ...], rng: np.random.Generator) -> tuple[int, bytes]:
    """(ggml type, data) for a tensor: 1-D tensors in F32 (norm weights 1), the rest F16."""
    n = math.prod(dims)
    if len(dims) <= 1:
        v = np.ones(n, np.float32) if "norm" in name else rng.standard_normal(n) * 0.05
        return 0, np.asarray(v, np.float32).tobytes()
    return 1, (rng.standard_normal(n) * 0.05).astype(np.float16).tobytes()


def build(arch: str, base: Doc, spec: dict[str, Any], seed: int = 0) -> Doc:
    """The llama base model's tokenizer with ``arch``'s parameters and tensors from ``spec``."""
    rng = np.random.default_rng(seed)
    d = with_arch(base, arch)
    d.kvs = [kv for kv in d.kvs if kv.key.startswith(b"tokenizer.")]
    d.set("general.architecture", STR, arch)
    for key, vtype, value in spec["keys"]:
        d.set(key.replace("{arch}", arch), _TYPES[vtype], value)
    n_layer = d.get(f"{arch}.block_count")
    names = [(n, tuple(s)) for n, s in spec["tensors"]]
    for n, s in spec["layer_tensors"]:
        names += [(n.replace("{i}", str(i)), tuple(s)) for i in range(n_layer)]
    d.tensors = []
    for name, dims in names:
        ttype, raw = tensor_bytes(name, dims, rng)
        d.tensors.append(Tensor(name.encode(), dims, ttype, raw))
    return d


def load_specs() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(SPECS.read_text())
    return data


def _probe(path: Path) -> str:
    r = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, GGML_NO_BACKTRACE="1"))
    return r.stdout.strip() or f"DIED {r.returncode}"


def discover(arch: str, base: Doc, seed_tensors: tuple[str, ...] = ()) -> dict[str, Any]:
    """Find by trial the keys and tensors llama.cpp wants for ``arch`` (see the module text)."""
    rng = np.random.default_rng(0)
    d = with_arch(base, arch)
    keys: dict[str, tuple[str, Any]] = {}
    shapes: dict[str, list[int]] = {n: [32] for n in seed_tensors}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{arch}.gguf"
        for _ in range(400):
            d.tensors = []
            for name, dims in shapes.items():
                ttype, raw = tensor_bytes(name, tuple(dims), rng)
                d.tensors.append(Tensor(name.encode(), tuple(dims), ttype, raw))
            path.write_bytes(d.to_bytes())
            res = _probe(path)
            if res.startswith("OK"):
                break
            if m := re.search(r"key not found in model: (\S+)", res):
                keys[m.group(1)] = ("u32", 2 if "count" in m.group(1) else 16)
            elif m := re.search(r"key (\S+) has wrong type \S+ but expected type (\S+)", res):
                value = {"f32": 1e-5 if "eps" in m.group(1) else 1.0, "bool": True,
                         "str": "none", "i32": 1, "u16": 1}[m.group(2)]
                keys[m.group(1)] = (m.group(2), value)
            elif m := re.search(r"tensor '([^']+)' has wrong shape; expected ([\d, ]+), got", res):
                dims = [int(x) for x in m.group(2).split(",") if x.strip()]
                while len(dims) > 1 and dims[-1] == 1:
                    dims.pop()
                shapes[m.group(1)] = dims
            elif m := re.search(r"(?:missing tensor|tensor) '([^']+)'(?: not found)?", res):
                shapes[m.group(1)] = [32]
            else:
                raise RuntimeError(f"{arch}: cannot go on from: {res[:300]}")
            for key, (vtype, value) in keys.items():
                d.set(key, _TYPES[vtype], value)
        else:
            raise RuntimeError(f"{arch}: no loadable model after 400 tries")
    own = [(k.replace(f"{arch}.", "{arch}.", 1), *_typed(kv)) for k, kv in
           ((kv.key.decode(), kv) for kv in d.kvs) if not k.startswith("tokenizer.")
           and k not in ("general.architecture",)]
    per_layer = [(n.replace("blk.0.", "blk.{i}."), s) for n, s in shapes.items()
                 if n.startswith("blk.0.")]
    glob = [(n, s) for n, s in shapes.items() if not n.startswith("blk.")]
    return {"keys": own, "tensors": glob, "layer_tensors": per_layer}


def _typed(kv: KV) -> tuple[str, Any]:
    name = {v: k for k, v in _TYPES.items()}[kv.vtype]
    if kv.vtype == STR:
        (n,) = struct.unpack_from("<Q", kv.payload)
        return name, kv.payload[8 : 8 + n].decode()
    fmt = {U32: "<I", F32: "<f", BOOL: "<?", I32: "<i", U16: "<H"}[kv.vtype]
    return name, struct.unpack_from(fmt, kv.payload)[0]


def main(argv: list[str]) -> int:
    from desktop.core.tinymodel import build_tiny_model, vocab_file
    from tests.gguf_corpus import tiny_vocab_file

    with tempfile.TemporaryDirectory() as tmp:
        v = tiny_vocab_file(Path(tmp) / "v.gguf", vocab_file("llama-spm"), 400)
        base = parse(build_tiny_model(Path(tmp) / "b.gguf", vocab_path=v, n_layer=2, n_embd=32,
                                      n_head=2, n_ff=32, chat_template=None))
    specs = load_specs() if SPECS.exists() else {}
    for arch in argv:
        seed = ("blk.0.attn_qkv.weight", "blk.1.attn_qkv.weight") if arch == "phi3" else ()
        specs[arch] = discover(arch, base, seed)
        print(arch, len(specs[arch]["tensors"]) + 2 * len(specs[arch]["layer_tensors"]), "tensors")
    SPECS.write_text(json.dumps(specs, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
