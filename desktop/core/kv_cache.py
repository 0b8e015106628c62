"""The engine's prompt cache: which tokens llama.cpp's KV cache holds, and reuse of the longest
common token prefix with the next evaluation.

llama.cpp keeps the keys and values of every evaluated position in the context's memory (the KV
cache; a recurrent state for Mamba/RWKV-style models). The engine decodes everything into
sequence 0 at consecutive positions, so what the memory holds is fully described by one list of
token ids: position ``i`` holds ``tokens[i]``. Before each evaluation the engine asks
:meth:`KVCache.reuse` how many leading tokens it may keep; the rest is removed with
``llama_memory_seq_rm`` (the same mechanism as llama.cpp's own server and ``llama-cli``
prompt reuse), and only the tokens after the kept prefix are evaluated.

Reused positions give the same logits as a run without the cache when they were evaluated as part
of a prompt: the engine evaluates the last prompt token in a batch of its own and cuts batches at
the same absolute positions either way, and :func:`kept_prefix` makes the batch after the kept
prefix run through the same llama.cpp kernels, row for row, as the run without the cache (on
gemma-3-270m Q4_K_M a naive reuse changed logprobs by up to 0.15; these rules make 81 of 81 prompt
pairs bit-identical). Tokens
generated one at a time and reused by a follow-up are the exception: a run without the cache
evaluates them in a batch, and llama.cpp's logits are not bit-for-bit identical across batch sizes
(its server documents the same for ``cache_prompt``), so such a follow-up's logprobs can differ
slightly from a cold run's (up to about 0.1 on the 4-bit models measured; the same tokens there).

Whenever the bookkeeping cannot be trusted (a failed decode, a memory that cannot remove part of
a sequence, a sliding-window cache that no longer holds the window a position needs, a cache
changed behind the engine's back) the memory is cleared in full: correctness never depends on
the cache, only speed does.

No Qt; owned by one :class:`desktop.core.engine.Engine`, used on its thread only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from desktop.core.llama_vocab import _llama
from desktop.core.words import count

SEQ = 0  # the engine's one sequence id

# A kept prefix is cut back to a multiple of this many tokens. llama.cpp's
# CPU kernels for repacked quantized weights (Q4_0, Q4_K, IQ4_NL, ... on x86 and ARM) multiply the
# rows of a batch in groups of 4 counted from the batch start and the leftover rows one by one,
# with slightly different rounding. Starting the evaluated suffix on an aligned position keeps every
# row in the same kind of group as in a run without the cache, so its logits come out identical.
ALIGN = 8
# ... and the first batch evaluated after it holds at least this many tokens (or is a whole batch of
# the run without the cache): llama.cpp picks other kernels for small batches (its tiled K-quant
# matmul takes batches of 8 rows and more, llamafile's sgemm 2 or 4, the repacked kernels 4).
MIN_BATCH = 16


def kept_prefix(shared: int, end: int, n_batch: int) -> int:
    """How many of ``shared`` reusable tokens to keep so that evaluating the rest, up to position
    ``end`` (exclusive), in batches cut at multiples of ``n_batch``, runs through the same llama.cpp
    kernels, row for row, as evaluating everything from position 0 (see :data:`ALIGN`)."""
    n = shared - shared % ALIGN
    while n > 0:
        stop = min((n // n_batch + 1) * n_batch, end)
        if n >= end or n % n_batch == 0 or stop - n >= MIN_BATCH:
            break
        n -= ALIGN
    return max(0, n)


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class KVCache:
    """Bookkeeping of one llama.cpp context's memory (sequence 0).

    ``ctx`` is the ``llama_context`` pointer and ``model`` the ``llama_model`` pointer. With
    ``enabled=False`` every :meth:`reuse` clears the memory, so each evaluation starts from an
    empty cache (the behaviour before the prompt cache existed).
    """

    def __init__(self, ctx: Any, model: Any, enabled: bool = True) -> None:
        lib = _llama()
        self._lib = lib
        self._mem = lib.llama_get_memory(ctx)  # None for models without memory (non-causal)
        try:
            self._n_swa = max(0, int(lib.llama_model_n_swa(model)))
        except Exception:
            self._n_swa = 0
        self.enabled = bool(enabled)
        self._tokens: list[int] = []
        self.clear()

    @property
    def tokens(self) -> tuple[int, ...]:
        """The token ids the memory holds, position by position."""
        return tuple(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def clear(self) -> None:
        """Empty the memory (metadata and data buffers) and the bookkeeping."""
        if self._mem is not None:
            self._lib.llama_memory_clear(self._mem, True)
        self._tokens.clear()

    def _pos_max(self) -> int:
        return int(self._lib.llama_memory_seq_pos_max(self._mem, SEQ))

    def _pos_min(self) -> int:
        return int(self._lib.llama_memory_seq_pos_min(self._mem, SEQ))

    def reuse(self, ids: Sequence[int], limit: int, *, n_batch: int, end: int | None = None) -> int:
        """Prepare the memory for evaluating ``ids`` from position 0; return how many leading
        tokens of ``ids`` are already there and need no evaluation.

        At most ``limit`` tokens are kept (callers pass ``len(ids) - 1`` so the last prompt token
        is always evaluated again and its logits are fresh; scoring passes the first position
        whose logits it needs), and cut back by :func:`kept_prefix` so that the batch evaluated
        next, which ends at ``end`` (default ``limit``; exclusive) and is cut at multiples of
        ``n_batch``, computes its rows as a run without the cache would (except where a memory cannot drop positions and the prefix is
        all it holds). Everything after the kept prefix
        is removed from the memory, so the caller decodes ``ids[n:]`` at positions ``n, n+1,
        ...``. Returns 0 after a full clear:
        when the cache is off, nothing is shared, the memory's last position disagrees with the
        bookkeeping, ``llama_memory_seq_rm`` refuses a partial removal (recurrent and hybrid
        memories), or a sliding-window (SWA) cache no longer holds the window that position
        ``n`` attends to (llama.cpp's server applies the same test).
        """
        if not self.enabled or self._mem is None:
            self.clear()
            return 0
        if self._pos_max() != len(self._tokens) - 1:  # changed behind our back: trust nothing
            self.clear()
            return 0
        shared = min(common_prefix_len(self._tokens, ids), max(0, int(limit)))
        n = kept_prefix(shared, limit if end is None else end, n_batch)
        if n == 0:
            self.clear()
            return 0
        if n < len(self._tokens):
            if not self._lib.llama_memory_seq_rm(self._mem, SEQ, n, -1):
                if shared != len(self._tokens):
                    self.clear()
                    return 0
                n = shared  # a recurrent state still goes on from its very end
            del self._tokens[n:]
        pos_min = self._pos_min()
        if pos_min < 0 or pos_min > max(0, n - max(1, self._n_swa)) or self._pos_max() != n - 1:
            self.clear()
            return 0
        return n

    def check_start(self, start: int) -> None:
        """Raise RuntimeError (after a full clear) unless ``start`` is the next free position;
        the engine calls it before every decode, so it never decodes over or past cached tokens."""
        if start != len(self._tokens):
            n = len(self._tokens)
            self.clear()
            raise RuntimeError(f"asked to decode at position {start} but the KV cache holds {count(n, 'token')}")

    def appended(self, tokens: Sequence[int]) -> None:
        """Record ``tokens`` as decoded at the next positions (call right after a successful
        ``llama_decode``, before anything else can raise)."""
        self._tokens.extend(int(t) for t in tokens)
