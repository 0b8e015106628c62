"""Local history of comparisons: SQLite (stdlib) under Based's data directory.

Durability: the database runs in WAL mode with ``synchronous=FULL`` and every comparison is written
in one transaction (the denormalised row, its full JSON record and its search-index entry commit
together). WAL alone already makes a committed transaction survive a crash of this process
(``kill -9``); FULL additionally fsyncs the WAL on each commit so it also survives a power cut or
an OS crash. A comparison is written once, seconds apart at the most, so the extra fsync costs
nothing a person could notice. A crash therefore loses at most the comparison being written.

One :class:`HistoryStore` may be used from any thread (one connection, serialised by a lock).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop.core.errors import sqlite_reason
from desktop.core.records import (  # noqa: F401  (re-exported: the records live in records.py)
    RECORD_VERSION,
    AnswerRecord,
    ComparisonRecord,
    HistoryError,
    ModelRef,
    TurnRecord,
    file_sha256,
    make_record,
    model_sha256,
    now_iso,
    token_dict,
    token_from,
    turn_record,
)

# -- the store ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    id: int
    created: str
    base_name: str
    instruct_name: str
    user: str
    system: str | None
    base_preview: str
    instruct_preview: str
    has_shift: bool
    turns: int = 1  # a conversation's number of turns (user is its last message)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    base_name TEXT NOT NULL,
    instruct_name TEXT NOT NULL,
    system TEXT,
    user TEXT NOT NULL,
    base_text TEXT NOT NULL,
    instruct_text TEXT NOT NULL,
    has_shift INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comparisons_created ON comparisons(created);
"""

_FTS = """
CREATE VIRTUAL TABLE IF NOT EXISTS comparisons_fts USING fts5(
    user, system, base_text, instruct_text, content='comparisons', content_rowid='id'
);
CREATE TRIGGER IF NOT EXISTS comparisons_ai AFTER INSERT ON comparisons BEGIN
    INSERT INTO comparisons_fts(rowid, user, system, base_text, instruct_text)
    VALUES (new.id, new.user, coalesce(new.system, ''), new.base_text, new.instruct_text);
END;
CREATE TRIGGER IF NOT EXISTS comparisons_ad AFTER DELETE ON comparisons BEGIN
    INSERT INTO comparisons_fts(comparisons_fts, rowid, user, system, base_text, instruct_text)
    VALUES ('delete', old.id, old.user, coalesce(old.system, ''), old.base_text,
            old.instruct_text);
END;
"""

_PREVIEW = 200


