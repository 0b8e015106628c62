"""The alignment lens: token shift on the instruct pane, guided examples, history and reports.

A GUI-thread QObject that plugs into the comparison controller; it sends work to the base model's
worker (scoring) and to the history thread, and only ever receives frozen data on @Slot methods.
"""

from __future__ import annotations

from typing import Any, cast

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QScrollArea, QWidget

from desktop.core.shift import ShiftClass, ShiftResult
from desktop.core.types import GenerationResult, LoadOptions, SamplingParams
from desktop.ui.controller import ComparisonController
from desktop.ui.controls import ControlsPanel
from desktop.ui.pane import ModelPane
from desktop.ui.shift_view import LEGEND, ShiftPanel, overlay_for
from desktop.workers.history_worker import HistoryEvent, HistoryHost, SaveJob
from desktop.workers.model_worker import ShiftDone, ShiftJob

REPORT_TIP = "Run the token-shift analysis over a prompt set into an HTML report"
EXPORT_TIP = "Save this comparison as a web page, Markdown or JSON"


class LensBar(QWidget):
    """Guided examples, the report, and export of the comparison on screen (buttons, in the
    tab bar's corner), and ``note``: a word-wrapped line the window places under the message
    (the example's hint, "Saved to history.", an export's result)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 2)
        self.examples = QPushButton("Guided examples…")
        self.examples.setToolTip("Curated prompts that each show a known base/instruct difference")
        self.report = QPushButton("Alignment report…")
        self.report.setToolTip(REPORT_TIP)
        self.export = QPushButton("Export…")
        self.export.setToolTip("Run a comparison first: then save it as a web page, Markdown or JSON")
        self.export.setEnabled(False)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(mid)")
        self.note.hide()
        row.addWidget(self.examples)
        row.addWidget(self.report)
        row.addWidget(self.export)

    def set_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def set_export(self, on: bool) -> None:
        self.export.setEnabled(on)
        self.export.setToolTip(EXPORT_TIP if on else
                               "Run a comparison first: then save it as a web page, Markdown or JSON")

    def set_report(self, reason: str) -> None:
        """The report needs a pair that shares a tokenizer: disabled with the reason, or not."""
        self.report.setEnabled(not reason)
        self.report.setToolTip(reason or REPORT_TIP)


class LensController(QObject):
    shiftReady = Signal(object)  # ShiftResult (for tests)
    saved = Signal(int)  # history id

    def __init__(self, ctl: ComparisonController, controls: ControlsPanel, instruct_pane: ModelPane,
                 history: HistoryHost, bar: LensBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctl = ctl
        self.controls = controls
        self.pane = instruct_pane
        self.history = history
        self.bar = bar
        self.panel = ShiftPanel()
        scroll = QScrollArea()  # on a short screen the view scrolls rather than squeezes its text
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.panel)
        self.tab = scroll
        self.pane.tabs.addTab(scroll, "Token shift")
        self.panel.set_prompt_source(ctl.settings.shift_prompt_source)
        self.shift_id = 0
        self.result: ShiftResult | None = None
        self.last_record_id = 0
        self.record_run = 0  # the run whose comparison last_record_id holds
        self._export_query = -1  # the history load an export is waiting for
        self._export_fmt = "json"
        self._export_path = ""
        self.auto_analyze = False
        self._saved_for_run = 0
        self.refused: tuple[str, str] | None = None  # a pair whose tokenizers proved different
        ctl.runFinished.connect(self.on_run_finished)
        ctl.runningChanged.connect(self.on_running)
        ctl.resultsCleared.connect(self.on_results_cleared)
        ctl.pairChecked.connect(self.on_pair_checked)
        ctl.modelsChanged.connect(self.on_models_changed)
        ctl.conversationChanged.connect(self.on_conversation_changed)
        ctl.hosts["base"].worker.shifted.connect(self.on_shifted)
        history.worker.happened.connect(self.on_history)
        self.panel.analyzeRequested.connect(self.analyze)
        self.panel.rerunGreedyRequested.connect(self.rerun_greedy)
        self.panel.sourceChanged.connect(self.on_source)
        bar.export.clicked.connect(self.export_current)

    # -- runs ----------------------------------------------------------------------------------

    @Slot(bool)
    def on_running(self, running: bool) -> None:
        if running:
            self.shift_id += 1  # anything in flight is superseded
            self.result = None
            self.panel.reset("Running…", False)

    def _run_report(self) -> object | None:
        rep = self.ctl.run_report
        return rep if rep is not None and rep.request_id == self.ctl.run_id else None

    def report_blocker(self) -> str:
        """Why the alignment report cannot run now ("" when it can)."""
        if not (self.ctl.paths["base"] and self.ctl.paths["instruct"]):
            return "Choose a base and an instruct model first: the report runs both."
        return self.unavailable()

    @Slot()
    def on_models_changed(self) -> None:
        self.bar.set_report(self.report_blocker())

    def unavailable(self) -> str:
        """Why token shift cannot run for the current pair ("" when it can)."""
        pair = self.ctl.pair
        if pair is not None and not getattr(pair, "shift_available", True):
            return str(getattr(pair, "shift_unavailable_reason", ""))
        if self.refused == (self.ctl.paths["base"], self.ctl.paths["instruct"]):
            return ("Token shift needs two models that share a tokenizer, and these two do not: "
                    "pick a base model and its own instruct twin.")
        return ""

    @Slot(object)
    def on_pair_checked(self, _check: object) -> None:
        reason = self.unavailable()
        self.bar.set_report(self.report_blocker())
        if reason:
            self.panel.show_error(reason)
        elif not self.ctl.active and self.result is None:
            self._reset_ready()

    @Slot()
    def on_results_cleared(self) -> None:
        """New inputs: the shift, the saved comparison and the notes about the old answers go."""
        self.shift_id += 1  # an analysis in flight is superseded
        self.result = None
        self.last_record_id = 0
        self.record_run = 0
        self.bar.set_export(False)
        self.bar.set_note("")
        reason = self.unavailable()
        if reason:
            self.panel.show_error(reason)
        else:
            self.panel.reset("Run a comparison first.", False)

    @Slot()
    def on_conversation_changed(self) -> None:
        """A turn taken back puts its answers on screen again: the view can analyse them."""
        if not self.ctl.active and self.ctl.results.get("instruct") is not None \
                and not self.unavailable():
            self._reset_ready()

    def _reset_ready(self) -> None:
        inst = self.ctl.results.get("instruct")
        if inst is None or not inst.tokens:
            self.panel.reset("The token-shift view needs an instruct answer; run a comparison first.", False)
        else:
            self.panel.reset("Ready: press Analyse to see where post-training changed this answer.", True)

    @Slot(int)
    def on_run_finished(self, run_id: int) -> None:
        if run_id != self.ctl.run_id:
            return
        inst = self.ctl.results.get("instruct")
        base = self.ctl.results.get("base")
        reason = self.unavailable()
        if reason:
            self.panel.show_error(reason)  # the same pair: not "Ready" again
        else:
            self._reset_ready()
        self._save_history(base, inst)
        if self.auto_analyze and inst is not None and inst.tokens and not reason:
            self.auto_analyze = False
            self.analyze()

    def _save_history(self, base: object, inst: object) -> None:
        rep = self._run_report()
        if rep is None or base is None or inst is None or self._saved_for_run == self.ctl.run_id:
            return
        b_ins, i_ins = rep.base.inspection, rep.instruct.inspection  # type: ignore[attr-defined]
        if b_ins is None or i_ins is None:
            return
        self._saved_for_run = self.ctl.run_id
        user, system, mode = self.ctl.inputs
        loaded = self.ctl.loaded
        s = self.ctl.settings

        def result(ev: object) -> GenerationResult:
            return GenerationResult(ev.request_id, ev.text, ev.tokens, ev.stats)  # type: ignore[attr-defined]

        from desktop.core.history import turn_record

        earlier = []
        for t in self.ctl.turns:  # the conversation's earlier turns, each as it ran
            bi, ii = t.report.base.inspection, t.report.instruct.inspection
            if bi is None or ii is None:
                return
            earlier.append(turn_record([{"role": "user", "content": t.user}], bi.rendered,
                                       ii.rendered, result(t.results["base"]),
                                       result(t.results["instruct"]), t.params))
        self.history.save(SaveJob(
            self.ctl.run_id, self.ctl.paths["base"], self.ctl.paths["instruct"],
            loaded["base"].gguf if loaded["base"] else None,
            loaded["instruct"].gguf if loaded["instruct"] else None,
            user, system or None, mode, b_ins.rendered, i_ins.rendered, self.ctl.params,
            result(base), result(inst),
            LoadOptions(n_ctx=s.n_ctx, n_threads=self.ctl.threads_per_model(), n_gpu_layers=s.load_gpu_layers()),
            raw_control_tokens=b_ins.rendered.mode == "raw" and b_ins.rendered.parse_special,
            earlier=tuple(earlier),
        ))

    @Slot(object)
    def on_history(self, ev: HistoryEvent) -> None:
        if ev.kind == "saved" and ev.query_id == self.ctl.run_id:
            self.last_record_id = int(ev.payload)  # type: ignore[call-overload]
            self.record_run = ev.query_id
            self.bar.set_export(True)
            self.bar.set_note("Saved to history.")
            self.saved.emit(self.last_record_id)
            if self.result is not None:  # the analysis finished before the save
                self.history.set_shift(self.last_record_id, self.result.to_json_dict())
        elif ev.kind == "error" and ev.query_id == self.ctl.run_id:
            self.bar.set_note(ev.message)
        elif ev.kind == "record" and ev.query_id == self._export_query:
            _rid, rec = cast(tuple[int, Any], ev.payload)
            if self.result is not None and getattr(rec, "shift", None) is None:
                from dataclasses import replace

                rec = replace(rec, shift=self.result.to_json_dict())
            self.history.export(rec, self._export_fmt, self._export_path)
        elif ev.kind == "exported":
            self.bar.set_note(ev.message)

    @Slot()
    def export_current(self) -> None:
        from desktop.core import paths

        start = str(paths.documents_dir() / "comparison.html")
        path, chosen = QFileDialog.getSaveFileName(
            self.bar, "Export comparison", start,
            "Web page (*.html);;Markdown (*.md);;JSON, re-runnable (*.json)")
        if path:
            self.export_to(path)

    def export_to(self, path: str) -> None:
        fmt = "md" if path.endswith(".md") else "json" if path.endswith(".json") else "html"
        self._export_fmt, self._export_path = fmt, path
        self._export_query = self.history.load(self.last_record_id)

    # -- token shift -----------------------------------------------------------------------------

    @Slot(str)
    def on_source(self, key: str) -> None:
        self.ctl.settings.shift_prompt_source = key
        if self.result is not None:
            self.analyze()

    @Slot()
    def analyze(self) -> None:
        inst = self.ctl.results.get("instruct")
        rep = self._run_report()
        if inst is None or not inst.tokens or rep is None:
            self.panel.show_error("Run a comparison first: the view scores the instruct answer.")
            return
        if self.ctl.loaded["base"] is None:
            self.panel.show_error(self.ctl.load_error["base"] or "The base model is not loaded.")
            return
        source = self.panel.prompt_source()
        side = rep.instruct if source == "chat" else rep.base  # type: ignore[attr-defined]
        if side.inspection is None:
            self.panel.show_error(side.error or "That prompt could not be built.")
            return
        r = side.inspection.rendered
        if source != "chat" and rep.shift_base is not None:  # type: ignore[attr-defined]
            # a conversation: the instruct side's earlier turns, in the base mode's form
            r = rep.shift_base  # type: ignore[attr-defined]
        self.shift_id += 1
        p: SamplingParams = self.ctl.params
        greedy = p.temperature <= 0 or p.top_k == 1
        self.panel.reset("Scoring the instruct answer under the base model…", False)
        self.ctl.hosts["base"].shift(ShiftJob(self.shift_id, self.ctl.paths["instruct"], r,
                                              tuple(inst.tokens), greedy))

    @Slot(object)
    def on_shifted(self, done: ShiftDone) -> None:
        if done.request_id != self.shift_id:
            return  # superseded
        if done.result is None:
            if done.tokenizers_differ:
                self.refused = (self.ctl.paths["base"], self.ctl.paths["instruct"])
                self.bar.set_report(self.report_blocker())
            self.panel.show_error(done.error)
            return
        res: ShiftResult = done.result  # type: ignore[assignment]
        self.result = res
        self.panel.analyze.setEnabled(True)
        self.panel.show_result(res)
        answer = self.pane.answer
        classes, tips = overlay_for(res, len(answer.tokens()))
        colors = {c.value: QColor(c.color) for c in ShiftClass}
        answer.set_overlay(classes, colors, tips, LEGEND)  # type: ignore[arg-type]
        self.pane.set_legend(LEGEND)
        if self.last_record_id and self.record_run == self.ctl.run_id:
            self.history.set_shift(self.last_record_id, res.to_json_dict())
        self.shiftReady.emit(res)

    @Slot()
    def rerun_greedy(self) -> None:
        self.controls.choose_preset("deterministic")
        self.auto_analyze = True
        self.controls.runRequested.emit()

    # -- guided examples -------------------------------------------------------------------------

    @Slot(object)
    def load_example(self, ex: object) -> None:
        self.ctl.clear_results()  # the old answers belong to the old message
        c = self.controls
        c.prompt.setPlainText(ex.user)  # type: ignore[attr-defined]
        c.system.setText(ex.system or "")  # type: ignore[attr-defined]
        idx = c.mode.findData(ex.base_mode.value)  # type: ignore[attr-defined]
        if idx >= 0:
            c.mode.setCurrentIndex(idx)
        c.choose_preset("deterministic")
        c.max_tokens.setValue(int(ex.max_tokens))  # type: ignore[attr-defined]
        self.bar.set_note(ex.what_to_look_for)  # type: ignore[attr-defined]
