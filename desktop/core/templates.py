"""Chat templates: rendered exactly as Hugging Face transformers does, inside a sandbox.

A chat template inside a GGUF file is code written by a stranger. It is rendered only in
jinja2's ``ImmutableSandboxedEnvironment`` with the same options, filters and globals that
transformers' ``apply_chat_template`` uses (trim_blocks, lstrip_blocks, loop controls, the
``{% generation %}`` tag, ``tojson``, ``raise_exception``, ``strftime_now``, ``dict``,
``namespace``), so the output is byte-identical. On top of that it has limits: a wall-clock
deadline enforced inside template code, a cap on the output size, on ``range()`` and on string
repetition, so an endless loop or a gigantic output ends in a plain error instead of a hang.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from desktop.core.errors import (
    TemplateError,
    TemplateLimitError,
    TemplateRefused,
    TemplateSecurityError,
)

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_OUTPUT = 1_000_000  # characters
MAX_RANGE = 100_000
MAX_REPEAT = 1_000_000  # characters (or items) a single `*` may produce
TEMPLATE_FILENAME = "<chat-template>"


class _Raised(jinja2.exceptions.TemplateError):
    """raise_exception() called by the template itself."""


class _Deadline(BaseException):
    """Raised by the tracer when the render time is up (BaseException so templates can't catch)."""


class _AssistantTracker(jinja2.ext.Extension):
    """transformers' ``{% generation %}`` block: renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(
            lineno
        )

    def _generation_support(self, caller: Any) -> str:
        return str(caller())


class _TemplateDict:
    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - jinja's signature trick
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"Chat templates cannot store underscore-prefixed attributes on a namespace, but got {name!r}."
            )


class _LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus caps on string/list repetition."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    if len(seq) * max(n, 0) > MAX_REPEAT:
                        raise TemplateLimitError(
                            "The chat template tried to build a gigantic string, so Based stopped it. "
                            "Use another template."
                        )
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise TemplateLimitError(
                "The chat template tried to compute an enormous number, so Based stopped it."
            )
        return super().call_binop(context, operator, left, right)


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: Any) -> None:
    raise _Raised(str(message))


def _safe_range(*args: Any) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise TemplateLimitError(
            f"The chat template asked for a range of {len(rng):,} items, more than Based allows "
            f"({MAX_RANGE:,}). Use another template."
        )
    return rng


def _capped_filter(name: str, orig: Any, arg_index: int) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        width = args[arg_index] if len(args) > arg_index else kwargs.get("width", 0)
        if isinstance(width, int) and width > MAX_REPEAT:
            raise TemplateLimitError(
                f"The chat template asked the {name} filter for a gigantic output, so Based stopped it."
            )
        return orig(*args, **kwargs)

    return wrapper


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    env = _LimitedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.filters["center"] = _capped_filter("center", env.filters["center"], 1)
    env.filters["indent"] = _capped_filter("indent", env.filters["indent"], 1)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    env.globals["range"] = _safe_range
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise TemplateError(
            f"The chat template has a syntax error on line {exc.lineno}: {exc.message}. "
            "Fix the template or use another one."
        ) from exc


# strftime_now reads this clock; tests and recordings pin it.
_NOW: list[datetime | None] = [None]


def _strftime_now(fmt: str) -> str:
    now = _NOW[0] or datetime.now()
    return now.strftime(fmt)


def check_syntax(source: str) -> None:
    """Raise TemplateError if ``source`` does not compile."""
    _compile(source)


def _deadline_tracer(deadline: float) -> Any:
    def local(frame: Any, event: str, arg: Any) -> Any:
        if time.perf_counter() > deadline:
            raise _Deadline()
        return local

    def global_tracer(frame: Any, event: str, arg: Any) -> Any:
        if time.perf_counter() > deadline:
            raise _Deadline()
        # trace lines only inside compiled template code (and jinja's runtime loop helpers)
        fn = frame.f_code.co_filename
        if fn == "<template>" or fn.endswith(("jinja2/runtime.py", "jinja2\\runtime.py")):
            return local
        return None

    return global_tracer


# transformers copies a message's reasoning under each of these names (_alias_reasoning_fields)
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
# what transformers appends to the final message to find where it ends (continue_final_message)
CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def _alias_reasoning(message: dict[str, Any]) -> dict[str, Any]:
    """transformers' ``_alias_reasoning_fields``: a message with reasoning under any of its names
    gets it as ``thinking`` (gpt-oss templates read that) and ``reasoning_content`` too."""
    reasoning = next((message[k] for k in REASONING_FIELDS if message.get(k) is not None), None)
    if reasoning is None:
        return message
    return {"thinking": reasoning, **message, "reasoning_content": reasoning}


def _tag_final_message(source: str, chat: list[dict[str, Any]]) -> str:
    """Append transformers' tag to the final message's text (copied, never the caller's), as
    ``render_jinja_template`` does for ``continue_final_message``; returns the text to continue."""
    if not chat:
        raise TemplateError("There is no message to continue: the conversation is empty.")
    final = dict(chat[-1])
    content = final.get("content")
    if content is None:
        raise TemplateError(
            "The final message has no content to continue: give it some text, or turn off "
            "continuing the final message."
        )
    if "content" not in source:  # transformers: "not an accepted field in the chat_template"
        raise TemplateError(
            "This chat template never writes a message's content, so Based cannot continue the "
            "final message; use another template."
        )
    if isinstance(content, (list, tuple)):
        parts = [dict(p) if isinstance(p, Mapping) else p for p in content]
        for part in reversed(parts):
            if isinstance(part, dict) and "text" in part:
                text = str(part["text"])
                part["text"] = part["text"] + CONTINUE_TAG
                break
        else:
            raise TemplateError(
                "The final message has no text part to continue: add one, or turn off continuing "
                "the final message."
            )
        final["content"] = parts
    else:
        text = str(content)
        final["content"] = content + CONTINUE_TAG
    chat[-1] = final
    return text


def _cut_at_tag(rendered: str, final_text: str) -> str:
    """transformers' cut after rendering with the tag: the prompt ends where the final message's
    text ends (trailing spaces kept only when the template kept them)."""
    tag = CONTINUE_TAG.strip()
    if final_text.strip() not in rendered or tag not in rendered:
        raise TemplateError(
            "This chat template changes the final message, so Based cannot continue it from where "
            "it ends; turn off continuing the final message or use another template."
        )
    loc = rendered.rindex(tag)
    if rendered[loc:loc + len(CONTINUE_TAG)] == CONTINUE_TAG:
        return rendered[:loc]
    return rendered[:loc].rstrip()


def render_template(
    source: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
    continue_final_message: bool = False,
    extra: Mapping[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_output: int = DEFAULT_MAX_OUTPUT,
    now: datetime | None = None,
) -> str:
    """Render a chat template for ``messages`` exactly as transformers' apply_chat_template.

    ``messages``: OpenAI-style dicts (role; content as a string or a list of parts; tool_calls;
    tool_call_id; name; reasoning_content, ...); keys whose value is None are dropped and
    reasoning is copied under its other names, as transformers does. ``tools``: JSON schemas of the
    functions offered (the template's ``tools``; None: not offered). ``continue_final_message``:
    the prompt ends inside the final message, where its text ends (transformers' tag method; not
    with ``add_generation_prompt``). ``extra`` holds further template variables (documents,
    enable_thinking, ...). Raises :class:`TemplateError` (and subclasses) with one plain sentence.
    """
    if continue_final_message and add_generation_prompt:
        raise TemplateError(
            "Continuing the final message and starting a new assistant turn cannot go together: "
            "choose one."
        )
    template = _compile(source)
    chat = [_alias_reasoning({k: v for k, v in dict(m).items() if v is not None}) for m in messages]
    final_text = _tag_final_message(source, chat) if continue_final_message else ""
    context: dict[str, Any] = {
        "messages": chat,
        "tools": [dict(t) for t in tools] if tools is not None else None,
        "documents": None,
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token,
        "eos_token": eos_token,
    }
    if extra:
        context.update(extra)
    deadline = time.perf_counter() + timeout_s
    old_trace = sys.gettrace()
    old_now = _NOW[0]
    _NOW[0] = now
    parts: list[str] = []
    size = 0
    try:
        sys.settrace(_deadline_tracer(deadline))
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > max_output:
                raise TemplateLimitError(
                    f"The chat template produced more than {max_output:,} characters, so Based "
                    "stopped it. Use another template."
                )
            parts.append(chunk)
    except _Deadline:
        raise TemplateLimitError(
            f"The chat template ran longer than {timeout_s:g} s, so Based stopped it. "
            "It may loop forever: use another template."
        ) from None
    except _Raised as exc:
        raise TemplateRefused(f"The chat template refused this conversation: {exc.message}",
                              reason=str(exc.message or "")) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateSecurityError(
            "The chat template tried to reach outside its sandbox, so Based blocked it and ran "
            f"nothing ({exc.message or 'it asked for something unsafe'}). Do not trust this model "
            "file's template."
        ) from None
    except TemplateError:
        raise
    except RecursionError:
        raise TemplateLimitError(
            "The chat template recursed too deeply, so Based stopped it. Use another template."
        ) from None
    except jinja2.exceptions.TemplateError as exc:
        why = (exc.message or "it has an error").rstrip(".")
        raise TemplateError(f"The chat template failed ({why}): use another template.") from None
    except Exception:  # errors inside template expressions: TypeError, KeyError, ...
        raise TemplateError(
            "The chat template failed on these messages, doing something with them that it "
            "cannot do (a bug in the template or a conversation it was not made for): use "
            "another template."
        ) from None
    finally:
        sys.settrace(old_trace)
        _NOW[0] = old_now
    rendered = "".join(parts)
    return _cut_at_tag(rendered, final_text) if continue_final_message else rendered


# -- built-in templates -------------------------------------------------------------------------

CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

ZEPHYR = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": CHATML,
    "llama3": LLAMA3,
    "gemma": GEMMA,
    "zephyr": ZEPHYR,
}
BUILTIN_NAMES: dict[str, str] = {
    "chatml": "ChatML",
    "llama3": "Llama 3",
    "gemma": "Gemma",
    "zephyr": "Zephyr",
}
DEFAULT_TEMPLATE_NAME = "chatml"


def guess_builtin(architecture: str, tokens: Sequence[str] = ()) -> str:
    """Pick the built-in template that most likely matches a model without one."""
    toks = set(tokens)
    if "<|start_header_id|>" in toks:
        return "llama3"
    if "<start_of_turn>" in toks or architecture.startswith("gemma"):
        return "gemma"
    return DEFAULT_TEMPLATE_NAME
