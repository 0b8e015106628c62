"""`based models ...`: the model library from the command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from desktop.cli import EXIT_INTERRUPTED
from desktop.core import settings as settings_mod
from desktop.core.errors import BasedError, DownloadCancelled
from desktop.core.gguf_info import human_bytes
from desktop.core.words import count


def _settings() -> settings_mod.Settings:
    return settings_mod.load_or_default().settings


def _eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class _Progress:
    """One status line on stderr, redrawn at most a few times a second."""

    def __init__(self, name: str, quiet: bool) -> None:
        self.name = name
        self.quiet = quiet or not sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, p: Any) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and p.done_bytes < (p.total_bytes or 0):
            return
        self.last = now
        total = p.total_bytes or 0
        pct = f"{100 * p.done_bytes / total:5.1f}%" if total else "     "
        line = (f"{self.name}: {pct} {human_bytes(p.done_bytes)} of {human_bytes(total)}  "
                f"{human_bytes(p.speed_bps)}/s  ETA {_eta(p.eta_s)}")
        sys.stderr.write("\r" + line[:120].ljust(80))
        sys.stderr.flush()

    def done(self) -> None:
        if not self.quiet:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _download(repo: str, filename: str, *, sha256: str | None = None, size: int | None = None,
              quiet: bool = False) -> Path:
    """Download one model into the library (every part of a split model; any part may be named)
    and return its path (part 1's); Ctrl-C keeps the partial file for the next call."""
    from desktop.core.downloads import DownloadSpec, download
    from desktop.core.gguf_split import display_name, parse_split_name, parts_present
    from desktop.core.library import repo_dir

    s = _settings()
    split = parse_split_name(filename)
    if split is not None:
        filename = split.first
    spec = DownloadSpec(repo_id=repo, filename=filename, dest_dir=repo_dir(s.resolved_models_dir(), repo),
                        expected_size=size, expected_sha256=sha256)
    final = spec.dest_dir / filename
    if final.is_file() and parts_present(final):
        return final
    cancel = threading.Event()
    progress = _Progress(display_name(Path(filename).name), quiet)

    def on_sigint(_sig: int, _frame: Any) -> None:
        cancel.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return download(spec, progress, cancel)
    except DownloadCancelled:
        progress.done()
        print("based: download stopped; run the same command again to continue where it stopped.",
              file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.done()


# -- commands -------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from desktop.core.library import describe_forgotten, forget_unusable, scan_library

    s = _settings()
    forgotten = forget_unusable(s)
    if forgotten:
        settings_mod.save(s)
    scan = scan_library(s)
    for item in forgotten:
        print(f"based: {describe_forgotten(item)}", file=sys.stderr)
    for skip in scan.skipped:
        print(f"based: skipped {skip.path}: {skip.reason}", file=sys.stderr)
    models = scan.models
    if args.json:
        print(json.dumps([m.to_dict() for m in models], indent=2))
        return 0
    if not models:
        print("No models yet. Get a pair with `based models pair smollm2-135m` or open a GGUF in the app.")
        return 0
    for m in models:
        where = {"library": "", "opened": " (opened)", "hf-cache": " (Hugging Face cache)"}[m.source]
        repo = f"  {m.repo}" if m.repo else ""
        print(f"{m.label:56} {m.quant or '?':8} {human_bytes(m.size):>10}{where}{repo}\n    {m.path}")
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from desktop.core.catalog import load_catalog

    pairs = load_catalog()
    if args.json:
        print(json.dumps([{"id": p.id, "title": p.title, "licence": p.licence, "gated": p.gated,
                           "quants": p.quants(), "size": p.total_size(), "verified": p.verified,
                           "note": p.note, "known": p.what_is_known()} for p in pairs], indent=2))
        return 0
    for p in pairs:
        print(f"{p.id:18} {p.title:22} {p.size_words():>16}  {p.licence}\n    {p.note}\n"
              f"    {p.what_is_known()}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from desktop.core.hub import search_gguf_repos

    hits = search_gguf_repos(args.text, limit=args.limit)
    if args.json:
        print(json.dumps([h.__dict__ for h in hits], indent=2, default=str))
        return 0
    if not hits:
        print(f"No GGUF repositories match '{args.text}'.")
    for h in hits:
        gated = "  (gated: accept its licence on Hugging Face)" if h.gated else ""
        print(f"{h.repo_id:60} {count(h.downloads, 'download'):>20}{gated}")
    return 0


def cmd_files(args: argparse.Namespace) -> int:
    from desktop.core.hub import list_gguf_files

    files = list_gguf_files(args.repo)
    if args.json:
        print(json.dumps([{**f.__dict__, "label": f.label} for f in files], indent=2, default=str))
        return 0
    if not files:
        print(f"{args.repo} has no GGUF files.")
    for f in files:
        size = human_bytes(f.size) if f.size is not None else "?"  # a split model: all parts
        missing = f"  (incomplete: no part {', '.join(map(str, f.missing_parts))})" if f.missing_parts else ""
        print(f"{f.label:64} {f.quant or '?':8} {size:>10}{missing}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from desktop.core.gguf_split import model_bytes, model_parts

    path = _download(args.repo, args.file, quiet=args.json)
    if args.json:
        parts = model_parts(path)
        print(json.dumps({"path": str(path), "size": model_bytes(path),
                          "parts": [str(p) for p in parts] if len(parts) > 1 else []}))
    else:
        print(path)
    return 0


def cmd_pair(args: argparse.Namespace) -> int:
    from desktop.core.catalog import find_pair
    from desktop.core.fit import assess_fit

    pair = find_pair(args.name)
    base_f, inst_f = pair.files_for(args.quant)
    print(f"{pair.title}: {pair.note}", file=sys.stderr)
    print(f"Licence: {pair.licence} {pair.licence_url}".rstrip(), file=sys.stderr)
    if pair.licence_notice:
        print(pair.licence_notice, file=sys.stderr)
        if not args.accept_licence:
            raise BasedError(
                f"{pair.title} comes under its own terms (above); read them and run the command again "
                "with --accept-licence to download."
            )
    fit = assess_fit(base_f.size, n_ctx=_settings().n_ctx, params_b=pair.params_b,
                     other_file_bytes=inst_f.size)
    print(fit.sentence, file=sys.stderr)
    paths = {}
    for side, model, f in (("base", pair.base, base_f), ("instruct", pair.instruct, inst_f)):
        paths[side] = _download(model.repo, f.file, quiet=args.json)
    s = _settings()
    s.base_model, s.instruct_model = str(paths["base"]), str(paths["instruct"])
    settings_mod.save(s)
    if args.json:
        print(json.dumps({k: str(v) for k, v in paths.items()}))
    else:
        print(f"base:     {paths['base']}\ninstruct: {paths['instruct']}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from desktop.core.library import describe_removal, list_local_models, remove_model

    s = _settings()
    models = list_local_models(s)
    matches = [m for m in models if args.model in (m.path, m.name, m.label)]
    if not matches:
        raise BasedError(f"No model called '{args.model}' is in the library; `based models list` shows them.")
    if len(matches) > 1:
        raise BasedError(f"'{args.model}' matches {count(len(matches), 'file')}; give the full path from `based models list`.")
    m = matches[0]
    freed = remove_model(s, m.path)
    settings_mod.save(s)
    print(describe_removal(m.label, freed))
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    from desktop.core.hub import save_token

    token = args.token or sys.stdin.readline().strip()
    if not token:
        raise BasedError("Paste a Hugging Face access token (from huggingface.co/settings/tokens).")
    save_token(token)
    print("Token saved in Hugging Face's own token store.")
    return 0


def register(sub: Any) -> None:
    m = sub.add_parser("models", help="the model library: list, search, download, pair, remove")
    ms = m.add_subparsers(dest="models_command", required=True, parser_class=type(m))

    p = ms.add_parser("list", help="models on this machine")
    p.add_argument("--json", action="store_true", help="print JSON instead of a list")
    p.set_defaults(func=cmd_list)

    p = ms.add_parser("catalog", help="the curated base/instruct twins")
    p.add_argument("--json", action="store_true", help="print JSON instead of a list")
    p.set_defaults(func=cmd_catalog)

    p = ms.add_parser("search", help="search Hugging Face for GGUF repositories")
    p.add_argument("text", help="words to look for in repository names")
    p.add_argument("--limit", type=int, default=30, help="at most this many repositories (default: 30)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a list")
    p.set_defaults(func=cmd_search)

    p = ms.add_parser("files", help="a repository's GGUF files with size and quantization")
    p.add_argument("repo", help="repository id, e.g. QuantFactory/SmolLM2-135M-GGUF")
    p.add_argument("--json", action="store_true", help="print JSON instead of a list")
    p.set_defaults(func=cmd_files)

    p = ms.add_parser("download", help="download one GGUF model, every part of a split one (Ctrl-C, "
                                        "then the same command, resumes)")
    p.add_argument("repo", help="repository id, as `based models search` shows")
    p.add_argument("file", help="file name in the repository (part 1 of a split model), as "
                                "`based models files` shows")
    p.add_argument("--json", action="store_true", help="print the saved path and size as JSON")
    p.set_defaults(func=cmd_download)

    p = ms.add_parser("pair", help="download a catalog twin pair and select it")
    p.add_argument("name", help="pair id, e.g. smollm2-135m (see `based models catalog`)")
    p.add_argument("--quant", default=None, help="quantization (default: the pair's recommended one)")
    p.add_argument("--accept-licence", action="store_true", help="accept the pair's licence terms")
    p.add_argument("--json", action="store_true", help="print the two saved paths as JSON")
    p.set_defaults(func=cmd_pair)

    p = ms.add_parser("remove", help="remove a model from the library (frees its disk space)")
    p.add_argument("model", help="file name or path, as `based models list` shows")
    p.set_defaults(func=cmd_remove)

    p = ms.add_parser("login", help="store a Hugging Face token for gated or private repos")
    p.add_argument("--token", default=None, help="the token (default: read one line from stdin)")
    p.set_defaults(func=cmd_login)
