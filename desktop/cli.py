"""The `based` command line: inspect, prompt, compare, and the window.

    based                         open the window
    based gui [--base B] [--instruct I]
    based inspect MODEL.gguf [--json]
    based prompt (--model M.gguf | --template T.jinja) (--user U | --messages C.json) [...]
    based compare --base B.gguf --instruct I.gguf (--user U | --messages C.json) [...]
    based models ... / shift ... / report ...   (see --help)

User errors go to stderr as one line with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from desktop import __version__
from desktop.core.errors import BasedError
from desktop.core.sampling import DEFAULT_MAX_TOKENS, DEFAULT_PRESET, PRESETS, InvalidSetting
from desktop.core.words import count, no_text_reason

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
MODES = ["raw", "twin-template", "qa", "urial"]  # desktop.core.prompts.BaseMode values
DEFAULT_MODE = "twin-template"  # desktop.core.prompts.DEFAULT_BASE_MODE (a test keeps them equal)
EXTENSIONS = ("desktop.cli_models", "desktop.cli_lens")
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens")
# the option that sets each checked value, so an error names what the user typed
OPTION_OF = {
    "temperature": "--temperature", "top_p": "--top-p", "top_k": "--top-k", "min_p": "--min-p",
    "repeat_penalty": "--repeat-penalty", "seed": "--seed", "max_tokens": "--max-tokens",
    "n_ctx": "--n-ctx", "n_threads": "--threads", "n_gpu_layers": "--n-gpu-layers",
}
RAW_SWITCH_HELP = ("raw mode only: your text contains control tokens (chat markup written by hand) "
                   "and they are sent as control tokens; by default all text is read as text")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2
        self.exit(EXIT_USER_ERROR, f"based: {message} (see `{self.prog} --help`)\n")


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _json_out(obj: Any) -> None:
    _out(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


# -- prompt ------------------------------------------------------------------------------------


def _conversation(args: argparse.Namespace) -> Any:
    """The conversation the options give: ``--user`` (with ``--system``), or ``--messages``
    (``--system`` replaces the file's system prompt), with ``--tools``."""
    from desktop.core.conversation import Conversation, read_messages, read_tools

    if getattr(args, "messages", None):
        conv = read_messages(args.messages, system=args.system)
    else:
        conv = Conversation(args.user, args.system)
    if getattr(args, "tools", None):
        conv = Conversation(system=conv.system, turns=conv.turns, tools=read_tools(args.tools))
    return conv


def _add_conversation(p: argparse.ArgumentParser, *, required: bool = True,
                      user_help: str = "your message") -> None:
    """--user or --messages, and --tools (prompt, compare, shift)."""
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--user", help=user_help)
    g.add_argument("--messages", metavar="CONV.json",
                   help="a whole conversation: a JSON list of OpenAI-style messages (role system, "
                        "user, assistant or tool; content as text or a list of text parts; "
                        "tool_calls; tool_call_id and name), or {\"messages\": [...], "
                        "\"tools\": [...]}")
    p.add_argument("--tools", metavar="TOOLS.json",
                   help="tools offered to the model: a JSON list of function schemas, "
                        "{\"type\": \"function\", \"function\": {\"name\", \"description\", "
                        "\"parameters\"}}")


def _check_raw_switch(args: argparse.Namespace) -> None:
    if getattr(args, "raw_control_tokens", False) and args.mode != "raw":
        raise BasedError("--raw-control-tokens works only with --mode raw.")


def _source_name(args: argparse.Namespace) -> str:
    """How messages name the conversation: its file, or "The conversation"."""
    return Path(args.messages).name if getattr(args, "messages", None) else "The conversation"


# -- compare -----------------------------------------------------------------------------------


def _params(args: argparse.Namespace) -> Any:
    """The --preset's values, with every sampling option given explicitly on top."""
    from desktop.core.sampling import PRESET_FIELDS, get_preset

    given = {f: getattr(args, f) for f in PRESET_FIELDS if getattr(args, f) is not None}
    return get_preset(args.preset).params(max_tokens=args.max_tokens, top_logprobs=0, **given)


def _load_options(args: argparse.Namespace, seed: int = 0) -> Any:
    from desktop.core.types import LoadOptions

    return LoadOptions(n_ctx=args.n_ctx, n_threads=args.threads, n_gpu_layers=args.n_gpu_layers,
                       seed=seed)


def cmd_compare(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from desktop.core.conversation import check_for_answer
    from desktop.core.engine import Engine
    from desktop.core.gguf_info import validate_gguf
    from desktop.core.prompts import BaseMode, render_base, render_instruct
    from desktop.core.types import StopReason

    _check_raw_switch(args)
    # every value is checked before any work (files, loads)
    conv = _conversation(args)
    prompt_note = check_for_answer(conv, args.mode, source=_source_name(args))
    params = _params(args)
    opts = _load_options(args, seed=params.seed)
    base_info = validate_gguf(args.base)
    inst_info = validate_gguf(args.instruct)
    from desktop.core.pair import check_pair

    pair_notes = list(check_pair(args.base, args.instruct).lines)  # said before anything runs
    prompts = {
        "base": render_base(BaseMode(args.mode), conv, base=base_info, twin=inst_info,
                            raw_control_tokens=args.raw_control_tokens),
        "instruct": render_instruct(inst_info, conv, merge_system_if_refused=True),
    }
    paths = {"base": args.base, "instruct": args.instruct}
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        cancel.set()

    signal.signal(signal.SIGINT, on_sigint)
    results: dict[str, Any] = {}
    if not args.json:
        for n in ([prompt_note] if prompt_note else []) + pair_notes:
            _out(f"[note] {n}\n")
    try:
        for side in ("base", "instruct"):
            rendered = prompts[side]
            if not args.json:
                info = base_info if side == "base" else inst_info
                _out(f"\n== {side}: {info.name} ({info.file_type}, {rendered.mode}) ==\n")
                for w in rendered.warnings:
                    _out(f"[note] {w}\n")
            if cancel.is_set():
                break
            with Engine(paths[side], opts) as engine:
                notes = [n for n in (engine.info.note,) if n]
                if not args.json:
                    for n in notes:
                        _out(f"[note] {n}\n")
                p = replace(params, stop=rendered.stop)
                req = rendered.request(1, p)
                parts: list[str] = []
                for tok in engine.stream(req, cancel):
                    parts.append(tok.text)
                    if not args.json:
                        _out(tok.text)
                stats = engine.last_stats
                loaded = engine.info
                where = loaded.where
            notes = [n for n in (prompt_note,) if n] + pair_notes + notes
            results[side] = {"prompt": rendered.text, "text": "".join(parts),
                             "stats": {**stats.to_dict(), "backend": loaded.backend,
                                       "gpu_layers": loaded.gpu_layers, "n_layer": loaded.n_layer,
                                       "device": where, "n_ctx": loaded.n_ctx},
                             "params": {f: getattr(params, f) for f in SAMPLING_FIELDS},
                             "notes": notes}
            if not args.json:
                if not "".join(parts).strip():  # a blank line would look like a fault
                    _out(f"({no_text_reason(stats.stop_reason)} `based prompt --model ... --mode "
                         f"{rendered.mode}` shows what it was given.)")
                _out(
                    f"\n-- {count(stats.prompt_tokens, 'prompt token')}, first token after "
                    f"{stats.time_to_first_token_s:.2f} s, {count(stats.generated_tokens, 'token')} at "
                    f"{stats.tokens_per_second:.1f} tok/s on {where}. {stats.stop_reason.words}\n"
                )
            if stats.stop_reason is StopReason.CANCELLED:
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.json:
        _json_out(results)
    if cancel.is_set():
        print("based: stopped by Ctrl-C; partial answers shown.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


# -- gui / self-test ---------------------------------------------------------------------------


def cmd_gui(args: argparse.Namespace) -> int:
    # Before Qt is imported: Qt aborts the process when its display platform cannot load.
    from desktop.ui.qt_platform import platform_problem

    problem = platform_problem()
    if problem:
        raise BasedError(problem)
    try:
        app = importlib.import_module("desktop.ui.app")
    except ImportError as exc:
        raise BasedError("The window cannot start because its toolkit (Qt) is missing or broken. "
                         "Reinstall Based.") from exc
    return int(app.run_app(getattr(args, "base", None), getattr(args, "instruct", None)))


def _self_test() -> int:
    mod = importlib.import_module("desktop.selftest")
    return int(mod.main())


# -- parser ------------------------------------------------------------------------------------


def presets_help() -> str:
    """The presets and their values, one per line (for --help)."""
    return "\n".join(f"  {k}: {p.describe()}" for k, p in PRESETS.items())


def gpu_layers_arg(text: str) -> int:
    """``--n-gpu-layers``: "auto" (-2), "all" (-1), "cpu" (0) or a whole number."""
    word = text.strip().lower()
    named = {"auto": -2, "all": -1, "cpu": 0}
    if word in named:
        return named[word]
    try:
        return int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be auto, all, 0 (CPU only) or a number of layers, not {text!r}") from None


def _add_runtime(p: argparse.ArgumentParser, n_ctx: int) -> None:
    r = p.add_argument_group("runtime")
    r.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores, up to 8)")
    r.add_argument("--n-ctx", type=int, default=n_ctx,
                   help=f"context size in tokens (default: {n_ctx:,}; lowered to what the model "
                        "was trained on, and Based says so)")
    r.add_argument("--n-gpu-layers", type=gpu_layers_arg, default="auto", metavar="auto|all|N",
                   help="where the model runs: auto (default: every layer on the GPU when the "
                        "model and its context fit its free memory, else as many layers as fit, "
                        "else the CPU), all, 0 (CPU only) or a number of layers on the GPU")


def _add_sampling(p: argparse.ArgumentParser) -> None:
    intro = textwrap.fill(
        f"The values come from --preset (default: {DEFAULT_PRESET}, the window's default too); "
        "an option given here overrides its value. The presets:", width=78)
    g = p.add_argument_group("sampling", f"{intro}\n{presets_help()}")
    g.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                   help=f"named set of sampling values (default: {DEFAULT_PRESET})")
    own = " (default: the preset's)"
    g.add_argument("--temperature", type=float, default=None,
                   help="randomness: 0 always picks the likeliest token" + own)
    g.add_argument("--top-p", type=float, default=None,
                   help="keep the likeliest tokens whose probabilities add up to this, above 0 "
                        "and at most 1" + own)
    g.add_argument("--top-k", type=int, default=None,
                   help="keep only the k likeliest tokens, 0 for all" + own)
    g.add_argument("--min-p", type=float, default=None,
                   help="drop tokens less likely than this fraction of the likeliest, 0 to 1" + own)
    g.add_argument("--repeat-penalty", type=float, default=None,
                   help="above 1 discourages repeating recent tokens, 1 turns it off" + own)
    g.add_argument("--seed", type=int, default=None,
                   help="random seed: the same seed and values give the same answer" + own)
    g.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                   help=f"longest answer, in tokens (default: {DEFAULT_MAX_TOKENS})")
    _add_runtime(p, 4096)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="based", description="A base model next to its instruct twin.")
    parser.add_argument("--version", action="version", version=f"based {__version__}")
    parser.add_argument("--self-test", action="store_true", help="check this installation and exit")
    # the GPU test run Based starts itself before it first uses a GPU (desktop.core.gpu_check)
    parser.add_argument("--gpu-check", action="store_true",
                        help="run the test Based runs before it first uses a GPU (the self-test "
                             "model on the GPU against the CPU) and print its verdict as JSON")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    g = sub.add_parser("gui", help="open the window", description="Open the window.")
    g.add_argument("--base", help="base model GGUF to select")
    g.add_argument("--instruct", help="instruct model GGUF to select")
    g.set_defaults(func=cmd_gui)

    from desktop.cli_prompt import register as register_inspect_and_prompt

    register_inspect_and_prompt(sub)  # inspect and prompt, listed before compare

    c = sub.add_parser("compare", help="run both models on a message or a conversation and print "
                                       "both answers",
                       description="Run the base model and its instruct twin on one message, or "
                                   "on the end of a conversation (--messages).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--base", required=True, help="base model GGUF")
    c.add_argument("--instruct", required=True, help="instruct model GGUF")
    _add_conversation(c, user_help="your message (empty only in --mode raw, where the base model "
                                   "writes from nothing)")
    c.add_argument("--system", default=None,
                   help="system prompt (optional; replaces the system message of --messages)")
    c.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                   help=f"how the base model gets your message (default: {DEFAULT_MODE}, the same "
                        "chat prompt as the instruct model; urial adds example answers that small "
                        "models tend to copy)")
    c.add_argument("--raw-control-tokens", action="store_true", help=RAW_SWITCH_HELP)
    c.add_argument("--json", action="store_true", help="print both answers and their stats as JSON")
    _add_sampling(c)
    c.set_defaults(func=cmd_compare)

    for name in EXTENSIONS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.register(sub)
    return parser


