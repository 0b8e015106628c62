"""Runs a comparison: model workers, the prompt worker, and the UI flush timer.

GUI-thread QObject. It never calls llama.cpp or reads model files itself: it only sends requests
to workers and receives their frozen dataclasses on @Slot methods.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from desktop.core.errors import BasedError
from desktop.core.settings import Settings
from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams
from desktop.core.words import count
from desktop.ui.pane import ModelPane, stats_line
from desktop.ui.side_events import SideHandler
from desktop.workers.events import (
    EarlierTurn,
    GenerationFinished,
    LoadRequest,
    ModelLoaded,
    PairJob,
    PairReport,
    PromptJob,
    PromptReport,
)
from desktop.workers.model_worker import ModelHost
from desktop.workers.prompt_worker import PromptHost

FLUSH_MS = 33  # ~30 Hz
STATUS_EVERY_S = 0.25
DEBOUNCE_MS = 250
SIDES = ("base", "instruct")


def default_run_mode(cores: int | None = None) -> str:
    """On a small CPU, one model at a time with every core is faster than splitting the cores
    (bench/bench_gui.py measures both); with many cores both can run side by side."""
    n = cores if cores is not None else (os.cpu_count() or 1)
    return "parallel" if n >= 8 else "sequential"


STALE = ("This answer is for an earlier message: Run again to answer the one above, or Follow "
         "up to ask it next.")


@dataclass(frozen=True)
class DoneTurn:
    """A finished turn kept in the conversation: what was asked, with which inputs and sampling
    values, the report its prompts came from, and each side's answer."""

    run_id: int
    inputs: tuple[str, str, str]  # (user, system, base mode)
    params: SamplingParams
    report: PromptReport
    results: dict[str, GenerationFinished]

    @property
    def user(self) -> str:
        return self.inputs[0]

    def earlier(self) -> EarlierTurn:
        b, i = self.results["base"], self.results["instruct"]
        return EarlierTurn(self.user, b.text, b.tokens, i.text, i.tokens)


