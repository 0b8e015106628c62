"""Downloads and Hugging Face queries off the GUI thread.

One long-lived worker thread runs downloads one after another (queued calls wait their turn in
the thread's event loop); search/listing queries run on short-lived daemon threads so browsing
never waits behind a download and closing never waits for the network. Both emit plain frozen
data only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from desktop.core.errors import DownloadCancelled, failure_sentence
from desktop.workers.threads import new_thread, quit_and_wait


@dataclass(frozen=True)
class DownloadJob:
    job_id: int
    repo: str
    filename: str
    dest_dir: str
    size: int | None = None  # a split model: all parts together
    sha256: str | None = None
    group: str = ""  # e.g. a catalog pair id: both files of a pair share it
    part_sizes: tuple[int | None, ...] = ()  # a split model's parts, in order (from the listing)
    part_sha256: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class DownloadUpdate:
    job_id: int
    state: str  # queued | running | paused | cancelled | done | failed
    done_bytes: int = 0
    total_bytes: int = 0
    speed_bps: float = 0.0
    eta_s: float | None = None
    message: str = ""
    path: str = ""


@dataclass(frozen=True)
class HubQuery:
    query_id: int
    kind: str  # "search" | "files" | "token" | "probe"
    text: str


@dataclass(frozen=True)
class HubAnswer:
    query_id: int
    kind: str
    items: tuple[object, ...] = ()
    error: str = ""


class DownloadWorker(QObject):
    update = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._cancels: dict[int, threading.Event] = {}
        self._discard: set[int] = set()

    # called from the GUI thread: only touches Events under a lock
    def register(self, job_id: int) -> None:
        with self._lock:
            self._cancels[job_id] = threading.Event()

    def stop(self, job_id: int, discard: bool) -> None:
        with self._lock:
            ev = self._cancels.get(job_id)
            if discard:
                self._discard.add(job_id)
        if ev is not None:
            ev.set()

    def stop_all(self) -> None:
        with self._lock:
            events = list(self._cancels.values())
        for ev in events:
            ev.set()

    @Slot(object)
    def run(self, job: DownloadJob) -> None:
        from desktop.core.downloads import DownloadProgress, DownloadSpec, discard_partial, download
        from desktop.core.gguf_split import model_bytes

        with self._lock:
            cancel = self._cancels.setdefault(job.job_id, threading.Event())
        base = DownloadUpdate(job.job_id, "running", total_bytes=job.size or 0)
        spec = DownloadSpec(repo_id=job.repo, filename=job.filename, dest_dir=Path(job.dest_dir),
                            expected_size=job.size, expected_sha256=job.sha256,
                            part_sizes=job.part_sizes, part_sha256=job.part_sha256)

        def finish_cancel() -> None:
            with self._lock:
                discard = job.job_id in self._discard
            if discard:
                try:
                    discard_partial(Path(job.dest_dir), job.filename)
                except OSError:
                    pass
            self.update.emit(replace(base, state="cancelled" if discard else "paused",
                                     message="Cancelled." if discard else "Paused: Resume continues where it stopped."))

        try:
            if cancel.is_set():
                finish_cancel()
                return
            self.update.emit(base)

            def on_progress(p: DownloadProgress) -> None:
                self.update.emit(DownloadUpdate(job.job_id, "running", p.done_bytes, p.total_bytes,
                                                p.speed_bps, p.eta_s))

            path = download(spec, on_progress, cancel)
            size = model_bytes(path)  # every part of a split model
            self.update.emit(DownloadUpdate(job.job_id, "done", size, size, path=str(path),
                                            message="Downloaded and verified."))
        except DownloadCancelled:
            finish_cancel()
        except Exception as exc:  # never let a download kill the thread
            self.update.emit(replace(base, state="failed",
                                     message=failure_sentence("The download failed", exc)))
        finally:
            with self._lock:
                self._cancels.pop(job.job_id, None)
                self._discard.discard(job.job_id)


class HubWorker(QObject):
    """Answers Hugging Face queries. Each query runs on a short-lived daemon thread: a search
    can wait on a slow network for many seconds, and closing the window must never wait for it
    (nor leave a QThread running). The answer reaches the GUI thread as a queued signal; a
    superseded one is dropped there by its id."""

    answer = Signal(object)

    def start(self, q: HubQuery) -> None:
        threading.Thread(target=self.run, args=(q,), name=f"hub-{q.kind}", daemon=True).start()

    def _emit(self, a: HubAnswer) -> None:
        try:
            self.answer.emit(a)
        except RuntimeError:  # the panel (and this object) closed while the query ran
            pass

    def run(self, q: HubQuery) -> None:
        from desktop.core import hub

        try:
            if q.kind == "search":
                items: tuple[object, ...] = tuple(hub.search_gguf_repos(q.text))
            elif q.kind == "files":
                items = tuple(hub.list_gguf_files(q.text))
            elif q.kind == "token":
                hub.save_token(q.text)
                items = ()
            elif q.kind == "probe":  # local only: is there a GPU backend, and how much memory is free
                from desktop.core.engine import gpu_backend_available
                from desktop.core.fit import free_vram_bytes

                gpu = gpu_backend_available()
                items = (gpu, free_vram_bytes() if gpu else None)
            else:
                raise ValueError(q.kind)
            self._emit(HubAnswer(q.query_id, q.kind, items))
        except Exception as exc:
            self._emit(HubAnswer(q.query_id, q.kind, (),
                                 failure_sentence("Talking to Hugging Face failed", exc)))


class DownloadHost(QObject):
    """GUI-side owner of the download and hub threads."""

    _run = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread_dl = new_thread("downloads")
        self.worker = DownloadWorker()
        self.hub = HubWorker(self)
        self.worker.moveToThread(self.thread_dl)
        self._run.connect(self.worker.run)
        self.thread_dl.start()
        self._next = 0
        self._alive = True

    def new_id(self) -> int:
        self._next += 1
        return self._next

    def enqueue(self, job: DownloadJob) -> None:
        self.worker.register(job.job_id)
        self._run.emit(job)

    def stop(self, job_id: int, discard: bool = False) -> None:
        self.worker.stop(job_id, discard)

    def query(self, kind: str, text: str) -> int:
        qid = self.new_id()
        if self._alive:
            self.hub.start(HubQuery(qid, kind, text))
        return qid

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        """Cancel (partials are kept for next time), quit, wait."""
        if not self._alive:
            return True
        self._alive = False
        self.worker.stop_all()
        return quit_and_wait(self.thread_dl, timeout_ms)
