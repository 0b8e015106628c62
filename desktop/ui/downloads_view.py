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
    import html
    import re

    text = html.escape(message)
    return re.sub(r"(https://[^\s<]+[^\s<.,;:)])", r"<a href='\1'>\1</a>", text)


class DownloadRow(QWidget):
    pauseRequested = Signal(int)
    resumeRequested = Signal(int)
    cancelRequested = Signal(int)

    def __init__(self, job: DownloadJob, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.state = "queued"
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        name = html.escape(display_name(job.filename))  # a split model: "Model (3 parts)"
        self.title = QLabel(f"<b>{name}</b>  <span style='color:gray'>{html.escape(job.repo)}</span>")
        top.addWidget(self.title, 1)
        self.pause = QPushButton("Pause")
        self.pause.setToolTip("Stop for now; the bytes already here are kept and resume continues from them")
        self.cancel = QPushButton("Cancel")
        self.cancel.setToolTip("Stop and delete the partial file")
        top.addWidget(self.pause)
        top.addWidget(self.cancel)
        lay.addLayout(top)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        lay.addWidget(self.bar)
        self.status = QLabel("Waiting for the downloads before it…")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setOpenExternalLinks(True)
        lay.addWidget(self.status)
        self.pause.clicked.connect(self._pause_clicked)
        self.cancel.clicked.connect(self._cancel_clicked)

    @Slot()
    def _pause_clicked(self) -> None:
        if self.state in ("paused", "failed"):
            self.resumeRequested.emit(self.job.job_id)
        else:
            self.pauseRequested.emit(self.job.job_id)

    @Slot()
    def _cancel_clicked(self) -> None:
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
        elif u.message:
            self.status.setText(_linkify(u.message))
        self.pause.setText("Resume" if u.state in ("paused", "failed") else "Pause")
        self.pause.setEnabled(u.state not in ("done", "cancelled"))
        self.cancel.setEnabled(u.state not in ("done", "cancelled"))
        if u.state == "failed":
            self.status.setStyleSheet("color:#b91c1c")
        else:
            self.status.setStyleSheet("")
        if u.state == "done":
            self.bar.setValue(1000)
            self.bar.setFormat("Done")


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

    def apply(self, u: DownloadUpdate) -> None:
        row = self.rows.get(u.job_id)
        if row is not None:
            row.apply(u)

    def rekey(self, old: int, job: DownloadJob) -> None:
        row = self.rows.pop(old)
        row.job = job
        self.rows[job.job_id] = row
