"""One long-lived worker per loaded model, on its own QThread.

The worker creates, uses and frees its Engine; no Engine is touched by two threads while the
thread runs. Generated tokens go into a :class:`StreamBuffer` that the UI drains on a timer
(30-60 Hz): there is never one signal per token.

Shutdown order (ModelHost.shutdown): set cancel, quit(), wait(), then free.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal, Slot

from desktop.core.engine import Engine
from desktop.core.errors import BasedError, TokenizerMismatch, failure_sentence
from desktop.core.prompts import RenderedPrompt
from desktop.core.types import GenerationRequest, StreamToken
from desktop.workers.events import (
    GenerationFailed,
    GenerationFinished,
    GenerationStarted,
    LoadFailed,
    LoadProgress,
    LoadRequest,
    ModelLoaded,
)
from desktop.workers.threads import new_thread, quit_and_wait


class StreamBuffer:
    """Tokens handed from a worker thread to the GUI thread, tagged with their request id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[int, StreamToken]] = []

    def push(self, request_id: int, token: StreamToken) -> None:
        with self._lock:
            self._items.append((request_id, token))

    def drain(self) -> list[tuple[int, StreamToken]]:
        with self._lock:
            items, self._items = self._items, []
        return items


@dataclass(frozen=True)
class ScoreJob:
    request_id: int
    prompt_tokens: tuple[int, ...]
    continuation: tuple[int, ...]
    top_k: int


@dataclass(frozen=True)
class ShiftJob:
    """Score the instruct answer under the base model (this worker's model) after ``prompt``."""

    request_id: int
    instruct_path: str
    prompt: RenderedPrompt  # what the base model sees first (chat prompt or base-mode prompt)
    tokens: tuple[StreamToken, ...]  # the instruct answer
    greedy: bool
    top_k: int = 5


@dataclass(frozen=True)
class ShiftDone:
    request_id: int
    result: object | None  # desktop.core.shift.ShiftResult
    error: str = ""
    tokenizers_differ: bool = False  # the pair can never be analysed (TokenizerMismatch)


