"""Prompt formats: what exactly each model receives.

The instruct side renders the model's own chat template (or a named built-in default, with a
visible warning). The base side turns the same message into a prompt in one of four modes, each
with the stop strings a base model needs because it does not stop by itself.

Text from people and files never becomes control tokens. Before a chat template runs, every
control-token text inside a message (``<|im_end|>`` typed by someone) is swapped for a private-use
sentinel character; after rendering, the sentinels are swapped back and their places recorded as
``RenderedPrompt.literal_spans``, so the prompt string is byte-identical to rendering the real
messages while the tokenizer (:mod:`desktop.core.tokenization`) knows which control-token texts
the template wrote. The base modes write no control tokens at all: their prompt is all text
(``parse_special=False``), except raw mode with its explicit switch for hand-written markup.
Whether BOS and EOS are added comes from llama.cpp's own vocabulary (``TokenizerFacts``).
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from desktop.core import urial
from desktop.core.errors import BasedError, SystemPromptUnsupported, TemplateError, TemplateRefused
from desktop.core.templates import (
    BUILTIN_NAMES,
    BUILTIN_TEMPLATES,
    render_template,
)
from desktop.core.tokenization import Span, SpecialToken, TokenizerFacts
from desktop.core.types import GenerationRequest, GGUFInfo, SamplingParams, TokenInfo
from desktop.core.words import count

# End-of-turn markers that show up in chat templates; a base model prompted with a chat template
# may write them as plain text, so they double as stop strings.
_TURN_MARKERS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "</s>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
    "<|im_start|>",
    "<|start_header_id|>",
    "<start_of_turn>",
    "<|user|>",
    "[INST]",
)


class BaseMode(str, enum.Enum):
    RAW = "raw"
    TWIN = "twin-template"
    QA = "qa"
    URIAL = "urial"

    @property
    def label(self) -> str:
        return {
            BaseMode.RAW: "Raw text",
            BaseMode.TWIN: "Twin's chat template",
            BaseMode.QA: "Question / Answer",
            BaseMode.URIAL: "URIAL (in-context alignment)",
        }[self]

    def describe(self) -> str:
        return {
            BaseMode.RAW: "The base model sees your text exactly as typed and simply continues it.",
            BaseMode.TWIN: "Both models get the same prompt: the instruct twin's chat markup, "
            "which the base model was never trained to follow.",
            BaseMode.QA: "Your message is wrapped as 'Question: … Answer:' so the base model is "
            "nudged to answer it.",
            BaseMode.URIAL: "A preamble and three example answers coax the base model into "
            "acting like an assistant (Lin et al., 2024). Small models often copy those examples "
            "instead of answering you.",
        }[self]


# The base side's default: the same prompt as the instruct side (the twin's chat template), so a
# comparison changes one thing only, the model. URIAL is one choice away; with small models it
# tends to copy its own example answers, which reads as the base model's own behaviour.
DEFAULT_BASE_MODE = BaseMode.TWIN


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Conversation:
    user: str
    system: str | None = None
    history: tuple[Message, ...] = ()  # earlier turns, oldest first (user/assistant)

    def messages(self, *, include_system: bool = True) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if include_system and self.system and self.system.strip():
            out.append({"role": "system", "content": self.system})
        out += [{"role": m.role, "content": m.content} for m in self.history]
        out.append({"role": "user", "content": self.user})
        return out


@dataclass(frozen=True)
class TemplateSpec:
    text: str | None
    source: str  # "model" | "twin" | "default" | "mode" | "none"
    name: str  # for people: "the model's file", "ChatML (built-in default)", "URIAL preset", ...

    @property
    def where(self) -> str:
        return {
            "model": "From the model's file",
            "twin": "From the instruct twin's file",
            "default": "Built-in default (the model's file has none)",
            "mode": "Built into Based",
            "none": "No template",
        }.get(self.source, self.source)


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt string and how to tokenize it.

    ``parse_special``: control-token texts in ``text`` are control tokens (what a chat template
    or raw mode's switch wrote), except inside ``literal_spans``: character spans of text that
    looks like a control token but came from a person or a file, read as text. With
    ``parse_special=False`` the whole prompt is text and ``literal_spans`` only marks the
    control-looking parts for people. ``add_bos`` / ``add_eos``: the tokenizer puts BOS / EOS
    around the prompt (llama.cpp's vocabulary decides; False when the template wrote it)."""

    text: str
    stop: tuple[str, ...]
    add_bos: bool  # whether the tokenizer prepends BOS
    template: TemplateSpec
    warnings: tuple[str, ...] = ()
    mode: str = "chat"  # "chat" for the instruct side, else a BaseMode value
    literal_spans: tuple[Span, ...] = ()
    parse_special: bool = False
    add_eos: bool = False

    def token_args(self) -> dict[str, Any]:
        """Keyword arguments for ``tokenize_prompt`` / ``tokenize_file`` / ``Engine.tokenize``."""
        return {"add_bos": self.add_bos, "add_eos": self.add_eos,
                "literal_spans": self.literal_spans, "parse_special": self.parse_special}

    def request(self, request_id: int, params: SamplingParams) -> GenerationRequest:
        """A generation request for this prompt (``params`` as given, stop strings included)."""
        return GenerationRequest(request_id, self.text, params, add_bos=self.add_bos,
                                 add_eos=self.add_eos, literal_spans=self.literal_spans,
                                 parse_special=self.parse_special)

    @property
    def typed_controls(self) -> tuple[str, ...]:
        """The distinct control-token texts inside ``literal_spans``, in order of appearance."""
        seen: dict[str, None] = {}
        for a, b in self.literal_spans:
            seen.setdefault(self.text[a:b], None)
        return tuple(seen)


