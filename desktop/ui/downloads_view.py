"""The downloads list: one row per model (every part of a split one) with a progress bar, bytes, speed, ETA, pause and cancel."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core.gguf_info import human_bytes
from desktop.core.gguf_split import display_name
from desktop.workers.download_worker import DownloadJob, DownloadUpdate


def _eta(s: float | None) -> str:
    if s is None or s != s or s == float("inf"):
        return ""
    s_i = int(s)
    return f"{s_i // 60} min {s_i % 60:02d} s left" if s_i >= 60 else f"{s_i} s left"


def _linkify(message: str) -> str:
    """Plain sentence -> rich text with its https links clickable (e.g. a gated model's licence)."""
    import re

    text = html.escape(message)
    return re.sub(r"(https://[^\s<]+[^\s<.,;:)])", r"<a href='\1'>\1</a>", text)


# what the row's two buttons say and do in each state: (first, second); "" hides a button
BUTTONS = {
    "queued": ("Pause", "Cancel"),
    "running": ("Pause", "Cancel"),
    "paused": ("Resume", "Cancel"),
    "failed": ("Retry", "Clear"),
    "cancelled": ("Retry", "Clear"),
    "done": ("", "Clear"),
}
TIPS = {
    "Pause": "Stop for now; the bytes already here are kept and Resume continues from them",
    "Resume": "Continue the download where it stopped",
    "Retry": "Try this download again (a failed one continues where it stopped)",
    "Cancel": "Stop and delete the partial file",
    "Clear": "Remove this line from the list (a downloaded model stays in your library; a "
             "partial file is deleted)",
}


class DownloadRow(QWidget):
    pauseRequested = Signal(int)
    resumeRequested = Signal(int)  # Resume and Retry
    cancelRequested = Signal(int)
    clearRequested = Signal(int)

    def __init__(self, job: DownloadJob, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.state = "queued"
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(2)
        # names wrap (a long file name never pushes the buttons out of sight)
        name = html.escape(display_name(job.filename))  # a split model: "Model (3 parts)"
        self.title = QLabel(f"<b>{name}</b><br>"
                            f"<span style='color:gray'>{html.escape(job.repo)}</span>")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.title)
        mid = QHBoxLayout()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setMinimumWidth(60)
        mid.addWidget(self.bar, 1)
        self.pause = QPushButton("Pause")
        self.cancel = QPushButton("Cancel")
        mid.addWidget(self.pause)
        mid.addWidget(self.cancel)
        lay.addLayout(mid)
        self.status = QLabel("Waiting for the downloads before it…")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setOpenExternalLinks(True)
        lay.addWidget(self.status)
        self.pause.clicked.connect(self._pause_clicked)
        self.cancel.clicked.connect(self._cancel_clicked)
        self._show_buttons()

    def _show_buttons(self) -> None:
        first, second = BUTTONS.get(self.state, ("Pause", "Cancel"))
        for b, text in ((self.pause, first), (self.cancel, second)):
            b.setVisible(bool(text))
            if text:
                b.setText(text)
                b.setToolTip(TIPS[text])
                b.setEnabled(True)

    @Slot()
    def _pause_clicked(self) -> None:
        if self.state in ("paused", "failed", "cancelled"):
            self.resumeRequested.emit(self.job.job_id)
        else:
            self.pauseRequested.emit(self.job.job_id)

    @Slot()
    def _cancel_clicked(self) -> None:
        if self.state in ("failed", "cancelled", "done"):
            self.clearRequested.emit(self.job.job_id)
        else:
            self.cancelRequested.emit(self.job.job_id)

    def apply(self, u: DownloadUpdate) -> None:
        self.state = u.state
        total = u.total_bytes or self.job.size or 0
        if total:
            self.bar.setValue(int(1000 * min(1.0, u.done_bytes / total)))
            self.bar.setFormat(f"{100 * u.done_bytes / total:.1f}%")
        if u.state == "running":
            parts = [f"{human_bytes(u.done_bytes)} of {human_bytes(total)}" if total else human_bytes(u.done_bytes)]
            if u.speed_bps:
                parts.append(f"{human_bytes(u.speed_bps)}/s")
            eta = _eta(u.eta_s)
            if eta:
                parts.append(eta)
            self.status.setText(" · ".join(parts))
        elif u.state == "queued":
            self.status.setText("Waiting for the downloads before it…")
        else:
            self.status.setText(_linkify(_what_happened(u)))
        self.status.setStyleSheet("color:#b91c1c" if u.state == "failed" else "")
        if u.state == "done":
            self.bar.setValue(1000)
            self.bar.setFormat("Done")
        elif u.state == "cancelled":
            self.bar.setValue(0)
            self.bar.setFormat("Cancelled")
        elif u.state == "failed":
            self.bar.setValue(max(self.bar.value(), 0))  # a bar with no value shows no words
            self.bar.setFormat("Failed")
        self._show_buttons()


def _what_happened(u: DownloadUpdate) -> str:
    """The row's status once the download is not running: what happened and what can be done."""
    if u.state == "cancelled":
        return "Cancelled: the partial file was deleted. Retry starts it again; Clear removes this line."
    if u.state == "failed":
        why = u.message or "The download failed."
        return f"Failed. {why} Retry continues where it stopped."
    if u.state == "paused":
        return u.message or "Paused: Resume continues where it stopped."
    if u.state == "done":
        return u.message or "Downloaded and verified: it is in your library."
    return u.message


class DownloadsView(QWidget):
    """Rows for every download of this session; the panel owns the host and routes signals."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: dict[int, DownloadRow] = {}
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.empty = QLabel("No downloads yet.")
        self.empty.setStyleSheet("color:gray")
        self.lay.addWidget(self.empty)
        self.lay.addStretch(1)

    def add(self, job: DownloadJob) -> DownloadRow:
        row = DownloadRow(job)
        self.rows[job.job_id] = row
        self.lay.insertWidget(self.lay.count() - 1, row)
        self.empty.hide()
        return row

    def remove(self, job_id: int) -> None:
        row = self.rows.pop(job_id, None)
        if row is not None:
            self.lay.removeWidget(row)
            row.hide()
            row.deleteLater()
        self.empty.setVisible(not self.rows)

    def apply(self, u: DownloadUpdate) -> None:
        row = self.rows.get(u.job_id)
        if row is not None:
            row.apply(u)

    def rekey(self, old: int, job: DownloadJob) -> None:
        row = self.rows.pop(old)
        row.job = job
        self.rows[job.job_id] = row
