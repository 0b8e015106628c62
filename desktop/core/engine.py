"""Generation engine over llama-cpp-python.

The engine drives llama.cpp's decode loop itself (batch -> decode -> sample -> repeat) instead of
``create_completion(stream=True)``, which re-detokenizes the whole completion on every token.
Top-k alternatives and log-probabilities are read from the last logits row only, so nothing of
size n_ctx x n_vocab is ever allocated. Text is decoded incrementally as UTF-8.

An :class:`Engine` is not thread-safe: exactly one thread creates, uses and closes it.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from desktop.core.devices import GpuDevice, gpu_devices
from desktop.core.errors import ContextOverflowError, ModelLoadError
from desktop.core.gpu_check import check_devices
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
from desktop.core.offload import AUTO_LAYERS, OffloadPlan, model_shape, plan_offload
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
    TopAlt,
)
from desktop.core.words import count


class LoadCancelled(ModelLoadError):
    """The load was aborted through the progress callback."""


@contextlib.contextmanager
def _load_progress(progress: Callable[[float], bool | None] | None) -> Iterator[None]:
    """Hand llama.cpp a progress callback for the next model load on this thread.

    llama-cpp-python's ``Llama`` takes no progress callback; the model parameters it starts from
    (see ``llama_vocab._patch_model_params``) carry the one set here. Returning False from
    ``progress`` makes llama.cpp abort the load.
    """
    if progress is None:
        yield
        return
    import llama_cpp.llama_cpp as low

    aborted = [False]

    def _cb(p: float, _user: Any) -> bool:
        try:
            keep = progress(float(p)) is not False
        except Exception:
            keep = True
        if not keep:
            aborted[0] = True
        return keep

    LOAD_SETTINGS.progress = low.llama_progress_callback(_cb)
    try:
        yield
    except Exception:
        if aborted[0]:
            raise LoadCancelled("Loading was cancelled.") from None
        raise
    finally:
        LOAD_SETTINGS.progress = None


_SPLIT_NONE, _SPLIT_LAYER = 0, 1  # enum llama_split_mode

# GPU loads run one at a time, so each plan sees the memory the previous load took; and the
# device memory Based's loaded models were planned to take, for drivers that do not report use
# (free == total: no VK_EXT_memory_budget), by ggml device index.
_GPU_LOCK = threading.RLock()  # close() may run from __del__ during a load on the same thread
_RESERVED: dict[int, int] = {}


@contextlib.contextmanager
def _gpu_load_lock(requested: int) -> Iterator[None]:
    if requested == 0:
        yield
        return
    with _GPU_LOCK:
        yield


def _reserved(devices: Sequence[GpuDevice]) -> int:
    return sum(_RESERVED.get(d.index, 0) for d in devices if d.free_bytes >= d.total_bytes)


def _reserve(plan: OffloadPlan) -> tuple[tuple[int, ...], int]:
    idx = tuple(d.index for d in plan.devices)
    share = plan.need_bytes // max(1, len(idx))
    for i in idx:
        _RESERVED[i] = _RESERVED.get(i, 0) + share
    return idx, share


def _release(reservation: tuple[tuple[int, ...], int] | None) -> None:
    if reservation is None:
        return
    with _GPU_LOCK:
        idx, share = reservation
        for i in idx:
            _RESERVED[i] = max(0, _RESERVED.get(i, 0) - share)


def gpu_failure_note(plan: OffloadPlan, exc: BaseException) -> str:
    """The one sentence the pane shows when the GPU could not take the model."""
    del exc  # llama.cpp's own words ("Failed to load model from file") say nothing more
    return (f"{plan.device_label} could not take this model (out of GPU memory or a driver "
            "error), so it runs on the CPU.")


def _stop_hold(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


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
        n_batch = min(512, n_ctx)
        t0 = time.perf_counter()
        self._reservation: tuple[tuple[int, ...], int] | None = None
        with _gpu_load_lock(opts.n_gpu_layers):
            plan, gpu_note = self._plan(opts.n_gpu_layers, n_ctx, n_batch)
            if gpu_note:
                notes.append(gpu_note)

            def load(on: OffloadPlan) -> Any:
                # CPU only: no GPU device at all (split mode NONE with main_gpu -1 empties
                # llama.cpp's device list), so nothing of it runs on a GPU, not even the big
                # matrix products of a long prompt (llama.cpp's op offload).
                gpu = on.on_gpu
                with _load_progress(progress):
                    return lib.Llama(
                        model_path=self.path,
                        n_ctx=n_ctx,
                        n_batch=n_batch,
                        n_threads=n_threads,
                        n_threads_batch=n_threads,
                        n_gpu_layers=on.n_gpu_layers if gpu else 0,
                        split_mode=_SPLIT_LAYER if gpu else _SPLIT_NONE,
                        main_gpu=0 if gpu else -1,
                        logits_all=False,
                        seed=opts.seed,
                        verbose=False,
                    )

            try:
                try:
                    self._llm = load(plan)
                except LoadCancelled:
                    raise
                except Exception as exc:
                    if not plan.on_gpu:
                        raise
                    # out of device memory or a driver error: llama.cpp returns an error from the
                    # load (it catches its backends' exceptions there), so the CPU is still usable
                    notes.append(gpu_failure_note(plan, exc))
                    plan = replace(plan, n_gpu_layers=0, gpu_layers=0, devices=(), need_bytes=0)
                    self._llm = load(plan)
            except LoadCancelled:
                raise
            except Exception as exc:  # llama.cpp reports failures as ValueError/RuntimeError
                raise ModelLoadError(
                    f"llama.cpp could not load {Path(self.path).name} ({exc}). The file may be damaged "
                    "or use an architecture this version does not support; try another file."
                ) from exc
            if plan.on_gpu and plan.free_bytes is not None:
                self._reservation = _reserve(plan)
        self.plan = plan
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
        self._closed = False
        self.last_stats = GenerationStats()
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
            gpu_used=plan.on_gpu,
            backend=plan.devices[0].backend if plan.on_gpu else cpu_backend_name(),
            load_s=time.perf_counter() - t0,
            note=" ".join(notes),
            gpu_layers=plan.gpu_layers,
            n_layer=int(lib.llama_model_n_layer(self._model.model)),
            gpu_device=plan.device_label if plan.on_gpu else "",
            cpu=cpu_backend_name(),
        )

    def _plan(self, requested: int, n_ctx: int, n_batch: int) -> tuple[OffloadPlan, str]:
        """Where the layers go (:func:`desktop.core.offload.plan_offload`), and a sentence when a
        GPU was asked for and this build has none."""
        if requested == 0:
            return OffloadPlan(0, 0, 0, (), 0, None), ""
        devices = gpu_devices() if gpu_backend_available() else []
        if not devices:
            note = "" if requested == AUTO_LAYERS else (
                "There is no GPU that llama.cpp can use here, so the model runs on the CPU.")
            return OffloadPlan(0, 0, 0, (), 0, None), note
        problem = check_devices(devices)  # once per device and driver: a test run in a child
        if problem:
            return OffloadPlan(0, 0, 0, (), 0, None), problem
        shape = model_shape(self.path)
        plan = plan_offload(shape, n_ctx=n_ctx, n_ubatch=min(n_batch, 512), requested=requested,
                            devices=devices, reserved=_reserved(devices))
        return plan, plan.note

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        _release(self._reservation)
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
        Returns False when cancelled."""
        lib = _llama()
        b = self._batch
        n = len(tokens)
        i = 0
        while i < n:
            if cancel is not None and cancel.is_set():
                return False
            chunk = tokens[i : i + self._n_batch]
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
                raise RuntimeError(f"llama_decode returned {rc}")
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
        self._ctx.kv_cache_clear()
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
        """Yield generated tokens as they are made; stats land in ``self.last_stats``."""
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
        try:
            self._reset_kv()
            last = len(ids) - 1
            ok = self._decode_chunks(ids, 0, lambda pos: pos == last, cancel=cancel)
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
                self._decode_chunks([tok], n_past, lambda _pos: True)
                n_past += 1
            else:
                reason = StopReason.LENGTH
        except GeneratorExit:
            reason = StopReason.CANCELLED
            raise
        except Exception as exc:
            reason = StopReason.ERROR
            error = f"Generation failed: {exc}"
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
        computed in one batched evaluation (chunked only by llama.cpp's batch size)."""
        prompt = [int(t) for t in prompt_tokens]
        cont = [int(t) for t in continuation]
        if not cont:
            return []
        if not prompt:
            raise ValueError("score() needs at least one prompt token")
        total = len(prompt) + len(cont) - 1
        if total > self.n_ctx:
            raise ContextOverflowError(
                f"Scoring needs {count(total, 'token')} but this model's context holds {self.n_ctx:,}. "
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
            ptr = _llama().llama_get_logits(self._ctx.ctx)
            mat = np.ctypeslib.as_array(ptr, shape=(len(positions), self.vocab.n_vocab))
            js = np.asarray(positions) - first
            toks = np.asarray([cont[j] for j in js])
            vals = mat[np.arange(len(js)), toks]
            maxes = mat.max(axis=1)
            # log-sum-exp in a reused float32 scratch (no temporaries of the vocabulary's size)
            scratch = self._score_scratch(mat.shape)
            np.subtract(mat, maxes[:, None], out=scratch)
            np.exp(scratch, out=scratch)
            lses = maxes.astype(np.float64) + np.log(scratch.sum(axis=1, dtype=np.float64))
            ranks = 1 + np.count_nonzero(mat > vals[:, None], axis=1)
            for r, j in enumerate(js):
                row = mat[r]
                lse = float(lses[r])
                alts = tuple(
                    TopAlt(int(i), self.vocab.piece(int(i)), float(row[i]) - lse)
                    for i in (_top_indices(row, k, float(maxes[r])) if k else ())
                )
                tok = int(toks[r])
                out.append(
                    ScoredToken(int(j), tok, self.vocab.piece(tok), float(vals[r]) - lse,
                                int(ranks[r]), alts)
                )

        self._reset_kv()
        try:
            self._decode_chunks(seq, 0, lambda pos: pos >= first, on_chunk=read, cancel=cancel)
        finally:
            self._reset_kv()
            release_compute_threads()
        return out

    def _score_scratch(self, shape: tuple[int, int]) -> np.ndarray:
        if self._scratch2d is None or self._scratch2d.shape[0] < shape[0]:
            self._scratch2d = np.empty(shape, dtype=np.float32)  # grows to the largest chunk
        return self._scratch2d[: shape[0]]

    def score_stepwise(
        self, prompt_tokens: Sequence[int], continuation: Sequence[int], top_k: int = 5
    ) -> list[ScoredToken]:
        """Reference implementation of :meth:`score`: one token at a time (for tests/bench)."""
        prompt = [int(t) for t in prompt_tokens]
        cont = [int(t) for t in continuation]
        k = max(0, min(MAX_TOP_K, int(top_k)))
        out: list[ScoredToken] = []
        self._reset_kv()
        last = len(prompt) - 1
        self._decode_chunks(prompt, 0, lambda pos: pos == last)
        n_past = len(prompt)
        for j, tok in enumerate(cont):
            row = self._logits_row(-1)
            _, lse = _log_softmax(row)
            val = row[tok]
            rank = 1 + int(np.count_nonzero(row > val))
            out.append(
                ScoredToken(
                    j,
                    tok,
                    self.vocab.piece(tok),
                    float(val) - lse,
                    rank,
                    _top_alts(row, lse, k, self.vocab),
                )
            )
            if j + 1 < len(cont):
                self._decode_chunks([tok], n_past, lambda _pos: True)
                n_past += 1
        self._reset_kv()
        return out