@dataclass(frozen=True)
class PromptInspection:
    rendered: RenderedPrompt
    tokens: tuple[TokenInfo, ...]
    n_ctx: int
    warnings: tuple[str, ...] = field(default=())

    @property
    def token_count(self) -> int:
        return len(self.tokens)

    @property
    def fits(self) -> bool:
        return self.n_ctx <= 0 or self.token_count < self.n_ctx


def _builtin_for(info: GGUFInfo) -> str:
    eos = {info.eos_token, info.eot_token}
    if "<|eot_id|>" in eos:
        return "llama3"
    if "<end_of_turn>" in eos or info.architecture.startswith("gemma"):
        return "gemma"
    return "chatml"


def _stops_for_template(source: str, info: GGUFInfo) -> tuple[str, ...]:
    stops = [m for m in _TURN_MARKERS if m in source]
    for tok in (info.eos_token, info.eot_token):
        if tok and tok not in stops:
            stops.append(tok)
    return tuple(stops)


def tokenizer_facts_for(info: GGUFInfo) -> TokenizerFacts:
    """llama.cpp's decisions about the tokenizer of the file behind ``info`` (vocab-only load,
    cached). When there is no tokenizer to ask (a bare template file) or llama.cpp cannot read
    it, a stand-in from the file's metadata (``source == "file"``): the usual chat markers and
    the file's BOS/EOS/EOT count as control tokens."""
    if info.vocab_size and info.path and os.path.isfile(info.path):
        try:
            from desktop.core.llama_vocab import tokenizer_facts

            return tokenizer_facts(info.path)
        except BasedError:
            pass
    texts = {m for m in _TURN_MARKERS}
    texts |= {t for t in (info.bos_token, info.eos_token, info.eot_token) if t}
    specials = tuple(
        SpecialToken(-1, t.encode("utf-8"), True) for t in sorted(texts, key=lambda t: (-len(t), t))
    )
    return TokenizerFacts(
        add_bos=bool(info.add_bos), add_eos=False, add_space_prefix=False,
        bos_id=info.bos_token_id, eos_id=info.eos_token_id, bos_text=info.bos_token,
        eos_text=info.eos_token, specials=specials, source="file",
    )


