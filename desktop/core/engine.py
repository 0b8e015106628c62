"""Generation engine over llama-cpp-python.

The engine drives llama.cpp's decode loop itself (batch -> decode -> sample -> repeat) instead of
``create_completion(stream=True)``, which re-detokenizes the whole completion on every token.
Top-k alternatives and log-probabilities are read from the last logits row only, so nothing of
size n_ctx x n_vocab is ever allocated. Text is decoded incrementally as UTF-8.

An :class:`Engine` is not thread-safe: exactly one thread creates, uses and closes it.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from desktop.core.engine_gpu import load_model, release
from desktop.core.engine_parts import LoadCancelled, _load_progress, _stop_hold  # noqa: F401
from desktop.core.errors import ContextOverflowError, ModelLoadError, failure_sentence
from desktop.core.kv_cache import KVCache
from desktop.core.llama_vocab import (  # noqa: F401  (re-exported: the engine's public helpers)
    LOAD_SETTINGS,
    MAX_TOP_K,
    _llama,
    _log_softmax,
    _top_alts,
    _top_indices,
    _Vocab,
    cpu_backend_name,
    default_threads,
    gpu_backend_available,
    release_compute_threads,
    tokenize_file,
    tokenizer_facts,
)
from desktop.core.sampling import (
    context_rounding_note,
    fit_context,
    validate_load,
    validate_sampling,
)
from desktop.core.tokenization import (
    TokenizerFacts,
    display_piece,
    prompt_token_infos,
    tokenize_prompt,
)
from desktop.core.types import (
    GenerationRequest,
    GenerationResult,
    GenerationStats,
    LoadedModelInfo,
    LoadOptions,
    SamplingParams,
    ScoredToken,
    StopReason,
    StreamToken,
    TokenInfo,
)
from desktop.core.words import count


class Engine:
    """One loaded model. Create, use and close it on a single thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: LoadOptions | None = None,
        progress: Callable[[float], bool | None] | None = None,
    ) -> None:
        from desktop.core.gguf_info import validate_gguf

        opts = options or LoadOptions()
        validate_load(opts)  # checked on construction too; nothing bad reaches llama.cpp
        self.path = str(path)
        self.gguf = validate_gguf(self.path)
        if self.gguf.vocab_only:
            raise ModelLoadError(
                f"{Path(self.path).name} holds only a tokenizer, no weights, so it cannot generate text. "
                "Pick a full model file."
            )
        lib = _llama()
        n_threads = opts.n_threads or default_threads()
        n_ctx, ctx_note = fit_context(opts.n_ctx, self.gguf.context_length)
        notes: list[str] = [ctx_note] if ctx_note else []
        t0 = time.perf_counter()
        self._reservation = None
        try:
            # where the layers go (Auto, CPU only, a count), the GPU test run, the CPU when the
            # GPU cannot take the model: desktop.core.engine_gpu
            self._llm, self.plan, gpu_notes, self._reservation = load_model(
                lib, self.path, opts, n_ctx=n_ctx, n_batch=min(512, n_ctx), n_threads=n_threads,
                progress=progress)
            notes.extend(gpu_notes)
        except LoadCancelled:
            raise
        except Exception as exc:  # llama.cpp reports failures as ValueError/RuntimeError
            raise ModelLoadError(
                f"llama.cpp could not load {Path(self.path).name}. The file may be damaged "
                "or use an architecture this version does not support; try another file."
            ) from exc
        if progress is not None:
            try:
                progress(1.0)
            except Exception:
                pass
        release_compute_threads()  # in case loading ran parallel work on this thread
        self._ctx = self._llm._ctx
        self._model = self._llm._model
        n_vocab = int(lib.llama_vocab_n_tokens(self._model.vocab))
        self.vocab = _Vocab(self._model.vocab, n_vocab)
        self._n_batch = int(self._llm.n_batch)
        self._row_type = ctypes.c_float * n_vocab
        self._scratch = np.empty(n_vocab, dtype=np.float32)
        self._scratch2d: np.ndarray | None = None  # score()'s buffer, made on first use
        self._batch = lib.llama_batch_init(self._n_batch, 0, 1)
        self._kv = KVCache(self._ctx.ctx, self._model.model, enabled=opts.prompt_cache)
        self._closed = False
        self.last_stats = GenerationStats()
        self.last_score_cached_tokens = 0  # tokens score() last reused from the KV cache
        made = int(self._llm.n_ctx())
        rounding = context_rounding_note(n_ctx, made)
        if rounding:
            notes.append(rounding)
        self.info = LoadedModelInfo(
            path=self.path,
            n_ctx=made,
            n_ctx_train=int(self._model.n_ctx_train()),
            n_vocab=n_vocab,
            n_threads=n_threads,
            gpu_requested=opts.n_gpu_layers != 0,
            gpu_used=self.plan.on_gpu,
            backend=self.plan.devices[0].backend if self.plan.on_gpu else cpu_backend_name(),
            load_s=time.perf_counter() - t0,
            note=" ".join(notes),
            gpu_layers=self.plan.gpu_layers,
            n_layer=int(lib.llama_model_n_layer(self._model.model)),
            gpu_device=self.plan.device_label if self.plan.on_gpu else "",
            cpu=cpu_backend_name(),
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        release(self._reservation)
        self._reservation = None
        try:
            _llama().llama_batch_free(self._batch)
        except Exception:
            pass
        try:
            self._llm.close()
        except Exception:
            pass

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- tokens --------------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self.info.n_ctx

    @property
    def facts(self) -> TokenizerFacts:
        """llama.cpp's decisions about this model's tokenizer (add BOS/EOS, control tokens)."""
        return self.vocab.facts

    def tokenize_ids(
        self,
        text: str,
        add_bos: bool,
        *,
        add_eos: bool = False,
        literal_spans: Sequence[tuple[int, int]] = (),
        parse_special: bool = False,
    ) -> list[int]:
        """Token ids of ``text`` (:func:`desktop.core.tokenization.tokenize_prompt`): by default
        all of it is text; ``parse_special=True`` turns control-token texts outside
        ``literal_spans`` into control tokens."""
        return tokenize_prompt(self.vocab, text, add_bos=add_bos, add_eos=add_eos,
                               literal_spans=literal_spans, parse_special=parse_special)

    def tokenize(
        self,
        text: str,
        add_bos: bool,
        *,
        add_eos: bool = False,
        literal_spans: Sequence[tuple[int, int]] = (),
        parse_special: bool = False,
    ) -> list[TokenInfo]:
        """:meth:`tokenize_ids` with display pieces and "typed as text" marks."""
        return prompt_token_infos(self.vocab, text, add_bos=add_bos, add_eos=add_eos,
                                  literal_spans=literal_spans, parse_special=parse_special)

    def detokenize(self, ids: Sequence[int]) -> str:
        return b"".join(self.vocab.piece_bytes(int(t)) for t in ids).decode("utf-8", "replace")

    # -- KV cache (prompt cache) ----------------------------------------------------------------

    @property
    def prompt_cache(self) -> bool:
        """Whether generation and scoring reuse the KV cache's common prefix (see kv_cache.py).
        Setting it to False also empties the cache; set from LoadOptions.prompt_cache."""
        return self._kv.enabled

    @prompt_cache.setter
    def prompt_cache(self, on: bool) -> None:
        self._kv.enabled = bool(on)
        if not on:
            self._reset_kv()

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """Token ids the KV cache holds now, position by position: after a generation, the
        prompt and every generated token but the last; after score(), the prompt and all but the
        last continuation token."""
        return self._kv.tokens

    def clear_kv_cache(self) -> None:
        """Empty the KV cache; the next call evaluates its whole prompt."""
        self._reset_kv()

    # -- low-level decode ----------------------------------------------------------------------

    def _decode_chunks(
        self,
        tokens: Sequence[int],
        start_pos: int,
        want_logits: Callable[[int], bool],
        on_chunk: Callable[[list[int]], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> bool:
        """Decode tokens in n_batch chunks. ``want_logits(abs_pos)`` selects output rows;
        ``on_chunk(row_positions)`` is called after each chunk with the absolute positions whose
        logits are available at batch rows 0..len-1 (via llama_get_logits_ith(i)).
        Returns False when cancelled. ``start_pos`` must be the number of tokens in the KV cache;
        every decoded chunk is recorded there, and a failed decode empties the cache."""
        lib = _llama()
        b = self._batch
        n = len(tokens)
        i = 0
        while i < n:
            if cancel is not None and cancel.is_set():
                return False
            # chunks end on multiples of n_batch counted from position 0, so a suffix evaluated
            # after a cached prefix is cut where a run without the cache cuts it
            chunk = tokens[i : i + self._n_batch - (start_pos + i) % self._n_batch]
            self._kv.check_start(start_pos + i)
            outputs: list[int] = []
            b.n_tokens = len(chunk)
            for j, tok in enumerate(chunk):
                pos = start_pos + i + j
                b.token[j] = int(tok)
                b.pos[j] = pos
                b.n_seq_id[j] = 1
                b.seq_id[j][0] = 0
                want = bool(want_logits(pos))
                b.logits[j] = want
                if want:
                    outputs.append(j)
            rc = lib.llama_decode(self._ctx.ctx, b)
            if rc != 0:
                self._kv.clear()  # llama.cpp keeps an unknown part of a failed batch
                raise RuntimeError(f"llama_decode returned {rc}")
            self._kv.appended(chunk)
            if on_chunk is not None:
                # the callback reads rows via _logits_row(batch index in self._last_outputs)
                self._last_outputs = outputs
                on_chunk([start_pos + i + j for j in outputs])
            i += len(chunk)
        return True

    def _logits_row(self, batch_index: int) -> np.ndarray:
        ptr = _llama().llama_get_logits_ith(self._ctx.ctx, batch_index)
        addr = int(ctypes.cast(ptr, ctypes.c_void_p).value or 0)
        return np.frombuffer(memoryview(self._row_type.from_address(addr)), dtype=np.float32)

    def _reset_kv(self) -> None:
        self._kv.clear()
        self._llm.n_tokens = 0

    # -- sampling ------------------------------------------------------------------------------

    def _make_sampler(self, p: SamplingParams) -> Any:
        from llama_cpp import _internals as internals

        s = internals.LlamaSampler()
        if p.repeat_penalty and p.repeat_penalty != 1.0:
            s.add_penalties(self.vocab.n_vocab, 64, float(p.repeat_penalty), 0.0, 0.0)
        if p.temperature <= 0.0:
            s.add_greedy()
            return s
        if p.top_k and p.top_k > 0:
            s.add_top_k(int(p.top_k))
        if p.top_p < 1.0:
            s.add_top_p(float(p.top_p), 1)
        if p.min_p > 0.0:
            s.add_min_p(float(p.min_p), 1)
        s.add_temp(float(p.temperature))
        s.add_dist(int(p.seed) & 0xFFFFFFFF)
        return s

    # -- generation ----------------------------------------------------------------------------

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The ids the model reads for ``request`` (its control tokens and literal spans)."""
        return self.tokenize_ids(request.prompt, request.add_bos, add_eos=request.add_eos,
                                 literal_spans=request.literal_spans,
                                 parse_special=request.parse_special)

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[StreamToken]:
        """Yield generated tokens as they are made; stats land in ``self.last_stats``.

        Only the prompt tokens after the longest common prefix with the KV cache are evaluated
        (``last_stats.cached_tokens`` were reused; see kv_cache.py)."""
        cancel = cancel or threading.Event()
        p = request.params
        validate_sampling(p)  # checked on construction too; nothing bad reaches llama.cpp
        t_start = time.perf_counter()
        ids = self.prompt_ids(request)
        n_ctx = self.n_ctx
        if len(ids) >= n_ctx:
            self.last_stats = GenerationStats(
                prompt_tokens=len(ids), stop_reason=StopReason.ERROR, error="prompt too long"
            )
            raise ContextOverflowError(
                f"The prompt is {count(len(ids), 'token')} but this model's context holds {n_ctx:,}. "
                "Shorten the prompt or raise the context size."
            )
        if not ids:
            ids = [self._model.token_bos()] if self._model.token_bos() >= 0 else [0]
        k = max(0, min(MAX_TOP_K, int(p.top_logprobs)))
        stops = tuple(s for s in p.stop if s)
        sampler = self._make_sampler(p)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        generated = 0
        ttft = 0.0
        prompt_eval_s = 0.0
        reason = StopReason.LENGTH
        error: str | None = None
        pending = ""  # decoded text held back because it could start a stop string
        t_first = 0.0
        cached = 0
        try:
            last = len(ids) - 1
            # reuse the cached prefix; the last prompt token is always evaluated again, for its
            # logits, in a batch of its own like every generated token, cached prefix or not:
            # llama.cpp's logits depend on the batch size (its kernels differ), and this way a
            # cold run and a warm one compute them the same way (see kv_cache.py)
            cached = self._kv.reuse(ids, last, n_batch=self._n_batch)
            ok = self._decode_chunks(ids[cached:last], cached, lambda _pos: False, cancel=cancel)
            ok = ok and self._decode_chunks(ids[last:], last, lambda _pos: True, cancel=cancel)
            prompt_eval_s = time.perf_counter() - t_start
            if not ok:
                reason = StopReason.CANCELLED
                return
            n_past = len(ids)
            for index in range(max(0, int(p.max_tokens))):
                if cancel.is_set():
                    reason = StopReason.CANCELLED
                    break
                row = self._logits_row(-1)
                tok = int(sampler.sample(self._ctx, -1))
                m = float(row.max())
                np.subtract(row, m, out=self._scratch)
                np.exp(self._scratch, out=self._scratch)
                lse = m + float(np.log(self._scratch.sum()))
                logprob = float(row[tok]) - lse
                top = _top_alts(row, lse, k, self.vocab)
                if generated == 0:
                    t_first = time.perf_counter()
                    ttft = t_first - t_start
                generated += 1
                if self.vocab.is_eog(tok):
                    tail = pending + decoder.decode(b"", final=True)
                    pending = ""
                    yield StreamToken(index, tok, self.vocab.piece(tok), tail, logprob, top)
                    reason = StopReason.EOS
                    break
                raw = self.vocab.piece_bytes(tok)
                final = index == int(p.max_tokens) - 1 or n_past >= n_ctx
                new = pending + decoder.decode(raw, final=final)
                visible, stopped = new, False
                pending = ""
                if stops:
                    cut = min((new.find(s) for s in stops if s in new), default=-1)
                    if cut >= 0:
                        visible, stopped = new[:cut], True
                    elif not final:
                        hold = _stop_hold(new, stops)
                        if hold:
                            visible, pending = new[:-hold], new[-hold:]
                yield StreamToken(index, tok, display_piece(raw), visible, logprob, top)
                if stopped:
                    reason = StopReason.STOP_STRING
                    break
                if n_past >= n_ctx:
                    reason = StopReason.CONTEXT
                    break
                if cancel.is_set():
                    reason = StopReason.CANCELLED
                    break
                if index + 1 >= int(p.max_tokens):  # no logits needed after the last token
                    reason = StopReason.LENGTH
                    break
                self._decode_chunks([tok], n_past, lambda _pos: True)
                n_past += 1
            else:
                reason = StopReason.LENGTH
        except GeneratorExit:
            reason = StopReason.CANCELLED
            raise
        except Exception as exc:
            reason = StopReason.ERROR
            error = failure_sentence("The model stopped with an error", exc)
            raise
        finally:
            t_end = time.perf_counter()
            decode_s = (t_end - t_first) if generated > 1 else 0.0
            self.last_stats = GenerationStats(
                prompt_tokens=len(ids),
                prompt_eval_s=prompt_eval_s,
                time_to_first_token_s=ttft,
                generated_tokens=generated,
                tokens_per_second=((generated - 1) / decode_s) if decode_s > 0 else 0.0,
                total_s=t_end - t_start,
                stop_reason=reason,
                error=error,
                cached_tokens=cached,
            )
            try:
                sampler.close()
            except Exception:
                pass
            release_compute_threads()

    def generate(
        self,
        request: GenerationRequest,
        cancel: threading.Event | None = None,
        on_token: Callable[[StreamToken], None] | None = None,
    ) -> GenerationResult:
        tokens: list[StreamToken] = []
        parts: list[str] = []
        for t in self.stream(request, cancel):
            tokens.append(t)
            parts.append(t.text)
            if on_token is not None:
                on_token(t)
        return GenerationResult(request.request_id, "".join(parts), tuple(tokens), self.last_stats)

    # -- scoring -------------------------------------------------------------------------------

    def score(
        self,
        prompt_tokens: Sequence[int],
        continuation: Sequence[int],
        top_k: int = 5,
        cancel: threading.Event | None = None,
    ) -> list[ScoredToken]:
        """Log-probability and rank of each continuation token given everything before it,
        computed in one batched evaluation (see :func:`desktop.core.engine_score.score`)."""
        from desktop.core.engine_score import score

        return score(self, prompt_tokens, continuation, top_k, cancel)

    def score_stepwise(
        self, prompt_tokens: Sequence[int], continuation: Sequence[int], top_k: int = 5
    ) -> list[ScoredToken]:
        """Reference implementation of :meth:`score`: one token at a time (for tests/bench)."""
        from desktop.core.engine_score import score_stepwise

        return score_stepwise(self, prompt_tokens, continuation, top_k)

    def score_scratch(self, shape: tuple[int, int]) -> np.ndarray:
        """score()'s float32 work buffer of ``shape`` (grows to the largest chunk, then reused)."""
        if self._scratch2d is None or self._scratch2d.shape[0] < shape[0]:
            self._scratch2d = np.empty(shape, dtype=np.float32)
        return self._scratch2d[: shape[0]]