class ComparisonController(QObject):
    runningChanged = Signal(bool)
    runFinished = Signal(int)  # run id
    reportReady = Signal(object)  # PromptReport (for the lens and tests)
    modelsChanged = Signal()  # a model was chosen, loaded or failed: whether Run can start changed
    pairChecked = Signal(object)  # desktop.core.pair.PairCheck for the current pair
    resultsCleared = Signal()  # the answers on screen were dropped: their inputs changed
    conversationChanged = Signal()  # a turn was kept (follow-up), taken back, or all dropped

    def __init__(self, settings: Settings, panes: dict[str, ModelPane], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.panes = panes
        self.hosts = {side: ModelHost(side, self) for side in SIDES}
        for side, host in self.hosts.items():
            w = host.worker
            handler = SideHandler(self, side, self)
            w.loadProgress.connect(handler.on_progress)
            w.loaded.connect(handler.on_loaded)
            w.loadFailed.connect(handler.on_load_failed)
            w.started.connect(handler.on_started)
            w.finished.connect(handler.on_finished)
            w.failed.connect(handler.on_failed)
            setattr(self, f"_handler_{side}", handler)
        self.prompts = PromptHost(self)
        self.prompts.worker.ready.connect(self.on_report)
        self.prompts.worker.pairChecked.connect(self.on_pair_checked)
        self.pair: object | None = None  # the PairCheck of the current paths, once known
        self.pair_id = 0
        self._pair_timer = QTimer(self)  # both sides picked at once: one check
        self._pair_timer.setSingleShot(True)
        self._pair_timer.setInterval(0)
        self._pair_timer.timeout.connect(self._check_pair_now)
        self.ready_status: dict[str, str] = {"base": "", "instruct": ""}
        self.run_inputs: tuple[str, str, str] | None = None  # the inputs the answers came from
        self.stats_status: dict[str, str] = {"base": "", "instruct": ""}
        self.paths = {"base": "", "instruct": ""}
        self.loaded: dict[str, ModelLoaded | None] = {"base": None, "instruct": None}
        self.load_error: dict[str, str | None] = {"base": None, "instruct": None}
        self.load_ids = {"base": 0, "instruct": 0}
        self._next_id = 1
        self.run_id = 0
        self.inspect_id = 0
        self.pending: dict[str, GenerationRequest | None] = {"base": None, "instruct": None}
        self.active: set[str] = set()
        self.last_report: PromptReport | None = None
        self.run_report: PromptReport | None = None  # the report the current run was built from
        self.results: dict[str, GenerationFinished | None] = {"base": None, "instruct": None}
        self.inputs: tuple[str, str, str] = ("", "", settings.base_mode)
        self.raw_control_tokens = False
        self.turns: list[DoneTurn] = []  # the conversation's finished turns, oldest first
        self.params = SamplingParams()
        self._flush = QTimer(self)
        self._flush.setInterval(FLUSH_MS)
        self._flush.timeout.connect(self.flush)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._inspect_now)
        self._closed = False
        self._status_at: dict[str, float] = {}

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- run mode / threads --------------------------------------------------------------------

    def effective_run_mode(self) -> str:
        mode = self.settings.run_mode
        return default_run_mode() if mode == "auto" else mode

    def threads_per_model(self) -> int:
        cores = os.cpu_count() or 1
        if self.effective_run_mode() == "parallel":
            return max(1, cores // 2)
        return max(1, min(cores, 8))

    # -- models --------------------------------------------------------------------------------

    def set_model(self, side: str, path: str) -> None:
        if self._closed:
            return
        changed = path != self.paths[side]
        self.paths[side] = path
        self.loaded[side] = None
        self.load_error[side] = None
        self.ready_status[side] = ""
        pane = self.panes[side]
        pane.clear_error()
        if changed:  # answers, shift and checks of the old pair no longer hold
            self.clear_results()
            self.pair = None
            self._pair_timer.start()
        try:
            self._load(side, path)
        finally:
            self.modelsChanged.emit()

    def _load(self, side: str, path: str) -> None:
        pane = self.panes[side]
        if not path:
            pane.set_model_info(None, None)
            pane.set_status("")
            return
        load_id = self._new_id()
        self.load_ids[side] = load_id
        try:  # checked before any work: a bad value never reaches the worker or llama.cpp
            opts = LoadOptions(
                n_ctx=self.settings.n_ctx, n_threads=self.threads_per_model(),
                n_gpu_layers=self.settings.load_gpu_layers(),
            )
        except BasedError as exc:
            self.load_error[side] = str(exc)
            pane.set_model_info(None, None)
            pane.set_status("")
            pane.show_error(str(exc))
            return
        pane.set_model_info(None, None, path)
        pane.set_status("Loading… 0%")
        self.hosts[side].load(LoadRequest(load_id, path, opts))
        self.schedule_inspect()

    def reload_all(self) -> None:
        for side in SIDES:
            if self.paths[side]:
                self.set_model(side, self.paths[side])

    def run_blocker(self) -> str:
        """Why Run cannot start at all, in one sentence ("" when it can): no model chosen, or
        every chosen model failed to load. (A side without a model says so in its pane.)"""
        chosen = [s for s in SIDES if self.paths[s]]
        if not chosen:
            return ("Choose the two models first: get a pair in the Models tab, or open GGUF "
                    "files you already have.")
        if all(self.load_error[s] for s in chosen):
            which = "Neither model" if len(chosen) == 2 else "The chosen model"
            return f"{which} could be loaded: the message in its pane says why."
        return ""

    # -- pair check ----------------------------------------------------------------------------

    @Slot()
    def _check_pair_now(self) -> None:
        self.pair_id = self._new_id()
        if self.paths["base"] and self.paths["instruct"]:
            self.prompts.check_pair(PairJob(self.pair_id, self.paths["base"], self.paths["instruct"]))
        else:
            self.pair = None
            self.pairChecked.emit(None)

    @Slot(object)
    def on_pair_checked(self, report: PairReport) -> None:
        if self._closed or report.request_id != self.pair_id:
            return  # superseded by another pick
        self.pair = report.check
        self.pairChecked.emit(report.check)

    # -- results -------------------------------------------------------------------------------

    def clear_results(self) -> None:
        """Drop the answers and everything derived from them (stats, errors of the run, the
        shift analysis, the export, the conversation's earlier turns), because the inputs they
        came from changed."""
        self.stop()
        had = any(self.results.values()) or any(p.answer.text() for p in self.panes.values())
        if self.turns:
            self.turns = []
            self._show_conversation()
            self.conversationChanged.emit()
        self._drop_answers(had)

    def _drop_answers(self, had: bool) -> None:
        self.results = {"base": None, "instruct": None}
        self.run_report = None
        self.run_inputs = None
        for side in SIDES:
            self.stats_status[side] = ""
            self.panes[side].clear_answer(self.ready_status[side])
            if self.load_error[side]:
                self.panes[side].show_error(self.load_error[side] or "")
        if had:
            self.resultsCleared.emit()

    # -- conversation --------------------------------------------------------------------------

    def follow_up_blocker(self) -> str:
        """Why the answers on screen cannot become a turn of a conversation ("" when they can)."""
        if self.active:
            return "Wait for both answers (or Stop), then follow up."
        if self.run_inputs is None or self.run_report is None:
            return "Run a comparison first: a follow-up continues it."
        missing = [s for s in SIDES if self.results.get(s) is None]
        if missing:
            which = "either model" if len(missing) == 2 else f"the {missing[0]} model"
            return (f"There is no answer from {which} to follow up on: Run again, or start a new "
                    "conversation.")
        return ""

    def follow_up(self) -> bool:
        """Keep the answers on screen as a finished turn of the conversation and clear them for
        the next message; each side's next prompt holds its own answer. False (nothing done)
        when :meth:`follow_up_blocker` says why not."""
        if self.follow_up_blocker():
            return False
        assert self.run_inputs is not None and self.run_report is not None
        results = {s: r for s, r in self.results.items() if r is not None}
        self.turns.append(DoneTurn(self.run_id, self.run_inputs, self.params, self.run_report,
                                   results))
        self._drop_answers(True)
        self._show_conversation()
        self.conversationChanged.emit()
        self.schedule_inspect()
        return True

    def new_conversation(self) -> None:
        """Forget every turn and the answers on screen: the next Run starts over."""
        self.clear_results()
        self.schedule_inspect()

    def edit_last_turn(self) -> str:
        """Take the last finished turn back: its answers are on screen again, as after its run,
        and Run re-runs it (with the message edited or not). Returns its message ("" when there
        is no turn)."""
        if not self.turns or self.active:
            return ""
        turn = self.turns.pop()
        self._drop_answers(True)
        self.run_id = turn.run_id
        self.run_inputs = turn.inputs
        self.run_report = turn.report
        self.params = turn.params
        for side, ev in turn.results.items():
            self.results[side] = ev
            pane = self.panes[side]
            pane.start_answer()
            pane.append_tokens(list(ev.tokens))
            pane.finish_answer(ev.stats)
            self.stats_status[side] = stats_line(ev.stats)
            pane.set_status(self.stats_status[side])
        self._show_conversation(turn.user)
        self.conversationChanged.emit()
        self.schedule_inspect()
        return turn.user

    def _show_conversation(self, current: str | None = None) -> None:
        """Each pane shows its own side of the conversation above the answer."""
        for side in SIDES:
            entries = [(t.user, t.results[side].text) for t in self.turns]
            self.panes[side].set_transcript(entries, current if entries else None)

    def context_left(self) -> dict[str, int | None]:
        """Tokens of context each side has left after the prompt now in the inspector (None:
        not known yet)."""
        out: dict[str, int | None] = {"base": None, "instruct": None}
        rep = self.last_report
        if rep is None:
            return out
        for sp in (rep.base, rep.instruct):
            ins = sp.inspection
            if ins is not None and ins.n_ctx > 0:
                out[sp.side] = ins.n_ctx - ins.token_count
        return out

    # -- inspector -----------------------------------------------------------------------------

    def set_inputs(self, user: str, system: str, mode: str, raw_control_tokens: bool = False) -> None:
        """The message, system prompt, base mode, and raw mode's "my text contains control
        tokens" switch (only meaningful in raw mode)."""
        self.inputs = (user, system, mode)
        self.raw_control_tokens = raw_control_tokens and mode == "raw"
        self.schedule_inspect()
        if self.run_inputs is not None and not self.active:
            stale = self.inputs != self.run_inputs  # say so; the answer stays to compare with
            for side in SIDES:
                if self.stats_status[side]:
                    self.panes[side].set_status(STALE if stale else self.stats_status[side])

    def schedule_inspect(self) -> None:
        if not self._closed:
            self._debounce.start()

    @Slot()
    def _inspect_now(self) -> None:
        self.inspect_id = self._new_id()
        self.prompts.compute(self._job(self.inspect_id))

    def _job(self, request_id: int) -> PromptJob:
        user, system, mode = self.inputs
        n_ctx = tuple(ev.info.n_ctx if ev is not None else self.settings.n_ctx
                      for ev in (self.loaded["base"], self.loaded["instruct"]))
        return PromptJob(request_id, user, system, mode, self.paths["base"], self.paths["instruct"],
                         self.raw_control_tokens, tuple(t.earlier() for t in self.turns),
                         (n_ctx[0], n_ctx[1]))

    @Slot(object)
    def on_report(self, report: PromptReport) -> None:
        if self._closed:
            return
        if report.request_id not in (self.inspect_id, self.run_id):
            return  # superseded
        self.last_report = report
        if report.request_id == self.run_id:
            self.run_report = report
        for sp in (report.base, report.instruct):
            ins = self.panes[sp.side].inspector
            if sp.inspection is not None:
                ins.show_inspection(sp.inspection, sp.template_source_text)
            else:
                ins.show_error(sp.error or "")
        self.reportReady.emit(report)
        if report.request_id == self.run_id and self.active:
            self._start_generation(report)

    # -- running -------------------------------------------------------------------------------

    def run(self, params: SamplingParams) -> int:
        if self._closed:
            return 0
        self.stop()
        self.run_id = self._new_id()
        self.params = params
        self.results = {"base": None, "instruct": None}
        self.run_inputs = self.inputs
        self.stats_status = {"base": "", "instruct": ""}
        self.active = {s for s in SIDES if self.paths[s]}
        if self.turns:  # the message being answered shows under the earlier turns
            self._show_conversation(self.inputs[0])
        for side in SIDES:
            pane = self.panes[side]
            pane.start_answer()
            if not self.paths[side]:
                pane.show_error("Pick a model for this side first: its answer appears here.",
                                from_run=True)
        if not self.active:
            return self.run_id
        self.runningChanged.emit(True)
        self._flush.start()
        self.prompts.compute(self._job(self.run_id))
        return self.run_id

    def _start_generation(self, report: PromptReport) -> None:
        order = []
        for sp in (report.base, report.instruct):
            side = sp.side
            if side not in self.active:
                continue
            if self.load_error[side]:
                self.panes[side].show_error(self.load_error[side] or "")
                self.active.discard(side)
                continue
            if sp.inspection is None:
                self.panes[side].show_error(sp.error or "The prompt could not be built.", from_run=True)
                self.active.discard(side)
                continue
            if not sp.inspection.fits:
                n, ctx = sp.inspection.token_count, sp.inspection.n_ctx
                if self.turns:
                    words = (f"This conversation no longer fits: its prompt is {count(n, 'token')} "
                             f"and the context holds {count(ctx, 'token')}. Start a new "
                             "conversation, or take the last turn back and shorten it.")
                else:
                    words = (f"The prompt is {count(n, 'token')} but the context holds "
                             f"{count(ctx, 'token')}. Shorten it or raise the context size.")
                self.panes[side].show_error(words, from_run=True)
                self.active.discard(side)
                continue
            r = sp.inspection.rendered
            params = replace(self.params, stop=tuple(r.stop))
            self.pending[side] = r.request(self.run_id, params)
            order.append(side)
        if not self.active:
            self._done()
            return
        if self.effective_run_mode() == "parallel":
            for side in order:
                self._launch(side)
        elif order:
            self._launch(order[0])

    def _launch(self, side: str) -> None:
        req = self.pending.get(side)
        if req is None:
            return
        self.pending[side] = None
        self.panes[side].set_status("Waiting for the model…" if self.loaded[side] is None else "Reading the prompt…")
        self.hosts[side].generate(req)

    def stop(self) -> None:
        """Cancel running generations and drop the ones not started yet. A model that is still
        loading keeps loading (its host's cancel would abort the load)."""
        for side in SIDES:
            if self.pending[side] is not None:
                self.pending[side] = None
                self.active.discard(side)
            elif side in self.active:
                self.hosts[side].stop()

    def side_done(self, side: str) -> None:
        self.active.discard(side)
        self.flush()
        nxt = [s for s in SIDES if self.pending.get(s) is not None]
        if nxt:
            self._launch(nxt[0])
        elif not self.active:
            self._done()

    def _done(self) -> None:
        self._flush.stop()
        self.flush()
        self.runningChanged.emit(False)
        self.runFinished.emit(self.run_id)

    @Slot()
    def flush(self) -> None:
        now = time.monotonic()
        for side in SIDES:
            items = self.hosts[side].buffer.drain()
            toks = [t for rid, t in items if rid == self.run_id]
            if toks:
                pane = self.panes[side]
                pane.append_tokens(toks)
                # the count changes every flush; repainting it a few times a second is plenty
                if now - self._status_at.get(side, 0.0) >= STATUS_EVERY_S:
                    self._status_at[side] = now
                    pane.set_status(f"Generating… {count(len(pane.answer.tokens()), 'token')}")

    # -- shutdown ------------------------------------------------------------------------------

    def shutdown(self) -> bool:
        """Stop everything: set cancel, quit(), wait(), then free. True when all threads ended."""
        if self._closed:
            return True
        self._closed = True
        self._flush.stop()
        self._debounce.stop()
        self._pair_timer.stop()
        ok = True
        for host in self.hosts.values():
            ok = host.shutdown() and ok
        ok = self.prompts.shutdown() and ok
        return ok
