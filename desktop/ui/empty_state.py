"""First run with no models: what base and instruct mean, and how to get a pair."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

TEXT = (
    "<h2>Welcome to Based</h2>"
    "<p>A <b>base</b> model has only been pretrained: it continues text the way documents on the "
    "internet continue. Its <b>instruct</b> twin was then trained to follow instructions and chat, "
    "and Based shows you, side by side, what that training changed.</p>"
    "<p>To begin, get a small base/instruct pair (a few hundred MB, runs on any laptop), "
    "or open GGUF files you already have.</p>"
)


class EmptyState(QWidget):
    getPairRequested = Signal()
    openBaseRequested = Signal()
    openInstructRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.addStretch(1)
        label = QLabel(TEXT)
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setMaximumWidth(640)
        label.setMinimumWidth(min(560, label.fontMetrics().averageCharWidth() * 90))
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(label)
        row.addStretch(1)
        lay.addLayout(row)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.get_pair = QPushButton("Get a model pair…")
        self.get_pair.setToolTip("Browse the curated base/instruct twins and download one")
        self.get_pair.setDefault(True)  # the way in for most people
        self.get_pair.clicked.connect(self.getPairRequested)
        self.open_base = QPushButton("Open a base model…")
        self.open_base.setToolTip("Pick a base (pretrained-only) .gguf file")
        self.open_base.clicked.connect(self.openBaseRequested)
        self.open_instruct = QPushButton("Open an instruct model…")
        self.open_instruct.setToolTip("Pick an instruct (chat-tuned) .gguf file")
        self.open_instruct.clicked.connect(self.openInstructRequested)
        for b in (self.get_pair, self.open_base, self.open_instruct):
            buttons.addWidget(b)
        buttons.addStretch(1)
        lay.addLayout(buttons)
        lay.addStretch(2)