def _in_spans(a: int, b: int, spans: Sequence[Span]) -> bool:
    return any(x < b and a < y for x, y in spans)


def _special_ends(
    text: str, facts: TokenizerFacts, spans: Sequence[Span], parse_special: bool
) -> tuple[bool, bool]:
    """Whether the prompt starts with a real BOS and ends with a real EOS control token."""
    if not parse_special:
        return False, False
    bos, eos = facts.bos_text, facts.eos_text
    starts = bool(bos) and text.startswith(bos) and not _in_spans(0, len(bos), spans)
    ends = bool(eos) and text.endswith(eos) and not _in_spans(len(text) - len(eos), len(text), spans)
    return starts, ends


_SENTINEL_BASE = 0xF0000  # Supplementary Private Use Area-A


def _render_protected(
    source: str, messages: list[dict[str, Any]], kw: Mapping[str, Any], facts: TokenizerFacts
) -> tuple[str, tuple[Span, ...]]:
    """Render ``messages`` with control-token texts in their contents kept apart as literal spans.

    Returns the rendered text, identical to rendering the messages as they are, and the character
    spans of the control-token texts that came from the messages."""
    contents = [m["content"] for m in messages if isinstance(m.get("content"), str)]
    present = [t for t in facts.control_texts if any(t in c for c in contents)]
    if not present:
        return render_template(source, messages, **kw), ()
    taken = set(source).union(*contents, *present)
    sentinels: list[str] = []
    cp = _SENTINEL_BASE
    while len(sentinels) < len(present):
        if chr(cp) not in taken:
            sentinels.append(chr(cp))
        cp += 1
    to_sentinel = dict(zip(present, sentinels))
    back = {v: k for k, v in to_sentinel.items()}
    rx = re.compile("|".join(re.escape(t) for t in present))  # longest first
    protected = [
        {**m, "content": rx.sub(lambda mm: to_sentinel[mm.group()], m["content"])}
        if isinstance(m.get("content"), str) else m
        for m in messages
    ]
    rendered = render_template(source, protected, **kw)
    parts: list[str] = []
    spans: list[Span] = []
    pos = n = 0
    for mm in re.finditer("[" + "".join(re.escape(c) for c in back) + "]", rendered):
        chunk = rendered[pos:mm.start()]
        parts.append(chunk)
        n += len(chunk)
        original = back[mm.group()]
        parts.append(original)
        spans.append((n, n + len(original)))
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
    return text, tuple(spans)


def _render_chat(
    source: str,
    info: GGUFInfo,
    conv: Conversation,
    facts: TokenizerFacts,
    *,
    merge_system_if_refused: bool,
) -> tuple[str, tuple[Span, ...], list[str]]:
    """Render, turning a template's refusal of system messages into words."""
    warnings: list[str] = []
    kw = dict(bos_token=info.bos_token, eos_token=info.eos_token, add_generation_prompt=True)
    has_system = bool(conv.system and conv.system.strip())
    try:
        text, spans = _render_protected(source, conv.messages(), kw, facts)
    except TemplateRefused as exc:
        if not has_system:
            raise
        try:
            _render_protected(source, conv.messages(include_system=False), kw, facts)
        except TemplateError:
            raise exc from None
        if not merge_system_if_refused:
            raise SystemPromptUnsupported(
                "This model's chat template does not accept a system prompt. Clear the system "
                "prompt or merge it into your message."
            ) from None
        merged = Conversation(f"{conv.system}\n\n{conv.user}", None, conv.history)
        text, spans = _render_protected(source, merged.messages(), kw, facts)
        warnings.append(
            "This model's chat template does not accept a system prompt, so Based put it at the "
            "start of your message."
        )
        return text, spans, warnings
    if has_system and conv.system and conv.system.strip() not in text:
        warnings.append("This model's chat template left out your system prompt.")
    return text, spans, warnings


