"""The curated pairs of the Models view: the list, the selected pair in plain words (its files,
licence, the memory both models need, what is known about its files) and Download pair."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.core.catalog import CatalogError, CatalogPair
from desktop.core.fit import Verdict, assess_fit
from desktop.core.gguf_info import human_bytes
from desktop.core.settings import Settings

VERDICT_COLOUR = {Verdict.FITS: "#15803d", Verdict.TIGHT: "#b45309", Verdict.TOO_BIG: "#b91c1c"}


class CatalogView(QWidget):
    def __init__(self, settings: Settings, pairs: list[CatalogPair], error: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.pairs = pairs
        self.gpu_free: int | None = None  # free GPU memory, when llama.cpp has a GPU backend
        lay = QVBoxLayout(self)
        self.catalog = QTreeWidget()
        self.catalog.setHeaderLabels(["Pair", "Download", "Licence", "This machine"])
        self.catalog.setRootIsDecorated(False)
        self.catalog.setToolTip("Base/instruct twins that run on a laptop; select one to see details")
        for p in self.pairs:
            item = QTreeWidgetItem([p.title, p.size_words(), p.licence + (" (gated)" if p.gated else ""), ""])
            item.setData(0, Qt.ItemDataRole.UserRole, p.id)
            self.catalog.addTopLevelItem(item)
        for c in range(4):
            self.catalog.resizeColumnToContents(c)
        lay.addWidget(self.catalog, 1)
        self.detail = QLabel(error or "Select a pair to see what it is.")
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.detail.setOpenExternalLinks(True)
        lay.addWidget(self.detail)
        row = QHBoxLayout()
        row.addWidget(QLabel("Quantization:"))
        self.quant = QComboBox()
        self.quant.setToolTip("Smaller quantizations download faster and use less memory; Q8_0 is closest to the original")
        row.addWidget(self.quant)
        row.addStretch(1)
        self.get_pair = QPushButton("Download pair")
        self.get_pair.setEnabled(False)
        self.get_pair.setToolTip("Download the base and the instruct model; they are selected when both are here")
        row.addWidget(self.get_pair)
        lay.addLayout(row)
        self.catalog.currentItemChanged.connect(self._pair_selected)
        self.quant.currentTextChanged.connect(self.update_fit)
        self.update_fit_column()

    def _pair(self, pid: str) -> CatalogPair | None:
        return next((p for p in self.pairs if p.id == pid), None)

    def selected_pair(self) -> CatalogPair | None:
        item = self.catalog.currentItem()
        return self._pair(str(item.data(0, Qt.ItemDataRole.UserRole))) if item is not None else None

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _pair_selected(self, cur: QTreeWidgetItem | None, _prev: QTreeWidgetItem | None) -> None:
        p = self.selected_pair()
        self.get_pair.setEnabled(p is not None)
        self.quant.blockSignals(True)
        self.quant.clear()
        if p is not None:
            self.quant.addItems(p.quants())
        self.quant.blockSignals(False)
        self.update_fit()

    def _fit_sentence(self, p: CatalogPair, quant: str | None) -> tuple[Verdict, str]:
        b, i = p.files_for(quant)
        gpu = self.gpu_free is not None and self.settings.gpu != "cpu"
        fit = assess_fit(b.size, n_ctx=self.settings.n_ctx, params_b=p.params_b,
                         other_file_bytes=i.size, gpu=gpu, free_bytes=self.gpu_free if gpu else None)
        return fit.verdict, fit.sentence

    def update_fit_column(self) -> None:
        for n in range(self.catalog.topLevelItemCount()):
            item = self.catalog.topLevelItem(n)
            if item is None:
                continue
            p = self._pair(str(item.data(0, Qt.ItemDataRole.UserRole)))
            if p is None:
                continue
            try:
                verdict, _ = self._fit_sentence(p, None)
            except CatalogError:
                continue
            item.setText(3, verdict.value)
            item.setForeground(3, QColor(VERDICT_COLOUR[verdict]))

    @Slot()
    def update_fit(self) -> None:
        p = self.selected_pair()
        if p is None:
            return
        quant = self.quant.currentText() or None
        try:
            verdict, sentence = self._fit_sentence(p, quant)
        except CatalogError as exc:
            self.detail.setText(str(exc))
            return
        b, i = p.files_for(quant)
        lines = [f"<b>{p.title}</b> — {p.note}",
                 f"Base: {p.base.repo} / {b.file} ({human_bytes(b.size)})",
                 f"Instruct: {p.instruct.repo} / {i.file} ({human_bytes(i.size)})",
                 f"Licence: <a href='{p.licence_url}'>{p.licence}</a>" if p.licence_url else f"Licence: {p.licence}",
                 f"<span style='color:{VERDICT_COLOUR[verdict]}'>{sentence}</span>"]
        if p.gated:
            lines.append("This model is gated: accept its licence on Hugging Face and save a token below first.")
        lines.append(f"<span style='color:gray'>{html.escape(p.what_is_known(quant))}</span>")
        self.detail.setText("<br>".join(lines))

    def confirm_licence(self, p: CatalogPair) -> bool:
        """The model's licence is shown before any download; terms that need acceptance ask first."""
        if not (p.licence_notice or p.gated):
            return True
        box, accept = self.licence_box(p)
        box.exec()
        return box.clickedButton() is accept

    def licence_box(self, p: CatalogPair) -> tuple[QMessageBox, QPushButton]:
        """The question asked before downloading a pair under its own terms (and its Accept)."""
        text = p.licence_notice or f"{p.title} is gated on Hugging Face: accept its licence there first."
        box = QMessageBox(self)
        box.setWindowTitle(f"{p.title}: licence")
        box.setTextFormat(Qt.TextFormat.RichText)
        link = f"<br><br><a href='{p.licence_url}'>{html.escape(p.licence_url)}</a>" if p.licence_url else ""
        box.setText(f"<b>{html.escape(p.licence)}</b><br><br>{html.escape(text)}{link}")
        accept = box.addButton("Accept and download", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        return box, accept
