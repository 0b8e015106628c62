"""Local history: round trip, search, and crash safety under kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from desktop.core.errors import BasedError
from desktop.core.history import (
    AnswerRecord,
    ComparisonRecord,
    HistoryStore,
    ModelRef,
    file_sha256,
)
from desktop.core.paths import history_db
from desktop.core.types import StreamToken, TopAlt

ROOT = Path(__file__).resolve().parents[2]


def make(user: str, base_text: str = "base says hi", inst_text: str = "instruct says hello",
         n_tokens: int = 5, shift: dict | None = None) -> ComparisonRecord:
    toks = tuple(
        StreamToken(i, 100 + i, f" t{i}", f" t{i}", -0.5 - i / 100,
                    (TopAlt(100 + i, f" t{i}", -0.5), TopAlt(7, " x", -1.25)))
        for i in range(n_tokens)
    )
    return ComparisonRecord(
        created="2025-01-02T03:04:05+00:00",
        base=ModelRef("Tiny Base", "models/base.gguf", "a" * 64, 123, "F16"),
        instruct=ModelRef("Tiny Instruct", "models/inst.gguf", "b" * 64, 456, "Q8_0"),
        user=user, system="Be kind.", base_mode="urial",
        base_prompt=f"# Query:\n{user}\n# Answer:\n", instruct_prompt=f"<|user|>\n{user}<|end|>",
        params={"temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
                "repeat_penalty": 1.1, "seed": 7, "max_tokens": 64, "top_logprobs": 5},
        seed=7,
        base_answer=AnswerRecord(base_text, toks, {"generated_tokens": n_tokens}, True,
                                 ("\n# Query:",)),
        instruct_answer=AnswerRecord(inst_text, toks, {"generated_tokens": n_tokens}, False, ()),
        load={"n_ctx": 2048, "n_threads": 2, "n_gpu_layers": 0, "seed": 7},
        shift=shift, app_version="0.1.0",
    )


def test_round_trip_and_default_location() -> None:
    rec = make("What is a lighthouse?", shift={"tokens": [], "summary": {"unshifted": 1.0}})
    with HistoryStore() as store:
        assert store.path == history_db()
        rid = store.add(rec)
        got = store.get(rid)
    assert got == rec
    assert ComparisonRecord.from_json_dict(json.loads(json.dumps(rec.to_json_dict()))) == rec
    assert got.sampling("base").stop == ("\n# Query:",) and got.sampling("base").seed == 7
    db = sqlite3.connect(history_db())
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_search_delete_and_errors(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite3") as store:
        a = store.add(make("Tell me about penguins", inst_text="Penguins live in the south."))
        b = store.add(make("Write a haiku", base_text="autumn moonlight, a worm digs"))
        c = store.add(make("100% sure? it_works", inst_text="yes"))
        assert [r.id for r in store.search()] == [c, b, a]  # newest first
        assert [r.id for r in store.search("penguin")] == [a]  # prefix match in prompt/answer
        assert [r.id for r in store.search("moonlight")] == [b]
        assert [r.id for r in store.search("haiku autumn")] == [b]  # all words
        assert [r.id for r in store.search('"quoted')] == []
        assert [r.id for r in store.search("it_works")] == [c] or not store.fts
        assert store.search("penguins")[0].instruct_name == "Tiny Instruct"
        assert store.search(limit=1)[0].id == c
        assert store.delete(a) and not store.delete(a)
        assert store.search("penguin") == []
        with pytest.raises(BasedError):
            store.get(a)
        assert store.count() == 2


def test_shift_attached_after_saving(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite3") as store:
        rid = store.add(make("Attach later"))
        assert store.get(rid).shift is None and not store.search("Attach")[0].has_shift
        shift = {"tokens": [], "summary": {"unshifted": 0.9, "marginal": 0.1, "shifted": 0.0}}
        store.set_shift(rid, shift)
        assert store.get(rid).shift == shift and store.search("Attach")[0].has_shift
        assert store.get(rid).user == "Attach later"  # the rest of the record is untouched
        with pytest.raises(BasedError, match="no comparison number"):
            store.set_shift(rid + 99, shift)


def test_usable_from_another_thread(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "t.sqlite3")
    ids: list[int] = []
    t = threading.Thread(target=lambda: ids.append(store.add(make("from a thread"))))
    t.start()
    t.join()
    assert store.get(ids[0]).user == "from a thread"
    store.close()


def test_file_sha256_is_cached_by_mtime(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    assert file_sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    f.write_bytes(b"abcd")
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert file_sha256(f) == "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from tests.core.test_history import make
    from desktop.core.history import HistoryStore
    store = HistoryStore(sys.argv[1])
    i = 0
    while True:
        store.add(make(f"prompt number {i}", base_text="b" * 20000 + str(i),
                       inst_text="i" * 20000 + str(i), n_tokens=400))
        i += 1
        if i == 3:
            print("ready", flush=True)
""")


def test_survives_kill_minus_9_during_writes(tmp_path: Path) -> None:
    db = tmp_path / "crash.sqlite3"
    for round_ in range(3):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(ROOT)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.07 * round_)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        assert p.returncode == -signal.SIGKILL
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with HistoryStore(db) as store:
        rows = store.search(limit=100000)
        assert len(rows) >= 9
        for r in rows:
            rec = store.get(r.id)  # every row present is complete
            n = int(rec.user.rsplit(" ", 1)[1])
            assert rec.base_answer.text == "b" * 20000 + str(n)
            assert rec.instruct_answer.text == "i" * 20000 + str(n)
            assert len(rec.base_answer.tokens) == 400 and len(rec.instruct_answer.tokens) == 400
        if store.fts:
            assert len(store.search("prompt", limit=100000)) == len(rows)
        store.add(make("after the crash"))  # and it is writable
