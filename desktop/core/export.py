"""Export a comparison to Markdown, self-contained HTML or JSON, and re-run it from JSON.

The JSON export holds everything needed to reproduce a comparison: both models (name, file name,
SHA-256), the exact prompts each model received, every sampling parameter, the seed, the load
options, the tokens (with log-probabilities and top alternatives) and the stats. :func:`rerun`
checks the files' SHA-256 and runs both models again with the same settings.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from desktop.core.errors import BasedError
from desktop.core.history import (
    ComparisonRecord,
    HistoryError,
    TurnRecord,
)
from desktop.core.sampling import InvalidSetting
from desktop.core.types import StreamToken
from desktop.core.words import count

if TYPE_CHECKING:
    from desktop.core.shift import ShiftResult

FORMAT_VERSION = 2  # 2: conversations (older Based reads only the last turn, so it is refused)


class ExportError(BasedError):
    """A file to import is not a Based comparison."""


# -- JSON ----------------------------------------------------------------------------------------


def to_json(record: ComparisonRecord) -> str:
    """The record as JSON that :func:`load_json` and `based rerun` read. A single message keeps
    format version 1, which older versions of Based read too."""
    whole = record.n_turns > 1 or bool(record.messages) or bool(record.tools)
    d = {"format": "based-comparison", "format_version": FORMAT_VERSION if whole else 1,
         **record.to_json_dict()}
    return json.dumps(d, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def load_json(text: str) -> ComparisonRecord:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(f"This file is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(d, dict) or d.get("format") != "based-comparison":
        raise ExportError("This JSON file is not a comparison exported by Based.")
    if int(d.get("format_version", 0)) > FORMAT_VERSION:
        raise ExportError(
            "This comparison was exported by a newer version of Based; update Based to open it."
        )
    try:
        return ComparisonRecord.from_json_dict(d)
    except HistoryError as exc:
        raise ExportError(str(exc)) from None
    except InvalidSetting as exc:
        raise ExportError(exc.sentence(prefix="In this comparison file, ")) from None


# -- Markdown ------------------------------------------------------------------------------------


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    f = "`" * max(3, longest + 1)
    return f"{f}text\n{text}\n{f}"


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _stats_line(stats: dict[str, Any]) -> str:
    if not stats:
        return ""
    return (f"{count(int(stats.get('prompt_tokens', 0)), 'prompt token')}, "
            f"{int(stats.get('generated_tokens', 0)):,} generated at {float(stats.get('tokens_per_second', 0.0)):.1f} tok/s. "
            f"{stats.get('stop_reason_words', '')}").strip()


_SAMPLING_ORDER = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens",
                   "top_logprobs")
_SAMPLING_WORDS = {"temperature": "temperature", "top_p": "top-p", "top_k": "top-k",
                   "min_p": "min-p", "repeat_penalty": "repeat penalty", "max_tokens": "max tokens",
                   "top_logprobs": "alternatives kept per token"}
_LOAD_WORDS = {"n_ctx": ("context", "token"), "n_threads": ("", "thread"),
               "n_gpu_layers": ("layers on the GPU", "")}


def settings_rows(record: ComparisonRecord) -> list[tuple[str, str]]:
    """The settings a comparison ran with, as (what, value) rows people read: sampling, the
    seed once (the sampler's; llama.cpp's own load-time seed is stored in the JSON but plays
    no part, as Based samples with the sampling seed), and how the models were loaded."""
    from desktop.core.sampling import shown

    p = record.params
    sampling = ", ".join(f"{_SAMPLING_WORDS[k]} {shown(p[k])}" for k in _SAMPLING_ORDER if k in p)
    rows = [("Sampling", sampling), ("Seed", shown(record.seed))]
    load = []
    for key, (label, noun) in _LOAD_WORDS.items():
        v = record.load.get(key)
        if v is None:
            continue
        if key == "n_gpu_layers":
            named = {-2: "GPU layers: Auto", -1: "all layers on the GPU", 0: "CPU only"}
            load.append(named.get(v, f"{shown(v)} {label}"))
        else:
            load.append(f"{label} {count(int(v), noun)}".strip())
    if load:
        rows.append(("Loading", ", ".join(load)))
    return rows


def _shift_shares(shift: dict[str, Any] | None) -> str:
    if not shift:
        return ""
    s = shift.get("summary", {})
    text = (f"{100 * float(s.get('unshifted', 0)):.1f}% unshifted, "
            f"{100 * float(s.get('marginal', 0)):.1f}% marginal, "
            f"{100 * float(s.get('shifted', 0)):.1f}% shifted "
            f"({count(int(s.get('n_tokens', 0)), 'token')})")
    if s.get("note"):
        text += f". {s['note']}"
    return text


def _mode_words(r: ComparisonRecord) -> str:
    extra = ", control tokens in the text sent as control tokens" if r.raw_control_tokens else ""
    return f"{r.base_mode} mode{extra}"


def _role_words(m: Mapping[str, Any]) -> str:
    role = str(m.get("role", ""))
    if role == "tool":
        return f"Tool result ({m['name']})" if m.get("name") else "Tool result"
    return {"user": "You", "assistant": "Assistant", "system": "System"}.get(role, role)


def _message_text(m: Mapping[str, Any]) -> str:
    content = m.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def _calls_words(m: Mapping[str, Any]) -> list[str]:
    out = []
    for c in m.get("tool_calls") or ():
        fn = c.get("function", {}) if isinstance(c, Mapping) else {}
        args = json.dumps(fn.get("arguments", {}), ensure_ascii=False)
        out.append(f"calls {fn.get('name', '?')} with {args}")
    return out


def _messages_md(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    lines: list[str] = []
    for m in messages:
        lines += [f"**{_role_words(m)}:**", ""]
        text = _message_text(m)
        if text or not m.get("tool_calls"):
            lines += [_fence(text), ""]
        lines += [f"- {c}" for c in _calls_words(m)]
        if m.get("tool_calls"):
            lines.append("")
    return lines


def _answers_md(r: ComparisonRecord, turn: TurnRecord, level: str) -> list[str]:
    lines: list[str] = []
    for side, name in (("base", r.base.name), ("instruct", r.instruct.name)):
        ans = turn.answer(side)
        lines += [f"{level} {side.capitalize()} answer ({name})", "", _fence(ans.text), ""]
        if ans.stats:
            lines += [f"_{_stats_line(ans.stats)}_", ""]
        lines += ["<details><summary>Exact prompt</summary>", "", _fence(turn.prompt(side)), "",
                  "</details>", ""]
    return lines


def to_markdown(record: ComparisonRecord) -> str:
    """The comparison as Markdown: the pair, the settings, and every turn (its messages, both
    answers and the exact prompts), then the token shift of the last instruct answer."""
    r = record
    lines = [
        f"# Based comparison, {r.created}",
        "",
        "| | Base | Instruct |",
        "|---|---|---|",
        f"| Model | {_md_cell(r.base.name)} | {_md_cell(r.instruct.name)} |",
        f"| File | {_md_cell(r.base.file)} | {_md_cell(r.instruct.file)} |",
        f"| SHA-256 | `{r.base.sha256}` | `{r.instruct.sha256}` |",
        f"| Quantization | {_md_cell(r.base.quant or '?')} | {_md_cell(r.instruct.quant or '?')} |",
        f"| Prompt | {_md_cell(_mode_words(r))} | chat template |",
        "",
        "## Settings",
        "",
        *(f"- {k}: {v}" for k, v in settings_rows(r)),
        "",
    ]
    if r.system:
        lines += ["## System prompt", "", _fence(r.system), ""]
    if r.tools:
        lines += ["## Tools offered", "",
                  _fence(json.dumps(list(r.tools), ensure_ascii=False, indent=2)), ""]
    turns = r.turns()
    if len(turns) == 1 and not r.messages:
        lines += ["## Message", "", _fence(r.user), ""]
        lines += _answers_md(r, turns[0], "##")
    else:
        lines += [f"## Conversation ({count(len(turns), 'turn')}; each model read its own "
                  "earlier answers)", ""]
        for k, t in enumerate(turns, 1):
            lines += [f"### Turn {k}", ""] + _messages_md(t.messages) + _answers_md(r, t, "####")
    if r.shift:
        title = "## Token shift" + (" (the last instruct answer)" if len(turns) > 1 else "")
        lines += [title, "", _shift_shares(r.shift), ""]
        top = r.shift.get("summary", {}).get("top_shifted", [])
        if top:
            lines += ["Most frequent shifted tokens: " + ", ".join(
                f"`{_md_cell(json.dumps(t['piece'], ensure_ascii=False))}` x{t['count']}"
                for t in top[:10]), ""]
    return "\n".join(lines).rstrip() + "\n"


# -- HTML ----------------------------------------------------------------------------------------

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:70em;
  padding:0 1em;color:#1d232a;background:#fff}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;max-width:100%}td,th{border:1px solid #ccd;
  padding:.25em .6em;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f2f4f7}table.pair{table-layout:fixed;width:100%}table.pair th:first-child{width:9em}
.hash{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
pre,.answer{white-space:pre-wrap;word-wrap:break-word;font:14px/1.55 ui-monospace,Menlo,Consolas,
  monospace;background:#f7f8fa;border:1px solid #dde;border-radius:6px;padding:.7em}
.tok{border-radius:2px}.tok.special{color:#778;font-style:italic}
.legend{display:flex;gap:.6em;flex-wrap:wrap;align-items:center;font-size:13px;margin:.3em 0}
.legend span{padding:0 .4em;border-radius:3px}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1em}.cols>div{min-width:0}
.note{color:#8a5a00}.muted{color:#667}
.msg{margin:.4em 0}.msg pre{margin:.2em 0}
details summary{cursor:pointer;color:#446}
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def prob_color(logprob: float) -> str:
    """Background for a token of probability exp(logprob): red (unlikely) to green (likely)."""
    p = math.exp(logprob) if math.isfinite(logprob) else 0.0
    p = min(1.0, max(0.0, p))
    return f"hsl({int(round(120 * p))},75%,82%)"


def _alts_title(top: Sequence[Any]) -> str:
    return "; ".join(f"{json.dumps(a.piece, ensure_ascii=False)} {math.exp(a.logprob):.3f}"
                     for a in top if math.isfinite(a.logprob))


def _tok_text(t: StreamToken, last: bool) -> tuple[str, bool]:
    if t.text:
        return t.text, False
    if last and t.piece:
        return t.piece, True  # e.g. the end-of-turn token, shown dimmed
    return "", False


def tokens_html(tokens: Sequence[StreamToken], shift: ShiftResult | None = None) -> str:
    """An answer as coloured spans: by the chosen token's probability, or, when ``shift`` is
    given, by its shift class (title attributes carry the top-k)."""
    by_index = {t.index: t for t in shift.tokens} if shift is not None else {}
    out: list[str] = []
    for i, t in enumerate(tokens):
        text, special = _tok_text(t, i == len(tokens) - 1)
        if not text:
            continue
        cls = "tok special" if special else "tok"
        if shift is not None:
            st = by_index.get(t.index)
            if st is None:
                out.append(f'<span class="{cls}">{esc(text)}</span>')
                continue
            title = (f"{st.cls.value}: rank {st.rank} under the base model "
                     f"(p={math.exp(st.base_logprob):.3f}); base top: {_alts_title(st.base_top)}")
            color = st.cls.color
        else:
            title = f"p={math.exp(t.logprob):.3f}; top: {_alts_title(t.top)}"
            color = prob_color(t.logprob)
        out.append(f'<span class="{cls}" style="background:{color}" title="{esc(title)}">'
                   f"{esc(text)}</span>")
    return "".join(out)


def prob_legend() -> str:
    stops = [(0.05, "5%"), (0.25, "25%"), (0.5, "50%"), (0.75, "75%"), (1.0, "100%")]
    spans = "".join(f'<span style="background:{prob_color(math.log(p))}">{lab}</span>'
                    for p, lab in stops)
    return f'<div class="legend"><b>Probability of the chosen token:</b>{spans}</div>'


def shift_legend() -> str:
    from desktop.core.shift import ShiftClass

    spans = "".join(f'<span style="background:{c.color}" title="{esc(c.words)}">{c.label}</span>'
                    for c in ShiftClass)
    return ('<div class="legend"><b>Rank of the instruct token under the base model:</b>'
            f"{spans}<span class=\"muted\">unshifted = rank 1, marginal = 2-3, shifted = 4+"
            "</span></div>")


def _html_page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def conversation_html(messages: Sequence[Mapping[str, Any]]) -> str:
    """Messages as HTML blocks: who wrote each, its text, the tool calls it made."""
    out = []
    for m in messages:
        calls = "".join(f"<li>{esc(c)}</li>" for c in _calls_words(m))
        text = _message_text(m)
        body = f"<pre>{esc(text)}</pre>" if text or not calls else ""
        out.append(f'<div class="msg"><b>{esc(_role_words(m))}</b>{body}'
                   + (f"<ul>{calls}</ul>" if calls else "") + "</div>")
    return "".join(out)


def _answers_html(r: ComparisonRecord, turn: TurnRecord, level: int) -> str:
    cols = []
    for side, name in (("base", r.base.name), ("instruct", r.instruct.name)):
        ans = turn.answer(side)
        body = tokens_html(ans.tokens) if ans.tokens else esc(ans.text)
        cols.append(
            f"<div><h{level}>{side.capitalize()}: {esc(name)}</h{level}>"
            f"<div class=\"answer\">{body}</div>"
            f"<p class=\"muted\">{esc(_stats_line(ans.stats))}</p>"
            f"<details><summary>Exact prompt</summary><pre>{esc(turn.prompt(side))}</pre>"
            "</details></div>"
        )
    return f"<div class=\"cols\">{''.join(cols)}</div>"


def to_html(record: ComparisonRecord, shift: ShiftResult | None = None) -> str:
    """One self-contained page: inline CSS, no scripts, no external resources; every turn of a
    conversation with both answers."""
    from desktop.core.shift import ShiftResult

    r = record
    if shift is None and r.shift:
        try:
            shift = ShiftResult.from_json_dict(r.shift)
        except (KeyError, TypeError, ValueError):
            shift = None
    rows = [("Model", r.base.name, r.instruct.name), ("File", r.base.file, r.instruct.file),
            ("SHA-256", r.base.sha256, r.instruct.sha256),
            ("Quantization", r.base.quant or "?", r.instruct.quant or "?"),
            ("Prompt", _mode_words(r), "chat template")]

    def cell(label: str, value: str) -> str:  # a hash may break anywhere: it has no words
        return f'<td class="hash">{esc(value)}</td>' if label == "SHA-256" else f"<td>{esc(value)}</td>"

    table = "".join(f"<tr><th>{esc(a)}</th>{cell(a, b)}{cell(a, c)}</tr>" for a, b, c in rows)
    settings = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in settings_rows(r))
    parts = [
        f"<h1>Based comparison</h1><p class=\"muted\">{esc(r.created)}"
        f"{' &middot; Based ' + esc(r.app_version) if r.app_version else ''}</p>",
        f"<table class=\"pair\"><tr><th></th><th>Base</th><th>Instruct</th></tr>{table}</table>",
        f"<h2>Settings</h2><table>{settings}</table>",
    ]
    if r.system:
        parts.append(f"<h2>System prompt</h2><pre>{esc(r.system)}</pre>")
    if r.tools:
        parts.append("<h2>Tools offered</h2><pre>"
                     f"{esc(json.dumps(list(r.tools), ensure_ascii=False, indent=2))}</pre>")
    turns = r.turns()
    if len(turns) == 1 and not r.messages:
        parts.append(f"<h2>Message</h2><pre>{esc(r.user)}</pre>")
        parts.append(prob_legend())
        parts.append(_answers_html(r, turns[0], 2))
    else:
        parts.append(f"<h2>Conversation ({count(len(turns), 'turn')})</h2><p class=\"muted\">"
                     "Each model read its own earlier answers.</p>")
        parts.append(prob_legend())
        for k, t in enumerate(turns, 1):
            parts.append(f"<h3>Turn {k}</h3>{conversation_html(t.messages)}")
            parts.append(_answers_html(r, t, 4))
    if shift is not None:
        s = shift.summary
        last = " (the last instruct answer)" if len(turns) > 1 else ""
        parts.append(f"<h2>Where did post-training change the answer?{last}</h2>")
        parts.append(shift_legend())
        note = f'<p class="note">{esc(s.note)}</p>' if s.note else ""
        parts.append(
            f"<p>{esc(_shift_shares({'summary': s.to_json_dict()}))}</p>{note}"
            f"<div class=\"answer\">{tokens_html(r.instruct_answer.tokens, shift)}</div>"
        )
        if s.top_shifted:
            items = ", ".join(f"<code>{esc(json.dumps(p, ensure_ascii=False))}</code> &times;{c}"
                              for p, c in s.top_shifted[:10])
            parts.append(f"<p><b>Most frequent shifted tokens:</b> {items}</p>")
    return _html_page(f"Based: {r.user[:60]}", "\n".join(parts))


# re-running lives in rerun.py; these names stay importable from here
from desktop.core.rerun import (  # noqa: E402
    ModelFileChanged,
    rerun,
    run_comparison,
    run_conversation,
    same_outputs,
)

__all__ = ["ExportError", "ModelFileChanged", "conversation_html", "load_json", "rerun",
           "run_comparison", "run_conversation", "same_outputs", "settings_rows", "to_html",
           "to_json", "to_markdown", "tokens_html"]
