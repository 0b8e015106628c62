"""Run GGUF files through child processes (tests/gguf_load_child.py) and collect one outcome each.

A child that dies (an abort, a segfault) or stops answering (a hang) is replaced, and the file it
was on is recorded as "crash" (with the line of stderr that says why) or "hang"; the rest of the
batch goes on in a fresh child. Each child runs under an address-space limit, so a file that makes
llama.cpp ask for gigabytes fails there instead of taking the machine's memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

CHILD = Path(__file__).with_name("gguf_load_child.py")
MEMORY_LIMIT = 4 << 30  # bytes of address space per child


@dataclass
class Outcome:
    index: int
    outcome: str  # refused | load-error | loaded | exception | crash | hang
    message: str = ""
    rss_kb: int = 0  # growth of the child's peak memory while it handled this file


def _limit_memory() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _why(stderr: str) -> str:
    """The lines of a dead child's stderr that say why (an assert, an uncaught C++ exception)."""
    keep = [ln.strip() for ln in stderr.splitlines()
            if "GGML_ASSERT" in ln or "GGML_ABORT" in ln or "what()" in ln or "terminate" in ln
            or "error" in ln.lower()]
    return " | ".join(keep[-3:]) if keep else stderr[-300:].strip()


def _run_child(paths: list[Path], todo: list[int], timeout_s: float,
               results: dict[int, Outcome]) -> None:
    # GGML_NO_BACKTRACE: an abort ends the child at once instead of attaching a debugger
    env = dict(os.environ, OMP_NUM_THREADS="1", GGML_NO_BACKTRACE="1", PYTHONFAULTHANDLER="")
    proc = subprocess.Popen(
        [sys.executable, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_limit_memory,
    )
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    assert stdin is not None and stdout is not None and stderr is not None
    err: list[str] = []
    readers = [threading.Thread(target=lambda: err.append(stderr.read()), daemon=True)]

    def feed() -> None:
        try:
            stdin.write("".join(f"{i} {paths[i]}\n" for i in todo))
            stdin.close()
        except OSError:  # the child died early: the parent records it
            pass

    readers.append(threading.Thread(target=feed, daemon=True))
    for t in readers:
        t.start()
    current: int | None = None
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        for line in stdout:
            msg = json.loads(line)
            if "begin" in msg:
                current = msg["begin"]
                timer.cancel()
                timer = threading.Timer(timeout_s, proc.kill)
                timer.start()
                continue
            text = msg.get("message", "") + ("\n" + msg["trace"] if "trace" in msg else "")
            results[msg["i"]] = Outcome(msg["i"], msg["outcome"], text, msg.get("rss_kb", 0))
            current = None
    finally:
        timer.cancel()
    rc = proc.wait()
    for t in readers:
        t.join(timeout=10)
    if current is not None:
        kind = "hang" if rc == -9 else "crash"
        results[current] = Outcome(current, kind, f"exit {rc}: {_why(''.join(err))}")
    elif rc != 0:
        for i in todo:
            results.setdefault(i, Outcome(i, "crash", f"child exited {rc} between files"))


def run_batch(paths: list[Path], *, workers: int = 2, timeout_s: float = 30.0) -> list[Outcome]:
    """Validate, load, tokenize and generate with each file in ``paths``, in ``workers`` child
    processes at a time; ``timeout_s`` without progress on one file counts as a hang."""
    results: dict[int, Outcome] = {}
    lock = threading.Lock()

    def worker(share: list[int]) -> None:
        while True:
            with lock:
                todo = [i for i in share if i not in results]
            if not todo:
                return
            mine: dict[int, Outcome] = {}
            _run_child(paths, todo, timeout_s, mine)
            if not mine:  # the child died before its first file: give up on this share
                mine = {i: Outcome(i, "crash", "child failed to start") for i in todo}
            with lock:
                results.update(mine)

    shares = [list(range(w, len(paths), workers)) for w in range(workers)]
    threads = [threading.Thread(target=worker, args=(s,)) for s in shares if s]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[i] for i in range(len(paths))]


_ENGINE_EACH = (
    "import sys\n"
    "from desktop.core.engine import Engine\n"
    "from desktop.core.errors import GGUFError\n"
    "for f in sys.argv[1:]:\n"
    "    try:\n"
    "        Engine(f)\n"
    "        print('LOADED', f)\n"
    "    except GGUFError as e:\n"
    "        print('ERR', e)\n"
    "print('ALIVE')\n"
)


def engine_each_in_a_child(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    """Open each file with ``Engine`` in one child process, printing ``LOADED <path>`` or
    ``ERR <sentence>`` per file and ``ALIVE`` at the end (an abort would leave it out)."""
    return subprocess.run([sys.executable, "-c", _ENGINE_EACH, *[str(p) for p in paths]],
                          capture_output=True, text=True, timeout=120)
