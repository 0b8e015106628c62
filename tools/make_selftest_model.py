"""Regenerate the model that `based --self-test` loads: desktop/assets/selftest/selftest.gguf.

    python tools/make_selftest_model.py [OUT.gguf]

The file is a genuine llama-architecture GGUF that llama.cpp loads like any other model: the real
phi-3 (SentencePiece, 32,064 tokens) tokenizer and chat template copied from llama.cpp's vocab-only
test file, and one transformer block of seeded random weights. It is made as small as a working
model with that tokenizer can be:

- width 4, one attention head, one block, 8-wide feed-forward, 256-token context;
- the output projection is tied to the token embedding (llama.cpp falls back to
  ``token_embd.weight`` when ``output.weight`` is absent), so the 32,064-row matrix is stored once;
- the embedding rows of control tokens (BOS, EOS, <|end|>, <|user|>, ...) are zero, so their
  logits are exactly 0 while every ordinary token's is random: greedy decoding never picks an
  end-of-generation token, and the self-test always gets the number of tokens it asks for.

About 0.72 MB of the file is the tokenizer itself (token strings, scores and types); the weights
add about 0.26 MB. The output is byte-for-byte reproducible (fixed seed, fixed key order).
Needs only ``gguf`` and ``numpy``.
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

N_EMBD = 4
N_HEAD = 1
N_LAYER = 1
N_FF = 8
N_CTX = 256
SEED = 20240601
TOKEN_TYPE_CONTROL = 3


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

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float16)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out_path), "llama")
    w.add_name("Based self-test (random weights)")
    w.add_string("general.finetune", "Instruct")
    w.add_string("general.size_label", "tiny")
    w.add_string("general.license", "MIT")
    w.add_description(
        "A tiny random-weight model with the phi-3 tokenizer and chat template, made by "
        "tools/make_selftest_model.py so that `based --self-test` can exercise llama.cpp offline."
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
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value, vtype, sub in fields:
        w.add_key_value(key, value, vtype, sub)

    embd = mat(n_vocab, N_EMBD, 1.0)
    embd[token_type == TOKEN_TYPE_CONTROL] = 0  # control tokens: logit exactly 0, never the argmax
    ones = np.ones(N_EMBD, dtype=np.float32)
    s = N_EMBD**-0.5
    w.add_tensor("token_embd.weight", embd)
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.attn_q.weight", mat(N_EMBD, N_EMBD, s))
        w.add_tensor(f"blk.{i}.attn_k.weight", mat(N_EMBD, N_EMBD, s))
        w.add_tensor(f"blk.{i}.attn_v.weight", mat(N_EMBD, N_EMBD, s))
        w.add_tensor(f"blk.{i}.attn_output.weight", mat(N_EMBD, N_EMBD, s))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(N_FF, N_EMBD, s))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(N_FF, N_EMBD, s))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(N_EMBD, N_FF, N_FF**-0.5))
    w.add_tensor("output_norm.weight", ones * 4.0)  # sharper logits over the tied embedding
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
