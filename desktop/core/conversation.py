"""Conversations: OpenAI-style messages, checked in plain words, and the turns of a chat.

A message has a ``role`` (system, user, assistant or tool) and ``content``: a string, or a list of
parts (``{"type": "text", "text": ...}``; Based sends text only). An assistant message may carry
``tool_calls`` (``{"id", "type": "function", "function": {"name", "arguments"}}``, the arguments
an object), a tool message ``tool_call_id`` and ``name``. Other keys (``reasoning_content``, ...)
go to the chat template as they are. :func:`parse_messages` and :func:`parse_tools` read the JSON
a person wrote and refuse each kind of mistake with one sentence that names the message.

The model's own answers come back into a conversation as assistant messages
(:func:`answer_message`). Their text is model output, and it is tokenized like every other message
text: a control token's text inside it is read as text, except where the model generated that
very control token (``Message.generated_controls``); see :mod:`desktop.core.prompts`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from desktop.core.errors import BasedError
from desktop.core.tokenization import Span, TokenizerFacts
from desktop.core.types import StreamToken

ROLES = ("system", "user", "assistant", "tool")
PART_SEPARATOR = "\n"  # text parts joined for a template or a mode that reads strings only
_ROLE_WORDS = "system, user, assistant or tool"
_PART_SHAPE = '{"type": "text", "text": "..."}'
_CALL_SHAPE = ('{"type": "function", "function": {"name": "get_weather", "arguments": '
               '{"city": "Paris"}}}')
_TOOL_SHAPE = ('{"type": "function", "function": {"name": "get_weather", "description": "...", '
               '"parameters": {...}}}')


class ConversationError(BasedError):
    """A conversation or a list of tools that is not in the shape Based reads (one sentence)."""


@dataclass(frozen=True)
class Message:
    """One message. ``content``: a string, a tuple of parts (dicts, each with type "text"), or
    None (an assistant message that only calls tools). ``extra``: further keys for the template,
    in the order given. ``generated_controls``: character spans of ``content`` (a string) where
    the model that wrote this answer generated a control token: those stay control tokens when
    the conversation is tokenized again; every other control-token text in it is read as text."""

    role: str
    content: str | tuple[Mapping[str, Any], ...] | None = ""
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    generated_controls: tuple[Span, ...] = ()

    @property
    def has_parts(self) -> bool:
        return isinstance(self.content, tuple)

    @property
    def text(self) -> str:
        """The content as one string (text parts joined by a line break; None: "")."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return PART_SEPARATOR.join(str(p.get("text", "")) for p in self.content)

    def to_dict(self, *, flatten_parts: bool = False) -> dict[str, Any]:
        """The OpenAI-style dict (what a chat template and the JSON files hold); with
        ``flatten_parts`` the parts are joined into one string."""
        d: dict[str, Any] = {"role": self.role}
        if self.content is not None:
            if isinstance(self.content, str) or flatten_parts:
                d["content"] = self.text
            else:
                d["content"] = [dict(p) for p in self.content]
        if self.name is not None:
            d["name"] = self.name
        if self.tool_calls:
            d["tool_calls"] = [_plain(c) for c in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        for k, v in self.extra:
            d[k] = _plain(v)
        return d


def _plain(value: Any) -> Any:
    """A copy made of plain dicts and lists (what templates and json.dumps expect)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, init=False)
class Conversation:
    """A system prompt, the messages after it (``turns``, oldest first) and the tools offered.

    ``Conversation(user, system, history)`` is the common case: earlier messages, then one user
    message; ``Conversation(turns=..., system=..., tools=...)`` takes any sequence of messages."""

    system: str | None
    turns: tuple[Message, ...]
    tools: tuple[Mapping[str, Any], ...] = field(default=())

    def __init__(
        self,
        user: str | None = None,
        system: str | None = None,
        history: Iterable[Message] = (),
        *,
        turns: Iterable[Message] | None = None,
        tools: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        if turns is None:
            turns = (*history, *((Message("user", user),) if user is not None else ()))
        object.__setattr__(self, "system", system)
        object.__setattr__(self, "turns", tuple(turns))
        object.__setattr__(self, "tools", tuple(tools))

    @property
    def user(self) -> str:
        """The text of the last user message ("" when there is none)."""
        for m in reversed(self.turns):
            if m.role == "user":
                return m.text
        return ""

    @property
    def history(self) -> tuple[Message, ...]:
        """Every message before the last one."""
        return self.turns[:-1]

    @property
    def last(self) -> Message | None:
        return self.turns[-1] if self.turns else None

    @property
    def has_system(self) -> bool:
        return bool(self.system and self.system.strip())

    @property
    def uses_tools(self) -> bool:
        """Tools offered, tool calls made or tool results given."""
        return bool(self.tools) or any(m.tool_calls or m.role == "tool" for m in self.turns)

    def messages(self, *, include_system: bool = True, flatten_parts: bool = False
                 ) -> list[dict[str, Any]]:
        """OpenAI-style dicts for a chat template: the system prompt (unless blank or left out),
        then every message."""
        out: list[dict[str, Any]] = []
        if include_system and self.has_system:
            out.append({"role": "system", "content": self.system})
        out += [m.to_dict(flatten_parts=flatten_parts) for m in self.turns]
        return out

    def replace_turns(self, turns: Iterable[Message]) -> Conversation:
        return Conversation(system=self.system, turns=turns, tools=self.tools)

    def followed_by(self, *messages: Message) -> Conversation:
        """This conversation with ``messages`` after it."""
        return self.replace_turns((*self.turns, *messages))

    def to_json(self) -> dict[str, Any]:
        """``{"messages": [...], "tools": [...]}`` as :func:`parse_messages` reads it back."""
        d: dict[str, Any] = {"messages": self.messages()}
        if self.tools:
            d["tools"] = [_plain(t) for t in self.tools]
        return d


# -- reading JSON a person wrote ---------------------------------------------------------------


def _where(n: int, source: str) -> str:
    return f"Message {n} in {source}"


def _load(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversationError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
            "fix it, or check that it is the file you meant."
        ) from None


def parse_messages(data: Any, *, source: str = "the conversation", system: str | None = None
                   ) -> Conversation:
    """A :class:`Conversation` from JSON data: a list of messages, or an object with
    ``"messages"`` (and optionally ``"tools"``). A first system message with text content becomes
    the system prompt (``system``, when given, replaces it). Raises :class:`ConversationError`
    with one sentence per kind of mistake, naming the message by its number (from 1)."""
    if isinstance(data, str):
        data = _load(data, source)
    tools: tuple[Mapping[str, Any], ...] = ()
    if isinstance(data, Mapping):
        if "messages" not in data:
            raise ConversationError(
                f'{source} holds an object without "messages": give a list of messages, like '
                '[{"role": "user", "content": "Hi"}], or {"messages": [...]}.'
            )
        if data.get("tools") is not None:
            tools = parse_tools(data["tools"], source=source)
        data = data["messages"]
    if not isinstance(data, list):
        raise ConversationError(
            f'{source} must hold a list of messages, like [{{"role": "user", "content": "Hi"}}].'
        )
    if not data:
        raise ConversationError(f"{source} holds no messages: give at least one.")
    messages = [_message(m, n, source) for n, m in enumerate(data, 1)]
    _check_tool_ids(messages, source)
    first = messages[0]
    if first.role == "system" and isinstance(first.content, str) and not first.extra \
            and first.name is None:
        file_system: str | None = first.content
        messages = messages[1:]
    else:
        file_system = None
    return Conversation(system=system if system is not None else file_system, turns=messages,
                        tools=tools)


def _message(m: Any, n: int, source: str) -> Message:
    where = _where(n, source)
    if not isinstance(m, Mapping):
        raise ConversationError(
            f'{where} is not an object: write each message as {{"role": "user", "content": "..."}}.'
        )
    role = m.get("role")
    if role is None:
        raise ConversationError(f'{where} has no "role": give it one of {_ROLE_WORDS}.')
    if role not in ROLES:
        raise ConversationError(
            f"{where} has the role {json.dumps(role, ensure_ascii=False)}: use {_ROLE_WORDS}."
        )
    where = f"{where} ({role})"
    content = _content(m, where)
    calls = m.get("tool_calls")
    if calls is not None and role != "assistant":
        raise ConversationError(
            f'{where} has "tool_calls", but only assistant messages make tool calls.'
        )
    tool_calls = _tool_calls(calls, where) if calls is not None else ()
    if content is None and not tool_calls:
        need = ("some text or tool calls" if role == "assistant" else "its text")
        raise ConversationError(f'{where} has no "content": give it {need}.')
    call_id = m.get("tool_call_id")
    if call_id is not None and role != "tool":
        raise ConversationError(
            f'{where} has "tool_call_id", but only tool messages answer a tool call.'
        )
    for key in ("tool_call_id", "name"):
        if m.get(key) is not None and not isinstance(m[key], str):
            raise ConversationError(f'{where} has a "{key}" that is not text: write it in quotes.')
    known = {"role", "content", "tool_calls", "tool_call_id", "name"}
    extra = tuple((k, v) for k, v in m.items() if k not in known and v is not None)
    return Message(role, content, tool_calls, call_id, m.get("name"), extra)


def _content(m: Mapping[str, Any], where: str) -> str | tuple[Mapping[str, Any], ...] | None:
    content = m.get("content")
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ConversationError(
            f'{where} has a "content" that is neither text nor a list of parts: write it as '
            f'"..." or [{_PART_SHAPE}].'
        )
    parts: list[Mapping[str, Any]] = []
    for k, part in enumerate(content, 1):
        if not isinstance(part, Mapping) or "type" not in part:
            raise ConversationError(
                f"Part {k} of {where[0].lower()}{where[1:]} is not a text part: write it as "
                f"{_PART_SHAPE}."
            )
        if part["type"] != "text":
            kind = json.dumps(part["type"], ensure_ascii=False)
            raise ConversationError(
                f"Part {k} of {where[0].lower()}{where[1:]} is of type {kind}, but Based sends "
                "text only: remove it, or describe it in words."
            )
        if not isinstance(part.get("text"), str):
            raise ConversationError(
                f'Part {k} of {where[0].lower()}{where[1:]} has no "text" string: write it as '
                f"{_PART_SHAPE}."
            )
        parts.append(dict(part))
    return tuple(parts)


def _tool_calls(calls: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(calls, list):
        raise ConversationError(f'{where} has "tool_calls" that are not a list: write [{_CALL_SHAPE}].')
    out: list[Mapping[str, Any]] = []
    for k, call in enumerate(calls, 1):
        what = f"Tool call {k} of {where[0].lower()}{where[1:]}"
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ConversationError(f'{what} needs a "function" with a "name", like {_CALL_SHAPE}.')
        if call.get("type", "function") != "function":
            raise ConversationError(
                f'{what} has the type {json.dumps(call["type"], ensure_ascii=False)}: only '
                '"function" calls exist.'
            )
        if call.get("id") is not None and not isinstance(call["id"], str):
            raise ConversationError(f'{what} has an "id" that is not text: write it in quotes.')
        args = fn.get("arguments", {})
        if isinstance(args, str):  # OpenAI's API sends the arguments as JSON text
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                args = None
        if not isinstance(args, Mapping):
            raise ConversationError(
                f'{what} has "arguments" that are not an object: write them like {{"city": "Paris"}}.'
            )
        fixed = dict(call)
        fixed["function"] = {**fn, "arguments": dict(args)}
        out.append(fixed)
    return tuple(out)


def _check_tool_ids(messages: Sequence[Message], source: str) -> None:
    made: set[str] = set()
    for n, m in enumerate(messages, 1):
        for call in m.tool_calls:
            if isinstance(call.get("id"), str):
                made.add(call["id"])
        if m.role == "tool" and m.tool_call_id is not None and m.tool_call_id not in made:
            raise ConversationError(
                f"{_where(n, source)} (tool) answers the tool call "
                f"{json.dumps(m.tool_call_id, ensure_ascii=False)}, but no earlier assistant "
                "message made a call with that id."
            )


def parse_tools(data: Any, *, source: str = "the tools") -> tuple[Mapping[str, Any], ...]:
    """The tools offered: JSON data holding a list of function schemas (OpenAI's
    ``{"type": "function", "function": {...}}`` or a bare ``{"name": ..., ...}``), or an object
    with ``"tools"``. Raises :class:`ConversationError` in one sentence."""
    if isinstance(data, str):
        data = _load(data, source)
    if isinstance(data, Mapping) and "tools" in data:
        data = data["tools"]
    if not isinstance(data, list):
        raise ConversationError(f"{source} must hold a list of tools, like [{_TOOL_SHAPE}].")
    out: list[Mapping[str, Any]] = []
    for n, tool in enumerate(data, 1):
        fn = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ConversationError(
                f"Tool {n} in {source} has no name: write it as {_TOOL_SHAPE}."
            )
        out.append(_plain(tool))
    return tuple(out)


def read_messages(path: str, *, system: str | None = None) -> Conversation:
    """:func:`parse_messages` of a UTF-8 JSON file the user named (one sentence for a missing
    or unreadable file)."""
    from pathlib import Path

    from desktop.core.paths import read_user_text

    name = Path(path).name
    return parse_messages(read_user_text(path, "messages"), source=name, system=system)


def read_tools(path: str) -> tuple[Mapping[str, Any], ...]:
    from pathlib import Path

    from desktop.core.paths import read_user_text

    return parse_tools(read_user_text(path, "tools"), source=Path(path).name)


def ends_for_an_answer(conv: Conversation, source: str = "The conversation") -> None:
    """Raise :class:`ConversationError` unless the conversation ends where a model answers it:
    with a user message or a tool result."""
    last = conv.last
    if last is None:
        raise ConversationError(f"{source} holds no messages: give at least one user message.")
    if last.role not in ("user", "tool"):
        raise ConversationError(
            f"{source} ends with {'an' if last.role == 'assistant' else 'a'} {last.role} message, "
            "so there is nothing for the models to answer: end it with a user message."
        )


def check_for_answer(conv: Conversation, base_mode: str | None, *, instruct_side: bool = True,
                     source: str = "The conversation") -> str:
    """Check a conversation before any work, as ``inputs.check_user_prompt`` checks one message:
    a single user message may be empty only in raw mode (returns raw mode's note); a longer
    conversation must end with a user message that is not blank, or a tool result. Raises
    :class:`BasedError` subclasses (one sentence)."""
    from desktop.core.inputs import EmptyPrompt, check_user_prompt

    only = conv.turns[0] if len(conv.turns) == 1 else None
    if only is not None and only.role == "user" and not only.has_parts:
        return check_user_prompt(only.text, base_mode, system=conv.system,
                                 instruct_side=instruct_side)
    ends_for_an_answer(conv, source)
    last = conv.last
    if last is not None and last.role == "user" and not last.text.strip():
        raise EmptyPrompt(f"{source} ends with an empty user message: write the message first.")
    return ""


# -- the model's own answers -------------------------------------------------------------------


def generated_control_spans(tokens: Sequence[StreamToken], facts: TokenizerFacts
                            ) -> tuple[Span, ...]:
    """Character spans, in the text the tokens make (``"".join(t.text)``), of the control tokens
    the model generated (a token whose id is a control token and whose text ends with that token's
    text). Those ids come back as the same control tokens when the answer is tokenized again."""
    controls = {s.id: s.text.decode("utf-8", "replace") for s in facts.specials if s.control}
    spans: list[Span] = []
    pos = 0
    for t in tokens:
        end = pos + len(t.text)
        ctext = controls.get(t.id)
        if ctext and t.text.endswith(ctext):
            spans.append((end - len(ctext), end))
        pos = end
    return tuple(spans)


def answer_message(text: str, tokens: Sequence[StreamToken] = (),
                   facts: TokenizerFacts | None = None) -> Message:
    """An assistant message holding a model's answer (its visible text, as the window shows it),
    with the control tokens it generated marked (``facts``: that model's tokenizer)."""
    spans = generated_control_spans(tokens, facts) if facts is not None and tokens else ()
    if spans and "".join(t.text for t in tokens) != text:
        spans = ()
    return Message("assistant", text, generated_controls=spans)


# -- a comparison as a conversation --------------------------------------------------------------


@dataclass(frozen=True)
class ComparedTurn:
    """A finished turn of a conversation between a person and both models: the messages before
    its answers (usually the user's one message) and each side's own answer."""

    messages: tuple[Message, ...]
    base: Message
    instruct: Message

    def answer(self, side: str) -> Message:
        return self.base if side == "base" else self.instruct


def side_conversation(system: str | None, turns: Sequence[ComparedTurn], side: str,
                      then: Sequence[Message], tools: Sequence[Mapping[str, Any]] = ()
                      ) -> Conversation:
    """What one side (``"base"`` or ``"instruct"``) is asked next: the system prompt, every earlier
    turn's messages each followed by *that side's own* answer, then ``then`` (the new message).
    Each model keeps its own history: the base model never reads the instruct model's answers."""
    msgs: list[Message] = []
    for t in turns:
        msgs += t.messages
        msgs.append(t.answer(side))
    msgs += then
    return Conversation(system=system, turns=msgs, tools=tools)
