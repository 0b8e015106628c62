"""`based --self-test`: check that this installation (or bundle) works, with no network or display.

1. load the tiny model shipped in desktop/assets/selftest/ with llama.cpp;
2. render a prompt through its chat template and tokenize it;
3. generate a few tokens greedily;
4. open the main window offscreen, show it, close it and check that no thread is left;
5. when a display is present (DISPLAY or WAYLAND_DISPLAY), open the window once more on the
   display platform Qt picks for a normal start (xcb, wayland), in a child process: Qt aborts a
   process whose platform plugin cannot load, and the offscreen step cannot see that.

Prints exactly one line, ``based self-test: ok (...)`` with exit code 0, or
``based self-test: FAILED at <step>: <reason>`` with exit code 1.

Environment:
    BASED_SELFTEST_MODEL=<file.gguf>   use this model instead of the shipped one
    BASED_SELFTEST_GPU=1               offload the model to the GPU when the build has a GPU backend
    BASED_SELFTEST_ONLY=window         only step 4: measures cold start to a shown window

The window step runs with QT_QPA_PLATFORM=offscreen (unless set) and a throw-away BASED_HOME, so
the user's settings and window geometry are never touched. Step 5 runs this self-test again
with BASED_SELFTEST_ONLY=window and BASED_SELFTEST_DISPLAY=1 (keep Qt's own platform choice).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

MODEL_RESOURCE = "selftest/selftest.gguf"
GEN_TOKENS = 8
N_CTX = 256
PROMPT = "Say hello in one word."
WINDOW_TIMEOUT_S = 20.0
DISPLAY_TIMEOUT_S = 90.0

_T_IMPORT = time.perf_counter()


class SelfTestFailure(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "no details"


def _reason(exc: BaseException) -> str:
    from desktop.core.errors import BasedError

    if isinstance(exc, BasedError):
        return _one_line(str(exc))
    return _one_line(f"{type(exc).__name__}: {exc}")


def seconds_since_process_start() -> float | None:
    """Wall time since this process started (Linux /proc), else None."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        fields = stat[stat.rindex(")") + 2 :].split()
        start_ticks = int(fields[19])  # field 22 of /proc/<pid>/stat
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


@contextlib.contextmanager
def model_file() -> Iterator[Path]:
    """The self-test model: BASED_SELFTEST_MODEL, else the copy shipped with the package."""
    override = os.environ.get("BASED_SELFTEST_MODEL")
    if override:
        yield Path(override)
        return
    from importlib import resources

    ref = resources.files("desktop.assets").joinpath(MODEL_RESOURCE)
    with resources.as_file(ref) as path:
        if not path.is_file():
            raise FileNotFoundError(f"the bundled self-test model {MODEL_RESOURCE} is missing")
        yield path


def check_model() -> dict[str, object]:
    """Steps 1-3: load, render the chat template, tokenize, generate greedily."""
    from desktop.core import engine as engine_mod
    from desktop.core.prompts import Conversation, render_instruct
    from desktop.core.types import LoadOptions, SamplingParams

    step = "load model"
    try:
        with model_file() as path:
            gpu = bool(os.environ.get("BASED_SELFTEST_GPU")) and engine_mod.gpu_backend_available()
            opts = LoadOptions(n_ctx=N_CTX, n_threads=2, n_gpu_layers=-1 if gpu else 0, seed=0)
            with engine_mod.Engine(path, opts) as eng:
                out: dict[str, object] = {"load_s": eng.info.load_s, "backend": eng.info.where}
                step = "chat template"
                if not eng.gguf.chat_template:
                    raise RuntimeError(f"{path.name} has no chat template")
                rendered = render_instruct(eng.gguf, Conversation(PROMPT))
                tokens = eng.tokenize(rendered.text, **rendered.token_args())
                if not any(t.special for t in tokens):
                    raise RuntimeError("the template's special tokens were not parsed as special")
                if PROMPT not in eng.detokenize([t.id for t in tokens]):
                    raise RuntimeError("tokens do not round-trip to the rendered prompt")
                out["template_tokens"] = len(tokens)
                step = "generate"
                params = SamplingParams.deterministic(
                    max_tokens=GEN_TOKENS, top_logprobs=0, stop=rendered.stop
                )
                req = rendered.request(1, params)
                result = eng.generate(req, threading.Event())
                stats = result.stats
                if stats.error:
                    raise RuntimeError(stats.error)
                if stats.generated_tokens < 1:
                    raise RuntimeError("no token was generated")
                out["gen_tokens"] = stats.generated_tokens
                out["tok_s"] = stats.tokens_per_second
        if not gpu and engine_mod.gpu_backend_available():
            from desktop.core.devices import devices_label, gpu_devices

            label = devices_label(gpu_devices())
            if label:
                out["backend"] = f"{out['backend']}, GPU available: {label}"
        return out
    except SelfTestFailure:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise SelfTestFailure(step, _reason(exc)) from exc


