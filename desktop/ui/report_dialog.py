"""The alignment report dialog: run the shift analysis over a prompt set into one HTML file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
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
from desktop.core.words import count
from desktop.workers.report_worker import ReportEvent, ReportHost, ReportJob


class ReportDialog(QDialog):
    def __init__(self, base_path: str, instruct_path: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Alignment report")
        self.resize(620, 300)
        self.base_path, self.instruct_path = base_path, instruct_path
        self.host = ReportHost(self)
        self.host.worker.happened.connect(self._on_event)
        self.job_id = 0
        self.prompts: list[str] = load_starter_prompts()
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(
            "Runs the token-shift analysis over a set of prompts (greedy instruct answers scored under "
            "the base model) and writes one self-contained HTML report with plots."))
        form = QFormLayout()
        self.prompts_label = QLabel(f"Built-in starter set ({count(len(self.prompts), 'prompt')})")
        pick = QPushButton("Use a file…")
        pick.setToolTip("A .txt file with one prompt per line, or a .json list of strings")
        pick.clicked.connect(self._pick_prompts)
        row = QHBoxLayout()
        row.addWidget(self.prompts_label, 1)
        row.addWidget(pick)
        form.addRow("Prompts", row)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(8, 2048)
        self.max_tokens.setValue(128)
        self.max_tokens.setToolTip("Longest instruct answer per prompt, in tokens")
        form.addRow("Max tokens", self.max_tokens)
        default_out = paths.data_dir() / "reports" / "alignment-report.html"
        self.out = QLineEdit(str(default_out))
        self.out.setToolTip("Where the HTML report is written")
        form.addRow("Save to", self.out)
        lay.addLayout(form)
        self.bar = QProgressBar()
        self.bar.setRange(0, max(1, len(self.prompts)))
        self.bar.setValue(0)
        lay.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        buttons = QHBoxLayout()
        self.start = QPushButton("Start")
        self.start.setToolTip("Load both models and run every prompt")
        self.stop = QPushButton("Stop")
        self.stop.setToolTip("Stop; the report keeps the prompts already finished")
        self.stop.setEnabled(False)
        self.open_button = QPushButton("Open report")
        self.open_button.setEnabled(False)
        buttons.addStretch(1)
        for b in (self.start, self.stop, self.open_button):
            buttons.addWidget(b)
        lay.addLayout(buttons)
        self.start.clicked.connect(self.begin)
        self.stop.clicked.connect(self.host.stop)
        self.open_button.clicked.connect(self._open)
        if not (base_path and instruct_path):
            self.start.setEnabled(False)
            self.status.setText("Pick a base and an instruct model first.")

    @Slot()
    def _pick_prompts(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Prompt file", "", "Prompts (*.txt *.json)")
        if path:
            self.load_prompts(path)

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
        out = Path(self.out.text()).expanduser()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.status.setText(f"The report cannot be saved there ({exc.strerror}); choose another place.")
            return
        self.job_id += 1
        self.bar.setValue(0)
        self.start.setEnabled(False)
        self.stop.setEnabled(True)
        self.open_button.setEnabled(False)
        self.status.setText("Loading both models…")
        self.host.start(ReportJob(self.job_id, self.base_path, self.instruct_path, tuple(self.prompts), str(out),
                                  max_tokens=self.max_tokens.value()))

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
