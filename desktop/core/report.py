"""Alignment report: the token-shift analysis over a set of prompts, as one HTML file.

:func:`build_report` loads each model once, generates every instruct answer greedily and scores it
under the base model. A cancelled run keeps the prompts it finished. :func:`render_report_html`
writes a single self-contained page: plots by matplotlib (Agg, embedded as base64 PNG), inline
CSS, no scripts and no external resources.
"""

from __future__ import annotations

import base64
import io
import math
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from desktop.core.errors import BasedError, ContextOverflowError, TemplateError
from desktop.core.history import ModelRef, now_iso
from desktop.core.shift import ShiftClass, ShiftResult, ShiftSummary, require_compatible, summarize
from desktop.core.types import StreamToken
from desktop.core.words import count

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from desktop.core.conversation import Conversation
    from desktop.core.engine import Engine

PromptItem = Any  # str (one user message) | desktop.core.conversation.Conversation

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ReportItem:
    prompt: str  # the last user message (of a conversation: the one answered)
    answer: str
    answer_tokens: tuple[StreamToken, ...]
    shift: ShiftResult
    generate_s: float
    score_s: float
    stop_reason: str
    conversation: Conversation | None = None  # set when the prompt was a whole conversation


@dataclass(frozen=True)
class ReportData:
    base: ModelRef
    instruct: ModelRef
    items: tuple[ReportItem, ...]
    n_prompts: int  # how many prompts were asked for
    cancelled: bool
    settings: dict[str, Any]
    timings: dict[str, float]
    created: str
    backend: str = "CPU"
    skipped: tuple[tuple[str, str], ...] = ()  # (prompt, reason in words)
    same_model: bool = False

    @property
    def overall(self) -> ShiftSummary:
        """All answers' tokens pooled (positions are per answer, so only counts and top tokens
        are meaningful here; see :meth:`shifted_positions`)."""
        toks = [t for it in self.items for t in it.shift.tokens]
        return summarize(toks, greedy=True, complete=not self.cancelled)

    def shifted_positions(self) -> list[float]:
        return [p for it in self.items for p in it.shift.summary.shifted_positions]

    def marginal_positions(self) -> list[float]:
        return [p for it in self.items for p in it.shift.summary.marginal_positions]


