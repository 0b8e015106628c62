"""The base side's prompt modes, and the three that are plain text: raw, Q&A and URIAL.

A base model does not follow chat markup, so besides the twin's chat template (rendered like the
instruct side's, see :mod:`desktop.core.chat_render`) it can get the conversation as text:

- raw: the transcript as typed: each message's text, a model's answer right after the text it
  continued, each new message after a blank line;
- Q&A: ``Question: ...`` / ``Answer: ...`` lines, ending with ``Answer:``;
- URIAL: the preamble and examples, then one ``# Query:`` / ``# Answer:`` block per turn.

An earlier answer goes back exactly as the model wrote it (a Q&A answer keeps the space it began
with), so a follow-up's prompt starts with the previous prompt and answer, token for token, and
the prompt cache reuses them. Parts are joined by a line break. These modes have no form for
tools, tool calls or a system message in the middle of a conversation: one sentence says so.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from desktop.core import urial
from desktop.core.conversation import Conversation
from desktop.core.errors import TemplateError
from desktop.core.tokenization import Span


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

    def follow_up_form(self) -> str:
        """How a follow-up shows both models the conversation so far, in one sentence."""
        return "Each model reads its own earlier answers; " + {
            BaseMode.RAW: "the base model reads the whole transcript as plain text, each new "
                          "message after a blank line.",
            BaseMode.TWIN: "the base model reads its own as assistant turns of the twin's chat "
                           "markup.",
            BaseMode.QA: "the base model reads the earlier turns as Question/Answer pairs.",
            BaseMode.URIAL: "the base model reads the earlier turns as # Query: / # Answer: "
                            "blocks after the examples.",
        }[self]


# The base side's default: the same prompt as the instruct side (the twin's chat template), so a
# comparison changes one thing only, the model. URIAL is one choice away; with small models it
# tends to copy its own example answers, which reads as the base model's own behaviour.
DEFAULT_BASE_MODE = BaseMode.TWIN


@dataclass(frozen=True)
class TextPrompt:
    """A text mode's prompt and the character spans of the earlier answers in it, each with the
    spans (within the prompt) of the control tokens the model generated there."""

    text: str
    answers: tuple[Span, ...] = ()
    generated: tuple[Span, ...] = ()


def _check(mode: BaseMode, conv: Conversation) -> None:
    if conv.uses_tools:
        raise TemplateError(
            f"The {mode.label} mode has no form for tools or tool calls: choose the twin's chat "
            "template for the base model, or leave the tools out."
        )
    if any(m.role == "system" for m in conv.turns):
        raise TemplateError(
            f"The {mode.label} mode takes one system prompt, at the start: merge the other system "
            "messages into it."
        )


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n = 0
        self.answers: list[Span] = []
        self.generated: list[Span] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.n += len(text)

    def answer(self, text: str, generated: tuple[Span, ...]) -> None:
        self.answers.append((self.n, self.n + len(text)))
        self.generated += [(self.n + a, self.n + b) for a, b in generated]
        self.add(text)

    def done(self) -> TextPrompt:
        return TextPrompt("".join(self.parts), tuple(self.answers), tuple(self.generated))


def raw_prompt(conv: Conversation) -> TextPrompt:
    """The transcript as plain text: the system prompt and each user message after a blank line,
    each assistant message right after the text before it (a model's answer continues it)."""
    _check(BaseMode.RAW, conv)
    b = _Builder()
    system = conv.system.strip() if conv.has_system and conv.system else None
    first = True
    if system:
        b.add(system)
        first = False
    for m in conv.turns:
        if m.role == "assistant":
            b.answer(m.text, m.generated_controls)
            continue
        if not first:
            b.add("\n\n")
        b.add(m.text)
        first = False
    return b.done()


def _qa_answer(text: str) -> str:
    # an answer the model wrote after "Answer:" starts with its own space; one given as a
    # message gets one, so both read "Answer: ..."
    return text if not text or text[0].isspace() else " " + text


def qa_prompt(conv: Conversation, *, add_generation_prompt: bool = True,
              continue_final_message: bool = False) -> TextPrompt:
    """``Question: ...`` / ``Answer: ...`` lines after the system prompt, ending with
    ``Answer:`` (the generation prompt) or inside the final answer (``continue_final_message``)."""
    _check(BaseMode.QA, conv)
    b = _Builder()
    system = conv.system.strip() if conv.has_system and conv.system else None
    lines = 0
    if system:
        b.add(system + "\n")
        lines = 1
    for m in conv.turns:
        if lines:
            b.add("\n")
        lines += 1
        if m.role == "assistant":
            b.add("Answer:")
            text = _qa_answer(m.text)
            shift = len(text) - len(m.text)
            b.answer(text, tuple((a + shift, c + shift) for a, c in m.generated_controls))
        else:
            b.add(f"Question: {m.text}")
    last = conv.last
    if add_generation_prompt and not continue_final_message and (last is None or last.role != "assistant"):
        b.add("\nAnswer:" if lines else "Answer:")
    return b.done()


def urial_prompt(conv: Conversation, *, add_generation_prompt: bool = True,
                 continue_final_message: bool = False) -> TextPrompt:
    """URIAL's preamble and examples, then each turn as a ``# Query:`` / ``# Answer:`` block;
    the last block left open for the answer (``add_generation_prompt``), or inside the final
    answer (``continue_final_message``)."""
    _check(BaseMode.URIAL, conv)
    b = _Builder()
    b.add(urial.build_preamble(conv.system))
    open_answer = False
    turns = conv.turns
    for i, m in enumerate(turns):
        final = i == len(turns) - 1
        if m.role == "assistant":
            if not open_answer:
                b.add(urial.ANSWER_OPEN)
            b.answer(m.text, m.generated_controls)
            if not (final and continue_final_message):
                b.add(urial.ANSWER_CLOSE)
            open_answer = False
        else:
            if open_answer:  # a query without an answer before this one
                b.add(urial.ANSWER_CLOSE)
            b.add(urial.query_block(m.text))
            open_answer = False
            if not final or add_generation_prompt:
                b.add(urial.ANSWER_OPEN)
                open_answer = True
    return b.done()
