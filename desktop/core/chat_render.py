"""A conversation through a chat template, with every message text kept as text.

Before a template runs, every control-token text inside the conversation (message contents and
parts, tool calls' names and arguments, tool results, other message fields, the tools offered,
keys included) is swapped for a private-use sentinel character; after rendering the sentinels are
swapped back and their places recorded as literal spans, so the prompt string is byte-identical to
rendering the real messages while the tokenizer knows which control-token texts the template
wrote. The one exception: control tokens a model generated in its own earlier answer
(``Message.generated_controls``) are left in place, so they read back as the tokens it wrote.

On top of transformers' rendering (:func:`desktop.core.templates.render_template`) this module
says in one sentence when a template refuses a conversation (roles that do not alternate, a
system prompt it does not take), leaves out the tools offered, a tool call or a tool result; and
a template that cannot read content given as parts (it fails on them or prints them raw) gets
each message's text parts joined by a line break, with a warning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from desktop.core.conversation import Conversation, Message
from desktop.core.errors import (
    SystemPromptUnsupported,
    TemplateError,
    TemplateLimitError,
    TemplateRefused,
    TemplateSecurityError,
)
from desktop.core.templates import render_template
from desktop.core.tokenization import Span, TokenizerFacts
from desktop.core.types import GGUFInfo

_SENTINEL_BASE = 0xF0000  # Supplementary Private Use Area-A
_PART_REPR = "{'type': 'text'"
SYSTEM_REFUSED = ("This model's chat template does not accept a system prompt: clear it, or merge "
                  "it into your message.")  # a list of parts printed by a template that expects a string


@dataclass(frozen=True)
class ChatOptions:
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    merge_system_if_refused: bool = False


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _strings(k, out)
            _strings(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, out)


def _protect(value: Any, swap: Any, keep: Sequence[Span] = ()) -> Any:
    """``value`` with every control-token text swapped for its sentinel (``swap``: a function of a
    string), except inside ``keep`` (character spans of a top-level string)."""
    if isinstance(value, str):
        if not keep:
            return swap(value)
        out: list[str] = []
        pos = 0
        for a, b in sorted(keep):
            out.append(swap(value[pos:a]))
            out.append(value[a:b])
            pos = b
        out.append(swap(value[pos:]))
        return "".join(out)
    if isinstance(value, Mapping):
        return {_protect(k, swap): _protect(v, swap) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_protect(v, swap) for v in value]
    return value


def render_protected(
    source: str,
    messages: list[dict[str, Any]],
    kw: Mapping[str, Any],
    facts: TokenizerFacts,
    keep: Mapping[int, Sequence[Span]] | None = None,
) -> tuple[str, tuple[Span, ...]]:
    """Render ``messages`` (and ``kw["tools"]``) with control-token texts kept apart as literal
    spans. ``keep``: message index -> spans of its string content that stay control tokens.

    Returns the rendered text, identical to rendering the messages as they are, and the character
    spans of the control-token texts that came from the conversation."""
    keep = keep or {}
    texts: list[str] = []
    _strings(messages, texts)
    _strings(kw.get("tools"), texts)
    present = [t for t in facts.control_texts if any(t in c for c in texts)]
    if not present:
        return render_template(source, messages, **kw), ()
    taken = set(source).union(*texts, *present)
    sentinels: list[str] = []
    cp = _SENTINEL_BASE
    while len(sentinels) < len(present):
        if chr(cp) not in taken:
            sentinels.append(chr(cp))
        cp += 1
    to_sentinel = dict(zip(present, sentinels))
    back = {v: k for k, v in to_sentinel.items()}
    rx = re.compile("|".join(re.escape(t) for t in present))  # longest first

    def swap(s: str) -> str:
        return rx.sub(lambda mm: to_sentinel[mm.group()], s)

    protected = []
    for i, m in enumerate(messages):
        spans = keep.get(i, ())
        if spans and isinstance(m.get("content"), str):
            m = {**{k: _protect(v, swap) for k, v in m.items() if k != "content"},
                 "content": _protect(m["content"], swap, spans)}
            m = {k: m[k] for k in messages[i]}  # the key order of the message
        else:
            m = _protect(m, swap)
        protected.append(m)
    pkw = dict(kw)
    if pkw.get("tools") is not None:
        pkw["tools"] = _protect(pkw["tools"], swap)
    rendered = render_template(source, protected, **pkw)
    parts: list[str] = []
    spans_out: list[Span] = []
    pos = n = 0
    for mm in re.finditer("[" + "".join(re.escape(c) for c in back) + "]", rendered):
        chunk = rendered[pos:mm.start()]
        parts.append(chunk)
        n += len(chunk)
        original = back[mm.group()]
        parts.append(original)
        spans_out.append((n, n + len(original)))
        n += len(original)
        pos = mm.end()
    parts.append(rendered[pos:])
    text = "".join(parts)
    if text != render_template(source, messages, **kw):
        raise TemplateError(
            f"This chat template changes your text in a way that Based cannot tell apart from its "
            f"own markup, so it would read your {present[0]} as a control token; remove it from "
            "your message or use another template."
        )
    return text, tuple(spans_out)


def _template_messages(
    conv: Conversation, *, include_system: bool, merge_system: bool, flatten: bool
) -> tuple[list[dict[str, Any]], dict[int, tuple[Span, ...]]]:
    """The template's messages and, per index, the generated control tokens to keep. With
    ``merge_system`` the system prompt goes at the start of the first user message."""
    turns = list(conv.turns)
    if merge_system and conv.has_system:
        first = next((i for i, m in enumerate(turns) if m.role == "user"), None)
        if first is None:
            turns.insert(0, Message("user", str(conv.system)))
        else:
            m = turns[first]
            merged: str | tuple[Mapping[str, Any], ...] | None
            if m.has_parts:
                merged = ({"type": "text", "text": f"{conv.system}\n\n"}, *m.content)  # type: ignore[misc]
            else:
                merged = f"{conv.system}\n\n{m.text}"
            turns[first] = Message(m.role, merged, m.tool_calls, m.tool_call_id, m.name, m.extra)
    out: list[dict[str, Any]] = []
    keep: dict[int, tuple[Span, ...]] = {}
    if include_system and not merge_system and conv.has_system:
        out.append({"role": "system", "content": conv.system})
    for m in turns:
        if m.generated_controls and isinstance(m.content, str):
            keep[len(out)] = m.generated_controls
        out.append(m.to_dict(flatten_parts=flatten))
    return out, keep


def refusal_sentence(exc: TemplateRefused) -> str:
    """A template's own refusal, in one sentence that says what to do."""
    reason = exc.reason.strip()
    low = reason.lower()
    if "alternate" in low:
        return ("This model's chat template needs user and assistant messages to take turns "
                "(after an optional system message): merge messages that follow each other from "
                "the same role.")
    if "system" in low and ("not supported" in low or "not allowed" in low):
        return SYSTEM_REFUSED
    reason = reason.rstrip(".!") or "it gave no reason"
    return (f"This model's chat template refused this conversation (its words: \"{reason}\"): "
            "change the conversation or use another model.")


