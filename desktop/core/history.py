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

import datetime as _dt
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop.core.errors import BasedError, sqlite_reason
from desktop.core.types import GenerationResult, SamplingParams, StreamToken, TopAlt

if TYPE_CHECKING:
    from desktop.core.prompts import RenderedPrompt
    from desktop.core.types import GGUFInfo, LoadOptions

RECORD_VERSION = 2  # 2: per-answer add_eos, literal_spans, parse_special; raw_control_tokens


class HistoryError(BasedError):
    """The history database could not be read or written."""


# -- file hashes -------------------------------------------------------------------------------

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, hex. Cached by path, size and modification time, so a model file is
    read once per session (a few seconds for a multi-gigabyte file)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, int(st.st_mtime_ns))
    with _SHA_LOCK:
        hit = _SHA_CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    digest = h.hexdigest()
    with _SHA_LOCK:
        _SHA_CACHE[key] = digest
    return digest


def model_sha256(path: str | os.PathLike[str]) -> str:
    """:func:`file_sha256` of a model in one file; for a split model (part 1's path) the SHA-256 of
    its parts' SHA-256s (hex, one per line, in order), so a changed part changes it."""
    from desktop.core.gguf_split import model_parts

    digests = [file_sha256(p) for p in model_parts(path)]
    return digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    name: str
    path: str
    sha256: str
    file_size: int = 0
    quant: str = ""

    @property
    def file(self) -> str:
        return Path(self.path).name

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], info: GGUFInfo | None = None) -> ModelRef:
        from desktop.core.gguf_info import validate_gguf

        info = info or validate_gguf(path)  # the whole model (every part of a split one)
        return cls(info.name, str(path), model_sha256(path), info.file_size, info.file_type)


@dataclass(frozen=True)
class AnswerRecord:
    """One side's answer and how its prompt was tokenized (see ``RenderedPrompt``). Records
    written before version 2 carry no tokenization fields: they ran with every control-token text
    parsed and BOS/EOS added together, which is how :func:`_answer_from` reads them back."""

    text: str
    tokens: tuple[StreamToken, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)
    add_bos: bool = True
    stop: tuple[str, ...] = ()
    add_eos: bool = False
    literal_spans: tuple[tuple[int, int], ...] = ()
    parse_special: bool = False

    def token_args(self) -> dict[str, Any]:
        """Keyword arguments for ``Engine.tokenize_ids`` / ``tokenize_prompt``."""
        return {"add_bos": self.add_bos, "add_eos": self.add_eos,
                "literal_spans": self.literal_spans, "parse_special": self.parse_special}


@dataclass(frozen=True)
class ComparisonRecord:
    created: str  # ISO 8601, local time with offset
    base: ModelRef
    instruct: ModelRef
    user: str
    system: str | None
    base_mode: str
    base_prompt: str
    instruct_prompt: str
    params: dict[str, Any]  # SamplingParams fields (stop per side lives in the answers)
    seed: int
    base_answer: AnswerRecord
    instruct_answer: AnswerRecord
    load: dict[str, Any] = field(default_factory=dict)  # n_ctx, n_threads, n_gpu_layers
    shift: dict[str, Any] | None = None  # ShiftResult.to_json_dict() when the view was computed
    app_version: str = ""
    raw_control_tokens: bool = False  # raw mode's "my text contains control tokens" switch

    def sampling(self, side: str) -> SamplingParams:
        """The SamplingParams one side ran with."""
        names = set(SamplingParams.__dataclass_fields__)
        kw = {k: v for k, v in self.params.items() if k in names}
        kw["seed"] = int(self.seed)
        ans = self.base_answer if side == "base" else self.instruct_answer
        kw["stop"] = tuple(ans.stop)
        return SamplingParams(**kw)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "record_version": RECORD_VERSION,
            "created": self.created,
            "app_version": self.app_version,
            "models": {"base": _model_dict(self.base), "instruct": _model_dict(self.instruct)},
            "prompts": {
                "user": self.user,
                "system": self.system,
                "base_mode": self.base_mode,
                "base": self.base_prompt,
                "instruct": self.instruct_prompt,
                "raw_control_tokens": self.raw_control_tokens,
            },
            "params": _jsonable(self.params),
            "seed": self.seed,
            "load": _jsonable(self.load),
            "answers": {
                "base": _answer_dict(self.base_answer),
                "instruct": _answer_dict(self.instruct_answer),
            },
            "shift": self.shift,
        }

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> ComparisonRecord:
        try:
            m, p, a = d["models"], d["prompts"], d["answers"]
            return cls(
                created=str(d["created"]),
                base=_model_from(m["base"]),
                instruct=_model_from(m["instruct"]),
                user=str(p["user"]),
                system=p.get("system"),
                base_mode=str(p["base_mode"]),
                base_prompt=str(p["base"]),
                instruct_prompt=str(p["instruct"]),
                params=dict(d["params"]),
                seed=_seed(d["seed"]),
                base_answer=_answer_from(a["base"]),
                instruct_answer=_answer_from(a["instruct"]),
                load=dict(d.get("load") or {}),
                shift=d.get("shift"),
                app_version=str(d.get("app_version", "")),
                raw_control_tokens=bool(p.get("raw_control_tokens", False)),
            )
        except KeyError as exc:
            raise HistoryError(
                f"This is not a complete Based comparison record: its field \"{exc.args[0]}\" is "
                "missing."
            ) from None
        except (TypeError, ValueError, AttributeError):
            raise HistoryError(
                "This is not a complete Based comparison record: one of its fields holds the wrong "
                "kind of value."
            ) from None


