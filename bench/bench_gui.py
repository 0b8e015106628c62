"""GUI benchmarks, measured side by side in one run (prints numbers, no pass/fail).

    python bench/bench_gui.py [--model M.gguf] [--tokens N]

1. Event-loop stalls while both panes stream at full speed: a 5 ms heartbeat QTimer records the
   gaps between its ticks; the stall is gap - 5 ms. Goal: p99 < 16 ms, max < 50 ms.
2. Tokens/s inside the running app (the worker's engine, with the GUI flushing) divided by the
   headless engine's tokens/s on the same model, threads and prompt. Goal >= 0.95.

Runs offscreen (QT_QPA_PLATFORM=offscreen) unless a display is set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("BASED_HOME", tempfile.mkdtemp(prefix="based-bench-"))

from bench.bench_engine import find_model  # noqa: E402


def headless_tps(path: Path, prompt: str, n: int, threads: int) -> float:
    from desktop.core.engine import Engine
    from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams

    with Engine(path, LoadOptions(n_ctx=2048, n_threads=threads)) as e:
        params = SamplingParams.deterministic(max_tokens=n, top_logprobs=10, repeat_penalty=1.0)
        list(e.stream(GenerationRequest(1, prompt, params), threading.Event()))
        return e.last_stats.tokens_per_second


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    path, label = find_model(a.model)

    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.core.settings import Settings
    from desktop.ui.app import create_main_window

    s = Settings(base_model=str(path), instruct_model=str(path), base_mode="raw", run_mode="parallel",
                 max_tokens=a.tokens, temperature=0.0, top_k=1, repeat_penalty=1.0, n_ctx=2048)
    w = create_main_window(s)
    w.show()
    app = QApplication.instance()
    assert app is not None
    prompt = "Once upon a time, in a small village by the sea,"
    w.controls.prompt.setPlainText(prompt)

    from PySide6.QtCore import QEventLoop

    def wait(cond, timeout_s: float = 300.0) -> None:  # type: ignore[no-untyped-def]
        # an idle event loop, as in the running app: it wakes 5 times a second to check (polling
        # faster would put the benchmark's own work on the GUI thread it measures)
        end = time.monotonic() + timeout_s
        while not cond() and time.monotonic() < end:
            loop = QEventLoop()
            QTimer.singleShot(200, loop.quit)
            w.controller.runFinished.connect(loop.quit)
            loop.exec()
            w.controller.runFinished.disconnect(loop.quit)

    wait(lambda: all(w.controller.loaded[x] is not None for x in ("base", "instruct")))
    threads = w.controller.threads_per_model()

    # 1. stalls while both stream side by side
    gaps: list[float] = []
    clock = QElapsedTimer()
    beat = QTimer()
    beat.setInterval(5)
    last = [0]

    def tick() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    beat.timeout.connect(tick)
    finished = []
    w.controller.runFinished.connect(finished.append)
    clock.start()
    beat.start()
    w.run()
    wait(lambda: bool(finished))
    beat.stop()
    stalls = sorted(max(0.0, g - 5.0) for g in gaps[1:])
    p99 = stalls[int(0.99 * (len(stalls) - 1))] if stalls else 0.0
    print(f"model: {label}; both panes streaming side by side, {threads} threads each, {a.tokens} tokens")
    print(f"[stalls] heartbeat 5 ms: {len(stalls)} ticks, p99 stall {p99:.1f} ms (goal < 16), "
          f"max stall {stalls[-1] if stalls else 0:.1f} ms (goal < 50)")

    # 2. in-app vs headless tokens/s, same model and threads, one side at a time
    w.settings.run_mode = "sequential"
    w.controls.run_mode.setCurrentIndex(w.controls.run_mode.findData("sequential"))
    w.controller.reload_all()
    wait(lambda: all(w.controller.loaded[x] is not None for x in ("base", "instruct")))
    threads = w.controller.threads_per_model()
    def rendered_prompt() -> str:
        """What the instruct model was given in the app (its chat template applied)."""
        ins = w.instruct_pane.inspector.inspection
        return ins.rendered.text if ins else prompt

    app_tps, head_tps, gui_cpu = [], [], []
    for _ in range(a.rounds):
        finished.clear()
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        w.run()
        wait(lambda: bool(finished))
        gui_cpu.append((time.thread_time() - cpu0) / (time.perf_counter() - wall0))
        res = w.controller.results["instruct"]
        assert res is not None
        app_tps.append(res.stats.tokens_per_second)
        head_tps.append(headless_tps(path, rendered_prompt(), a.tokens, threads))
    m_app, m_head = statistics.median(app_tps), statistics.median(head_tps)
    print(f"[throughput] in-app {m_app:.1f} tok/s, headless {m_head:.1f} tok/s ({threads} threads), "
          f"ratio {m_app / m_head:.3f} (goal >= 0.95)")
    # the same headless run in a process of its own: nothing of the app (idle workers, their
    # llama.cpp thread teams, Qt) around it
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from bench.bench_gui import headless_tps; "
            "print(headless_tps(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))")
    rendered = rendered_prompt()
    alone = []
    for _ in range(a.rounds):
        out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parents[1]), str(path),
                              rendered, str(a.tokens), str(threads)], capture_output=True, text=True, check=True)
        alone.append(float(out.stdout.strip().splitlines()[-1]))
    m_alone = statistics.median(alone)
    print(f"[throughput] headless in a process of its own {m_alone:.1f} tok/s; in-app / that "
          f"{m_app / m_alone:.3f}")
    print(f"[gui thread] {statistics.median(gui_cpu) * 100:.1f}% of a core while one model streams "
          f"(CPU time of the GUI thread / wall time of the run)")
    w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
