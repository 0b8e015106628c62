"""History: every comparison, saved locally, browsable and searchable, with export."""

from __future__ import annotations

import html
from typing import Any, cast

from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.workers.history_worker import HistoryEvent, HistoryHost

FORMATS = {"md": "Markdown (*.md)", "html": "Web page (*.html)", "json": "JSON, re-runnable (*.json)"}


class HistoryPanel(QWidget):
    def __init__(self, host: HistoryHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.host.worker.happened.connect(self._on_event)
        self._search_id = 0
        self._load_id = 0
        self.current: Any = None
        self.current_id = 0
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search prompts and answers…")
        self.query.setToolTip("Searches every saved comparison")
        row.addWidget(self.query, 1)
        lay.addLayout(row)
        split = QSplitter()
        self.list = QTreeWidget()
        self.list.setHeaderLabels(["When", "Prompt", "Base", "Instruct"])
        self.list.setRootIsDecorated(False)
        self.list.setToolTip("Saved comparisons, newest first")
        split.addWidget(self.list)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        self.view = QTextBrowser()
        self.view.setPlaceholderText("Select a comparison on the left to see it here.")
        rl.addWidget(self.view, 1)
        buttons = QHBoxLayout()
        self.export_buttons = {}
        for fmt, label in (("md", "Export Markdown…"), ("html", "Export HTML…"), ("json", "Export JSON…")):
            b = QPushButton(label)
            b.setToolTip(f"Save the comparison shown as {FORMATS[fmt].split(' (')[0]} (select one "
                         "in the list first)")
            b.setEnabled(False)
            b.setProperty("fmt", fmt)
            b.clicked.connect(self._export_clicked)
            buttons.addWidget(b)
            self.export_buttons[fmt] = b
        self.delete = QPushButton("Delete")
        self.delete.setToolTip("Delete the comparison shown from history (select one in the list first)")
        self.delete.setEnabled(False)
        self.delete.clicked.connect(self._delete)
        buttons.addStretch(1)
        buttons.addWidget(self.delete)
        rl.addLayout(buttons)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        rl.addWidget(self.status)
        split.addWidget(right)
        split.setSizes([480, 640])
        lay.addWidget(split, 1)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.refresh)
        self.query.textChanged.connect(self._debounce.start)
        self.list.currentItemChanged.connect(self._selected)

    def show_nothing(self) -> None:
        """No entry selected: the detail, its exports and Delete go."""
        self._load_id = 0  # a load in flight is superseded
        self.current, self.current_id = None, 0
        self.view.clear()
        for b in self.export_buttons.values():
            b.setEnabled(False)
        self.delete.setEnabled(False)
        self.status.clear()

    @Slot()
    def refresh(self) -> None:
        self._search_id = self.host.search(self.query.text())

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _selected(self, cur: QTreeWidgetItem | None, _prev: QTreeWidgetItem | None) -> None:
        if cur is None:
            return
        self._load_id = self.host.load(int(cur.data(0, 256)))

    @Slot()
    def _export_clicked(self) -> None:
        btn = self.sender()
        fmt = str(btn.property("fmt")) if btn is not None else "json"
        if self.current is None:
            return
        from desktop.core import paths

        start = paths.documents_dir() / f"comparison-{self.current_id}.{fmt}"
        path, _ = QFileDialog.getSaveFileName(self, "Export comparison", str(start), FORMATS[fmt])
        if path:
            self.export_to(fmt, path)

    def export_to(self, fmt: str, path: str) -> None:
        self.host.export(self.current, fmt, path)

    @Slot()
    def _delete(self) -> None:
        if self.current_id:
            self.host.delete(self.current_id)

    @Slot(object)
    def _on_event(self, ev: HistoryEvent) -> None:
        if ev.kind == "saved":
            self.refresh()
        elif ev.kind == "rows" and ev.query_id == self._search_id:
            self.list.blockSignals(True)  # refilling is not the user choosing another entry
            self.list.clear()
            keep = None
            for r in ev.payload:  # type: ignore[attr-defined]
                prompt = r.user.replace("\n", " ")
                if r.turns > 1:  # a conversation: its last message, after the number of turns
                    prompt = f"[{r.turns} turns] {prompt}"
                item = QTreeWidgetItem([r.created.replace("T", " ")[:16], prompt[:80],
                                        r.base_name, r.instruct_name])
                item.setData(0, 256, r.id)
                # a long prompt or name is cut to its column: the whole of it is one hover away
                for c, text in enumerate((None, r.user, r.base_name, r.instruct_name)):
                    if text:
                        item.setToolTip(c, text)
                self.list.addTopLevelItem(item)
                if r.id == self.current_id:
                    keep = item
            self.list.resizeColumnToContents(0)
            if keep is not None:
                self.list.setCurrentItem(keep)
            self.list.blockSignals(False)
            if keep is None and self.current_id:
                self.show_nothing()  # the entry shown is no longer in the list: it goes too
        elif ev.kind == "record" and ev.query_id == self._load_id:
            rid, rec = cast(tuple[int, Any], ev.payload)
            self.current, self.current_id = rec, rid
            self.view.setHtml(_record_html(rec))
            for b in self.export_buttons.values():
                b.setEnabled(True)
            self.delete.setEnabled(True)
        elif ev.kind == "deleted":
            self.show_nothing()
            self.refresh()
        elif ev.kind in ("exported", "error"):
            self.status.setText(ev.message)
            self.status.setStyleSheet("color:#991b1b" if ev.kind == "error" else "")


def _record_html(rec: Any) -> str:
    def esc(t: object) -> str:
        return html.escape(str(t)).replace("\n", "<br>")

    shift = ""
    if rec.shift:
        s = rec.shift.get("summary", {})
        shift = (f"<p><b>Token shift</b>: unshifted {s.get('unshifted', 0):.0%}, marginal "
                 f"{s.get('marginal', 0):.0%}, shifted {s.get('shifted', 0):.0%}</p>")
    head = (f"<p style='color:gray'>{esc(rec.created)} · seed {rec.seed} · base mode "
            f"{esc(rec.base_mode)}</p>"
            + (f"<p><b>System</b>: {esc(rec.system)}</p>" if rec.system else ""))
    turns = rec.turns()
    body = []
    for n, t in enumerate(turns, 1):
        label = f" · turn {n} of {len(turns)}" if len(turns) > 1 else ""
        if len(t.messages) == 1 and t.messages[0].get("role") == "user":
            asked = f"<p><b>You</b>{label}: {esc(t.user)}</p>"
        else:  # a conversation given as messages (based compare --messages)
            from desktop.core.export import conversation_html

            asked = f"<p style='color:gray'>{label[3:]}</p>" + conversation_html(t.messages)
        body.append(
            asked +
            f"<h4>Base — {esc(rec.base.name)}</h4><p>{esc(t.base_answer.text)}</p>"
            f"<h4>Instruct — {esc(rec.instruct.name)}</h4><p>{esc(t.instruct_answer.text)}</p>")
    return head + "".join(body) + shift
