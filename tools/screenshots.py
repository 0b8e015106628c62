"""Take the screenshots in docs/ with real models (run under Xvfb; see docs/screenshots.md).

    xvfb-run -s "-screen 0 1366x800x24" python tools/screenshots.py compare --base B --instruct I --out docs/x.png
    ... shift --base I --instruct I --source base-mode --out docs/shift-view.png

It drives the real window: set the models, type a prompt, Run, wait, optionally analyse the token
shift, then grab the screen.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
os.environ.setdefault("BASED_HOME", tempfile.mkdtemp(prefix="based-shot-"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["compare", "midrun", "inspector", "shift", "models", "gallery"])
    ap.add_argument("--base", default="")
    ap.add_argument("--instruct", default="")
    ap.add_argument("--user", default="What is the capital of France?")
    ap.add_argument("--mode", default="urial")
    ap.add_argument("--source", default="chat")
    ap.add_argument("--max-tokens", type=int, default=60)
    ap.add_argument("--heatmap", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.core.settings import Settings
    from desktop.ui.app import create_main_window

    s = Settings(base_model=args.base, instruct_model=args.instruct, user_prompt=args.user,
                 base_mode=args.mode, max_tokens=args.max_tokens,
                 run_mode="parallel" if args.what == "midrun" else "sequential",
                 shift_prompt_source=args.source, n_ctx=2048)
    w = create_main_window(s)
    w.resize(1366, 800)
    w.show()
    app = QApplication.instance()
    assert app is not None

    def pause(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def wait_for(cond: object, timeout_s: float = 500.0) -> None:
        import time

        t0 = time.monotonic()
        while not cond() and time.monotonic() - t0 < timeout_s:  # type: ignore[operator]
            pause(50)  # an idle event loop: busy-polling would steal a core from llama.cpp
        if not cond():  # type: ignore[operator]
            print("timed out:", w.lens.panel.message.text(), w.base_pane.status.text(), w.instruct_pane.status.text(), w.base_pane.error.text(),
                  w.instruct_pane.error.text(), file=sys.stderr)
            w.close()
            raise SystemExit(1)

    if args.what == "midrun":  # both panes streaming: grab part-way
        ctl = w.controller
        wait_for(lambda: all(ctl.loaded[x] is not None or ctl.load_error[x] for x in ("base", "instruct")))
        if args.heatmap:
            w.base_pane.heatmap.setChecked(True)
            w.instruct_pane.heatmap.setChecked(True)
        w.controls.run_button.click()
        wait_for(lambda: min(len(w.base_pane.answer.tokens()), len(w.instruct_pane.answer.tokens())) >= 25)
        w.grab().save(args.out)
        w.stop()
        pause(300)
        w.close()
        print(args.out)
        return 0
    if args.what in ("compare", "shift", "inspector"):
        ctl = w.controller
        wait_for(lambda: all(ctl.loaded[x] is not None or ctl.load_error[x] for x in ("base", "instruct")))
        done: list[int] = []
        ctl.runFinished.connect(done.append)
        w.controls.run_button.click()
        wait_for(lambda: bool(done))
        if args.heatmap:
            w.base_pane.heatmap.setChecked(True)
            w.instruct_pane.heatmap.setChecked(True)
        if args.what == "inspector":
            w.base_pane.tabs.setCurrentWidget(w.base_pane.inspector)
            w.instruct_pane.tabs.setCurrentWidget(w.instruct_pane.inspector)
        if args.what == "shift":
            got: list[object] = []
            w.lens.shiftReady.connect(got.append)
            w.lens.panel.analyze.click()
            wait_for(lambda: bool(got))
            w.base_pane.tabs.setCurrentIndex(0)
            w.instruct_pane.tabs.setCurrentWidget(w.lens.panel)
            pause(300)
            first = Path(args.out).with_name(Path(args.out).stem + "-panel.png")
            w.grab().save(str(first))
            w.instruct_pane.tabs.setCurrentIndex(0)
            # hover-free: show the overlay on the answer
    elif args.what == "models":
        w.tabs.setCurrentWidget(w.models_panel)
        w.models_panel.catalog.setCurrentItem(w.models_panel.catalog.topLevelItem(2))
    elif args.what == "gallery":
        w.show_gallery()
        pause(300)
    pause(500)
    screen = app.primaryScreen()  # type: ignore[attr-defined]
    pix = screen.grabWindow(0) if args.what == "gallery" else w.grab()
    pix.save(args.out)
    w.close()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
