"""`based shift | report | history | export | rerun`: the alignment lens on the command line.

Picked up by desktop.cli through ``EXTENSIONS``: :func:`register` adds the subcommands.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from desktop.cli import (  # shared helpers
    DEFAULT_MODE,
    EXIT_INTERRUPTED,
    MODES,
    _add_conversation,
    _add_runtime,
    _conversation,
    _json_out,
    _out,
    _source_name,
)
from desktop.core.errors import BasedError
from desktop.core.words import count


@contextmanager
def _ctrl_c() -> Iterator[threading.Event]:
    """Ctrl-C sets the event (the work stops at the next token) instead of raising."""
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        cancel.set()

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: no handler, no Ctrl-C handling
        previous = None
    try:
        yield cancel
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


# -- shift ---------------------------------------------------------------------------------------

_ANSI = {"marginal": "\x1b[30;43m", "shifted": "\x1b[37;41m"}
_MARK = {"marginal": ("{", "}"), "shifted": ("[", "]")}


def _marked_answer(run: Any, color: bool) -> str:
    by_index = {t.index: t for t in run.result.tokens}
    parts: list[str] = []
    for tok in run.answer.tokens:
        st = by_index.get(tok.index)
        text = tok.text
        if st is None or not text or st.cls.value == "unshifted":
            parts.append(text)
        elif color:
            parts.append(f"{_ANSI[st.cls.value]}{text}\x1b[0m")
        else:
            a, b = _MARK[st.cls.value]
            parts.append(f"{a}{text}{b}")
    return "".join(parts)


def cmd_shift(args: argparse.Namespace) -> int:
    from desktop.core.conversation import check_for_answer
    from desktop.core.sampling import check
    from desktop.core.shift_run import run_shift

    conv = _conversation(args)
    check_for_answer(conv, None, source=_source_name(args))  # the instruct model answers it
    check("top_logprobs", args.top_k, name="--top-k")
    with _ctrl_c() as cancel:
        run = run_shift(
            args.base, args.instruct, conv,
            prompt_source=args.prompt_source, mode=args.mode, max_tokens=args.max_tokens,
            n_ctx=args.n_ctx, threads=args.threads, n_gpu_layers=args.n_gpu_layers,
            top_k=args.top_k, cancel=cancel,
        )
    if args.json:
        _json_out(run.to_json_dict())
    else:
        color = sys.stdout.isatty() and not args.no_color
        s = run.result.summary
        sh = s.shares
        legend = ("marginal = yellow, shifted = red" if color
                  else "{marginal} = base rank 2-3, [shifted] = base rank 4+")
        src = ("the instruct's chat prompt" if run.prompt_source == "chat"
               else f"the base's {run.base_mode} prompt")
        if len(conv.turns) > 1:
            src += f" of the whole conversation ({len(conv.turns)} messages)"
        _out(f"== instruct answer ({run.instruct_name}), scored under {run.base_name} "
             f"after {src} ==\n({legend})\n\n")
        _out(_marked_answer(run, color) + "\n\n")
        _out(f"{count(s.n_tokens, 'token')}: {100 * sh['unshifted']:.1f}% unshifted, "
             f"{100 * sh['marginal']:.1f}% marginal, {100 * sh['shifted']:.1f}% shifted.\n")
        if s.top_shifted:
            _out("Most frequent shifted tokens: " + ", ".join(
                f"{json.dumps(p, ensure_ascii=False)} x{c}" for p, c in s.top_shifted[:10]) + "\n")
        t = run.timings
        _out(f"Generated in {t.get('generate_s', 0):.2f} s, scored in {t.get('score_s', 0):.3f} s "
             "(one batched evaluation).\n")
        if s.note:
            _out(f"[note] {s.note}\n")
        for n in run.load_notes:
            _out(f"[note] {n}\n")
    if cancel.is_set() or run.cancelled:
        print("based: stopped by Ctrl-C; the figures cover the part that finished.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


# -- report --------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from desktop.core.conversation import read_messages, read_tools
    from desktop.core.examples import load_starter_prompts, read_prompt_file
    from desktop.core.report import build_report, render_report_html

    if args.prompts and args.messages:
        raise BasedError("Give either --prompts or --messages, not both.")
    prompts: list[Any]
    if args.messages:
        prompts = [read_messages(args.messages)]
    elif args.prompts:
        prompts = list(read_prompt_file(args.prompts))
    else:
        prompts = list(load_starter_prompts())
    tools = read_tools(args.tools) if args.tools else ()
    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        raise BasedError(f"The folder for {out.name} does not exist; create it or pick another.")
    tty = sys.stderr.isatty()

    def progress(done: int, total: int, prompt: str) -> None:
        if not prompt:
            line = f"[{done}/{total}] done"
        else:
            short = prompt.replace("\n", " ")
            short = short if len(short) <= 50 else short[:49] + "\u2026"
            line = f"[{done}/{total}] {short}"
        if tty:
            sys.stderr.write("\r\x1b[K" + line + ("\n" if not prompt else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    with _ctrl_c() as cancel:
        data = build_report(
            args.base, args.instruct, prompts, system=args.system, max_tokens=args.max_tokens,
            n_ctx=args.n_ctx, threads=args.threads, n_gpu_layers=args.n_gpu_layers,
            prompt_source=args.prompt_source, mode=args.mode, on_progress=progress, cancel=cancel,
            tools=tools,
        )
    out.write_text(render_report_html(data), encoding="utf-8")
    o = data.overall.shares
    for n in data.settings.get("notes", ()):
        print(f"based: {n}", file=sys.stderr)
    print(f"based: wrote {out} ({len(data.items)} of {count(data.n_prompts, 'prompt')}; "
          f"{100 * o['unshifted']:.1f}% unshifted, {100 * o['marginal']:.1f}% marginal, "
          f"{100 * o['shifted']:.1f}% shifted).", file=sys.stderr)
    if cancel.is_set():
        print("based: stopped by Ctrl-C; the report covers the prompts that finished.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


# -- history / export / rerun --------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from desktop.core.history import HistoryStore

    with HistoryStore() as store:
        rows = store.search(args.search or "", limit=args.limit)
    if args.json:
        _json_out([asdict(r) for r in rows])
        return 0
    if not rows:
        _out("No saved comparisons" + (f" match {args.search!r}.\n" if args.search else ".\n"))
        return 0
    for r in rows:
        user = r.user.replace("\n", " ")
        user = user if len(user) <= 60 else user[:59] + "\u2026"
        mark = " [shift]" if r.has_shift else ""
        _out(f"{r.id:>5}  {r.created[:19].replace('T', ' ')}  {r.base_name} | {r.instruct_name}"
             f"{mark}\n       {user}\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from desktop.core.export import to_html, to_json, to_markdown
    from desktop.core.history import HistoryStore

    with HistoryStore() as store:
        record = store.get(args.id)
    text = {"md": to_markdown, "html": to_html, "json": to_json}[args.format](record)
    if args.out in (None, "-"):
        _out(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"based: wrote {args.out}", file=sys.stderr)
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    from desktop.core.export import load_json, rerun, same_outputs, to_json
    from desktop.core.sampling import check

    check("n_threads", args.threads)
    p = Path(args.file)
    if not p.is_file():
        raise BasedError(f"{p.name} was not found. Check the path to the exported JSON file.")
    record = load_json(p.read_text(encoding="utf-8"))
    with _ctrl_c() as cancel:
        new = rerun(record, base_path=args.base, instruct_path=args.instruct,
                    threads=args.threads, cancel=cancel)
    if args.out:
        Path(args.out).write_text(to_json(new), encoding="utf-8")
    same = same_outputs(record, new)
    if args.json:
        _json_out({"identical": same, "record": json.loads(to_json(new))})
    else:
        for side, ans in (("base", new.base_answer), ("instruct", new.instruct_answer)):
            _out(f"== {side}: {getattr(new, side).name} ==\n{ans.text}\n\n")
        _out("Reproduced: both answers are identical to the recorded ones.\n" if same else
             "The answers differ from the recorded ones.\n")
    if cancel.is_set():
        print("based: stopped by Ctrl-C.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if same else 1


# -- parser --------------------------------------------------------------------------------------


def _runtime(p: argparse.ArgumentParser) -> None:
    _add_runtime(p, 2048)


def _source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt-source", choices=["chat", "base-mode"], default="chat",
                   help="what the base model reads before the instruct answer: chat, the "
                        "instruct model's own chat prompt (default; how Lin et al. 2024 measure "
                        "it), or base-mode, the base model's own prompt in --mode")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                   help=f"base mode for --prompt-source base-mode (default: {DEFAULT_MODE})")


def register(sub: Any) -> None:
    s = sub.add_parser("shift", help="where did post-training change the answer? (token shift)")
    s.add_argument("--base", required=True, help="base model GGUF")
    s.add_argument("--instruct", required=True, help="instruct model GGUF (same tokenizer)")
    _add_conversation(s, user_help="your message (not empty)")
    s.add_argument("--system", default=None,
                   help="system prompt (optional; replaces the system message of --messages)")
    s.add_argument("--max-tokens", type=int, default=128,
                   help="longest instruct answer, in tokens (default: 128; greedy decoding)")
    s.add_argument("--top-k", type=int, default=5, help="base alternatives per token, 0 to 10 (default: 5)")
    _source(s)
    s.add_argument("--json", action="store_true", help="print the analysis as JSON")
    s.add_argument("--no-color", action="store_true", help="bracket markers instead of colours")
    _runtime(s)
    s.set_defaults(func=cmd_shift)

    r = sub.add_parser("report", help="token-shift report over a prompt set, as one HTML file")
    r.add_argument("--base", required=True, help="base model GGUF")
    r.add_argument("--instruct", required=True, help="instruct model GGUF (same tokenizer)")
    r.add_argument("--prompts", help=".txt (one per line) or .json list of prompts, each a string "
                                     "or a conversation (a list of messages); default: the "
                                     "starter set")
    r.add_argument("--messages", metavar="CONV.json",
                   help="one conversation instead of a prompt set (see `based compare --help`)")
    r.add_argument("--tools", metavar="TOOLS.json",
                   help="tools offered to the instruct model in every prompt")
    r.add_argument("--out", required=True, help="HTML file to write")
    r.add_argument("--system", default=None,
                   help="system prompt for every prompt without its own (optional)")
    r.add_argument("--max-tokens", type=int, default=128,
                   help="longest instruct answer per prompt, in tokens (default: 128; greedy)")
    _source(r)
    _runtime(r)
    r.set_defaults(func=cmd_report)

    h = sub.add_parser("history", help="list or search saved comparisons")
    h.add_argument("--search", default="", help="words to look for in prompts and answers")
    h.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default: 50)")
    h.add_argument("--json", action="store_true", help="print JSON instead of a list")
    h.set_defaults(func=cmd_history)

    e = sub.add_parser("export", help="export a saved comparison (see `based history`)")
    e.add_argument("id", type=int, help="the comparison's number in `based history`")
    e.add_argument("--format", choices=["md", "html", "json"], default="md",
                   help="Markdown, a web page, or JSON that `based rerun` can run again (default: md)")
    e.add_argument("--out", default=None, help="file to write (default: standard output)")
    e.set_defaults(func=cmd_export)

    x = sub.add_parser("rerun", help="run an exported JSON comparison again with the same files")
    x.add_argument("file", help="a comparison exported as JSON")
    x.add_argument("--base", default=None, help="base model file (default: the recorded path)")
    x.add_argument("--instruct", default=None, help="instruct model file (default: the recorded path)")
    x.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: the recorded number)")
    x.add_argument("--out", default=None, help="write the new comparison as JSON here")
    x.add_argument("--json", action="store_true", help="print the new comparison as JSON")
    x.set_defaults(func=cmd_rerun)
