"""The Models view: curated twins, any Hugging Face repo, downloads, and the models on this machine.

It composes small widgets and talks to Hugging Face only through ``DownloadHost`` (worker threads).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.core.catalog import CatalogError, CatalogPair, load_catalog
from desktop.core.gguf_info import human_bytes
from desktop.core.gguf_split import model_bytes, parse_split_name, parts_present
from desktop.core.hub import RemoteFile
from desktop.core.library import repo_dir
from desktop.core.settings import Settings
from desktop.ui.catalog_view import CatalogView
from desktop.ui.downloads_view import DownloadRow, DownloadsView
from desktop.ui.hub_browser import HubBrowser
from desktop.ui.library_view import LibraryBox
from desktop.workers.download_worker import DownloadHost, DownloadJob, DownloadUpdate, HubAnswer


class ModelsPanel(QWidget):
    libraryChanged = Signal()
    pairChosen = Signal(str, str)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.host = DownloadHost(self)
        self.host.worker.update.connect(self._on_update)
        self.host.hub.answer.connect(self._on_answer)
        self.jobs: dict[int, DownloadJob] = {}
        self.pair_jobs: dict[str, dict[str, int]] = {}  # pair id -> side -> job id
        self.done_paths: dict[int, str] = {}
        self._search_id = 0
        self._probe_id = 0
        self._files_id = 0
        self._token_id = 0
        try:
            self.pairs: list[CatalogPair] = load_catalog()
            catalog_error = ""
        except CatalogError as exc:
            self.pairs, catalog_error = [], str(exc)

        outer = QHBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        outer.addWidget(split)

        # left: where to get models
        self.sources = QTabWidget()
        self.catalog_view = CatalogView(settings, self.pairs, catalog_error)
        self.catalog, self.detail = self.catalog_view.catalog, self.catalog_view.detail
        self.quant, self.get_pair = self.catalog_view.quant, self.catalog_view.get_pair
        self.get_pair.clicked.connect(self._download_pair)
        self.sources.addTab(self.catalog_view, "Curated pairs")
        self.browser = HubBrowser()
        self.browser.searchRequested.connect(self._search)
        self.browser.filesRequested.connect(self._list_files)
        self.browser.downloadRequested.connect(self._download_remote)
        self.sources.addTab(self.browser, "Any Hugging Face model")
        split.addWidget(self.sources)

        # right: this machine and the downloads
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        self.library_box = LibraryBox(settings)
        self.library = self.library_box.tree
        self.library_box.changed.connect(self._library_changed)
        self.library_box.pairChosen.connect(self.pairChosen)
        rl.addWidget(self.library_box, 1)
        box = QGroupBox("Downloads")
        bl = QVBoxLayout(box)
        self.downloads = DownloadsView()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.downloads)
        bl.addWidget(scroll)
        rl.addWidget(box, 1)
        rl.addWidget(self._build_token_row())
        split.addWidget(right)
        split.setSizes([560, 560])
        self.refresh_library()
        self._restore_partials()
        self._probe_id = self.host.query("probe", "")

    # -- building ------------------------------------------------------------------------------

    def _build_token_row(self) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Hugging Face token (for gated models):"))
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("hf_…")
        self.token.setToolTip("Create one at huggingface.co/settings/tokens after accepting the model's "
                              "licence; it is kept in Hugging Face's own token store, not by Based")
        self.save_token = QPushButton("Save token")
        self.save_token.setToolTip("Store the token in Hugging Face's own token store")
        row.addWidget(self.token, 1)
        row.addWidget(self.save_token)
        self.save_token.clicked.connect(self._save_token)
        return w

    # -- catalog -------------------------------------------------------------------------------

    def selected_pair(self) -> CatalogPair | None:
        return self.catalog_view.selected_pair()

    def licence_box(self, p: CatalogPair) -> tuple[QMessageBox, QPushButton]:
        return self.catalog_view.licence_box(p)

    def remove_box(self, path: str, size: str) -> QMessageBox:
        """The question asked before removing a model."""
        return self.library_box.remove_box(path, size)

    @Slot()
    def _download_pair(self) -> None:
        p = self.selected_pair()
        if p is None or not self.catalog_view.confirm_licence(p):
            return
        b, i = p.files_for(self.quant.currentText() or None)
        ids = {}
        for side, model, f in (("base", p.base, b), ("instruct", p.instruct, i)):
            ids[side] = self._enqueue(model.repo, f.file, f.size if f.verified else None, group=p.id)
        self.pair_jobs[p.id] = ids

    # -- downloads -----------------------------------------------------------------------------

    def _enqueue(self, repo: str, filename: str, size: int | None, *, group: str = "",
                 sha256: str | None = None, row_for: int | None = None,
                 part_sizes: tuple[int | None, ...] = (), part_sha256: tuple[str | None, ...] = ()) -> int:
        dest = repo_dir(self.settings.resolved_models_dir(), repo)
        split = parse_split_name(filename)
        if split is not None:  # a split model is one job, named by its part 1
            filename = split.first
        job = DownloadJob(self.host.new_id(), repo, filename, str(dest), size, sha256, group,
                          part_sizes, part_sha256)
        self.jobs[job.job_id] = job
        if row_for is not None and row_for in self.downloads.rows:
            self.downloads.rekey(row_for, job)
            self.downloads.apply(DownloadUpdate(job.job_id, "queued"))
        else:
            self._add_row(job)
        existing = dest / filename
        if existing.is_file() and parts_present(existing):
            size_now = model_bytes(existing)
            self._on_update(DownloadUpdate(job.job_id, "done", size_now, size_now, path=str(existing),
                                           message="Already in your library."))
            return job.job_id
        self.host.enqueue(job)
        return job.job_id

    def _add_row(self, job: DownloadJob) -> DownloadRow:
        row = self.downloads.add(job)
        row.pauseRequested.connect(self._pause)
        row.resumeRequested.connect(self._resume)
        row.cancelRequested.connect(self._cancel)
        row.clearRequested.connect(self._clear)
        return row

    @Slot(int)
    def _clear(self, job_id: int) -> None:
        """Remove a finished, failed or cancelled row; a failed one's partial file goes too."""
        job = self.jobs.get(job_id)
        row = self.downloads.rows.get(job_id)
        if row is not None and row.state == "failed" and job is not None:
            from desktop.core.downloads import discard_partial

            try:
                discard_partial(Path(job.dest_dir), job.filename)
            except OSError:
                pass
        self.downloads.remove(job_id)
        self.jobs.pop(job_id, None)
        for pid, ids in list(self.pair_jobs.items()):
            if job_id in ids.values():
                del self.pair_jobs[pid]  # the pair will not complete now

    @Slot(object)
    def _download_remote(self, remote: object) -> None:
        if not isinstance(remote, RemoteFile):
            return
        if remote.missing_parts:
            missing = ", ".join(str(n) for n in remote.missing_parts)
            self.browser.show_error(
                f"{remote.label} cannot be downloaded: the repository lacks part {missing} of "
                f"{remote.parts}; pick another file.")
            return
        self._enqueue(remote.repo_id, remote.filename, remote.size, sha256=remote.sha256,
                      part_sizes=remote.part_sizes, part_sha256=remote.part_sha256)

    @Slot(int)
    def _pause(self, job_id: int) -> None:
        self.host.stop(job_id, discard=False)

    @Slot(int)
    def _cancel(self, job_id: int) -> None:
        job = self.jobs.get(job_id)
        row = self.downloads.rows.get(job_id)
        if row is not None and row.state in ("paused", "failed") and job is not None:
            from desktop.core.downloads import discard_partial

            try:
                discard_partial(Path(job.dest_dir), job.filename)
            except OSError:
                pass
            row.apply(DownloadUpdate(job_id, "cancelled", message="Cancelled."))
            return
        self.host.stop(job_id, discard=True)

    @Slot(int)
    def _resume(self, job_id: int) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            return
        new_id = self._enqueue(job.repo, job.filename, job.size, group=job.group, sha256=job.sha256, row_for=job_id,
                               part_sizes=job.part_sizes, part_sha256=job.part_sha256)
        for ids in self.pair_jobs.values():
            for side, jid in ids.items():
                if jid == job_id:
                    ids[side] = new_id

    @Slot(object)
    def _on_update(self, u: DownloadUpdate) -> None:
        self.downloads.apply(u)
        if u.state != "done":
            return
        self.done_paths[u.job_id] = u.path
        self.refresh_library()
        self.libraryChanged.emit()
        for pid, ids in list(self.pair_jobs.items()):
            if all(j in self.done_paths for j in ids.values()):
                del self.pair_jobs[pid]
                self.pairChosen.emit(self.done_paths[ids["base"]], self.done_paths[ids["instruct"]])

    def _restore_partials(self) -> None:
        """Downloads stopped in an earlier session show up paused, ready to resume."""
        from desktop.core.downloads import partial_downloads

        root = self.settings.resolved_models_dir()
        try:  # downloads live in <models>/<owner>/<name>/ (files may sit in subfolders of that)
            dirs = [d for d in root.glob("*/*") if d.is_dir()]
        except OSError:
            return
        for d in sorted(dirs):
            for part in partial_downloads(d):
                job = DownloadJob(self.host.new_id(), part.repo_id, part.filename, str(d), part.total_bytes or None)
                self.jobs[job.job_id] = job
                row = self._add_row(job)
                row.apply(DownloadUpdate(job.job_id, "paused", part.done_bytes, part.total_bytes,
                                         message=f"Stopped at {human_bytes(part.done_bytes)}; Resume continues from there."))

    # -- hub -------------------------------------------------------------------------------------

    @Slot(str)
    def _search(self, text: str) -> None:
        self._search_id = self.host.query("search", text)

    @Slot(str)
    def _list_files(self, repo: str) -> None:
        self._files_id = self.host.query("files", repo)

    @Slot()
    def _save_token(self) -> None:
        token = self.token.text().strip()
        if not token:
            self.browser.show_error("Paste a token from huggingface.co/settings/tokens first.")
            return
        self._token_id = self.host.query("token", token)
        self.token.clear()

    @Slot(object)
    def _on_answer(self, a: HubAnswer) -> None:
        if a.kind == "probe" and a.query_id == self._probe_id:
            if a.items and a.items[0] and isinstance(a.items[1], int):
                self.catalog_view.gpu_free = self.library_box.gpu_free = a.items[1]
                self.refresh_library()
                self.catalog_view.update_fit_column()
                self.catalog_view.update_fit()
            return
        if a.query_id not in (self._search_id, self._files_id, self._token_id):
            return  # superseded
        if a.error:
            self.browser.show_error(a.error)
        elif a.kind == "search":
            self.browser.show_repos(a.items)
        elif a.kind == "files":
            self.browser.show_files(a.items)
        elif a.kind == "token":
            self.browser.status.setText("Token saved in Hugging Face's token store.")

    # -- library ---------------------------------------------------------------------------------

    def refresh_library(self) -> None:
        self.library_box.refresh()

    def remove_path(self, path: str) -> str:
        """Remove a model (every part of a split one) and say what was freed."""
        return self.library_box.remove_path(path)

    @Slot()
    def _library_changed(self) -> None:
        self.libraryChanged.emit()

    def shutdown(self) -> None:
        self.host.shutdown()
