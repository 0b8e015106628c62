"""Guided examples: curated prompts that each show a known base/instruct difference."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.core.examples import GuidedExample, load_examples


class GalleryDialog(QDialog):
    exampleChosen = Signal(object)  # GuidedExample

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Guided examples")
        self.resize(720, 520)
        self.examples: list[GuidedExample] = load_examples()
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Each example shows something post-training changes. Pick one and press "
                             "<b>Load</b> (or double-click), then Run."))
        self.list = QListWidget()
        self.list.setToolTip("Double-click to load the example into the window")
        for ex in self.examples:
            item = QListWidgetItem(ex.title)
            item.setData(Qt.ItemDataRole.UserRole, ex.id)
            self.list.addItem(item)
        lay.addWidget(self.list, 1)
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.detail.setMinimumHeight(110)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.detail)
        buttons = QDialogButtonBox()
        self.load_button = buttons.addButton("Load", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Close)
        buttons.accepted.connect(self._load)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.list.currentRowChanged.connect(self._show)
        self.list.itemDoubleClicked.connect(self._double)
        if self.examples:
            self.list.setCurrentRow(0)

    @Slot(int)
    def _show(self, row: int) -> None:
        if not 0 <= row < len(self.examples):
            return
        ex = self.examples[row]
        user = html.escape(ex.user if len(ex.user) < 400 else ex.user[:400] + "…").replace("\n", "<br>")
        self.detail.setText(
            f"<b>{html.escape(ex.title)}</b> · base mode: {html.escape(ex.base_mode.label)}"
            f"<p>{html.escape(ex.what_to_look_for)}</p><p style='color:gray'>{user}</p>"
        )

    @Slot(QListWidgetItem)
    def _double(self, _item: QListWidgetItem) -> None:
        self._load()

    def choose(self, row: int) -> None:
        self.list.setCurrentRow(row)
        self._load()

    @Slot()
    def _load(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.examples):
            self.exampleChosen.emit(self.examples[row])
            self.accept()