def build_report(
    base_path: str | os.PathLike[str],
    instruct_path: str | os.PathLike[str],
    prompts: Sequence[PromptItem],
    *,
    system: str | None = None,
    max_tokens: int = 128,
    n_ctx: int = 2048,
    threads: int | None = None,
    n_gpu_layers: int = -2,  # Auto (desktop.core.offload.AUTO_LAYERS)
    prompt_source: str = "chat",
    mode: str = "twin-template",
    top_k: int = 5,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    tools: Sequence[Any] = (),
) -> ReportData:
    """Run the shift analysis over ``prompts``; each model is loaded once, on this thread.

    A prompt is a string (one user message, after ``system``) or a whole
    :class:`~desktop.core.conversation.Conversation` (its own system prompt, else ``system``):
    the answer to its end is scored given everything before it. ``tools`` are offered in every
    prompt that offers none of its own.

    ``on_progress(done, total, prompt)`` is called before each prompt starts (``prompt`` is the
    one about to run) and once at the end with ``prompt == ""``. When ``cancel`` is set, the
    prompt in flight is dropped and the finished ones are returned (``cancelled=True``).
    """
    from desktop.core.conversation import Conversation, check_for_answer
    from desktop.core.engine import Engine
    from desktop.core.shift_run import check_alternatives, shift_with_engines
    from desktop.core.types import LoadOptions, SamplingParams, StopReason

    t_start = time.perf_counter()
    cancel = cancel or threading.Event()
    convs: list[tuple[Conversation, bool]] = []  # (conversation, given as one)
    for n, p in enumerate(prompts, 1):
        if isinstance(p, Conversation):
            c = p if p.system is not None else Conversation(system=system, turns=p.turns,
                                                            tools=p.tools)
            check_for_answer(c, None, source=f"Conversation {n} of the prompt set")
            convs.append((c if c.tools or not tools else Conversation(
                system=c.system, turns=c.turns, tools=tools), True))
        elif p and p.strip():
            convs.append((Conversation(p, system, tools=tools), False))
    if not convs:
        raise BasedError("The prompt set is empty: give at least one prompt.")
    # every value is checked before any work
    check_alternatives(top_k)
    SamplingParams.deterministic(max_tokens=max_tokens, top_logprobs=top_k)
    opts = LoadOptions(n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers, seed=0)
    vocab = require_compatible(base_path, instruct_path)
    same = os.path.abspath(base_path) == os.path.abspath(instruct_path)
    base_ref = ModelRef.from_path(base_path)
    inst_ref = base_ref if same else ModelRef.from_path(instruct_path)
    items: list[ReportItem] = []
    skipped: list[tuple[str, str]] = []
    opened: list[Engine] = []
    total = len(convs)
    gen_s = score_s = 0.0
    try:
        t0 = time.perf_counter()
        inst = Engine(instruct_path, opts)
        opened.append(inst)
        base = inst if same else Engine(base_path, opts)
        if base is not inst:
            opened.append(base)
        load_s = time.perf_counter() - t0
        backend = inst.info.backend
        n_threads = inst.info.n_threads
        made_ctx = inst.info.n_ctx
        notes = list(dict.fromkeys(e.info.note for e in opened if e.info.note))
        for conv, whole in convs:
            prompt = conv.user or (conv.last.text if conv.last is not None else "")
            if cancel.is_set():
                break
            if on_progress is not None:
                on_progress(len(items), total, prompt)
            try:
                run = shift_with_engines(
                    base, inst, conv, prompt_source=prompt_source,
                    mode=mode, max_tokens=max_tokens, top_k=top_k, cancel=cancel, vocab=vocab,
                    score_partial=False,
                )
            except (ContextOverflowError, TemplateError) as exc:
                skipped.append((prompt, str(exc)))
                continue
            if cancel.is_set() or run.answer.stats.stop_reason is StopReason.CANCELLED \
                    or not run.result.complete:
                break
            gen_s += run.timings["generate_s"]
            score_s += run.timings["score_s"]
            items.append(ReportItem(
                prompt, run.answer.text, run.answer.tokens, run.result,
                run.timings["generate_s"], run.timings["score_s"],
                run.answer.stats.stop_reason.value, conv if whole else None,
            ))
    finally:
        for e in opened:
            e.close()
    if on_progress is not None:
        on_progress(len(items), total, "")
    return ReportData(
        base=base_ref, instruct=inst_ref, items=tuple(items), n_prompts=total,
        cancelled=cancel.is_set() and len(items) + len(skipped) < total,
        settings={
            "prompt_source": prompt_source, "base_mode": mode, "system": system,
            "max_tokens": max_tokens, "n_ctx": made_ctx, "n_ctx_requested": n_ctx,
            "notes": notes, "threads": n_threads,
            "n_gpu_layers": n_gpu_layers, "top_k": top_k, "sampling": "greedy",
            "tokenizer": f"shared ({count(vocab.n_base, 'token')})",
        },
        timings={"load_s": load_s, "generate_s": gen_s, "score_s": score_s,
                 "total_s": time.perf_counter() - t_start},
        created=now_iso(), backend=backend, skipped=tuple(skipped), same_model=same,
    )


# -- plots ---------------------------------------------------------------------------------------

_CLS = (ShiftClass.UNSHIFTED, ShiftClass.MARGINAL, ShiftClass.SHIFTED)
_PLOT_COLORS = {ShiftClass.UNSHIFTED: "#9fb3c8", ShiftClass.MARGINAL: "#f0b429",
                ShiftClass.SHIFTED: "#d64545"}


def _figure(w: float, h: float) -> Figure:
    # a bare Figure with an Agg canvas: no pyplot, no global backend switch (the GUI may run Qt)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing glyphs in exotic token pieces
        fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def visible_piece(piece: str) -> str:
    return (piece.replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u2192")
            .replace("\r", "\u240d").replace("$", r"\$")) or "\u2205"