def _render_once(source: str, info: GGUFInfo, conv: Conversation, facts: TokenizerFacts,
                 opts: ChatOptions, *, merge_system: bool, flatten: bool,
                 tools: Any = ..., strip_calls: bool = False) -> tuple[str, tuple[Span, ...]]:
    msgs, keep = _template_messages(conv, include_system=True, merge_system=merge_system,
                                    flatten=flatten)
    if strip_calls:
        msgs = [{k: v for k, v in m.items() if k != "tool_calls"} for m in msgs]
    if tools is ...:
        tools = [dict(t) for t in conv.tools] or None
    kw = dict(bos_token=info.bos_token, eos_token=info.eos_token,
              add_generation_prompt=opts.add_generation_prompt,
              continue_final_message=opts.continue_final_message, tools=tools)
    return render_protected(source, msgs, kw, facts, keep)


def render_chat(
    source: str,
    info: GGUFInfo,
    conv: Conversation,
    facts: TokenizerFacts,
    opts: ChatOptions = ChatOptions(),
) -> tuple[str, tuple[Span, ...], list[str]]:
    """Render ``conv`` through the chat template ``source`` (``info``: BOS/EOS texts).

    Returns (prompt, literal spans, warnings). Raises :class:`TemplateError` (one sentence) when
    the template refuses the conversation or would hide part of it from the model:
    :class:`SystemPromptUnsupported` for a system prompt it refuses (unless
    ``opts.merge_system_if_refused``: then the system prompt goes into the first user message,
    with a warning)."""
    warnings: list[str] = []
    flatten = False
    merge = False

    def once(**more: Any) -> tuple[str, tuple[Span, ...]]:
        return _render_once(source, info, conv, facts, opts, merge_system=merge, flatten=flatten,
                            **more)

    def attempt() -> tuple[str, tuple[Span, ...]]:
        nonlocal flatten
        has_parts = any(m.has_parts for m in conv.turns)
        try:
            text, spans = once()
        except (TemplateLimitError, TemplateSecurityError):
            raise
        except TemplateError:
            if not has_parts or flatten:
                raise
            flatten = True
            return once()
        if has_parts and not flatten and _PART_REPR in text:
            flatten = True
            return once()
        return text, spans

    try:
        text, spans = attempt()
    except TemplateRefused as exc:
        if not conv.has_system:
            raise TemplateRefused(refusal_sentence(exc), exc.reason) from None
        merge = True
        try:
            text, spans = attempt()
        except TemplateRefused as exc2:
            raise TemplateRefused(refusal_sentence(exc2), exc2.reason) from None
        if not opts.merge_system_if_refused:
            raise SystemPromptUnsupported(SYSTEM_REFUSED) from None
        warnings.append(
            "This model's chat template does not accept a system prompt, so Based put it at the "
            "start of your first message."
        )
    if flatten:
        warnings.append(
            "This model's chat template reads only plain text, so Based joined the text parts of "
            "each message with line breaks."
        )
    if conv.has_system and not merge and conv.system and conv.system.strip() not in text:
        warnings.append("This model's chat template left out your system prompt.")
    _check_tools(conv, text, once)
    return text, spans, warnings


