"""The alignment report over a prompt set, on its own thread, cancellable."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from desktop.core.errors import BasedError, failure_sentence
from desktop.workers.threads import new_thread, quit_and_wait


@dataclass(frozen=True)
class ReportJob:
    job_id: int
    base_path: str
    instruct_path: str
    prompts: tuple[str, ...]
    out_path: str
    system: str | None = None
    max_tokens: int = 128
    n_ctx: int = 2048
    prompt_source: str = "chat"  # desktop.core.shift.PROMPT_SOURCES
    base_mode: str = "twin-template"  # for prompt_source "base-mode"


@dataclass(frozen=True)
class ReportEvent:
    job_id: int
    kind: str  # progress | done | failed
    done: int = 0
    total: int = 0
    text: str = ""


class ReportWorker(QObject):
    happened = Signal(object)

    @Slot(object, object)
    def run(self, job: ReportJob, cancel: threading.Event) -> None:
        from desktop.core.report import build_report, render_report_html

        def progress(done: int, total: int, prompt: str) -> None:
            self.happened.emit(ReportEvent(job.job_id, "progress", done, total, prompt))

        try:
            data = build_report(job.base_path, job.instruct_path, list(job.prompts), system=job.system,
                                max_tokens=job.max_tokens, n_ctx=job.n_ctx, on_progress=progress,
                                cancel=cancel, prompt_source=job.prompt_source, mode=job.base_mode)
            Path(job.out_path).write_text(render_report_html(data), encoding="utf-8")
        except BasedError as exc:
            self.happened.emit(ReportEvent(job.job_id, "failed", text=str(exc)))
            return
        except Exception as exc:
            self.happened.emit(ReportEvent(job.job_id, "failed", text=failure_sentence(
                "The report could not be made", exc)))
            return
        kept = " (stopped early: it holds the prompts finished so far)" if cancel.is_set() else ""
        self.happened.emit(ReportEvent(job.job_id, "done", text=f"Report saved to {Path(job.out_path).name}{kept}."))


class ReportHost(QObject):
    _run = Signal(object, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.qthread = new_thread("report")
        self.worker = ReportWorker()
        self.worker.moveToThread(self.qthread)
        self._run.connect(self.worker.run)
        self.qthread.start()
        self.cancel = threading.Event()
        self._alive = True

    def start(self, job: ReportJob) -> None:
        self.cancel.set()
        self.cancel = threading.Event()
        self._run.emit(job, self.cancel)

    def stop(self) -> None:
        self.cancel.set()

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        if not self._alive:
            return True
        self._alive = False
        self.cancel.set()
        return quit_and_wait(self.qthread, timeout_ms)
