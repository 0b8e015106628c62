"""The alignment report dialog: run the shift analysis over a prompt set into one HTML file."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.core import paths
from desktop.core.examples import load_starter_prompts
from desktop.core.shift import PROMPT_SOURCE_HELP, PROMPT_SOURCE_LABELS
from desktop.core.words import count
from desktop.workers.report_worker import ReportEvent, ReportHost, ReportJob


def _model_words(path: str) -> str:
    if not path:
        return "<i>none chosen</i>"
    return f"<b>{html.escape(Path(path).name)}</b>"


class ReportDialog(QDialog):
    """``unavailable``: why the pair cannot be analysed (tokenizers differ), or ""."""

    def __init__(self, base_path: str, instruct_path: str, parent: QWidget | None = None, *,
                 base_mode: str = "twin-template", prompt_source: str = "chat",
                 unavailable: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Alignment report")
        self.resize(680, 420)
        self.base_path, self.instruct_path = base_path, instruct_path
        self.base_mode = base_mode
        self.host = ReportHost(self)
        self.host.worker.happened.connect(self._on_event)
        self.job_id = 0
        self.prompts: list[str] = load_starter_prompts()
        lay = QVBoxLayout(self)
        intro = QLabel(
            "Runs the token-shift analysis over a set of prompts: the instruct model answers each "
            "one (greedily), the base model scores every token of that answer, and Based writes "
            "one web page with the results and plots.")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        if base_path and base_path == instruct_path:
            models = (f"{_model_words(base_path)} on both sides: the same file, so the report checks "
                      "the method (or, with the base model's own prompt, what that prompt alone does)")
        else:
            models = f"Base: {_model_words(base_path)}<br>Instruct: {_model_words(instruct_path)}"
        self.models = QLabel(models)
        self.models.setTextFormat(Qt.TextFormat.RichText)
        self.models.setWordWrap(True)
        self.models.setToolTip("The two models chosen in the Compare tab; change them there")
        form.addRow("Models", self.models)
        self.prompts_label = QLabel(f"Built-in starter set ({count(len(self.prompts), 'prompt')})")
        pick = QPushButton("Use a file…")
        pick.setToolTip("A .txt file with one prompt per line, or a .json list of strings")
        pick.clicked.connect(self._pick_prompts)
        row = QHBoxLayout()
        row.addWidget(self.prompts_label, 1)
        row.addWidget(pick)
        form.addRow("Prompts", row)
        self.source = QComboBox()
        for key, text in PROMPT_SOURCE_LABELS.items():
            self.source.addItem(text[:1].upper() + text[1:], key)
        self.source.setCurrentIndex(max(0, self.source.findData(prompt_source)))
        self.source.setToolTip("What the base model reads before each instruct answer it scores")
        self.source.currentIndexChanged.connect(self._source_changed)
        form.addRow("The base model reads", self.source)
        self.source_help = QLabel("")
        self.source_help.setWordWrap(True)
        self.source_help.setStyleSheet("color: palette(mid)")
        form.addRow("", self.source_help)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(8, 2048)
        self.max_tokens.setValue(128)
        self.max_tokens.setToolTip("Longest instruct answer per prompt, in tokens")
        form.addRow("Max tokens", self.max_tokens)
        out_row = QHBoxLayout()
        self.out = QLineEdit(str(paths.documents_dir() / "alignment-report.html"))
        self.out.setToolTip("Where the web page is written (your Documents folder unless you choose)")
        choose = QPushButton("Choose…")
        choose.setToolTip("Pick the folder and name of the report")
        choose.clicked.connect(self._choose_out)
        out_row.addWidget(self.out, 1)
        out_row.addWidget(choose)
        form.addRow("Save to", out_row)
        lay.addLayout(form)
        self.bar = QProgressBar()
        self.bar.setRange(0, max(1, len(self.prompts)))
        self.bar.setValue(0)
        lay.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)
        buttons = QDialogButtonBox()
        self.start = QPushButton("Start")
        self.start.setToolTip("Load both models and run every prompt")
        self.stop = QPushButton("Stop")
        self.stop.setToolTip("Stop; the report keeps the prompts already finished")
        self.stop.setEnabled(False)
        self.open_button = QPushButton("Open report")
        self.open_button.setToolTip("Opens the finished report in your web browser")
        self.open_button.setEnabled(False)
        for b in (self.start, self.stop, self.open_button):
            buttons.addButton(b, QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.close_button.setToolTip("Close this window (a report still running stops)")
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.start.clicked.connect(self.begin)
        self.stop.clicked.connect(self.host.stop)
        self.open_button.clicked.connect(self._open)
        self._source_changed()
        reason = ""
        if not (base_path and instruct_path):
            reason = "Pick a base and an instruct model in the Compare tab first."
        elif unavailable:
            reason = unavailable
        if reason:
            self.start.setEnabled(False)
            self.start.setToolTip(reason)
            self.status.setText(reason)

    @Slot()
    def _source_changed(self) -> None:
        self.source_help.setText(PROMPT_SOURCE_HELP[str(self.source.currentData())])

    @Slot()
    def _pick_prompts(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Prompt file", str(paths.documents_dir()),
                                              "Prompts (*.txt *.json)")
        if path:
            self.load_prompts(path)

    @Slot()
    def _choose_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the report as", self.out.text(),
                                              "Web page (*.html)")
        if path:
            self.out.setText(path)

    def load_prompts(self, path: str) -> None:
        from desktop.core.errors import BasedError
        from desktop.core.examples import read_prompt_file

        try:
            prompts = read_prompt_file(path)
        except BasedError as exc:
            self.status.setText(str(exc))
            return
        self.prompts = prompts
        self.prompts_label.setText(f"{Path(path).name} ({count(len(prompts), 'prompt')})")
        self.bar.setRange(0, len(prompts))

    @Slot()
    def begin(self) -> None:
        from desktop.core.errors import plain_reason

        out = Path(self.out.text()).expanduser()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.status.setText(f"The report cannot be saved there ({plain_reason(exc)}); choose another place.")
            return
        self.job_id += 1
        self.bar.setValue(0)
        self.start.setEnabled(False)
        self.stop.setEnabled(True)
        self.open_button.setEnabled(False)
        self.status.setText("Loading both models…")
        self.host.start(ReportJob(self.job_id, self.base_path, self.instruct_path, tuple(self.prompts), str(out),
                                  max_tokens=self.max_tokens.value(),
                                  prompt_source=str(self.source.currentData()),
                                  base_mode=self.base_mode))

    @Slot(object)
    def _on_event(self, ev: ReportEvent) -> None:
        if ev.job_id != self.job_id:
            return
        if ev.kind == "progress":
            self.bar.setMaximum(max(1, ev.total))
            self.bar.setValue(ev.done)
            if ev.text:
                self.status.setText(f"Prompt {ev.done + 1} of {ev.total}: {ev.text[:80]}")
            return
        self.start.setEnabled(True)
        self.stop.setEnabled(False)
        self.status.setText(ev.text)
        self.status.setStyleSheet("color:#991b1b" if ev.kind == "failed" else "")
        self.open_button.setEnabled(ev.kind == "done")

    @Slot()
    def _open(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.out.text()))

    def done(self, r: int) -> None:  # closing the dialog stops the work
        self.host.shutdown()
        super().done(r)
