"""Browse any Hugging Face repository: search GGUF repos, list their files, pick one to download."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop.core.gguf_info import human_bytes
from desktop.core.words import count


class HubBrowser(QWidget):
    searchRequested = Signal(str)
    filesRequested = Signal(str)
    downloadRequested = Signal(object)  # a desktop.core.hub.RemoteFile

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search Hugging Face for GGUF models, e.g. qwen2.5 0.5b")
        self.query.setToolTip("Searches Hugging Face (needs the network); press Enter")
        self.search = QPushButton("Search")
        self.search.setToolTip("Search Hugging Face for repositories with GGUF files")
        row.addWidget(self.query, 1)
        row.addWidget(self.search)
        lay.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        split = QSplitter(Qt.Orientation.Vertical)  # full width each: names are long
        self.repos = QListWidget()
        self.repos.setToolTip("Repositories; select one to list its GGUF files")
        self.files = QListWidget()
        self.files.setToolTip("GGUF files with size and quantization; double-click to download")
        split.addWidget(self.repos)
        split.addWidget(self.files)
        lay.addWidget(split, 1)
        self.download = QPushButton("Download selected file")
        self.download.setEnabled(False)
        self.download.setToolTip("Download the selected GGUF into your models folder")
        lay.addWidget(self.download, 0, Qt.AlignmentFlag.AlignRight)
        self.query.returnPressed.connect(self._search)
        self.search.clicked.connect(self._search)
        self.repos.currentItemChanged.connect(self._repo_selected)
        self.files.currentItemChanged.connect(self._file_selected)
        self.files.itemDoubleClicked.connect(self._download_item)
        self.download.clicked.connect(self._download_clicked)

    @Slot()
    def _search(self) -> None:
        text = self.query.text().strip()
        if not text:
            self.status.setText("Type part of a model name first.")
            return
        self.status.setText("Searching…")
        self.repos.clear()
        self.files.clear()
        self.searchRequested.emit(text)

    def show_error(self, message: str) -> None:
        self.status.setText(message)
        self.status.setStyleSheet("color:#b91c1c")

    def show_repos(self, hits: tuple[object, ...]) -> None:
        self.status.setStyleSheet("")
        self.status.setText(f"{count(len(hits), 'repository')}." if hits else "No GGUF repositories match.")
        self.repos.clear()
        for h in hits:
            repo = str(getattr(h, "repo_id", ""))
            gated = "  🔒 gated" if getattr(h, "gated", False) else ""
            downloads = count(int(getattr(h, "downloads", 0) or 0), "download")
            item = QListWidgetItem(f"{repo}   ({downloads}){gated}")
            item.setData(Qt.ItemDataRole.UserRole, repo)
            self.repos.addItem(item)

    def show_files(self, files: tuple[object, ...]) -> None:
        self.status.setStyleSheet("")
        self.files.clear()
        for f in files:  # desktop.core.hub.RemoteFile: a split model is one entry
            size = getattr(f, "size", None)
            name = getattr(f, "label", None) or getattr(f, "filename", "")
            label = f"{name}   {getattr(f, 'quant', '') or '?'}   {human_bytes(size) if size else ''}"
            missing = getattr(f, "missing_parts", ())
            if missing:
                label += f"   (incomplete: no part {', '.join(map(str, missing))})"
            item = QListWidgetItem(label.rstrip())
            item.setData(Qt.ItemDataRole.UserRole, f)
            parts = getattr(f, "part_files", ())
            if parts:
                item.setToolTip("\n".join(parts))
            self.files.addItem(item)
        self.status.setText(f"{len(files)} GGUF models." if files else "This repository has no GGUF files.")

    @Slot(QListWidgetItem, QListWidgetItem)
    def _repo_selected(self, cur: QListWidgetItem | None, _prev: QListWidgetItem | None) -> None:
        if cur is None:
            return
        self.files.clear()
        self.status.setText("Listing files…")
        self.filesRequested.emit(str(cur.data(Qt.ItemDataRole.UserRole)))

    @Slot(QListWidgetItem, QListWidgetItem)
    def _file_selected(self, cur: QListWidgetItem | None, _prev: QListWidgetItem | None) -> None:
        self.download.setEnabled(cur is not None)

    @Slot(QListWidgetItem)
    def _download_item(self, item: QListWidgetItem) -> None:
        self.downloadRequested.emit(item.data(Qt.ItemDataRole.UserRole))

    @Slot()
    def _download_clicked(self) -> None:
        item = self.files.currentItem()
        if item is not None:
            self._download_item(item)