def plot_shares(data: ReportData) -> str:
    labels = [f"P{i + 1}" for i in range(len(data.items))] + ["All"]
    shares = [it.shift.summary.shares for it in data.items] + [data.overall.shares]
    fig = _figure(8.0, max(2.2, 0.32 * len(labels) + 1.2))
    ax = fig.add_subplot()
    y = list(range(len(labels)))[::-1]
    left = [0.0] * len(labels)
    for c in _CLS:
        vals = [100 * s[c.value] for s in shares]
        ax.barh(y, vals, left=left, color=_PLOT_COLORS[c], label=c.label, height=0.7)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the instruct answer's tokens (%)")
    ax.set_title("Token classes per prompt and overall")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=3, frameon=False)
    ax.get_yticklabels()[0].set_fontweight("bold")
    return _png(fig)


def plot_positions(data: ReportData) -> str:
    fig = _figure(8.0, 2.8)
    ax = fig.add_subplot()
    bins = [i / 10 for i in range(11)]
    series = [data.marginal_positions(), data.shifted_positions()]
    ax.hist(series, bins=bins, stacked=True, label=["Marginal", "Shifted"],
            color=[_PLOT_COLORS[ShiftClass.MARGINAL], _PLOT_COLORS[ShiftClass.SHIFTED]])
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, 1)
    ax.set_xlabel("relative position in the answer (0 = first token, 1 = last)")
    ax.set_ylabel("tokens")
    ax.set_title("Where the shifts sit along the answers")
    ax.legend(frameon=False)
    return _png(fig)


def plot_top_tokens(data: ReportData, n: int = 15) -> str:
    freq: Counter[str] = Counter(t.piece for it in data.items for t in it.shift.tokens
                   if t.cls is ShiftClass.SHIFTED)
    top = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    fig = _figure(8.0, max(2.2, 0.3 * len(top) + 1.0))
    ax = fig.add_subplot()
    if top:
        ax.barh(range(len(top))[::-1], [c for _, c in top], color=_PLOT_COLORS[ShiftClass.SHIFTED])
        ax.set_yticks(range(len(top))[::-1], [visible_piece(p) for p, _ in top])
        ax.set_xlabel("times shifted")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "No shifted tokens", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
        ax.set_xticks([])
    ax.set_title("Most frequent shifted tokens (\u2423 = space, \u21b5 = newline)")
    return _png(fig)


# -- HTML ----------------------------------------------------------------------------------------

_REPORT_CSS = """
.fig{margin:1em 0}.fig img{max-width:100%;height:auto;border:1px solid #eef}
.prompt{margin-top:2em;border-top:1px solid #dde;padding-top:.5em}
.shares{font-variant-numeric:tabular-nums}
"""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _img(b64: str, alt: str) -> str:
    from desktop.core.export import esc

    return f'<div class="fig"><img alt="{esc(alt)}" src="data:image/png;base64,{b64}"></div>'


def _fmt_s(x: float) -> str:
    return f"{x:.2f} s" if math.isfinite(x) else "?"


def _conversation_html(conv: Conversation | None) -> str:
    """The messages before the answer a report item scores (a conversation), folded away."""
    if conv is None or len(conv.turns) <= 1:
        return ""
    from desktop.core.export import conversation_html

    return (f"<details><summary>The conversation before this answer "
            f"({count(len(conv.turns), 'message')})</summary>"
            f"{conversation_html(conv.messages())}</details>")