class HistoryStore:
    """Saved comparisons. ``path=None`` uses ``paths.history_db()``."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        from desktop.core.paths import history_db

        self.path = Path(path) if path is not None else history_db()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=10.0, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._tx():
                for stmt in _split(_SCHEMA):
                    self._db.execute(stmt)
                cols = {r[1] for r in self._db.execute("PRAGMA table_info(comparisons)")}
                if "turns" not in cols:  # a history from before conversations: one turn each
                    self._db.execute(
                        "ALTER TABLE comparisons ADD COLUMN turns INTEGER NOT NULL DEFAULT 1")
            self.fts = self._try_fts()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(
                f"The history file {self.path.name} could not be opened ({sqlite_reason(exc)}); "
                "move it away and Based will start a new one."
            ) from exc

    def _try_fts(self) -> bool:
        try:
            with self._tx():
                for stmt in _split(_FTS):
                    self._db.execute(stmt)
                n_rows = self._db.execute("SELECT count(*) FROM comparisons").fetchone()[0]
                n_fts = self._db.execute("SELECT count(*) FROM comparisons_fts_docsize").fetchone()[0]
                if n_rows != n_fts:
                    self._db.execute("INSERT INTO comparisons_fts(comparisons_fts) VALUES('rebuild')")
            return True
        except sqlite3.OperationalError:  # this SQLite was built without FTS5
            return False

    class _Tx:
        def __init__(self, store: HistoryStore) -> None:
            self.s = store

        def __enter__(self) -> None:
            self.s._lock.acquire()
            self.s._db.execute("BEGIN IMMEDIATE")

        def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
            try:
                self.s._db.execute("COMMIT" if et is None else "ROLLBACK")
            finally:
                self.s._lock.release()

    def _tx(self) -> HistoryStore._Tx:
        return HistoryStore._Tx(self)

    # -- API ---------------------------------------------------------------------------------

    def add(self, record: ComparisonRecord) -> int:
        """Save one comparison (a whole conversation: every turn) in a single transaction;
        returns its id. The row's text columns hold the last turn, the record all of it."""
        blob = json.dumps(record.to_json_dict(), ensure_ascii=False, allow_nan=False)
        try:
            with self._tx():
                cur = self._db.execute(
                    "INSERT INTO comparisons (created, base_name, instruct_name, system, user, "
                    "base_text, instruct_text, has_shift, record, turns) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (record.created, record.base.name, record.instruct.name, record.system,
                     record.user, record.base_answer.text, record.instruct_answer.text,
                     int(record.shift is not None), blob, record.n_turns),
                )
                return int(cur.lastrowid or 0)
        except sqlite3.DatabaseError as exc:
            raise HistoryError(
                f"The comparison could not be saved to history ({sqlite_reason(exc)})."
            ) from exc

    def set_shift(self, id: int, shift: dict[str, Any]) -> None:
        """Attach a token-shift result (``ShiftResult.to_json_dict()``) to a saved comparison,
        in one transaction (the analysis usually finishes after the comparison was saved)."""
        try:
            with self._tx():
                row = self._db.execute("SELECT record FROM comparisons WHERE id = ?", (int(id),)).fetchone()
                if row is None:
                    raise HistoryError(f"There is no comparison number {id} in the history.")
                data = json.loads(row[0])
                data["shift"] = shift
                blob = json.dumps(data, ensure_ascii=False, allow_nan=False)
                self._db.execute("UPDATE comparisons SET record = ?, has_shift = 1 WHERE id = ?",
                                 (blob, int(id)))
        except sqlite3.DatabaseError as exc:
            raise HistoryError(
                f"The token-shift result could not be saved to history ({sqlite_reason(exc)})."
            ) from exc

    def get(self, id: int) -> ComparisonRecord:
        with self._lock:
            row = self._db.execute("SELECT record FROM comparisons WHERE id = ?", (int(id),)).fetchone()
        if row is None:
            raise HistoryError(f"There is no comparison number {id} in the history.")
        return ComparisonRecord.from_json_dict(json.loads(row[0]))

    def search(self, text: str = "", limit: int = 100) -> list[HistoryRow]:
        """Newest first; ``text`` matches words in the prompts and answers (prefixes too)."""
        cols = ("c.id, c.created, c.base_name, c.instruct_name, c.user, c.system, "
                f"substr(c.base_text, 1, {_PREVIEW}), substr(c.instruct_text, 1, {_PREVIEW}), "
                "c.has_shift, c.turns")
        words = text.split()
        with self._lock:
            if not words:
                rows = self._db.execute(
                    f"SELECT {cols} FROM comparisons c ORDER BY c.id DESC LIMIT ?", (int(limit),)
                ).fetchall()
            elif self.fts:
                query = " ".join('"' + w.replace('"', '""') + '"*' for w in words)
                rows = self._db.execute(
                    f"SELECT {cols} FROM comparisons_fts f JOIN comparisons c ON c.id = f.rowid "
                    "WHERE comparisons_fts MATCH ? ORDER BY c.id DESC LIMIT ?",
                    (query, int(limit)),
                ).fetchall()
            else:
                where = " AND ".join(
                    "(c.user LIKE ? ESCAPE '\\' OR coalesce(c.system,'') LIKE ? ESCAPE '\\' "
                    "OR c.base_text LIKE ? ESCAPE '\\' OR c.instruct_text LIKE ? ESCAPE '\\')"
                    for _ in words
                )
                args: list[Any] = []
                for w in words:
                    pat = "%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                    args += [pat] * 4
                rows = self._db.execute(
                    f"SELECT {cols} FROM comparisons c WHERE {where} ORDER BY c.id DESC LIMIT ?",
                    (*args, int(limit)),
                ).fetchall()
        return [HistoryRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]),
                           int(r[9] or 1)) for r in rows]

    def delete(self, id: int) -> bool:
        with self._tx():
            cur = self._db.execute("DELETE FROM comparisons WHERE id = ?", (int(id),))
            return cur.rowcount > 0

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM comparisons").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(script: str) -> Sequence[str]:
    """Statements of a schema script (triggers keep their inner semicolons)."""
    out: list[str] = []
    buf: list[str] = []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        if joined.endswith(";") and (not joined.upper().startswith("CREATE TRIGGER")
                                     or joined.upper().endswith("END;")):
            out.append(joined)
            buf = []
    if buf and "\n".join(buf).strip():
        out.append("\n".join(buf).strip())
    return out
