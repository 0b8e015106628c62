"""Tiny, real GGUF models for tests, demos and the bundle's self-test.

A tiny model is a genuine llama-architecture GGUF with random (seeded) weights and a *real*
tokenizer and chat template copied from one of llama.cpp's vocab-only test files. llama.cpp loads
it like any other model, so loading, tokenizing, streaming, cancelling and scoring all run for real
in milliseconds. Its answers are gibberish, which is fine for exercising the machinery.

    python -m desktop.core.tinymodel OUT.gguf --vocab phi-3
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_UNSET: Any = object()

VOCABS = ("phi-3", "qwen2", "llama-spm", "llama-bpe")


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def vocab_file(vocab: str) -> Path:
    """Path of llama.cpp's vocab-only GGUF for ``vocab`` in the source tree's tests/data."""
    p = _repo_root() / "tests" / "data" / "vocab" / f"ggml-vocab-{vocab}.gguf"
    if not p.is_file():
        raise FileNotFoundError(f"no vocab file for {vocab!r} (looked for {p.name})")
    return p


def _tokenizer_fields(vocab_path: Path) -> list[tuple[str, Any, Any, Any]]:
    import gguf

    reader = gguf.GGUFReader(str(vocab_path))
    out: list[tuple[str, Any, Any, Any]] = []
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        types = field.types
        vtype = types[0]
        sub = types[1] if vtype == gguf.GGUFValueType.ARRAY and len(types) > 1 else None
        out.append((key, field.contents(), vtype, sub))
    return out


def build_tiny_model(
    out_path: str | Path,
    *,
    vocab: str = "phi-3",
    vocab_path: str | Path | None = None,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int | None = None,
    n_ff: int = 128,
    n_ctx: int = 2048,
    seed: int = 0,
    chat_template: Any = _UNSET,
    ftype: str = "f16",
    name: str = "Tiny",
    finetune: str = "",
    size_label: str | None = None,
    extra_kv: Mapping[str, Any] | None = None,
    weight_scale: float = 1.0,
    split_max_tensors: int = 0,
) -> Path:
    """Write a tiny llama-architecture GGUF and return its path.

    ``chat_template``: leave unset to keep the vocab file's own template, ``None`` to write no
    template (a base model), or a string to use instead. ``split_max_tensors`` > 0 writes a split
    model with gguf's own writer (at most that many tensors per part, named
    ``<stem>-00001-of-0000N.gguf`` like llama.cpp's gguf-split) and returns part 1's path.
    """
    import gguf

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    vpath = Path(vocab_path) if vocab_path is not None else vocab_file(vocab)
    fields = _tokenizer_fields(vpath)
    tokens = next(v for k, v, _, _ in fields if k == "tokenizer.ggml.tokens")
    n_vocab = len(tokens)
    n_head_kv = n_head_kv or n_head
    head_dim = n_embd // n_head
    rng = np.random.default_rng(seed)

    qtype = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[ftype]
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[
        ftype
    ]

    w = gguf.GGUFWriter(str(out), "llama", split_max_tensors=split_max_tensors)
    w.add_name(name)
    if finetune:
        w.add_string("general.finetune", finetune)
    w.add_string("general.license", "MIT")
    w.add_string("general.size_label", size_label or "tiny")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(int(file_type))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    for key, value, vtype, sub in fields:
        if key == "tokenizer.chat_template" and chat_template is not _UNSET:
            continue
        w.add_key_value(key, value, vtype, sub)
    if chat_template is not _UNSET and chat_template is not None:
        w.add_string("tokenizer.chat_template", str(chat_template))
    for key, value in (extra_kv or {}).items():
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_string(key, str(value))

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        a = rng.standard_normal((rows, cols)).astype(np.float32) * scale * weight_scale
        if qtype == gguf.GGMLQuantizationType.F16:
            return a.astype(np.float16)
        return a

    def add(name_: str, arr: np.ndarray) -> None:
        if arr.ndim == 1 or qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name_, arr)
        else:
            q = gguf.quants.quantize(arr, qtype)
            w.add_tensor(name_, q, raw_shape=q.shape, raw_dtype=qtype)

    ones = np.ones(n_embd, dtype=np.float32)
    add("token_embd.weight", mat(n_vocab, n_embd, 1.0))
    for i in range(n_layer):
        add(f"blk.{i}.attn_norm.weight", ones)
        add(f"blk.{i}.attn_q.weight", mat(n_embd, n_embd, n_embd**-0.5))
        add(f"blk.{i}.attn_k.weight", mat(n_head_kv * head_dim, n_embd, n_embd**-0.5))
        add(f"blk.{i}.attn_v.weight", mat(n_head_kv * head_dim, n_embd, n_embd**-0.5))
        add(f"blk.{i}.attn_output.weight", mat(n_embd, n_embd, n_embd**-0.5))
        add(f"blk.{i}.ffn_norm.weight", ones)
        add(f"blk.{i}.ffn_gate.weight", mat(n_ff, n_embd, n_embd**-0.5))
        add(f"blk.{i}.ffn_up.weight", mat(n_ff, n_embd, n_embd**-0.5))
        add(f"blk.{i}.ffn_down.weight", mat(n_embd, n_ff, n_ff**-0.5))
    add("output_norm.weight", ones)
    add("output.weight", mat(n_vocab, n_embd, 3.0 * n_embd**-0.5))

    parts = w.format_shard_names(out)  # [out] when nothing is split
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return parts[0]


def build_tiny_mamba(
    out_path: str | Path,
    *,
    vocab: str = "phi-3",
    n_layer: int = 2,
    n_embd: int = 64,
    d_state: int = 16,
    d_conv: int = 4,
    n_ctx: int = 2048,
    seed: int = 0,
    name: str = "Tiny Mamba",
) -> Path:
    """Write a tiny Mamba (state-space, recurrent) GGUF with a real tokenizer and return its path.

    llama.cpp keeps such a model's past in a recurrent state, not a KV cache: it cannot drop the
    last positions of a sequence, which the engine's prompt cache must notice (tests use it)."""
    import gguf

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = _tokenizer_fields(vocab_file(vocab))
    tokens = next(v for k, v, _, _ in fields if k == "tokenizer.ggml.tokens")
    n_vocab = len(tokens)
    d_inner = 2 * n_embd  # llama.cpp supports only an expansion factor of 2
    dt_rank = max(1, n_embd // 16)
    rng = np.random.default_rng(seed)

    w = gguf.GGUFWriter(str(out), "mamba")
    w.add_name(name)
    w.add_string("general.license", "MIT")
    w.add_string("general.size_label", "tiny")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(dt_rank)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value, vtype, sub in fields:
        if key != "tokenizer.chat_template":
            w.add_key_value(key, value, vtype, sub)

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd, 1.0))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ssm_in.weight", mat(2 * d_inner, n_embd, n_embd**-0.5))
        w.add_tensor(f"blk.{i}.ssm_conv1d.weight", mat(d_inner, d_conv, d_conv**-0.5))
        w.add_tensor(f"blk.{i}.ssm_conv1d.bias", np.zeros(d_inner, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ssm_x.weight", mat(dt_rank + 2 * d_state, d_inner, d_inner**-0.5))
        w.add_tensor(f"blk.{i}.ssm_dt.weight", mat(d_inner, dt_rank, dt_rank**-0.5))
        w.add_tensor(f"blk.{i}.ssm_dt.bias", np.full(d_inner, -2.0, dtype=np.float32))
        a = -np.tile(np.arange(1, d_state + 1, dtype=np.float32), (d_inner, 1))  # A = -exp(A_log)
        w.add_tensor(f"blk.{i}.ssm_a", a)
        w.add_tensor(f"blk.{i}.ssm_d", np.ones(d_inner, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ssm_out.weight", mat(n_embd, d_inner, d_inner**-0.5))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("output.weight", mat(n_vocab, n_embd, 3.0 * n_embd**-0.5))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Write a tiny random-weight GGUF with a real tokenizer."
    )
    p.add_argument("out")
    p.add_argument("--vocab", default="phi-3", choices=VOCABS)
    p.add_argument("--vocab-path", default=None)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embd", type=int, default=64)
    p.add_argument("--ftype", default="f16", choices=["f16", "q8_0"])
    p.add_argument("--name", default="Tiny")
    p.add_argument("--no-template", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    kw: dict[str, Any] = {}
    if a.no_template:
        kw["chat_template"] = None
    path = build_tiny_model(
        a.out,
        vocab=a.vocab,
        vocab_path=a.vocab_path,
        n_layer=a.layers,
        n_embd=a.embd,
        ftype=a.ftype,
        name=a.name,
        seed=a.seed,
        **kw,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
