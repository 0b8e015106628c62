"""Scoring a continuation under a model: the log-probability and rank of each token given
everything before it (the token-shift view's base-model pass, Lin et al., ICLR 2024).

:func:`score` evaluates the continuation in one batched pass and reads the logits of every row
it needs; :func:`score_stepwise` is its reference, one token at a time. Both run on an
:class:`~desktop.core.engine.Engine` from the thread that owns it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from desktop.core.errors import ContextOverflowError
from desktop.core.llama_vocab import (
    MAX_TOP_K,
    _llama,
    _log_softmax,
    _top_alts,
    _top_indices,
    release_compute_threads,
)
from desktop.core.types import ScoredToken, TopAlt
from desktop.core.words import count

if TYPE_CHECKING:
    from desktop.core.engine import Engine


def score(
    engine: Engine,
    prompt_tokens: Sequence[int],
    continuation: Sequence[int],
    top_k: int = 5,
    cancel: threading.Event | None = None,
) -> list[ScoredToken]:
    """Log-probability and rank of each continuation token given everything before it,
    computed in one batched evaluation (chunked only by llama.cpp's batch size).

    Prompt positions already in the KV cache are not evaluated again (the prompt cache, see
    kv_cache.py; ``last_score_cached_tokens`` says how many); afterwards the cache holds the
    prompt and all but the last continuation token."""
    prompt = [int(t) for t in prompt_tokens]
    cont = [int(t) for t in continuation]
    if not cont:
        return []
    if not prompt:
        raise ValueError("score() needs at least one prompt token")
    total = len(prompt) + len(cont) - 1
    if total > engine.n_ctx:
        raise ContextOverflowError(
            f"Scoring needs {count(total, 'token')} but this model's context holds {engine.n_ctx:,}. "
            "Use a shorter answer or a larger context."
        )
    seq = prompt + cont[:-1]
    first = len(prompt) - 1  # logits at this position predict cont[0]
    k = max(0, min(MAX_TOP_K, int(top_k)))
    out: list[ScoredToken] = []

    def read(positions: list[int]) -> None:
        if not positions:
            return
        # all requested rows of this chunk at once, in batch order
        ptr = _llama().llama_get_logits(engine._ctx.ctx)
        mat = np.ctypeslib.as_array(ptr, shape=(len(positions), engine.vocab.n_vocab))
        js = np.asarray(positions) - first
        toks = np.asarray([cont[j] for j in js])
        vals = mat[np.arange(len(js)), toks]
        maxes = mat.max(axis=1)
        # log-sum-exp in a reused float32 scratch (no temporaries of the vocabulary's size)
        scratch = engine.score_scratch(mat.shape)
        np.subtract(mat, maxes[:, None], out=scratch)
        np.exp(scratch, out=scratch)
        lses = maxes.astype(np.float64) + np.log(scratch.sum(axis=1, dtype=np.float64))
        ranks = 1 + np.count_nonzero(mat > vals[:, None], axis=1)
        for r, j in enumerate(js):
            row = mat[r]
            lse = float(lses[r])
            alts = tuple(
                TopAlt(int(i), engine.vocab.piece(int(i)), float(row[i]) - lse)
                for i in (_top_indices(row, k, float(maxes[r])) if k else ())
            )
            tok = int(toks[r])
            out.append(
                ScoredToken(int(j), tok, engine.vocab.piece(tok), float(vals[r]) - lse,
                            int(ranks[r]), alts)
            )

    try:
        # positions before ``first`` need no logits, so those already cached are kept
        cached = engine._kv.reuse(seq, first, n_batch=engine._n_batch, end=len(seq))
        engine.last_score_cached_tokens = cached
        engine._decode_chunks(seq[cached:], cached, lambda pos: pos >= first, on_chunk=read,
                            cancel=cancel)
    finally:
        release_compute_threads()
    return out


def score_stepwise(
    engine: Engine, prompt_tokens: Sequence[int], continuation: Sequence[int], top_k: int = 5
) -> list[ScoredToken]:
    """Reference implementation of :meth:`score`: one token at a time (for tests/bench)."""
    prompt = [int(t) for t in prompt_tokens]
    cont = [int(t) for t in continuation]
    k = max(0, min(MAX_TOP_K, int(top_k)))
    out: list[ScoredToken] = []
    engine._reset_kv()
    last = len(prompt) - 1
    engine._decode_chunks(prompt, 0, lambda pos: pos == last)
    n_past = len(prompt)
    for j, tok in enumerate(cont):
        row = engine._logits_row(-1)
        _, lse = _log_softmax(row)
        val = row[tok]
        rank = 1 + int(np.count_nonzero(row > val))
        out.append(
            ScoredToken(
                j,
                tok,
                engine.vocab.piece(tok),
                float(val) - lse,
                rank,
                _top_alts(row, lse, k, engine.vocab),
            )
        )
        if j + 1 < len(cont):
            engine._decode_chunks([tok], n_past, lambda _pos: True)
            n_past += 1
    engine._reset_kv()
    return out
