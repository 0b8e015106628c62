"""Tokenizer checks before llama.cpp loads a file (``llama_vocab::impl::load`` and the
tokenizers in src/llama-vocab.cpp of the llama.cpp that llama-cpp-python 0.3.36 vendors).

They guard against an assert at load (duplicate token texts, byte tokens in a WordPiece
vocabulary), an assert at tokenize time (no tokenizer; a BOS/EOS the tokenizer must add but the
vocabulary lacks), a C++ exception thrown through ``llama_tokenize``, which ends the process (a
SentencePiece vocabulary without byte tokens), and an endless loop (an RWKV vocabulary without
single-byte tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from desktop.core.errors import GGUFError
from desktop.core.gguf_container import GGUFArray, shown

if TYPE_CHECKING:
    from desktop.core.gguf_checks import ModelMeta

I32, STR = 5, 8
TOKENIZER_MODELS = ("llama", "bert", "gpt2", "hybriddna", "whitespace", "t5", "rwkv", "test",
                    "plamo2", "gemma4")  # llama_vocab::impl::load
NO_VOCAB_MODELS = ("no_vocab", "none")
TOKEN_TYPE_BYTE = 6  # LLAMA_TOKEN_TYPE_BYTE
# bytes that occur in UTF-8 text (Based tokenizes Python strings, so never C0, C1, F5-FF)
_UTF8_BYTES = tuple(b for b in range(256) if b not in (0xC0, 0xC1) and b < 0xF5)
# BPE pre-tokenizers after which llama.cpp adds BOS by default (llama_vocab::impl::load)
_BPE_PRE_ADDS_BOS = frozenset([
    "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
    "jina-v5-nano", "tekken", "chameleon",
])


def check_vocab(m: ModelMeta) -> None:
    """``llama_vocab::impl::load`` and the tokenizers: what aborts, throws through the C API
    (tokenize, token_to_piece) or loops forever (src/llama-vocab.cpp)."""
    model = m.string("tokenizer.ggml.model", "tokenizer type", required=True)
    assert model is not None
    if model in NO_VOCAB_MODELS:
        raise GGUFError(
            f"{m.name} has no tokenizer (its tokenizer type is '{shown(model)}'), so Based cannot "
            "use it. Pick a model file with a tokenizer."
        )
    if model not in TOKENIZER_MODELS:
        raise m.fail(f"its tokenizer type '{shown(model)}' is not one llama.cpp knows")
    m.string("tokenizer.ggml.pre", "pre-tokenizer type")
    tokens_v = m.kv.get("tokenizer.ggml.tokens")
    if not isinstance(tokens_v, GGUFArray) or tokens_v.subtype != STR:
        raise m.fail("it has no token list (tokenizer.ggml.tokens)")
    tokens: list[bytes] = tokens_v.raw or []
    n = len(tokens)
    if n == 0:
        raise m.fail("its vocabulary (tokenizer.ggml.tokens) is empty")
    for key, what in (("tokenizer.ggml.add_bos_token", "add-BOS flag"),
                      ("tokenizer.ggml.add_eos_token", "add-EOS flag"),
                      ("tokenizer.ggml.add_sep_token", "add-separator flag"),
                      ("tokenizer.ggml.add_space_prefix", "add-space-prefix flag"),
                      ("tokenizer.ggml.remove_extra_whitespaces", "whitespace flag")):
        m.boolean(key, what)
    types_v = m.kv.get("tokenizer.ggml.token_type")
    toktypes: Sequence[int] = ()
    if isinstance(types_v, GGUFArray) and types_v.subtype == I32 and types_v.values is not None:
        toktypes = types_v.values

    # every token text must be distinct: GGML_ASSERT(id_to_token.size() == token_to_id.size()),
    # with empty texts renamed "[EMPTY_<id>]" first
    token_set = set(tokens)
    if b"" in token_set or len(token_set) != n:
        seen: set[bytes] = set()
        for i, t in enumerate(tokens):
            t = t or f"[EMPTY_{i}]".encode()
            if t in seen:
                text = shown(t.decode("utf-8", "replace"))
                raise m.fail(f"its vocabulary lists the token '{text}' twice")
            seen.add(t)
    if model == "bert" and any(t == TOKEN_TYPE_BYTE for t in toktypes[:n]):
        raise m.fail("its WordPiece vocabulary has byte tokens, which llama.cpp cannot decode")
    if model == "llama":
        # the SPM tokenizer writes text it cannot split into tokens as byte tokens "<0xXX>" (or
        # the byte itself); a byte with neither throws through llama_tokenize
        # (unordered_map::at in llama_vocab::byte_to_token), which ends the process
        missing = [b for b in _UTF8_BYTES
                   if b"<0x%02X>" % b not in token_set and bytes([b]) not in token_set]
        if missing:
            raise m.fail(
                f"its SentencePiece vocabulary lacks {len(missing)} of the byte tokens, so some "
                "text would crash the tokenizer"
            )
    if model == "rwkv":
        singles = {_rwkv_unescape(t) for t in tokens if len(t) <= 8}
        if any(bytes([b]) not in singles for b in _UTF8_BYTES):
            # llm_tokenizer_rwkv_session::tokenize never gets past such a byte
            raise m.fail("its RWKV vocabulary lacks single-byte tokens, so some text would hang "
                         "the tokenizer")
    _check_special_tokens(m, model, n)


_DEFAULT_SPECIAL = {  # (bos, eos, sep) per tokenizer type before the file's own ids
    "llama": (1, 2, None), "bert": (101, None, 102), "gpt2": (11, 11, None),
    "hybriddna": (11, 11, None), "whitespace": (11, 11, None), "t5": (None, 1, None),
    "rwkv": (None, None, None), "test": (None, None, None), "plamo2": (1, 2, None),
    "gemma4": (None, None, None),
}
_DEFAULT_ADD = {  # (add_bos, add_eos, add_sep)
    "llama": (True, False, False), "bert": (True, False, True), "t5": (False, True, False),
    "rwkv": (False, False, False),
}


def _check_special_tokens(m: ModelMeta, model: str, n: int) -> None:
    """The tokenizer asserts BOS/EOS/SEP exist when it is told to add them (llama_vocab::
    impl::tokenize: GGML_ASSERT(special_bos_id != LLAMA_TOKEN_NULL) and kin)."""
    bos, eos, sep = _DEFAULT_SPECIAL.get(model, (None, None, None))

    def resolve(default: int | None, key: str, what: str) -> int | None:
        if default is not None and default >= n:
            default = None  # "default special token ... out of vocab range, disabling"
        v = m.u32(key, what)
        if v is None or v >= n:
            return default  # "bad special token ... using default id"
        return v

    bos = resolve(bos, "tokenizer.ggml.bos_token_id", "BOS token id")
    eos = resolve(eos, "tokenizer.ggml.eos_token_id", "EOS token id")
    sep = resolve(sep, "tokenizer.ggml.seperator_token_id", "separator token id")
    for key in ("eot", "eom", "unknown", "padding", "cls", "mask", "fim_pre", "fim_suf", "fim_mid",
                "fim_pad", "fim_rep", "fim_sep", "prefix", "suffix", "middle"):
        m.u32(f"tokenizer.ggml.{key}_token_id", f"{key} token id")
    add_bos, add_eos, _add_sep = _DEFAULT_ADD.get(model, (False, False, False))
    v = m.kv.get("tokenizer.ggml.add_eos_token")
    add_eos = v if isinstance(v, bool) else add_eos
    pre = m.kv.get("tokenizer.ggml.pre")
    if model in ("gpt2", "hybriddna", "whitespace") and pre in _BPE_PRE_ADDS_BOS:
        add_bos = True
    v = m.kv.get("tokenizer.ggml.add_bos_token")
    add_bos = v if isinstance(v, bool) else add_bos
    if model == "gemma4" or (model == "gpt2" and pre == "gemma4"):
        add_bos = True  # "override ... to 'true' for Gemma4"
    if model in ("llama", "t5", "gpt2", "hybriddna", "whitespace", "gemma4"):
        if add_bos and bos is None:
            raise m.fail("its tokenizer adds a BOS token but has none")
        if add_eos and eos is None:
            raise m.fail("its tokenizer adds an EOS token but has none")
    if model == "bert" and (bos is None or sep is None):
        raise m.fail("its WordPiece tokenizer lacks the BOS or separator token it adds")


def _rwkv_unescape(text: bytes) -> bytes:
    """llama_unescape_rwkv_token: the bytes an RWKV vocabulary entry stands for."""
    out = bytearray()
    escaping = False
    hex_left = hex_acc = 0
    for c in text:
        if hex_left:
            hex_acc = ((hex_acc << 4) + (c - 87 if c >= 0x61 else c - 48)) & 0xFF
            hex_left -= 1
            if not hex_left:
                out.append(hex_acc)
                hex_acc = 0
        elif escaping:
            if c == 0x78:  # x
                hex_left = 2
            else:
                out.append({0x74: 9, 0x6E: 10, 0x72: 13}.get(c, c))
            escaping = False
        elif c == 0x5C:  # backslash
            escaping = True
        else:
            out.append(c)
    return bytes(out)