def _seed(value: Any) -> int:
    """A record's seed, checked by the sampling rules (InvalidSetting: one sentence)."""
    from desktop.core.sampling import check

    check("seed", value)
    return int(value)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=list, allow_nan=False))


def _model_dict(m: ModelRef) -> dict[str, Any]:
    return {"name": m.name, "file": m.file, "path": m.path, "sha256": m.sha256,
            "file_size": m.file_size, "quant": m.quant}


def _model_from(d: Mapping[str, Any]) -> ModelRef:
    return ModelRef(str(d["name"]), str(d["path"]), str(d["sha256"]), int(d.get("file_size", 0)),
                    str(d.get("quant", "")))


def _lp(x: float) -> float | None:
    return None if x != x or x in (float("inf"), float("-inf")) else float(x)


def _unlp(x: Any) -> float:
    return float("-inf") if x is None else float(x)


def token_dict(t: StreamToken) -> dict[str, Any]:
    return {
        "index": t.index, "id": t.id, "piece": t.piece, "text": t.text, "logprob": _lp(t.logprob),
        "top": [{"id": a.id, "piece": a.piece, "logprob": _lp(a.logprob)} for a in t.top],
    }


def token_from(d: Mapping[str, Any]) -> StreamToken:
    return StreamToken(
        int(d["index"]), int(d["id"]), str(d["piece"]), str(d.get("text", d["piece"])),
        _unlp(d["logprob"]),
        tuple(TopAlt(int(a["id"]), str(a["piece"]), _unlp(a["logprob"])) for a in d.get("top", ())),
    )


def _answer_dict(a: AnswerRecord) -> dict[str, Any]:
    return {"text": a.text, "add_bos": a.add_bos, "add_eos": a.add_eos,
            "parse_special": a.parse_special, "literal_spans": [list(sp) for sp in a.literal_spans],
            "stop": list(a.stop), "stats": _jsonable(a.stats),
            "tokens": [token_dict(t) for t in a.tokens]}


def _answer_from(d: Mapping[str, Any]) -> AnswerRecord:
    add_bos = bool(d.get("add_bos", True))
    old = "parse_special" not in d  # version 1: everything parsed, llama.cpp's add_special
    spans = tuple((int(a), int(b)) for a, b in d.get("literal_spans", ()))
    return AnswerRecord(
        str(d["text"]), tuple(token_from(t) for t in d.get("tokens", ())), dict(d.get("stats", {})),
        add_bos, tuple(str(s) for s in d.get("stop", ())),
        add_eos=bool(d.get("add_eos", add_bos if old else False)),
        literal_spans=spans,
        parse_special=True if old else bool(d["parse_special"]),
    )


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def make_record(
    *,
    base: ModelRef,
    instruct: ModelRef,
    user: str,
    system: str | None,
    base_mode: str,
    base_prompt: RenderedPrompt,
    instruct_prompt: RenderedPrompt,
    params: SamplingParams,
    base_result: GenerationResult,
    instruct_result: GenerationResult,
    load: LoadOptions | Mapping[str, Any] | None = None,
    shift: Mapping[str, Any] | None = None,
    created: str | None = None,
    raw_control_tokens: bool = False,
) -> ComparisonRecord:
    """A record of one comparison from what the engines returned (``params`` without stop;
    each side's stop strings come from its rendered prompt, as the comparison ran them)."""
    from desktop import __version__

    pdict = asdict(params)
    pdict.pop("stop", None)
    if load is None:
        ldict: dict[str, Any] = {}
    elif isinstance(load, Mapping):
        ldict = dict(load)
    else:
        ldict = asdict(load)
    return ComparisonRecord(
        created=created or now_iso(), base=base, instruct=instruct, user=user, system=system,
        base_mode=base_mode, base_prompt=base_prompt.text, instruct_prompt=instruct_prompt.text,
        params=pdict, seed=int(params.seed),
        base_answer=_answer_record(base_result, base_prompt),
        instruct_answer=_answer_record(instruct_result, instruct_prompt),
        load=ldict, shift=dict(shift) if shift is not None else None, app_version=__version__,
        raw_control_tokens=raw_control_tokens,
    )


def _answer_record(result: GenerationResult, prompt: RenderedPrompt) -> AnswerRecord:
    return AnswerRecord(result.text, result.tokens, result.stats.to_dict(), prompt.add_bos,
                        tuple(prompt.stop), prompt.add_eos, tuple(prompt.literal_spans),
                        prompt.parse_special)


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
        """Save one comparison in a single transaction; returns its id."""
        blob = json.dumps(record.to_json_dict(), ensure_ascii=False, allow_nan=False)
        try:
            with self._tx():
                cur = self._db.execute(
                    "INSERT INTO comparisons (created, base_name, instruct_name, system, user, "
                    "base_text, instruct_text, has_shift, record) VALUES (?,?,?,?,?,?,?,?,?)",
                    (record.created, record.base.name, record.instruct.name, record.system,
                     record.user, record.base_answer.text, record.instruct_answer.text,
                     int(record.shift is not None), blob),
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
                "c.has_shift")
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
        return [HistoryRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]))
                for r in rows]

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
