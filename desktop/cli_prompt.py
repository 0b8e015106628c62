"""`based inspect` (what a GGUF file says about itself) and `based prompt` (exactly the prompt a
model receives, as text or tokens)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from desktop.cli import (  # shared helpers
    MODES,
    RAW_SWITCH_HELP,
    _add_conversation,
    _check_raw_switch,
    _conversation,
    _json_out,
    _out,
)
from desktop.core.errors import BasedError
from desktop.core.words import count

# -- inspect -----------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace) -> int:
    from desktop.core.gguf_info import human_bytes, info_to_dict, validate_gguf

    info = validate_gguf(args.model)
    facts = _facts_or_none(info.path)
    if args.json:
        d = info_to_dict(info)
        d["tokenizer_adds"] = None if facts is None else {
            "bos": facts.add_bos, "eos": facts.add_eos, "space_prefix": facts.add_space_prefix,
        }
        _json_out(d)
        return 0
    kind = "tokenizer only (no weights)" if info.vocab_only else count(info.n_tensors, "tensor")
    size = human_bytes(info.file_size)
    if len(info.paths) > 1:  # a split model: the whole model, every part
        size += f" in {count(len(info.paths), 'part')}"
    if facts is not None:
        adds = (f"BOS {_yes(facts.add_bos)}, EOS {_yes(facts.add_eos)}, a space before text "
                f"{_yes(facts.add_space_prefix)} (as llama.cpp reads this tokenizer)")
    else:
        stated = {True: "yes", False: "no", None: "not stated"}[info.add_bos]
        adds = f"BOS: {stated} in the file (llama.cpp could not read this tokenizer)"
    rows = [
        ("Name", info.name),
        ("File", f"{Path(info.path).name} ({size}, GGUF v{info.version}, {kind})"),
        ("Architecture", info.architecture or "unknown"),
        ("Size", f"{info.size_label or '?'} ({count(info.parameter_count, 'parameter')})"),
        ("Quantization", info.file_type or "unknown"),
        ("Context length", f"{info.context_length:,}" if info.context_length else "not stated"),
        ("Tokenizer", f"{info.tokenizer_model or '?'}, {count(info.vocab_size, 'token')}"),
        ("BOS", f"{info.bos_token!r} (id {info.bos_token_id})"),
        ("EOS", f"{info.eos_token!r} (id {info.eos_token_id})"),
        ("EOT", f"{info.eot_token!r} (id {info.eot_token_id})" if info.eot_token_id is not None else "none"),
        ("Tokenizer adds", adds),
        ("License", info.license or "not stated"),
    ]
    if info.chat_template:
        first = info.chat_template.strip().splitlines()[0][:70]
        rows.append(("Chat template", f"yes ({count(len(info.chat_template), 'char')}): {first}"))
    else:
        rows.append(("Chat template", "none (a base model, or the template was left out)"))
    for name, src in info.named_templates.items():
        rows.append((f"  template '{name}'", count(len(src), "char")))
    for n, part in enumerate(info.parts, 1):
        rows.append((f"  part {n}", f"{Path(part).name} ({human_bytes(Path(part).stat().st_size)})"))
    width = max(len(k) for k, _ in rows)
    _out("".join(f"{k.ljust(width)}  {v}\n" for k, v in rows))
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _facts_or_none(path: str) -> Any:
    """llama.cpp's tokenizer decisions for a model file, or None when it cannot read them."""
    from desktop.core.llama_vocab import tokenizer_facts

    try:
        return tokenizer_facts(path)
    except BasedError:
        return None


