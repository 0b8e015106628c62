"""Prompt formats: what exactly each model receives.

The instruct side renders the model's own chat template (or a named built-in default, with a
visible warning). The base side turns the same message into a prompt in one of four modes, each
with the stop strings a base model needs because it does not stop by itself.

A conversation (:mod:`desktop.core.conversation`) may hold many turns, content given as parts,
tool calls and results, and tools offered. Text from people and files never becomes control
tokens. Before a chat template runs, every control-token text inside the conversation
(``<|im_end|>`` typed by someone) is swapped for a private-use sentinel character; after
rendering, the sentinels are swapped back and their places recorded as
``RenderedPrompt.literal_spans``, so the prompt string is byte-identical to rendering the real
messages while the tokenizer (:mod:`desktop.core.tokenization`) knows which control-token texts
the template wrote (:mod:`desktop.core.chat_render`). A model's own earlier answer is text too,
except the control tokens it generated itself. The base modes write no control tokens at all:
their prompt is all text (``parse_special=False``), except raw mode with its explicit switch for
hand-written markup (:mod:`desktop.core.modes`).
Whether BOS and EOS are added comes from llama.cpp's own vocabulary (``TokenizerFacts``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from desktop.core import urial
from desktop.core.chat_render import ChatOptions, render_chat
from desktop.core.conversation import Conversation, Message  # noqa: F401  (re-exported)
from desktop.core.errors import BasedError, TemplateError
from desktop.core.modes import (  # noqa: F401  (re-exported)
    DEFAULT_BASE_MODE,
    BaseMode,
    TextPrompt,
    qa_prompt,
    raw_prompt,
    urial_prompt,
)
from desktop.core.templates import BUILTIN_NAMES, BUILTIN_TEMPLATES
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


def _typed_warning(text: str, spans: Sequence[Span], *, raw: bool, whose: str = "Your text"
                   ) -> list[str]:
    typed: dict[str, None] = {}
    for a, b in spans:
        typed.setdefault(text[a:b], None)
    if not typed:
        return []
    names = ", ".join(list(typed)[:3]) + (", …" if len(typed) > 3 else "")
    one = len(typed) == 1
    looks = "which looks like a control token" if one else "which look like control tokens"
    it = "it" if one else "them"
    words = f"{whose} contains {names}, {looks}; the model reads {it} as plain text"
    if raw:
        return [words + '. Turn on "My text contains control tokens" (--raw-control-tokens on '
                f"the command line) to send {it} as {'a control token' if one else 'control tokens'}."]
    return [words + f", so {'it' if one else 'they'} cannot end your turn or start another."]


def _whose(conv: Conversation) -> str:
    return "The conversation" if any(m.role != "user" for m in conv.turns) else "Your text"


def resolve_template(info: GGUFInfo, *, name: str | None = None, tools: bool = False
                     ) -> TemplateSpec:
    """The chat template the instruct side uses: the file's own (default, ``name``, or its
    "tool_use" template when tools are offered, as transformers picks it), else a named built-in
    default."""
    if name and name in info.named_templates:
        return TemplateSpec(info.named_templates[name], "model", f"the model's '{name}' template")
    if tools and "tool_use" in info.named_templates:
        return TemplateSpec(info.named_templates["tool_use"], "model",
                            "the model's 'tool_use' template")
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
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
) -> RenderedPrompt:
    """The instruct model's prompt: its chat template applied to the conversation (every message,
    the tools offered; ``add_generation_prompt`` / ``continue_final_message`` as transformers'
    apply_chat_template takes them).

    ``vocab``: llama.cpp's facts about the model's tokenizer (default: read from ``info.path``
    with :func:`tokenizer_facts_for`). The template's markup is parsed for control tokens;
    control-token texts in the conversation are literal spans (read as text), except the control
    tokens a model generated in its own earlier answers. Raises TemplateError (and subclasses)
    in words, also when the template would leave out the tools, a tool call or a tool result."""
    if template_override is not None:
        spec = TemplateSpec(template_override, "model", "a template you supplied")
    else:
        spec = resolve_template(info, name=template_name, tools=bool(conv.tools))
    warnings: list[str] = []
    if spec.source == "default":
        warnings.append(
            f"This model's file has no chat template, so Based used the {spec.name.split(' (')[0]} "
            "template. Its answers may be off if the model was trained on another format."
        )
    assert spec.text is not None
    facts = vocab if vocab is not None else tokenizer_facts_for(info)
    opts = ChatOptions(add_generation_prompt and not continue_final_message,
                       continue_final_message, merge_system_if_refused)
    text, spans, more = render_chat(spec.text, info, conv, facts, opts)
    warnings += more + _typed_warning(text, spans, raw=False, whose=_whose(conv))
    has_bos, has_eos = _special_ends(text, facts, spans, True)
    return RenderedPrompt(text, (), facts.add_bos and not has_bos, spec, tuple(warnings), "chat",
                          spans, True, facts.add_eos and not has_eos)


def _answer_literals(tp: TextPrompt, facts: TokenizerFacts) -> tuple[Span, ...]:
    """Control-token texts inside the earlier answers that the model did not generate as control
    tokens: read as text even when the rest of a raw prompt is parsed."""
    out: list[Span] = []
    for a, b in tp.answers:
        for x, y in facts.find_control_text(tp.text[a:b]):
            if not _in_spans(a + x, a + y, tp.generated):
                out.append((a + x, a + y))
    return tuple(out)


def render_base(
    mode: BaseMode | str,
    conv: Conversation,
    *,
    base: GGUFInfo,
    twin: GGUFInfo | None = None,
    raw_control_tokens: bool = False,
    vocab: TokenizerFacts | None = None,
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
) -> RenderedPrompt:
    """The base model's prompt for ``conv`` in one of the four modes (conversations in each mode's
    own form, see :mod:`desktop.core.modes`).

    The raw, Q&A and URIAL prompts are all text: control-token texts in them are read as text,
    unless ``raw_control_tokens`` is set in raw mode (for people who write chat markup by hand;
    ignored in the other modes; earlier answers stay text except the control tokens the model
    generated). Twin-template mode parses what the twin's template writes, as
    :func:`render_instruct` does. ``vocab``: llama.cpp's facts about the *base* model's tokenizer
    (default: read from ``base.path``). ``add_generation_prompt`` / ``continue_final_message``:
    end with the mode's cue for an answer (Q&A's ``Answer:``, URIAL's open answer block, the
    twin's assistant header), or inside the final message."""
    mode = BaseMode(mode)
    facts = vocab if vocab is not None else tokenizer_facts_for(base)
    agp = add_generation_prompt and not continue_final_message
    parse = False
    spans: tuple[Span, ...] = ()
    warnings: list[str] = []
    tp: TextPrompt | None = None
    if mode is BaseMode.RAW:
        tp = raw_prompt(conv)
        spec = TemplateSpec(None, "none", "your text as typed")
        stops: tuple[str, ...] = ()
        parse = raw_control_tokens
    elif mode is BaseMode.QA:
        tp = qa_prompt(conv, add_generation_prompt=agp,
                       continue_final_message=continue_final_message)
        spec = TemplateSpec(None, "mode", "Question/Answer scaffold")
        stops = ("\nQuestion:", "\n\n\n")
    elif mode is BaseMode.URIAL:
        tp = urial_prompt(conv, add_generation_prompt=agp,
                          continue_final_message=continue_final_message)
        spec = TemplateSpec(None, "mode", "URIAL preset (Lin et al., ICLR 2024)")
        stops = urial.STOPS
    else:
        source_info = twin if twin is not None else base
        if twin is None and not base.chat_template:
            raise TemplateError(
                "The twin-template mode needs the instruct twin's chat template: pick an instruct "
                "model, or choose another mode."
            )
        tmpl = resolve_template(source_info, tools=bool(conv.tools))
        if tmpl.source == "default":
            warnings.append(
                f"The instruct twin's file has no chat template, so Based used {tmpl.name}."
            )
        assert tmpl.text is not None
        text, spans, more = render_chat(
            tmpl.text, source_info, conv, facts, ChatOptions(agp, continue_final_message, True)
        )
        warnings += more + _typed_warning(text, spans, raw=False, whose=_whose(conv))
        src = "twin" if twin is not None and tmpl.source == "model" else tmpl.source
        spec = TemplateSpec(tmpl.text, src, f"{source_info.name}'s chat template")
        stops = _stops_for_template(tmpl.text, source_info)
        parse = True
    if tp is not None:
        text = tp.text
        found = facts.find_control_text(text)
        answers = _answer_literals(tp, facts) if parse else ()
        if parse:
            mine = [sp for sp in found if not _in_spans(*sp, tp.answers)]
            names = list(dict.fromkeys(text[a:b] for a, b in mine))
            if names:
                warnings.append(f"Your text's {', '.join(names[:3])} "
                                f"{'is' if len(names) == 1 else 'are'} sent as control tokens, "
                                "as you asked.")
        spans = answers if parse else found
        warnings += _typed_warning(text, spans, raw=mode is BaseMode.RAW, whose=_whose(conv))
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