def lower_this_threads_priority(step: int = 5) -> None:
    """Give the calling worker thread (and the compute threads it spawns, which inherit it) a
    higher nice value, so the GUI thread wins the CPU when both want it. Linux only; a no-op
    elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + step))
    except (OSError, AttributeError):
        pass


class ModelWorker(QObject):
    """Lives on its own thread. All slots run there."""

    loadProgress = Signal(object)
    loaded = Signal(object)
    loadFailed = Signal(object)
    started = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    scored = Signal(object, object)  # request_id, list[ScoredToken] | str error
    tokenized = Signal(object, object)  # request_id, list[int] | str error
    shifted = Signal(object)  # ShiftDone

    def __init__(self, buffer: StreamBuffer) -> None:
        super().__init__()
        self.engine: Engine | None = None
        self.buffer = buffer
        self._niced = False

    @Slot(object, object)
    def load(self, req: LoadRequest, cancel: threading.Event) -> None:
        if not self._niced:
            lower_this_threads_priority()
            self._niced = True
        self.free()
        if cancel.is_set():
            return
        last = [-1.0]

        def progress(p: float) -> bool:
            if p - last[0] >= 0.05 or p >= 1.0:  # throttled
                last[0] = p
                self.loadProgress.emit(LoadProgress(req.load_id, p))
            return not cancel.is_set()  # False aborts llama.cpp's load

        try:
            self.engine = Engine(req.path, req.options, progress=progress)
        except BasedError as exc:
            if not cancel.is_set():
                self.loadFailed.emit(LoadFailed(req.load_id, str(exc)))
            return
        except Exception as exc:  # llama.cpp surprises: still one sentence
            self.loadFailed.emit(LoadFailed(req.load_id, failure_sentence(
                "The model could not be loaded", exc)))
            return
        self.loaded.emit(ModelLoaded(req.load_id, self.engine.info, self.engine.gguf))

    @Slot(object, object)
    def generate(self, req: GenerationRequest, cancel: threading.Event) -> None:
        if self.engine is None:
            self.failed.emit(GenerationFailed(req.request_id, "The model is not loaded yet."))
            return
        if cancel.is_set():
            self.failed.emit(GenerationFailed(req.request_id, "Stopped before it started."))
            return
        tokens: list[StreamToken] = []
        parts: list[str] = []
        try:
            self.started.emit(GenerationStarted(req.request_id, 0))
            for tok in self.engine.stream(req, cancel):
                tokens.append(tok)
                parts.append(tok.text)
                self.buffer.push(req.request_id, tok)
        except BasedError as exc:
            self.failed.emit(GenerationFailed(req.request_id, str(exc)))
            return
        except Exception as exc:
            self.failed.emit(GenerationFailed(req.request_id, failure_sentence(
                "The model stopped with an error", exc)))
            return
        self.finished.emit(
            GenerationFinished(req.request_id, "".join(parts), tuple(tokens), self.engine.last_stats)
        )

    @Slot(object, object)
    def score(self, job: ScoreJob, cancel: threading.Event) -> None:
        if self.engine is None:
            self.scored.emit(job.request_id, "The model is not loaded.")
            return
        try:
            res = self.engine.score(job.prompt_tokens, job.continuation, job.top_k, cancel)
        except BasedError as exc:
            self.scored.emit(job.request_id, str(exc))
            return
        except Exception as exc:
            self.scored.emit(job.request_id, failure_sentence("Scoring failed", exc))
            return
        self.scored.emit(job.request_id, res)

    @Slot(object, object)
    def shift(self, job: ShiftJob, cancel: threading.Event) -> None:
        from desktop.core.shift import analyze_shift, require_compatible

        if self.engine is None:
            self.shifted.emit(ShiftDone(job.request_id, None, "The base model is not loaded."))
            return
        try:
            require_compatible(self.engine.path, job.instruct_path)
            ids = self.engine.tokenize_ids(job.prompt.text, **job.prompt.token_args())
            res = analyze_shift(self.engine, ids, list(job.tokens), top_k=job.top_k, cancel=cancel,
                                greedy=job.greedy)
        except TokenizerMismatch as exc:
            self.shifted.emit(ShiftDone(job.request_id, None, str(exc), tokenizers_differ=True))
            return
        except BasedError as exc:
            self.shifted.emit(ShiftDone(job.request_id, None, str(exc)))
            return
        except Exception as exc:
            self.shifted.emit(ShiftDone(job.request_id, None, failure_sentence(
                "The token-shift analysis failed", exc)))
            return
        self.shifted.emit(ShiftDone(job.request_id, res))

    @Slot(object, object, bool)
    def tokenize(self, request_id: object, text: object, add_bos: bool) -> None:
        if self.engine is None:
            self.tokenized.emit(request_id, "The model is not loaded.")
            return
        self.tokenized.emit(request_id, self.engine.tokenize_ids(str(text), add_bos))

    @Slot()
    def free(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


class ModelHost(QObject):
    """GUI-side owner of one ModelWorker and its QThread."""

    _load = Signal(object, object)
    _generate = Signal(object, object)
    _score = Signal(object, object)
    _shift = Signal(object, object)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cancel = threading.Event()
        self.buffer = StreamBuffer()
        self.qthread = new_thread(f"model-{name}")
        self.worker = ModelWorker(self.buffer)
        self.worker.moveToThread(self.qthread)
        self._load.connect(self.worker.load)
        self._generate.connect(self.worker.generate)
        self._score.connect(self.worker.score)
        self._shift.connect(self.worker.shift)
        self.qthread.start()
        self._alive = True

    def _fresh_cancel(self) -> threading.Event:
        """Cancel whatever runs now (a superseded job) and hand out a new event."""
        self.cancel.set()
        self.cancel = threading.Event()
        return self.cancel

    def load(self, req: LoadRequest) -> None:
        # stop whatever runs; load() starts after it returns
        self._load.emit(req, self._fresh_cancel())

    def generate(self, req: GenerationRequest) -> None:
        self._generate.emit(req, self._fresh_cancel())

    def score(self, job: ScoreJob) -> None:
        self._score.emit(job, self._fresh_cancel())

    def shift(self, job: ShiftJob) -> None:
        self._shift.emit(job, self._fresh_cancel())

    def stop(self) -> None:
        self.cancel.set()

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        """Set cancel, quit(), wait(), then free. Returns False if the thread did not stop."""
        if not self._alive:
            return True
        self._alive = False
        self.cancel.set()
        ok = quit_and_wait(self.qthread, timeout_ms)
        if ok:
            self.worker.free()
        return ok
