"""Regenerate the model that `based --self-test` loads: desktop/assets/selftest/selftest.gguf.

    python tools/make_selftest_model.py [OUT.gguf]

The file is a genuine llama-architecture GGUF that llama.cpp loads like any other model: the real
phi-3 (SentencePiece, 32,064 tokens) tokenizer and chat template copied from llama.cpp's vocab-only
test file, and one transformer block of seeded random weights, quantized the way the models
people download are:

- 256 wide (4 heads of 64), one block, 512-wide feed-forward, 256-token context: wide enough that
  every matrix product goes through llama.cpp's SIMD kernels for the CPU it runs on (a 4-wide
  model never reaches them, so it passed on CPUs whose instructions the build did not support);
- **Q4_K** token embedding (tied to the output projection: llama.cpp falls back to
  ``token_embd.weight`` when ``output.weight`` is absent, so the 32,064-row matrix is stored once)
  and feed-forward weights, **Q8_0** attention weights, F32 norms;
- the embedding rows of control tokens (BOS, EOS, <|end|>, <|user|>, ...) are zero, so their
  logits are exactly 0 while every ordinary token's is random: greedy decoding never picks an
  end-of-generation token, and the self-test always gets the number of tokens it asks for.

About 4.6 MB of the file is the Q4_K embedding, 0.72 MB the tokenizer (token strings, scores and
types) and 0.5 MB the block. Q8_0 comes from gguf's own quantizer; gguf has no Q4_K quantizer, so
:func:`quantize_q4_k` below writes the format (ggml's block_q4_K) with a plain min/max rule.
The output is byte-for-byte reproducible (fixed seed, fixed key order, numpy only).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "tests" / "data" / "vocab" / "ggml-vocab-phi-3.gguf"
DEFAULT_OUT = ROOT / "desktop" / "assets" / "selftest" / "selftest.gguf"

N_EMBD = 256
N_HEAD = 4
N_LAYER = 1
N_FF = 512
N_CTX = 256
SEED = 20240601
TOKEN_TYPE_CONTROL = 3
QK_K = 256  # values per Q4_K super-block (8 sub-blocks of 32)


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """Quantize float rows to ggml's Q4_K blocks: (rows, n) -> uint8 (rows, n / 256 * 144).

    Each super-block of 256 values holds an f16 scale ``d`` and min ``dmin``, eight 6-bit
    sub-block scales and mins (packed in 12 bytes as ``get_scale_min`` in gguf/quants.py unpacks
    them) and 256 4-bit quants; a value decodes as ``d * sc[j] * q - dmin * m[j]``. Sub-block
    scale and min come from the sub-block's range (min clipped at 0, as in ggml). Rows of zeros
    decode to exact zeros. ``n`` must be a multiple of 256."""
    rows, n = x.shape
    if n % QK_K:
        raise ValueError(f"Q4_K rows must be a multiple of {QK_K} wide, not {n}")
    blocks = x.astype(np.float32).reshape(-1, 8, 32)  # (super-blocks, sub-blocks, values)
    lo = np.minimum(blocks.min(axis=-1), 0.0)
    hi = np.maximum(blocks.max(axis=-1), 0.0)
    mins = -lo  # >= 0, subtracted when decoding
    scales = (hi - lo) / 15.0
    d = (scales.max(axis=-1) / 63.0).astype(np.float16)
    dmin = (mins.max(axis=-1) / 63.0).astype(np.float16)
    d32, dmin32 = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d32 > 0, np.rint(scales / d32), 0).clip(0, 63).astype(np.uint8)
        m = np.where(dmin32 > 0, np.rint(mins / dmin32), 0).clip(0, 63).astype(np.uint8)
        step = (d32 * sc)[..., None]
        offset = (dmin32 * m)[..., None]
        q = np.where(step > 0, np.rint((blocks + offset) / step), 0).clip(0, 15).astype(np.uint8)
    packed = np.empty((len(blocks), 12), dtype=np.uint8)
    packed[:, 0:4] = sc[:, 0:4] | (sc[:, 4:8] >> 4) << 6
    packed[:, 4:8] = m[:, 0:4] | (m[:, 4:8] >> 4) << 6
    packed[:, 8:12] = (sc[:, 4:8] & 0x0F) | (m[:, 4:8] & 0x0F) << 4
    # 128 bytes: for each pair of sub-blocks (2j, 2j+1), 32 bytes of low | high nibbles
    qs = (q[:, 0::2, :] | q[:, 1::2, :] << 4).reshape(len(blocks), 128)
    out = np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2),
                          packed, qs], axis=1)
    return out.reshape(rows, -1)


def build(out_path: Path, vocab_path: Path = VOCAB) -> Path:
    import gguf

    from desktop.core.tinymodel import _tokenizer_fields

    fields = _tokenizer_fields(vocab_path)
    values = {k: v for k, v, _, _ in fields}
    n_vocab = len(values["tokenizer.ggml.tokens"])
    token_type = np.asarray(values["tokenizer.ggml.token_type"], dtype=np.int32)
    if "tokenizer.chat_template" not in values:
        raise SystemExit(f"{vocab_path.name} has no chat template; the self-test needs one")

    rng = np.random.default_rng(SEED)
    head_dim = N_EMBD // N_HEAD
    Q4_K, Q8_0 = gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.Q8_0

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def add(name: str, data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> None:
        raw = quantize_q4_k(data) if qtype == Q4_K else gguf.quants.quantize(data, qtype)
        w.add_tensor(name, raw, raw_dtype=qtype)  # shape from the bytes per row

    out_path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out_path), "llama")
    w.add_name("Based self-test (random weights)")
    w.add_string("general.finetune", "Instruct")
    w.add_string("general.size_label", "tiny")
    w.add_string("general.license", "MIT")
    w.add_description(
        "A small random-weight model (Q4_K and Q8_0) with the phi-3 tokenizer and chat template, "
        "made by tools/make_selftest_model.py so that `based --self-test` exercises llama.cpp's "
        "quantized CPU kernels offline."
    )
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q4_K_M))  # mostly Q4_K, some wider (Q8_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value, vtype, sub in fields:
        w.add_key_value(key, value, vtype, sub)

    embd = mat(n_vocab, N_EMBD, 1.0)
    embd[token_type == TOKEN_TYPE_CONTROL] = 0  # control tokens: logit exactly 0, never the argmax
    ones = np.ones(N_EMBD, dtype=np.float32)
    s = N_EMBD**-0.5
    add("token_embd.weight", embd, Q4_K)
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        add(f"blk.{i}.attn_q.weight", mat(N_EMBD, N_EMBD, s), Q8_0)
        add(f"blk.{i}.attn_k.weight", mat(N_EMBD, N_EMBD, s), Q8_0)
        add(f"blk.{i}.attn_v.weight", mat(N_EMBD, N_EMBD, s), Q8_0)
        add(f"blk.{i}.attn_output.weight", mat(N_EMBD, N_EMBD, s), Q8_0)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        add(f"blk.{i}.ffn_gate.weight", mat(N_FF, N_EMBD, s), Q4_K)
        add(f"blk.{i}.ffn_up.weight", mat(N_FF, N_EMBD, s), Q4_K)
        add(f"blk.{i}.ffn_down.weight", mat(N_EMBD, N_FF, N_FF**-0.5), Q4_K)
    w.add_tensor("output_norm.weight", ones * 0.25)  # logits over the tied embedding: standard deviation about 4
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("out", nargs="?", default=str(DEFAULT_OUT))
    a = p.parse_args(argv)
    out = build(Path(a.out))
    data = out.read_bytes()
    print(f"{out.name}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