def tell_user(message: str) -> None:
    """One line for the user on stderr; a message box from a windowed Windows app (no stderr)."""
    if sys.stderr is not None:
        print(f"based: {message}", file=sys.stderr, flush=True)
    elif os.name == "nt":
        import ctypes

        ctypes.windll.user32.MessageBoxW(None, message, "Based", 0x10)  # type: ignore[attr-defined]


def unsupported_cpu() -> int | None:
    """Below the processor floor (x86-64-v2), say so in one sentence and return the exit code.

    Runs before NumPy, Qt or llama.cpp are imported: on such a processor they would stop the
    process with an illegal instruction (see desktop.core.cpu)."""
    from desktop.core.cpu import cpu_floor_message

    message = cpu_floor_message()
    if message is None:
        return None
    tell_user(message)
    return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    debug = bool(os.environ.get("BASED_DEBUG"))
    refused = unsupported_cpu()
    if refused is not None:
        return refused
    try:
        parser = build_parser()
        args = parser.parse_args(list(argv) if argv is not None else None)
        if args.self_test:
            return _self_test()
        if args.gpu_check:
            from desktop.core.gpu_check import main as gpu_check_main

            return gpu_check_main()
        func = getattr(args, "func", None)
        if func is None:
            return cmd_gui(args)
        return int(func(args))
    except KeyboardInterrupt:
        print("based: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InvalidSetting as exc:
        if debug:
            raise
        option = OPTION_OF.get(exc.field)
        print(f"based: {exc.sentence(name=option) if option else exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BasedError as exc:
        if debug:
            raise
        print(f"based: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        if debug:
            raise
        name = Path(exc.filename).name if getattr(exc, "filename", None) else "a file"
        print(f"based: {name}: {exc.strerror or exc}.", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        return 0


def gui_main() -> int:
    return main(["gui"])


if __name__ == "__main__":
    raise SystemExit(main())