def _same_without(once: Any, text: str, **more: Any) -> bool:
    """Whether the template renders the same prompt without a part of the conversation (a
    template that fails without it depends on it)."""
    try:
        return bool(once(**more)[0] == text)
    except TemplateError:
        return False


def _shows(result: str, text: str) -> bool:
    """Whether a tool result's text appears in the prompt, as it is or as JSON text."""
    t = result.strip()
    return any(c in text for c in (t, json.dumps(t)[1:-1], json.dumps(t, ensure_ascii=False)[1:-1]))


def _check_tools(conv: Conversation, text: str, once: Any) -> None:
    """Refuse, in one sentence each, a template that would hide the tools offered, a tool call or
    a tool result from the model."""
    if conv.tools and _same_without(once, text, tools=None):
        raise TemplateError(
            "This model's chat template has no place for tools, so the model would never see the "
            "ones offered: leave them out, or use a model whose template takes tools."
        )
    calls = [n for n, m in enumerate(conv.turns, 1) if m.tool_calls]
    if calls and _same_without(once, text, strip_calls=True):
        raise TemplateError(
            f"This model's chat template leaves out tool calls, so the model would not see the "
            f"call in message {calls[0]}: use a model whose template takes tool calls."
        )
    for n, m in enumerate(conv.turns, 1):
        if m.role == "tool" and m.text.strip() and not _shows(m.text, text):
            raise TemplateError(
                f"This model's chat template leaves out tool results, so the model would not see "
                f"message {n}: use a model whose template takes tool results."
            )
