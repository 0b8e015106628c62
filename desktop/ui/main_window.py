"""The main window: it only composes panels and wires them to the controller."""

from __future__ import annotations

import importlib

from PySide6.QtCore import QByteArray, QSettings, Qt, Slot
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.core import paths
from desktop.core import settings as settings_mod
from desktop.core.errors import plain_reason
from desktop.core.settings import Settings
from desktop.ui.controller import ComparisonController
from desktop.ui.controls import ControlsPanel
from desktop.ui.empty_state import EmptyState
from desktop.ui.history_panel import HistoryPanel
from desktop.ui.lens import LensBar, LensController
from desktop.ui.pane import ModelPane
from desktop.workers.history_worker import HistoryHost


def window_state() -> QSettings:
    """QSettings is used only for window geometry, in an ini file beside our settings."""
    return QSettings(str(paths.config_dir() / "window.ini"), QSettings.Format.IniFormat)


def scan_models(settings: Settings) -> list[tuple[str, str]]:
    """(label, path) of the models Based knows about: directory listings, and each file's header
    checked once (cached); a split model is one entry (its part 1)."""
    from desktop.core.library import list_local_models

    return [(m.label, m.path) for m in list_local_models(settings)]


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings, notice: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self._remember_models_in_use()
        self.setWindowTitle("Based — base vs instruct")
        self.resize(1280, 720)
        self.setMinimumSize(900, 560)

        self.tabs = QTabWidget()
        self.setCentralWidget(self.tabs)
        compare = QWidget()
        lay = QVBoxLayout(compare)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setSpacing(4)
        # what Based has to say about the settings file: a banner until read
        self.notice_box = QWidget()
        self.notice_box.setObjectName("notice")
        self.notice_box.setStyleSheet("QWidget#notice { background:#fef3c7; border-radius:4px; }")
        nl = QHBoxLayout(self.notice_box)
        nl.setContentsMargins(6, 4, 6, 4)
        self.notice = QLabel(notice or "")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("QLabel { color:#78350f; }")
        nl.addWidget(self.notice, 1)
        self.notice_ok = QPushButton("Got it")
        self.notice_ok.setToolTip("Hide this message")
        self.notice_ok.clicked.connect(self.notice_box.hide)
        nl.addWidget(self.notice_ok, 0, Qt.AlignmentFlag.AlignTop)
        self.notice_box.setVisible(bool(notice))
        lay.addWidget(self.notice_box)
        self.controls = ControlsPanel()
        lay.addWidget(self.controls)
        self.lens_bar = LensBar()
        self.lens_bar.note.setContentsMargins(4, 0, 4, 0)
        lay.addWidget(self.lens_bar.note)
        # one line per thing to know about the pair before running it (issue 13.7)
        self.pair_note = QLabel("")
        self.pair_note.setWordWrap(True)
        self.pair_note.setAccessibleName("pair note")
        self.pair_note.setStyleSheet("QLabel { color:#78350f; background:#fef3c7; border-radius:4px;"
                                     " padding:4px; }")
        self.pair_note.hide()
        lay.addWidget(self.pair_note)
        self.stack = QStackedWidget()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.base_pane = ModelPane("base", "Base model (pretrained only)")
        self.instruct_pane = ModelPane("instruct", "Instruct model (chat-tuned)")
        self.splitter.addWidget(self.base_pane)
        self.splitter.addWidget(self.instruct_pane)
        self.empty = EmptyState()
        self.stack.addWidget(self.splitter)
        self.stack.addWidget(self.empty)
        lay.addWidget(self.stack, 1)
        self.tabs.addTab(compare, "Compare")
        self.tabs.setCornerWidget(self.lens_bar, Qt.Corner.TopRightCorner)

        self.models_panel = self._make_models_panel()
        if self.models_panel is not None:
            self.tabs.addTab(self.models_panel, "Models")
        self.history_host = HistoryHost(self)
        self.history_panel = HistoryPanel(self.history_host)
        self.tabs.addTab(self.history_panel, "History")

        self.controller = ComparisonController(
            settings, {"base": self.base_pane, "instruct": self.instruct_pane}, self
        )
        self.lens = LensController(self.controller, self.controls, self.instruct_pane, self.history_host,
                                   self.lens_bar, self)
        self.gallery: QDialog | None = None
        self.report_dialog: QDialog | None = None
        self.controls.load_settings(settings)
        self._wire()
        self.model_entries: list[tuple[str, str]] = []  # (label, path), from the last scan
        self.refresh_models()
        for side, path in (("base", settings.base_model), ("instruct", settings.instruct_model)):
            if path:
                self.controller.set_model(side, path)
        self._inputs_changed()
        self._models_changed()
        self.lens.on_models_changed()
        self._restore_geometry()

    # -- composition ---------------------------------------------------------------------------

    def _make_models_panel(self) -> QWidget | None:
        try:
            mod = importlib.import_module("desktop.ui.models_panel")
        except ModuleNotFoundError as exc:
            if exc.name != "desktop.ui.models_panel":
                raise
            return None
        panel: QWidget = mod.ModelsPanel(self.settings, self)
        return panel

    def _wire(self) -> None:
        c = self.controls
        c.runRequested.connect(self.run)
        c.stopRequested.connect(self.stop)
        c.followUpRequested.connect(self.follow_up)
        c.newConversationRequested.connect(self.new_conversation)
        c.editLastTurnRequested.connect(self.edit_last_turn)
        c.inputsChanged.connect(self._inputs_changed)
        c.runModeChanged.connect(self._run_mode_changed)
        self.base_pane.modelChosen.connect(self._base_chosen)
        self.instruct_pane.modelChosen.connect(self._instruct_chosen)
        for pane in (self.base_pane, self.instruct_pane):
            pane.set_gpu_choice(self.settings.gpu, self.settings.n_gpu_layers)
            pane.gpuChoiceChanged.connect(self._gpu_choice_changed)
        self.controller.runningChanged.connect(self._running_changed)
        self.controller.modelsChanged.connect(self._models_changed)
        self.controller.pairChecked.connect(self._pair_checked)
        for sig in (self.controller.conversationChanged, self.controller.resultsCleared,
                    self.controller.reportReady, self.controller.runningChanged,
                    self.controller.runFinished):
            sig.connect(self._update_conversation)
        self.empty.getPairRequested.connect(self._show_models)
        self.empty.openBaseRequested.connect(self.base_pane.open_file)
        self.empty.openInstructRequested.connect(self.instruct_pane.open_file)
        if self.models_panel is not None:
            lib_changed = getattr(self.models_panel, "libraryChanged", None)
            if lib_changed is not None:
                lib_changed.connect(self.refresh_models)
            pair = getattr(self.models_panel, "pairChosen", None)
            if pair is not None:
                pair.connect(self.use_pair)
        self.empty.get_pair.setEnabled(self.models_panel is not None)
        self.lens_bar.examples.clicked.connect(self.show_gallery)
        self.lens_bar.report.clicked.connect(self.show_report)
        self.tabs.currentChanged.connect(self._tab_changed)
        run_sc = QShortcut(QKeySequence("Ctrl+Return"), self)
        run_sc.activated.connect(self.run)
        stop_sc = QShortcut(QKeySequence("Escape"), self)
        stop_sc.activated.connect(self.stop)
        follow_sc = QShortcut(QKeySequence("Ctrl+Shift+Return"), self)
        follow_sc.activated.connect(self.follow_up)

    # -- slots ---------------------------------------------------------------------------------

    @Slot()
    def run(self) -> None:
        # models, the message and every value are checked before any work; a refusal shows next
        # to Run (which is disabled, with the reason as its tooltip, when no model can run)
        self.tabs.setCurrentIndex(0)  # Ctrl+Enter from another tab: the answers are here
        if not self.controls.check_run():
            return
        self.controls.store_settings(self.settings)
        self.controller.run(self.controls.params())
        self.save_settings()

    @Slot()
    def stop(self) -> None:
        self.controller.stop()

    # -- conversations -------------------------------------------------------------------------

    @Slot()
    def follow_up(self) -> None:
        """Keep the answers as a turn and go on: a message already changed above is asked at
        once; otherwise the message box empties for the next one."""
        self.tabs.setCurrentIndex(0)
        reason = self.controller.follow_up_blocker()
        if reason:
            self.controls.show_message(reason, error=True)
            return
        text = self.controls.prompt.toPlainText()
        asked = self.controller.run_inputs[0] if self.controller.run_inputs else ""
        self.controller.follow_up()
        if text.strip() and text != asked:
            self.run()
        else:
            self.controls.prompt.clear()
            self.controls.prompt.setFocus()

    @Slot()
    def new_conversation(self) -> None:
        self.controller.new_conversation()
        self.controls.prompt.setFocus()

    @Slot()
    def edit_last_turn(self) -> None:
        user = self.controller.edit_last_turn()
        if user or self.controller.results.get("instruct") is not None:
            self.controls.prompt.setPlainText(user)
            self.controls.prompt.setFocus()

    @Slot()
    def _update_conversation(self, *_args: object) -> None:
        ctl = self.controller
        self.controls.set_follow_up(ctl.follow_up_blocker())
        kept = len(ctl.turns)
        answered = any(ctl.results.values())
        self.controls.edit_turn_button.setVisible(kept > 0 and not answered)
        self.controls.edit_turn_button.setText(f"Edit turn {kept}")
        self.controls.set_conversation(kept, self.conversation_words() if kept else "")

    def conversation_words(self) -> str:
        """The conversation bar: which turn this is, how the base model reads the earlier ones,
        and how much context each side has left (a warning when an answer may not fit)."""
        from desktop.core.prompts import BaseMode
        from desktop.core.words import count

        ctl = self.controller
        words = [f"Turn {len(ctl.turns) + 1} of a conversation.",
                 BaseMode(self.controls.base_mode()).follow_up_form()]
        left = ctl.context_left()
        known = {s: n for s, n in left.items() if n is not None and ctl.paths[s]}
        if known:
            words.append("Context left: " + ", ".join(
                f"{side} {count(max(n, 0), 'token')}" for side, n in known.items()) + ".")
            need = self.controls.max_tokens.value()
            tight = [s for s, n in known.items() if n < need]
            if tight:
                words.append(
                    f"The {' and '.join(tight)} model{'s have' if len(tight) > 1 else ' has'} less "
                    f"room than Max tokens ({need:,}), so an answer may be cut short: start a new "
                    "conversation to make room.")
        return " ".join(words)

    @Slot()
    def show_gallery(self) -> None:
        from desktop.ui.gallery import GalleryDialog

        self.gallery = GalleryDialog(self)
        self.gallery.exampleChosen.connect(self.lens.load_example)  # type: ignore[attr-defined]
        self.gallery.open()

    @Slot()
    def show_report(self) -> None:
        from desktop.ui.report_dialog import ReportDialog

        self.report_dialog = ReportDialog(
            self.settings.base_model, self.settings.instruct_model, self,
            base_mode=self.controls.base_mode(), prompt_source=self.settings.shift_prompt_source,
            unavailable=self.lens.unavailable())
        self.report_dialog.open()

    @Slot(int)
    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.history_panel:
            self.history_panel.refresh()

    @Slot(bool)
    def _running_changed(self, running: bool) -> None:
        self.controls.set_running(running)

    @Slot()
    def _models_changed(self) -> None:
        self.controls.set_blocked(self.controller.run_blocker())

    @Slot(object)
    def _pair_checked(self, check: object) -> None:
        lines = tuple(getattr(check, "lines", ()) or ())
        self.pair_note.setText("\n".join(lines))
        self.pair_note.setVisible(bool(lines) and self.stack.currentWidget() is self.splitter)

    @Slot()
    def _inputs_changed(self) -> None:
        self.controller.set_inputs(
            self.controls.prompt.toPlainText(), self.controls.system.text(), self.controls.base_mode(),
            self.controls.raw_control_tokens(),
        )

    @Slot(str)
    def _run_mode_changed(self, mode: str) -> None:
        self.settings.run_mode = mode
        self.controller.reload_all()

    @Slot(str, int)
    def _gpu_choice_changed(self, choice: str, layers: int) -> None:
        """Where models run, chosen in either pane: one setting for both; loaded models reload."""
        if (choice, layers) == (self.settings.gpu, self.settings.n_gpu_layers):
            return
        self.settings.gpu, self.settings.n_gpu_layers = choice, layers
        for pane in (self.base_pane, self.instruct_pane):
            pane.set_gpu_choice(choice, layers)
        self.controller.reload_all()

    @Slot(str)
    def _base_chosen(self, path: str) -> None:
        self.choose("base", path)

    @Slot(str)
    def _instruct_chosen(self, path: str) -> None:
        self.choose("instruct", path)

    def choose(self, side: str, path: str) -> None:
        """Pick a model for one side. A file that is not a model Based can load (not GGUF, damaged,
        a later part of a split model, ...) is refused in the pane and never remembered: the
        side keeps its model."""
        from desktop.core.model_check import check

        problem = check(path) if path else None
        if problem:
            self.refresh_models()  # the picker goes back to the side's model
            pane = self.base_pane if side == "base" else self.instruct_pane
            pane.show_error(problem)
            return
        if side == "base":
            self.settings.base_model = path
        else:
            self.settings.instruct_model = path
        known = {p for _, p in self.model_entries}
        if path and path not in known and path not in self.settings.extra_model_files:
            self.settings.extra_model_files.append(path)
        self.refresh_models()
        self.controller.set_model(side, path)
        self.save_settings()

    @Slot(str, str)
    def use_pair(self, base: str, instruct: str) -> None:
        self.choose("base", base)
        self.choose("instruct", instruct)
        self.tabs.setCurrentIndex(0)

    def _remember_models_in_use(self) -> None:
        """Models chosen outside the window (``based gui --base``, an older settings file) are
        listed under "On this machine" like files opened by hand."""
        from pathlib import Path

        folder = self.settings.resolved_models_dir().resolve()
        for path in (self.settings.base_model, self.settings.instruct_model):
            p = Path(path) if path else None
            if p is None or not p.is_file() or path in self.settings.extra_model_files:
                continue
            if not p.resolve().is_relative_to(folder):
                self.settings.extra_model_files.append(path)

    @Slot()
    def refresh_models(self) -> None:
        """Scan the library once and update both pickers and the empty state. Remembered files
        that vanished or no longer validate are forgotten first (with a notice), and unloaded."""
        from desktop.core.library import describe_forgotten, forget_unusable

        chosen = {"base": self.settings.base_model, "instruct": self.settings.instruct_model}
        forgotten = forget_unusable(self.settings)
        if forgotten:
            notes = []
            for item in forgotten:
                sides = [side for side, path in chosen.items() if path == item.path]
                for side in sides:  # said where the user looks: in that side's pane
                    if self.controller.paths.get(side) == item.path:
                        self.controller.set_model(side, "")
                    (self.base_pane if side == "base" else self.instruct_pane).show_error(item.reason)
                if not sides:
                    notes.append(describe_forgotten(item))
            self.save_settings()
            if notes:
                self.notice.setText(" ".join([t for t in (self.notice.text(),) if t] + notes))
                self.notice_box.show()
        self.model_entries = scan_models(self.settings)
        self.base_pane.set_models(self.model_entries, self.settings.base_model)
        self.instruct_pane.set_models(self.model_entries, self.settings.instruct_model)
        self._update_empty_state()

    @Slot()
    def _show_models(self) -> None:
        if self.models_panel is not None:
            self.tabs.setCurrentWidget(self.models_panel)

    def _update_empty_state(self) -> None:
        has_any = bool(self.model_entries) or bool(self.settings.base_model or self.settings.instruct_model)
        self.stack.setCurrentWidget(self.splitter if has_any else self.empty)
        self.pair_note.setVisible(bool(self.pair_note.text()) and has_any)

    # -- persistence ---------------------------------------------------------------------------

    def save_settings(self) -> None:
        self.controls.store_settings(self.settings)
        try:
            settings_mod.save(self.settings)
        except OSError as exc:
            self.notice.setText(f"Your settings could not be saved ({plain_reason(exc)}).")
            self.notice_box.show()

    def _restore_geometry(self) -> None:
        qs = window_state()
        geo = qs.value("geometry")
        if isinstance(geo, QByteArray):
            self.restoreGeometry(geo)
        split = qs.value("splitter")
        if isinstance(split, QByteArray):
            self.splitter.restoreState(split)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        qs = window_state()
        qs.setValue("geometry", self.saveGeometry())
        qs.setValue("splitter", self.splitter.saveState())
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> bool:
        ok = self.controller.shutdown()
        if self.report_dialog is not None:
            self.report_dialog.done(0)
        ok = self.history_host.shutdown() and ok
        if self.models_panel is not None and hasattr(self.models_panel, "shutdown"):
            self.models_panel.shutdown()
        return ok
