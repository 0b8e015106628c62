"""The "On this machine" box of the Models view: one row per model (a split model once, its size
over all parts), whether it fits, and use / remove / models folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.core import settings as settings_mod
from desktop.core.errors import failure_sentence
from desktop.core.fit import assess_fit, free_ram_bytes
from desktop.core.gguf_info import human_bytes
from desktop.core.gguf_split import display_name
from desktop.core.library import describe_removal, list_local_models, remove_model
from desktop.core.settings import Settings
from desktop.ui.catalog_view import VERDICT_COLOUR

WHERE = {"library": "models folder", "opened": "opened by hand", "hf-cache": "Hugging Face cache"}


def _display_path(p: Path) -> str:
    """A folder as people read it: the home folder shown as ~."""
    try:
        return "~/" + str(p.relative_to(Path.home()))
    except ValueError:
        return str(p)


class LibraryBox(QGroupBox):
    """``changed``: models were removed or the folder moved; ``pairChosen(base, instruct)``."""

    changed = Signal()
    pairChosen = Signal(str, str)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("On this machine", parent)
        self.settings = settings
        self.gpu_free: int | None = None  # free GPU memory, when llama.cpp has a GPU backend
        lay = QVBoxLayout(self)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Model", "Quant", "Size", "Where", "This machine"])
        self.tree.setRootIsDecorated(False)
        self.tree.setToolTip("GGUF models in your models folder, opened by hand, or in the Hugging Face cache")
        lay.addWidget(self.tree, 1)
        row = QHBoxLayout()
        self.use_base = QPushButton("Use as base")
        self.use_base.setToolTip("Pick the selected model as the base (left) model")
        self.use_instruct = QPushButton("Use as instruct")
        self.use_instruct.setToolTip("Pick the selected model as the instruct (right) model")
        self.remove = QPushButton("Remove…")
        self.remove.setToolTip("Delete the selected model (every part of a split one) and free its disk space")
        self.folder = QPushButton("Models folder…")
        self.folder.setToolTip("Choose where downloaded models are kept")
        for b in (self.use_base, self.use_instruct, self.remove):
            b.setEnabled(False)
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.folder)
        lay.addLayout(row)
        self.folder_label = QLabel("")
        self.folder_label.setStyleSheet("color:gray")
        self.folder_label.setWordWrap(True)
        lay.addWidget(self.folder_label)
        self.tree.currentItemChanged.connect(self._selected)
        self.use_base.clicked.connect(self._use_base)
        self.use_instruct.clicked.connect(self._use_instruct)
        self.remove.clicked.connect(self._remove)
        self.folder.clicked.connect(self._choose_folder)

    def refresh(self) -> None:
        self.tree.clear()
        gpu = self.gpu_free is not None and self.settings.gpu != "cpu"
        free = self.gpu_free if gpu else free_ram_bytes()
        for m in list_local_models(self.settings):
            place = WHERE.get(m.source, m.source) + (f" · {m.repo}" if m.repo else "")
            fit = assess_fit(m.size, n_ctx=self.settings.n_ctx, gpu=gpu, free_bytes=free)
            item = QTreeWidgetItem([m.label, m.quant, human_bytes(m.size), place, fit.verdict.value])
            item.setData(0, Qt.ItemDataRole.UserRole, m.path)
            item.setToolTip(0, "\n".join(m.parts or (m.path,)))
            item.setToolTip(4, fit.sentence)
            item.setForeground(4, QColor(VERDICT_COLOUR[fit.verdict]))
            self.tree.addTopLevelItem(item)
        for c in range(5):
            self.tree.resizeColumnToContents(c)
        self.folder_label.setText(f"Models folder: {_display_path(self.settings.resolved_models_dir())}")
        self._selected(self.tree.currentItem(), None)

    def selected_model(self) -> str:
        item = self.tree.currentItem()
        return str(item.data(0, Qt.ItemDataRole.UserRole)) if item is not None else ""

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _selected(self, cur: QTreeWidgetItem | None, _prev: QTreeWidgetItem | None) -> None:
        for b in (self.use_base, self.use_instruct, self.remove):
            b.setEnabled(cur is not None)

    @Slot()
    def _use_base(self) -> None:
        path = self.selected_model()
        if path:
            self.pairChosen.emit(path, self.settings.instruct_model)

    @Slot()
    def _use_instruct(self) -> None:
        path = self.selected_model()
        if path:
            self.pairChosen.emit(self.settings.base_model, path)

    def remove_path(self, path: str) -> str:
        """Remove a model (every part of a split one) and say what was freed."""
        freed = remove_model(self.settings, path)
        self._save()
        self.refresh()
        self.changed.emit()
        return describe_removal(display_name(Path(path).name), freed)

    @Slot()
    def _remove(self) -> None:
        path = self.selected_model()
        if not path:
            return
        item = self.tree.currentItem()
        size = item.text(2) if item is not None else ""
        name = item.text(0) if item is not None else Path(path).name
        if self.remove_box(name, size).exec() != QMessageBox.StandardButton.Yes:
            return
        try:
            message = self.remove_path(path)
        except Exception as exc:  # a plain sentence, no traceback
            message = failure_sentence(f"{name} could not be removed", exc)
        self.folder_label.setText(message)

    def remove_box(self, name: str, size: str) -> QMessageBox:
        """The question asked before removing a model (``name``: its file, or a split model's
        name; every part goes)."""
        return QMessageBox(QMessageBox.Icon.Question, "Remove model",
                           f"Remove {Path(name).name} and free {size}?",
                           QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)

    @Slot()
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the models folder", str(self.settings.resolved_models_dir()))
        if folder:
            self.settings.models_dir = folder
            self._save()
            self.refresh()
            self.changed.emit()

    def _save(self) -> None:
        try:
            settings_mod.save(self.settings)
        except OSError:
            pass