# -- prompt ------------------------------------------------------------------------------------


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
    from desktop.core.gguf_info import validate_gguf
    from desktop.core.inputs import check_user_prompt
    from desktop.core.prompts import (
        BaseMode,
        file_tokenizer,
        inspect_prompt,
        render_base,
        render_instruct,
    )

    if args.twin and not args.mode:  # what `based compare` gives a base model by default
        args.mode = "twin-template"
    _check_raw_switch(args)
    conv = _conversation(args)
    if args.messages:
        note = ""
    else:
        note = check_user_prompt(args.user, args.mode, system=args.system, instruct_side=False)
    ends_with_answer = conv.last is not None and conv.last.role == "assistant"
    if ends_with_answer and not args.continue_final_message and not args.no_generation_prompt:
        print(f"warning: {Path(args.messages).name} ends with an assistant message, so the model "
              "writes a new answer after it; --continue-final-message continues that message "
              "instead.", file=sys.stderr)
    if args.continue_final_message and not ends_with_answer:
        raise BasedError("--continue-final-message needs a conversation that ends with an "
                         "assistant message to continue.")
    if args.model:
        info = validate_gguf(args.model)
    else:
        if args.tokens:
            raise BasedError("--tokens needs --model: a bare template has no tokenizer.")
        info = _template_info(args.template, args.bos_token or "", args.eos_token or "")
    ends = dict(add_generation_prompt=not args.no_generation_prompt,
                continue_final_message=args.continue_final_message)
    if args.mode:
        twin = validate_gguf(args.twin) if args.twin else (info if info.chat_template else None)
        rendered = render_base(BaseMode(args.mode), conv, base=info, twin=twin,
                               raw_control_tokens=args.raw_control_tokens, **ends)
    else:
        rendered = render_instruct(info, conv, merge_system_if_refused=args.merge_system, **ends)
    tokens = None
    n_ctx = info.context_length
    if args.tokens:
        ins = inspect_prompt(
            rendered, file_tokenizer(args.model), bos_token_id=info.bos_token_id, n_ctx=n_ctx,
        )
        tokens = ins.tokens
        warnings = ins.warnings
    else:
        warnings = rendered.warnings
    if note:
        warnings = (note, *warnings)
    if args.json:
        obj: dict[str, Any] = {
            "prompt": rendered.text,
            "mode": rendered.mode,
            "stop": list(rendered.stop),
            "add_bos": rendered.add_bos,
            "add_eos": rendered.add_eos,
            "parse_special": rendered.parse_special,
            "literal_spans": [list(sp) for sp in rendered.literal_spans],
            "template_source": rendered.template.source,
            "template_name": rendered.template.name,
            "warnings": list(warnings),
            "n_ctx": n_ctx,
            "messages": len(conv.turns) + (1 if conv.has_system else 0),
            "tools": len(conv.tools),
        }
        if tokens is not None:
            obj["tokens"] = [{"id": t.id, "piece": t.piece, "special": t.special,
                              "typed_as_text": t.typed} for t in tokens]
            obj["token_count"] = len(tokens)
        _json_out(obj)
        return 0
    if tokens is None:
        _out(rendered.text)  # exactly the prompt, nothing added
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        return 0
    for t in tokens:
        mark = "*" if t.special else "~" if t.typed else " "
        _out(f"{t.id:>8} {mark} {json.dumps(t.piece, ensure_ascii=False)}\n")
    ctx = f"; the model was trained with a context of {n_ctx:,}" if n_ctx else ""
    typed = ", ~ = control-token text you typed, read as text" if any(t.typed for t in tokens) else ""
    _out(f"{count(len(tokens), 'token')}{ctx} (* = special{typed})\n")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """`based inspect` and `based prompt`."""
    i = sub.add_parser("inspect", help="what a GGUF file says about itself (no weights loaded)")
    i.add_argument("model", help="the GGUF file")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(func=cmd_inspect)

    p = sub.add_parser("prompt", help="print exactly the prompt a model receives")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="GGUF file (a vocab-only GGUF works too)")
    src.add_argument("--template", help="a Jinja chat template file")
    p.add_argument("--system", default=None,
                   help="system prompt (optional; replaces the system message of --messages)")
    _add_conversation(p, user_help="your message (empty only in --mode raw, where the base model "
                                   "writes from nothing)")
    ends = p.add_mutually_exclusive_group()
    ends.add_argument("--no-generation-prompt", action="store_true",
                      help="end after the last message, without the cue that starts the "
                           "assistant's answer (transformers' add_generation_prompt=False)")
    ends.add_argument("--continue-final-message", action="store_true",
                      help="end inside the final (assistant) message, so the model continues it "
                           "(transformers' continue_final_message)")
    p.add_argument("--mode", choices=MODES,
                   help="base-model prompt mode (default: the model's own chat template, or "
                        "twin-template with --twin, as `based compare` gives the base model)")
    p.add_argument("--twin", help="instruct twin GGUF whose chat template the base model gets "
                                  "(twin-template mode)")
    p.add_argument("--tokens", action="store_true", help="show the tokens as the model's tokenizer parses them")
    p.add_argument("--json", action="store_true", help="print JSON: prompt, stop strings, BOS, warnings")
    p.add_argument("--bos-token", default=None, help="bos_token for a bare --template")
    p.add_argument("--eos-token", default=None, help="eos_token for a bare --template")
    p.add_argument("--raw-control-tokens", action="store_true", help=RAW_SWITCH_HELP)
    p.add_argument("--merge-system", action="store_true",
                   help="if the template refuses a system prompt, put it into the user message")
    p.set_defaults(func=cmd_prompt)
