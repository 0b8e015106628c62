"""One model worker's events, received on the GUI thread for :class:`ComparisonController`:
load progress and result, generation start, end and failure, each dropped when superseded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot

from desktop.core.types import StopReason
from desktop.core.words import count
from desktop.ui.pane import ModelPane, stats_line
from desktop.workers.events import (
    GenerationFailed,
    GenerationFinished,
    GenerationStarted,
    LoadFailed,
    LoadProgress,
    ModelLoaded,
)

if TYPE_CHECKING:
    from desktop.ui.controller import ComparisonController


class SideHandler(QObject):
    """Receives one model worker's events on the GUI thread (@Slot methods, no lambdas)."""

    def __init__(self, ctl: ComparisonController, side: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctl = ctl
        self.side = side

    @property
    def pane(self) -> ModelPane:
        return self.ctl.panes[self.side]

    @Slot(object)
    def on_progress(self, ev: LoadProgress) -> None:
        if ev.load_id == self.ctl.load_ids[self.side]:
            self.pane.set_status(f"Loading… {ev.fraction * 100:.0f}%")

    @Slot(object)
    def on_loaded(self, ev: ModelLoaded) -> None:
        if ev.load_id != self.ctl.load_ids[self.side]:
            return
        self.ctl.loaded[self.side] = ev
        self.pane.set_model_info(ev.info, ev.gguf)
        ready = f"Ready · context {count(ev.info.n_ctx, 'token')} · {count(ev.info.n_threads, 'thread')}"
        self.ctl.ready_status[self.side] = ready
        if not self.ctl.stats_status[self.side] and self.side not in self.ctl.active:
            self.pane.set_status(ready)
        self.ctl.modelsChanged.emit()

    @Slot(object)
    def on_load_failed(self, ev: LoadFailed) -> None:
        if ev.load_id != self.ctl.load_ids[self.side]:
            return
        self.ctl.load_error[self.side] = ev.message
        self.pane.set_status("")
        self.pane.set_model_info(None, None)
        self.pane.show_error(ev.message)
        self.ctl.modelsChanged.emit()

    @Slot(object)
    def on_started(self, ev: GenerationStarted) -> None:
        if ev.request_id == self.ctl.run_id:
            self.pane.set_status("Reading the prompt…")

    @Slot(object)
    def on_finished(self, ev: GenerationFinished) -> None:
        if ev.request_id != self.ctl.run_id:
            return  # a superseded run
        self.ctl.flush()
        self.ctl.results[self.side] = ev
        self.ctl.stats_status[self.side] = stats_line(ev.stats)
        self.pane.set_status(stats_line(ev.stats))
        self.pane.finish_answer(ev.stats)
        if ev.stats.stop_reason is StopReason.ERROR and ev.stats.error:
            self.pane.show_error(ev.stats.error, from_run=True)
        self.ctl.side_done(self.side)

    @Slot(object)
    def on_failed(self, ev: GenerationFailed) -> None:
        if ev.request_id != self.ctl.run_id:
            return
        self.pane.show_error(self.ctl.load_error[self.side] or ev.message,
                             from_run=not self.ctl.load_error[self.side])
        self.pane.set_status("")
        self.ctl.side_done(self.side)
