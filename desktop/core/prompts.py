"""Prompt formats: what exactly each model receives.

The instruct side renders the model's own chat template (or a named built-in default, with a
visible warning). The base side turns the same message into a prompt in one of four modes, each
with the stop strings a base model needs because it does not stop by itself.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from desktop.core import urial
from desktop.core.errors import SystemPromptUnsupported, TemplateError, TemplateRefused
from desktop.core.templates import (
    BUILTIN_NAMES,
    BUILTIN_TEMPLATES,
    render_template,
)
from desktop.core.types import GGUFInfo, TokenInfo
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
    text: str
    stop: tuple[str, ...]
    add_bos: bool  # whether the tokenizer should prepend BOS
    template: TemplateSpec
    warnings: tuple[str, ...] = ()
    mode: str = "chat"  # "chat" for the instruct side, else a BaseMode value


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


def _starts_with_bos(text: str, bos: str) -> bool:
    return bool(bos) and text.startswith(bos)


def _render_chat(
    source: str, info: GGUFInfo, conv: Conversation, *, merge_system_if_refused: bool
) -> tuple[str, list[str]]:
    """Render, turning a template's refusal of system messages into words."""
    warnings: list[str] = []
    kw = dict(bos_token=info.bos_token, eos_token=info.eos_token, add_generation_prompt=True)
    has_system = bool(conv.system and conv.system.strip())
    try:
        text = render_template(source, conv.messages(), **kw)  # type: ignore[arg-type]
    except TemplateRefused as exc:
        if not has_system:
            raise
        try:
            render_template(source, conv.messages(include_system=False), **kw)  # type: ignore[arg-type]
        except TemplateError:
            raise exc from None
        if not merge_system_if_refused:
            raise SystemPromptUnsupported(
                "This model's chat template does not accept a system prompt. Clear the system "
                "prompt or merge it into your message."
            ) from None
        merged = Conversation(f"{conv.system}\n\n{conv.user}", None, conv.history)
        text = render_template(source, merged.messages(), **kw)  # type: ignore[arg-type]
        warnings.append(
            "This model's chat template does not accept a system prompt, so Based put it at the "
            "start of your message."
        )
        return text, warnings
    if has_system and conv.system and conv.system.strip() not in text:
        warnings.append("This model's chat template left out your system prompt.")
    return text, warnings


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
) -> RenderedPrompt:
    """The instruct model's prompt: its chat template applied to the conversation."""
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
    text, more = _render_chat(spec.text, info, conv, merge_system_if_refused=merge_system_if_refused)
    warnings += more
    add_bos = info.add_bos and not _starts_with_bos(text, info.bos_token)
    return RenderedPrompt(text, (), add_bos, spec, tuple(warnings), "chat")


def render_base(
    mode: BaseMode | str,
    conv: Conversation,
    *,
    base: GGUFInfo,
    twin: GGUFInfo | None = None,
) -> RenderedPrompt:
    """The base model's prompt for ``conv`` in one of the four modes."""
    mode = BaseMode(mode)
    system = conv.system.strip() if conv.system and conv.system.strip() else None
    warnings: list[str] = []
    if mode is BaseMode.RAW:
        text = f"{system}\n\n{conv.user}" if system else conv.user
        if conv.history:
            turns = "\n\n".join(m.content for m in conv.history)
            text = f"{turns}\n\n{text}"
        spec = TemplateSpec(None, "none", "your text as typed")
        stops: tuple[str, ...] = ()
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
        text, more = _render_chat(tmpl.text, source_info, conv, merge_system_if_refused=True)
        warnings += more
        src = "twin" if twin is not None and tmpl.source == "model" else tmpl.source
        spec = TemplateSpec(tmpl.text, src, f"{source_info.name}'s chat template")
        stops = _stops_for_template(tmpl.text, source_info)
    add_bos = base.add_bos and not _starts_with_bos(text, base.bos_token)
    return RenderedPrompt(text, stops, add_bos, spec, tuple(warnings), mode.value)


def inspect_prompt(
    rendered: RenderedPrompt,
    tokenize: Callable[[str, bool], Sequence[TokenInfo]],
    *,
    bos_token_id: int | None,
    n_ctx: int,
) -> PromptInspection:
    """Tokenize a rendered prompt as the model will see it, and check BOS and length."""
    tokens = tuple(tokenize(rendered.text, rendered.add_bos))
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
