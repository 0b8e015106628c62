"""Run the GGUF fuzz corpus through child processes and collect one outcome per file."""

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
MEMORY_LIMIT = 4 << 30  # address space per child: a file asking for gigabytes fails here


@dataclass
class Outcome:
    index: int
    outcome: str  # refused | load-error | loaded | exception | crash | hang
    message: str = ""
    rss_kb: int = 0


def _limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _why(stderr: str) -> str:
    """The line of a dead child's stderr that says why (a GGML_ASSERT, an uncaught C++ exception)."""
    keep = [ln for ln in stderr.splitlines()
            if "GGML_ASSERT" in ln or "GGML_ABORT" in ln or "what()" in ln or "terminate" in ln
            or "error" in ln.lower() or "Fatal Python" in ln]
    return " | ".join(keep[-3:]) if keep else stderr[-300:]


def run_batch(paths: list[Path], *, timeout_s: float = 20.0) -> list[Outcome]:
    """Load ``paths`` in child processes; a child that dies or hangs is replaced and the file
    it was on is recorded as "crash" (with its exit status) or "hang"."""
    results: dict[int, Outcome] = {}
    todo = list(range(len(paths)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="0")
    while todo:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_limit,
        )
        assert proc.stdin and proc.stdout and proc.stderr
        stdin_data = "".join(f"{i} {paths[i]}\n" for i in todo)
        err_chunks: list[str] = []
        t_err = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
        t_err.start()

        def feed() -> None:
            try:
                proc.stdin.write(stdin_data)  # type: ignore[union-attr]
                proc.stdin.close()  # type: ignore[union-attr]
            except (BrokenPipeError, OSError):
                pass

        threading.Thread(target=feed, daemon=True).start()
        current: int | None = None
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        hung = False
        try:
            for line in proc.stdout:
                msg = json.loads(line)
                if "begin" in msg:
                    current = msg["begin"]
                    timer.cancel()
                    timer = threading.Timer(timeout_s, proc.kill)
                    timer.start()
                    continue
                results[msg["i"]] = Outcome(msg["i"], msg["outcome"], msg.get("message", "") +
                                            ("\n" + msg["trace"] if "trace" in msg else ""),
                                            msg.get("rss_kb", 0))
                current = None
        finally:
            timer.cancel()
        rc = proc.wait()
        hung = rc == -9
        t_err.join(timeout=5)
        if current is not None:
            results[current] = Outcome(current, "hang" if hung else "crash",
                                       f"exit {rc}: {_why(''.join(err_chunks))}")
        todo = [i for i in todo if i not in results]
        if current is None and todo:  # the child died between files: should not happen
            for i in todo:
                results[i] = Outcome(i, "crash", f"child exited {rc} before this file")
            todo = []
    return [results[i] for i in range(len(paths))]