def _typed_warning(text: str, spans: Sequence[Span], *, raw: bool) -> list[str]:
    typed: dict[str, None] = {}
    for a, b in spans:
        typed.setdefault(text[a:b], None)
    if not typed:
        return []
    names = ", ".join(list(typed)[:3]) + (", …" if len(typed) > 3 else "")
    words = (f"Your text contains {names}, which looks like a control token; the model reads it "
             "as plain text")
    if raw:
        return [words + '. Turn on "My text contains control tokens" (--raw-control-tokens on '
                "the command line) to send it as a control token."]
    return [words + ", so it cannot end your turn or start another."]


def resolve_template(info: GGUFInfo, *, name: str | None = None) -> TemplateSpec:
    """The chat template the instruct side uses: the file's own (default or ``name``), else a
    named built-in default."""
    if name and name in info.named_templates:
        return TemplateSpec(info.named_templates[name], "model", f"the model's '{name}' template")
    if info.chat_template:
        return TemplateSpec(info.chat_template, "model", "the model's own template")
    key = _builtin_for(info)
    return TemplateSpec(BUILTIN_TEMPLATES[key], "default", f"{BUILTIN_NAMES[key]} (built-in default)")


def render_instruct(
    info: GGUFInfo,
    conv: Conversation,
    *,
    merge_system_if_refused: bool = False,
    template_name: str | None = None,
    template_override: str | None = None,
    vocab: TokenizerFacts | None = None,
) -> RenderedPrompt:
    """The instruct model's prompt: its chat template applied to the conversation.

    ``vocab``: llama.cpp's facts about the model's tokenizer (default: read from ``info.path``
    with :func:`tokenizer_facts_for`). The template's markup is parsed for control tokens;
    control-token texts in the messages are literal spans (read as text). Raises TemplateError
    (and subclasses) in words."""
    if template_override is not None:
        spec = TemplateSpec(template_override, "model", "a template you supplied")
    else:
        spec = resolve_template(info, name=template_name)
    warnings: list[str] = []
    if spec.source == "default":
        warnings.append(
            f"This model's file has no chat template, so Based used the {spec.name.split(' (')[0]} "
            "template. Its answers may be off if the model was trained on another format."
        )
    assert spec.text is not None
    facts = vocab if vocab is not None else tokenizer_facts_for(info)
    text, spans, more = _render_chat(
        spec.text, info, conv, facts, merge_system_if_refused=merge_system_if_refused
    )
    warnings += more + _typed_warning(text, spans, raw=False)
    has_bos, has_eos = _special_ends(text, facts, spans, True)
    return RenderedPrompt(text, (), facts.add_bos and not has_bos, spec, tuple(warnings), "chat",
                          spans, True, facts.add_eos and not has_eos)


