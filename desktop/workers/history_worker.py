"""History on its own thread: hashing model files, SQLite writes, searches and exports never
block the window."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from desktop.core.errors import BasedError, failure_sentence
from desktop.core.prompts import RenderedPrompt
from desktop.core.types import GenerationResult, GGUFInfo, LoadOptions, SamplingParams
from desktop.workers.threads import new_thread, quit_and_wait


@dataclass(frozen=True)
class SaveJob:
    run_id: int
    base_path: str
    instruct_path: str
    base_info: GGUFInfo | None
    instruct_info: GGUFInfo | None
    user: str
    system: str | None
    base_mode: str
    base_prompt: RenderedPrompt
    instruct_prompt: RenderedPrompt
    params: SamplingParams
    base_result: GenerationResult
    instruct_result: GenerationResult
    load: LoadOptions
    shift: dict[str, Any] | None = None
    raw_control_tokens: bool = False
    earlier: tuple[Any, ...] = ()  # desktop.core.history.TurnRecord: a conversation's earlier turns


@dataclass(frozen=True)
class HistoryEvent:
    kind: str  # saved | shift-saved | rows | record | exported | deleted | error
    query_id: int = 0
    payload: object = None
    message: str = ""


class HistoryWorker(QObject):
    happened = Signal(object)

    def __init__(self, db_path: str | None = None) -> None:
        super().__init__()
        self.db_path = db_path
        self._store: Any = None

    def store(self) -> Any:
        if self._store is None:
            from desktop.core.history import HistoryStore

            self._store = HistoryStore(self.db_path)
        return self._store

    @Slot(object)
    def save(self, job: SaveJob) -> None:
        from desktop.core.history import ModelRef, make_record

        try:
            rec = make_record(
                base=ModelRef.from_path(job.base_path, job.base_info),
                instruct=ModelRef.from_path(job.instruct_path, job.instruct_info),
                user=job.user, system=job.system, base_mode=job.base_mode,
                base_prompt=job.base_prompt, instruct_prompt=job.instruct_prompt, params=job.params,
                base_result=job.base_result, instruct_result=job.instruct_result, load=job.load,
                shift=job.shift, raw_control_tokens=job.raw_control_tokens, earlier=job.earlier,
            )
            rid = self.store().add(rec)
            self.happened.emit(HistoryEvent("saved", job.run_id, rid))
        except (BasedError, OSError) as exc:
            self.happened.emit(HistoryEvent("error", job.run_id, None, failure_sentence(
                "This comparison could not be saved to history", exc)))

    @Slot(int, object)
    def set_shift(self, record_id: int, shift: object) -> None:
        try:
            self.store().set_shift(record_id, shift)
            self.happened.emit(HistoryEvent("shift-saved", record_id, record_id))
        except (BasedError, OSError) as exc:
            self.happened.emit(HistoryEvent("error", record_id, None, failure_sentence(
                "The token-shift result could not be saved to history", exc)))

    @Slot(int, str)
    def search(self, query_id: int, text: str) -> None:
        try:
            self.happened.emit(HistoryEvent("rows", query_id, tuple(self.store().search(text))))
        except (BasedError, OSError) as exc:
            self.happened.emit(HistoryEvent("error", query_id, None, failure_sentence(
                "The history could not be searched", exc)))

    @Slot(int, int)
    def load(self, query_id: int, record_id: int) -> None:
        try:
            self.happened.emit(HistoryEvent("record", query_id, (record_id, self.store().get(record_id))))
        except (BasedError, OSError, KeyError) as exc:
            self.happened.emit(HistoryEvent("error", query_id, None, failure_sentence(
                "That comparison could not be opened", exc)))

    @Slot(int, int)
    def delete(self, query_id: int, record_id: int) -> None:
        try:
            self.store().delete(record_id)
            self.happened.emit(HistoryEvent("deleted", query_id, record_id))
        except (BasedError, OSError) as exc:
            self.happened.emit(HistoryEvent("error", query_id, None, failure_sentence(
                "That comparison could not be deleted", exc)))

    @Slot(int, object, str, str)
    def export(self, query_id: int, record: object, fmt: str, path: str) -> None:
        from desktop.core import export
        from desktop.core.shift import ShiftResult

        try:
            rec: Any = record
            if fmt == "md":
                text = export.to_markdown(rec)
            elif fmt == "html":
                shift = ShiftResult.from_json_dict(rec.shift) if rec.shift else None
                text = export.to_html(rec, shift)
            else:
                text = export.to_json(rec)
            Path(path).write_text(text, encoding="utf-8")
            self.happened.emit(HistoryEvent("exported", query_id, path, f"Saved {Path(path).name}."))
        except (BasedError, OSError) as exc:
            self.happened.emit(HistoryEvent("error", query_id, None, failure_sentence(
                "The export could not be written", exc)))

    @Slot()
    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class HistoryHost(QObject):
    _save = Signal(object)
    _search = Signal(int, str)
    _set_shift = Signal(int, object)
    _load = Signal(int, int)
    _delete = Signal(int, int)
    _export = Signal(int, object, str, str)
    _close = Signal()

    def __init__(self, parent: QObject | None = None, db_path: str | None = None) -> None:
        super().__init__(parent)
        self.qthread = new_thread("history")
        self.worker = HistoryWorker(db_path)
        self.worker.moveToThread(self.qthread)
        self._save.connect(self.worker.save)
        self._search.connect(self.worker.search)
        self._set_shift.connect(self.worker.set_shift)
        self._load.connect(self.worker.load)
        self._delete.connect(self.worker.delete)
        self._export.connect(self.worker.export)
        self._close.connect(self.worker.close)
        self.qthread.start()
        self._next = 0
        self._alive = True

    def _id(self) -> int:
        self._next += 1
        return self._next

    def save(self, job: SaveJob) -> None:
        self._save.emit(job)

    def set_shift(self, record_id: int, shift: dict[str, object]) -> None:
        self._set_shift.emit(record_id, shift)

    def search(self, text: str) -> int:
        qid = self._id()
        self._search.emit(qid, text)
        return qid

    def load(self, record_id: int) -> int:
        qid = self._id()
        self._load.emit(qid, record_id)
        return qid

    def delete(self, record_id: int) -> int:
        qid = self._id()
        self._delete.emit(qid, record_id)
        return qid

    def export(self, record: object, fmt: str, path: str) -> int:
        qid = self._id()
        self._export.emit(qid, record, fmt, path)
        return qid

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        if not self._alive:
            return True
        self._alive = False
        self._close.emit()
        return quit_and_wait(self.qthread, timeout_ms)
