"""The `based` command line: inspect, prompt, compare, and the window.

    based                         open the window
    based gui [--base B] [--instruct I]
    based inspect MODEL.gguf [--json]
    based prompt (--model M.gguf | --template T.jinja) --user U [...]
    based compare --base B.gguf --instruct I.gguf --user U [...]
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
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from desktop import __version__
from desktop.core.errors import BasedError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
MODES = ["raw", "twin-template", "qa", "urial"]  # desktop.core.prompts.BaseMode values
EXTENSIONS = ("desktop.cli_models", "desktop.cli_lens")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2
        self.exit(EXIT_USER_ERROR, f"based: {message} (see `based --help`)\n")


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _json_out(obj: Any) -> None:
    _out(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


# -- inspect -----------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace) -> int:
    from desktop.core.gguf_info import human_bytes, info_to_dict, validate_gguf

    info = validate_gguf(args.model)
    if args.json:
        _json_out(info_to_dict(info))
        return 0
    kind = "tokenizer only (no weights)" if info.vocab_only else f"{info.n_tensors} tensors"
    rows = [
        ("Name", info.name),
        ("File", f"{Path(info.path).name} ({human_bytes(info.file_size)}, GGUF v{info.version}, {kind})"),
        ("Architecture", info.architecture or "unknown"),
        ("Size", f"{info.size_label or '?'} ({info.parameter_count:,} parameters)"),
        ("Quantization", info.file_type or "unknown"),
        ("Context length", f"{info.context_length:,}" if info.context_length else "not stated"),
        ("Tokenizer", f"{info.tokenizer_model or '?'}, {info.vocab_size:,} tokens"),
        ("BOS", f"{info.bos_token!r} (id {info.bos_token_id}), added by tokenizer: {'yes' if info.add_bos else 'no'}"),
        ("EOS", f"{info.eos_token!r} (id {info.eos_token_id})"),
        ("EOT", f"{info.eot_token!r} (id {info.eot_token_id})" if info.eot_token_id is not None else "none"),
        ("License", info.license or "not stated"),
    ]
    if info.chat_template:
        first = info.chat_template.strip().splitlines()[0][:70]
        rows.append(("Chat template", f"yes ({len(info.chat_template):,} chars): {first}"))
    else:
        rows.append(("Chat template", "none (a base model, or the template was left out)"))
    for name, src in info.named_templates.items():
        rows.append((f"  template '{name}'", f"{len(src):,} chars"))
    width = max(len(k) for k, _ in rows)
    _out("".join(f"{k.ljust(width)}  {v}\n" for k, v in rows))
    return 0


# -- prompt ------------------------------------------------------------------------------------


def _conversation(args: argparse.Namespace) -> Any:
    from desktop.core.prompts import Conversation

    return Conversation(args.user, args.system)


def _template_info(path: str, bos: str, eos: str) -> Any:
    """A GGUFInfo-like record for a bare .jinja template (no model)."""
    from desktop.core.paths import read_user_text
    from desktop.core.types import GGUFInfo

    p = Path(path)
    source = read_user_text(p, "template")
    return GGUFInfo(
        path=str(p), file_size=p.stat().st_size, version=0, name=p.stem, architecture="",
        size_label="", parameter_count=0, file_type="", context_length=0, tokenizer_model="",
        vocab_size=0, bos_token_id=None, bos_token=bos, eos_token_id=None, eos_token=eos,
        eot_token_id=None, eot_token="", add_bos=False, chat_template=source,
    )


def cmd_prompt(args: argparse.Namespace) -> int:
    from desktop.core.engine import tokenize_file
    from desktop.core.gguf_info import validate_gguf
    from desktop.core.prompts import BaseMode, inspect_prompt, render_base, render_instruct

    if args.model:
        info = validate_gguf(args.model)
    else:
        if args.tokens:
            raise BasedError("--tokens needs --model: a bare template has no tokenizer.")
        info = _template_info(args.template, args.bos_token or "", args.eos_token or "")
    conv = _conversation(args)
    if args.mode:
        twin = validate_gguf(args.twin) if args.twin else (info if info.chat_template else None)
        rendered = render_base(BaseMode(args.mode), conv, base=info, twin=twin)
    else:
        rendered = render_instruct(info, conv, merge_system_if_refused=args.merge_system)
    tokens = None
    n_ctx = info.context_length
    if args.tokens:
        ins = inspect_prompt(
            rendered, lambda t, b: tokenize_file(args.model, t, b),
            bos_token_id=info.bos_token_id, n_ctx=n_ctx,
        )
        tokens = ins.tokens
        warnings = ins.warnings
    else:
        warnings = rendered.warnings
    if args.json:
        obj: dict[str, Any] = {
            "prompt": rendered.text,
            "mode": rendered.mode,
            "stop": list(rendered.stop),
            "add_bos": rendered.add_bos,
            "template_source": rendered.template.source,
            "template_name": rendered.template.name,
            "warnings": list(warnings),
            "n_ctx": n_ctx,
        }
        if tokens is not None:
            obj["tokens"] = [{"id": t.id, "piece": t.piece, "special": t.special} for t in tokens]
            obj["token_count"] = len(tokens)
        _json_out(obj)
        return 0
    if tokens is None:
        _out(rendered.text)  # exactly the prompt, nothing added
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        return 0
    for t in tokens:
        mark = "*" if t.special else " "
        _out(f"{t.id:>8} {mark} {json.dumps(t.piece, ensure_ascii=False)}\n")
    ctx = f" of {n_ctx:,}" if n_ctx else ""
    _out(f"{len(tokens)} tokens{ctx} (* = special)\n")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


# -- compare -----------------------------------------------------------------------------------


def _params(args: argparse.Namespace) -> Any:
    from desktop.core.types import SamplingParams

    return SamplingParams(
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
        repeat_penalty=args.repeat_penalty, seed=args.seed, max_tokens=args.max_tokens,
        top_logprobs=0,
    )


def cmd_compare(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from desktop.core.engine import Engine
    from desktop.core.gguf_info import validate_gguf
    from desktop.core.prompts import BaseMode, render_base, render_instruct
    from desktop.core.types import GenerationRequest, LoadOptions, StopReason

    base_info = validate_gguf(args.base)
    inst_info = validate_gguf(args.instruct)
    conv = _conversation(args)
    prompts = {
        "base": render_base(BaseMode(args.mode), conv, base=base_info, twin=inst_info),
        "instruct": render_instruct(inst_info, conv, merge_system_if_refused=True),
    }
    paths = {"base": args.base, "instruct": args.instruct}
    params = _params(args)
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        cancel.set()

    signal.signal(signal.SIGINT, on_sigint)
    results: dict[str, Any] = {}
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
            opts = LoadOptions(n_ctx=args.n_ctx, n_threads=args.threads, n_gpu_layers=args.n_gpu_layers,
                               seed=args.seed)
            with Engine(paths[side], opts) as engine:
                p = replace(params, stop=rendered.stop)
                req = GenerationRequest(1, rendered.text, p, add_bos=rendered.add_bos)
                parts: list[str] = []
                for tok in engine.stream(req, cancel):
                    parts.append(tok.text)
                    if not args.json:
                        _out(tok.text)
                stats = engine.last_stats
                where = engine.info.backend
            results[side] = {"prompt": rendered.text, "text": "".join(parts),
                             "stats": {**stats.to_dict(), "backend": where, "device": where}}
            if not args.json:
                _out(
                    f"\n-- {stats.prompt_tokens} prompt tokens, first token after "
                    f"{stats.time_to_first_token_s:.2f} s, {stats.generated_tokens} tokens at "
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
        raise BasedError(f"The window cannot start because Qt is missing ({exc}). Reinstall Based.") from exc
    return int(app.run_app(getattr(args, "base", None), getattr(args, "instruct", None)))


def _self_test() -> int:
    mod = importlib.import_module("desktop.selftest")
    return int(mod.main())


# -- parser ------------------------------------------------------------------------------------


def _add_sampling(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling (defaults: greedy, reproducible)")
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=40)
    g.add_argument("--min-p", type=float, default=0.0)
    g.add_argument("--repeat-penalty", type=float, default=1.1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-tokens", type=int, default=200)
    r = p.add_argument_group("runtime")
    r.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores, up to 8)")
    r.add_argument("--n-ctx", type=int, default=4096, help="context size in tokens")
    r.add_argument("--n-gpu-layers", type=int, default=0, help="layers to offload to the GPU (-1: all)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="based", description="A base model next to its instruct twin.")
    parser.add_argument("--version", action="version", version=f"based {__version__}")
    parser.add_argument("--self-test", action="store_true", help="check this installation and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    g = sub.add_parser("gui", help="open the window")
    g.add_argument("--base", help="base model GGUF to select")
    g.add_argument("--instruct", help="instruct model GGUF to select")
    g.set_defaults(func=cmd_gui)

    i = sub.add_parser("inspect", help="what a GGUF file says about itself (no weights loaded)")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)

    p = sub.add_parser("prompt", help="print exactly the prompt a model receives")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="GGUF file (a vocab-only GGUF works too)")
    src.add_argument("--template", help="a Jinja chat template file")
    p.add_argument("--system", default=None)
    p.add_argument("--user", required=True)
    p.add_argument("--mode", choices=MODES, help="base-model prompt mode (default: the chat template)")
    p.add_argument("--twin", help="instruct twin GGUF whose template twin-template mode uses")
    p.add_argument("--tokens", action="store_true", help="show the tokens as the model's tokenizer parses them")
    p.add_argument("--json", action="store_true")
    p.add_argument("--bos-token", default=None, help="bos_token for a bare --template")
    p.add_argument("--eos-token", default=None, help="eos_token for a bare --template")
    p.add_argument("--merge-system", action="store_true",
                   help="if the template refuses a system prompt, put it into the user message")
    p.set_defaults(func=cmd_prompt)

    c = sub.add_parser("compare", help="run both models on one message and print both answers")
    c.add_argument("--base", required=True)
    c.add_argument("--instruct", required=True)
    c.add_argument("--user", required=True)
    c.add_argument("--system", default=None)
    c.add_argument("--mode", choices=MODES, default="urial", help="base-model prompt mode (default: urial)")
    c.add_argument("--json", action="store_true")
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
        func = getattr(args, "func", None)
        if func is None:
            return cmd_gui(args)
        return int(func(args))
    except KeyboardInterrupt:
        print("based: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
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
