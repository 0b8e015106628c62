"""Take the screenshots in docs/ with real models (run under Xvfb; see docs/screenshots.md).

    xvfb-run -a -s "-screen 0 1280x720x24" python tools/screenshots.py compare --base B --instruct I --out docs/x.png
    ... first-run --out docs/first-run.png
    ... shift --base I --instruct I --source base-mode --out docs/shift-view.png
    ... conversation --base B --instruct I --then "Why?" --then "And?" --out docs/conversation.png

It drives the real window at 1280x720 (``--size``): set the models, type a prompt, Run, wait,
optionally analyse the token shift, open a view or a dialog, then grab the screen (dialogs
included).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
os.environ.setdefault("BASED_HOME", tempfile.mkdtemp(prefix="based-shot-"))

WHAT = ["compare", "midrun", "inspector", "shift", "models", "models-failed", "gallery", "report",
        "first-run", "conversation"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=WHAT)
    ap.add_argument("--base", default="")
    ap.add_argument("--instruct", default="")
    ap.add_argument("--user", default="What is the capital of France?")
    ap.add_argument("--mode", default="twin-template")
    ap.add_argument("--source", default="chat")
    ap.add_argument("--max-tokens", type=int, default=60)
    ap.add_argument("--heatmap", action="store_true")
    ap.add_argument("--then", action="append", default=[],
                    help="conversation: a follow-up, asked with Follow up after the answers (repeat)")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.core.settings import Settings
    from desktop.ui.app import create_main_window

    user = "" if args.what == "first-run" else args.user  # a first run starts empty
    s = Settings(base_model=args.base, instruct_model=args.instruct, user_prompt=user,
                 base_mode=args.mode, max_tokens=args.max_tokens,
                 run_mode="parallel" if args.what == "midrun" else "sequential",
                 shift_prompt_source=args.source, n_ctx=2048)
    w = create_main_window(s)
    w.move(0, 0)
    w.resize(width, height)
    w.show()
    app = QApplication.instance()
    assert app is not None

    def pause(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def wait_for(cond: object, timeout_s: float = 300.0) -> None:
        import time

        t0 = time.monotonic()
        while not cond() and time.monotonic() - t0 < timeout_s:  # type: ignore[operator]
            pause(50)  # an idle event loop: busy-polling would steal a core from llama.cpp
        if not cond():  # type: ignore[operator]
            print("timed out:", w.lens.panel.message.text(), w.base_pane.status.text(), w.instruct_pane.status.text(), w.base_pane.error.text(),
                  w.instruct_pane.error.text(), file=sys.stderr)
            w.close()
            raise SystemExit(1)

    def loaded() -> None:
        ctl = w.controller
        wait_for(lambda: all(ctl.loaded[x] is not None or ctl.load_error[x] for x in ("base", "instruct")))
        if ctl.paths["base"] and ctl.paths["instruct"]:
            wait_for(lambda: ctl.pair is not None)

    def centre(dialog: object) -> None:
        d = dialog  # no window manager under Xvfb: place the dialog over the window ourselves
        d.move(max(0, (width - d.width()) // 2), max(0, (height - d.height()) // 2))  # type: ignore[attr-defined]

    dialog = None
    if args.what == "midrun":  # both panes streaming: grab part-way
        loaded()
        if args.heatmap:
            w.base_pane.heatmap.setChecked(True)
            w.instruct_pane.heatmap.setChecked(True)
        w.controls.run_button.click()

        def part_way() -> bool:  # both have written something, and one is still writing
            n = (len(w.base_pane.answer.tokens()), len(w.instruct_pane.answer.tokens()))
            return bool(w.controller.active) and min(n) >= 8 and sum(n) >= 50 or not w.controller.active

        wait_for(part_way, 240)
        w.grab().save(args.out)
        w.stop()
        pause(300)
        w.close()
        print(args.out)
        return 0
    if args.what in ("compare", "shift", "inspector", "conversation"):
        loaded()
        done: list[int] = []
        w.controller.runFinished.connect(done.append)
        w.controls.run_button.click()
        wait_for(lambda: bool(done))
        for text in args.then if args.what == "conversation" else ():  # each a turn more
            done.clear()
            w.controls.prompt.setPlainText(text)
            w.controls.follow_button.click()  # keeps the answers as a turn, asks the new message
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
            w.instruct_pane.tabs.setCurrentWidget(w.lens.tab)
            pause(300)
            first = Path(args.out).with_name(Path(args.out).stem + "-panel.png")
            w.grab().save(str(first))
            w.instruct_pane.tabs.setCurrentIndex(0)
    elif args.what in ("models", "models-failed"):
        loaded()
        w.tabs.setCurrentWidget(w.models_panel)
        panel = w.models_panel
        panel.catalog.setCurrentItem(panel.catalog.topLevelItem(0))
        if args.what == "models-failed":  # on a machine without internet: a real failure
            panel.get_pair.click()
            wait_for(lambda: len(panel.downloads.rows) == 2
                     and all(r.state == "failed" for r in panel.downloads.rows.values()), 60)
    elif args.what == "gallery":
        loaded()
        w.show_gallery()
        dialog = w.gallery
    elif args.what == "report":
        loaded()
        w.show_report()
        dialog = w.report_dialog
    if dialog is not None:
        centre(dialog)
    pause(500)
    screen = app.primaryScreen()  # type: ignore[attr-defined]
    pix = screen.grabWindow(0, 0, 0, width, height) if dialog is not None else w.grab()
    pix.save(args.out)
    if dialog is not None:
        dialog.reject()  # type: ignore[attr-defined]
    w.close()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