@contextlib.contextmanager
def _scratch_home() -> Iterator[Path]:
    saved = {k: os.environ.get(k) for k in ("BASED_HOME", "HF_HUB_OFFLINE")}
    with tempfile.TemporaryDirectory(prefix="based-selftest-", ignore_cleanup_errors=True) as tmp:
        os.environ["BASED_HOME"] = tmp
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            yield Path(tmp)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def check_window() -> dict[str, object]:
    """Step 4: open the main window offscreen, wait until it is shown, close it, count threads."""
    step = "window"
    if not os.environ.get("BASED_SELFTEST_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        before = {t.ident for t in threading.enumerate()}
        with _scratch_home():
            from PySide6.QtCore import QCoreApplication, QEventLoop

            from desktop.ui.app import create_main_window, ensure_app
            from desktop.workers.threads import running_threads

            app = ensure_app()
            win = create_main_window()
            win.show()
            deadline = time.monotonic() + WINDOW_TIMEOUT_S
            while True:
                app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
                handle = win.windowHandle()
                if win.isVisible() and handle is not None and handle.isExposed():
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the window was not shown within {WINDOW_TIMEOUT_S:.0f} s")
            out: dict[str, object] = {
                "shown_after_start_s": seconds_since_process_start(),
                "shown_after_import_s": time.perf_counter() - _T_IMPORT,
                "platform": app.platformName(),
            }
            if app.windowIcon().isNull():
                raise RuntimeError("the app icon could not be loaded")
            step = "close window"
            if not win.close():
                raise RuntimeError("the window refused to close")
            win.deleteLater()
            deadline = time.monotonic() + WINDOW_TIMEOUT_S
            while True:
                app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
                QCoreApplication.sendPostedEvents(None, 0)  # runs deleteLater
                left_q = running_threads()
                left_py = [t.name for t in threading.enumerate()
                           if t.ident not in before and t.is_alive() and not t.daemon]
                if not left_q and not left_py:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"threads still running after close: {left_q + left_py}")
        return out
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise SelfTestFailure(step, _reason(exc)) from exc


def display_present() -> bool:
    """A display to open windows on: DISPLAY or WAYLAND_DISPLAY, and no platform forced."""
    forced = os.environ.get("QT_QPA_PLATFORM", "")
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and not forced


def _self_command() -> list[str]:
    if getattr(sys, "frozen", False):  # the bundle's own executable
        return [sys.executable, "--self-test"]
    return [sys.executable, "-m", "desktop", "--self-test"]


def check_display() -> str:
    """Step 5: the window on the real display platform, in a child process; returns its name."""
    import subprocess

    env = dict(os.environ, BASED_SELFTEST_ONLY="window", BASED_SELFTEST_DISPLAY="1")
    env.pop("QT_QPA_PLATFORM", None)  # step 4 set offscreen for this process: Qt chooses again
    try:
        r = subprocess.run(_self_command(), env=env, capture_output=True, text=True,
                           timeout=DISPLAY_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise SelfTestFailure("display", f"the window did not open within {DISPLAY_TIMEOUT_S:.0f} s") from exc
    lines = r.stdout.strip().splitlines()
    last = lines[-1] if lines else ""
    if r.returncode == 0 and last.startswith("based self-test: ok"):
        found = re.search(r"window ok on (\w+)", last)
        return found.group(1) if found else "display"
    prefix = "based self-test: FAILED at "
    if last.startswith(prefix):
        reason = last[len(prefix):].split(": ", 1)[-1]
    else:  # Qt aborted: its last words are on stderr
        err = [ln for ln in r.stderr.splitlines() if ln.strip()]
        reason = f"Qt could not start on the display ({_one_line(err[-1]) if err else f'exit status {r.returncode}'})"
    raise SelfTestFailure("display", reason)


def _fmt_rate(x: object) -> str:
    v = float(x) if isinstance(x, (int, float)) else 0.0
    return f"{v:,.0f}" if v >= 10 else f"{v:.1f}"


def run() -> str:
    """Run the self-test and return the summary (without the prefix); raises SelfTestFailure."""
    only = os.environ.get("BASED_SELFTEST_ONLY", "").strip().lower()
    if only not in ("", "window"):
        raise SelfTestFailure("setup", f"BASED_SELFTEST_ONLY must be 'window', not {only!r}")
    parts: list[str] = []
    display = not only and display_present()  # before the window step forces offscreen
    if not only:
        m = check_model()
        parts += [
            f"model loaded {float(m['load_s']):.2f} s",  # type: ignore[arg-type]
            f"template {m['template_tokens']} tokens",
            f"{m['gen_tokens']} tokens at {_fmt_rate(m['tok_s'])} tok/s",
        ]
    w = check_window()
    shown = w["shown_after_start_s"]
    on = "" if w["platform"] == "offscreen" else f" on {w['platform']}"
    if isinstance(shown, float):
        parts.append(f"window ok{on}, shown {shown:.2f} s after start")
    else:
        parts.append(f"window ok{on}, shown {float(w['shown_after_import_s']):.2f} s after import")  # type: ignore[arg-type]
    if display:
        parts.append(f"display {check_display()} ok")
    if not only:
        parts.append(f"llama.cpp backend {m['backend']}")
    return ", ".join(parts)


def main() -> int:
    try:
        summary = run()
    except SelfTestFailure as exc:
        print(f"based self-test: FAILED at {exc.step}: {exc.reason}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("based self-test: FAILED at setup: interrupted", flush=True)
        return 1
    except BaseException as exc:  # noqa: BLE001
        print(f"based self-test: FAILED at setup: {_reason(exc)}", flush=True)
        return 1
    print(f"based self-test: ok ({summary})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