def render_report_html(data: ReportData) -> str:
    from desktop.core.export import CSS, esc, shift_legend, tokens_html

    o = data.overall
    pair_rows = [
        ("Model", data.base.name, data.instruct.name),
        ("File", data.base.file, data.instruct.file),
        ("SHA-256 (prefix)", data.base.sha256[:16], data.instruct.sha256[:16]),
        ("Quantization", data.base.quant or "?", data.instruct.quant or "?"),
        ("File size", count(data.base.file_size, "byte"), count(data.instruct.file_size, "byte")),
    ]
    pair = "".join(f"<tr><th>{esc(a)}</th><td>{esc(b)}</td><td>{esc(c)}</td></tr>"
                   for a, b, c in pair_rows)
    s = data.settings
    from desktop.core.shift import PROMPT_SOURCE_HELP, PROMPT_SOURCE_LABELS

    key = "chat" if s.get("prompt_source") == "chat" else "base-mode"
    src = PROMPT_SOURCE_LABELS[key] + (f" ({s.get('base_mode')} mode)" if key == "base-mode" else "")
    src = f"{src[:1].upper()}{src[1:]}. {PROMPT_SOURCE_HELP[key]}"
    settings_rows = [
        ("Prompts", f"{len(data.items)} of {data.n_prompts} finished"
                    + (" (cancelled)" if data.cancelled else "")),
        ("Instruct answers", f"greedy, at most {count(int(s.get('max_tokens') or 0), 'token')}"),
        ("Prefix the base model sees", src),
        ("System prompt", s.get("system") or "none"),
        ("Tokenizer", s.get("tokenizer", "")),
        ("Context", count(int(s.get("n_ctx") or 0), "token")),
        *(("Adjusted", n) for n in s.get("notes", ())),
        ("Runtime", f"{data.backend}, {count(int(s.get('threads') or 0), 'thread')}"),
        ("Loading", _fmt_s(data.timings.get("load_s", 0.0))),
        ("Generating", _fmt_s(data.timings.get("generate_s", 0.0))),
        ("Scoring under the base", _fmt_s(data.timings.get("score_s", 0.0))),
        ("Total", _fmt_s(data.timings.get("total_s", 0.0))),
        ("Made", data.created),
    ]
    settings = "".join(f"<tr><th>{esc(a)}</th><td>{esc(b)}</td></tr>" for a, b in settings_rows)
    parts = [
        "<h1>Alignment report: where did post-training change the answers?</h1>",
        "<p>Each instruct answer is scored under the base model with the same prefix. A token is "
        "<b>unshifted</b> when the base model ranks it first, <b>marginal</b> at rank 2-3 and "
        "<b>shifted</b> below that (after Lin et al., <i>The Unlocking Spell on Base LLMs</i>, "
        "ICLR 2024).</p>",
    ]
    if data.same_model and data.settings.get("prompt_source", "chat") == "chat":
        parts.append('<p class="note"><b>The same model file is used as base and instruct.</b> '
                     "Every token should be unshifted; this checks the method, not a model "
                     "pair.</p>")
    elif data.same_model:
        parts.append('<p class="note"><b>The same model file is used as base and instruct.</b> '
                     "The base side sees a different prompt (its base mode), so every shift here "
                     "comes from the prompt alone, not from post-training.</p>")
    if data.cancelled:
        parts.append(f'<p class="note">The run was cancelled; this report covers the '
                     f"{count(len(data.items), 'prompt')} that finished.</p>")
    parts += [
        f"<h2>The pair</h2><table><tr><th></th><th>Base</th><th>Instruct</th></tr>{pair}</table>",
        f"<h2>Settings and timings</h2><table>{settings}</table>",
        "<h2>Overall</h2>",
        f'<p class="shares"><b>{_pct(o.shares["unshifted"])}</b> unshifted, '
        f'<b>{_pct(o.shares["marginal"])}</b> marginal, <b>{_pct(o.shares["shifted"])}</b> '
        f"shifted, over {count(o.n_tokens, 'token')}.</p>",
    ]
    if data.items:
        parts += [
            _img(plot_shares(data), "Token classes per prompt and overall"),
            _img(plot_positions(data), "Histogram of shift positions along the answers"),
            _img(plot_top_tokens(data), "Most frequent shifted tokens"),
        ]
    if data.skipped:
        parts.append("<h2>Skipped</h2><ul>" + "".join(
            f"<li>{esc(p[:80])}: {esc(r)}</li>" for p, r in data.skipped) + "</ul>")
    parts.append("<h2>Answers</h2>" + shift_legend())
    for i, it in enumerate(data.items):
        sh = it.shift.summary.shares
        parts.append(
            f'<div class="prompt"><h3>P{i + 1}. {esc(it.prompt)}</h3>'
            f"{_conversation_html(it.conversation)}"
            f'<p class="shares muted">{_pct(sh["unshifted"])} unshifted, '
            f'{_pct(sh["marginal"])} marginal, {_pct(sh["shifted"])} shifted; '
            f"{count(it.shift.summary.n_tokens, 'token')}; generated in {_fmt_s(it.generate_s)}, scored "
            f"in {_fmt_s(it.score_s)}; stop: {esc(it.stop_reason)}</p>"
            f'<div class="answer">{tokens_html(it.answer_tokens, it.shift)}</div></div>'
        )
    body = "\n".join(parts)
    title = f"Based alignment report: {data.base.name} vs {data.instruct.name}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}{_REPORT_CSS}</style></head><body>\n"
            f"{body}\n</body></html>\n")