def render_base(
    mode: BaseMode | str,
    conv: Conversation,
    *,
    base: GGUFInfo,
    twin: GGUFInfo | None = None,
    raw_control_tokens: bool = False,
    vocab: TokenizerFacts | None = None,
) -> RenderedPrompt:
    """The base model's prompt for ``conv`` in one of the four modes.

    The raw, Q&A and URIAL prompts are all text: control-token texts in them are read as text,
    unless ``raw_control_tokens`` is set in raw mode (for people who write chat markup by hand;
    ignored in the other modes). Twin-template mode parses what the twin's template writes, as
    :func:`render_instruct` does. ``vocab``: llama.cpp's facts about the *base* model's tokenizer
    (default: read from ``base.path``)."""
    mode = BaseMode(mode)
    facts = vocab if vocab is not None else tokenizer_facts_for(base)
    parse = False
    spans: tuple[Span, ...] = ()
    system = conv.system.strip() if conv.system and conv.system.strip() else None
    warnings: list[str] = []
    if mode is BaseMode.RAW:
        text = f"{system}\n\n{conv.user}" if system else conv.user
        if conv.history:
            turns = "\n\n".join(m.content for m in conv.history)
            text = f"{turns}\n\n{text}"
        spec = TemplateSpec(None, "none", "your text as typed")
        stops: tuple[str, ...] = ()
        parse = raw_control_tokens
    elif mode is BaseMode.QA:
        lines = [system, ""] if system else []
        for m in conv.history:
            lines.append(("Question: " if m.role == "user" else "Answer: ") + m.content)
        lines.append(f"Question: {conv.user}")
        lines.append("Answer:")
        text = "\n".join(lines)
        spec = TemplateSpec(None, "mode", "Question/Answer scaffold")
        stops = ("\nQuestion:", "\n\n\n")
    elif mode is BaseMode.URIAL:
        text = urial.build(conv.user, conv.system)
        spec = TemplateSpec(None, "mode", "URIAL preset (Lin et al., ICLR 2024)")
        stops = urial.STOPS
    else:
        source_info = twin if twin is not None else base
        if twin is None and not base.chat_template:
            raise TemplateError(
                "The twin-template mode needs the instruct twin's chat template: pick an instruct "
                "model, or choose another mode."
            )
        tmpl = resolve_template(source_info)
        if tmpl.source == "default":
            warnings.append(
                f"The instruct twin's file has no chat template, so Based used {tmpl.name}."
            )
        assert tmpl.text is not None
        text, spans, more = _render_chat(
            tmpl.text, source_info, conv, facts, merge_system_if_refused=True
        )
        warnings += more + _typed_warning(text, spans, raw=False)
        src = "twin" if twin is not None and tmpl.source == "model" else tmpl.source
        spec = TemplateSpec(tmpl.text, src, f"{source_info.name}'s chat template")
        stops = _stops_for_template(tmpl.text, source_info)
        parse = True
    if mode is not BaseMode.TWIN:
        found = facts.find_control_text(text)
        if parse and found:
            names = list(dict.fromkeys(text[a:b] for a, b in found))
            warnings.append(f"Your text's {', '.join(names[:3])} {'is' if len(names) == 1 else 'are'} "
                            "sent as control tokens, as you asked.")
        spans = () if parse else found
        warnings += _typed_warning(text, spans, raw=mode is BaseMode.RAW)
    has_bos, has_eos = _special_ends(text, facts, spans, parse)
    return RenderedPrompt(text, stops, facts.add_bos and not has_bos, spec, tuple(warnings),
                          mode.value, spans, parse, facts.add_eos and not has_eos)


def file_tokenizer(path: str | os.PathLike[str]) -> Callable[[RenderedPrompt], list[TokenInfo]]:
    """A ``tokenize`` for :func:`inspect_prompt` that reads only the vocabulary of ``path``."""
    from desktop.core.llama_vocab import tokenize_file

    def tokenize(rendered: RenderedPrompt) -> list[TokenInfo]:
        return tokenize_file(path, rendered.text, **rendered.token_args())

    return tokenize


def inspect_prompt(
    rendered: RenderedPrompt,
    tokenize: Callable[[RenderedPrompt], Sequence[TokenInfo]],
    *,
    bos_token_id: int | None,
    n_ctx: int,
) -> PromptInspection:
    """Tokenize a rendered prompt as the model will see it (``tokenize``: e.g.
    :func:`file_tokenizer` or an engine's ``lambda r: engine.tokenize(r.text, **r.token_args())``)
    and check BOS and length."""
    tokens = tuple(tokenize(rendered))
    warnings = list(rendered.warnings)
    if bos_token_id is not None and len(tokens) >= 2:
        if tokens[0].id == bos_token_id and tokens[1].id == bos_token_id:
            warnings.append(
                "The prompt starts with two BOS tokens: the template writes one and the tokenizer "
                "adds another. Models often answer worse like this."
            )
    if n_ctx > 0 and len(tokens) >= n_ctx:
        warnings.append(
            f"The prompt is {count(len(tokens), 'token')}, but the context holds {n_ctx:,}: shorten it or "
            "raise the context size."
        )
    return PromptInspection(rendered, tokens, n_ctx, tuple(warnings))
