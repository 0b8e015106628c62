"""Chat templates: byte-identical to transformers on real templates, and safe against strangers."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from desktop.core.errors import (
    TemplateError,
    TemplateLimitError,
    TemplateRefused,
    TemplateSecurityError,
)
from desktop.core.templates import BUILTIN_TEMPLATES, render_template

DATA = Path(__file__).resolve().parents[1] / "data" / "templates"
EXPECTED = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
FIXED_NOW = datetime.fromisoformat(EXPECTED["fixed_now"])
CASES = EXPECTED["cases"]


def test_the_table_covers_the_families_we_promise() -> None:
    names = " ".join(c["template"].lower() for c in CASES)
    for family in ("llama-3.1", "llama-3.2", "qwen2.5", "qwen3", "gemma-2", "mistral", "phi-3",
                   "smollm", "deepseek", "granite", "chatml"):
        assert family in names, family
    assert sum("expected" in c for c in CASES) >= 100


# conversations of each kind, each recorded on every template of the table
KINDS = ("three_turns", "three_turns_no_gen", "content_parts", "think_earlier_turns",
         "reasoning_content", "tools_offered", "tool_calls", "tools_and_tool_calls",
         "continue_final", "continue_final_space", "roles_not_alternating")


def test_the_table_covers_every_kind_of_conversation() -> None:
    templates = {c["template"] for c in CASES}
    for kind in KINDS:
        rendered = {c["template"] for c in CASES if c["conversation"] == kind and "expected" in c}
        assert {c["template"] for c in CASES if c["conversation"] == kind} == templates, kind
        assert len(rendered) >= 8, kind  # real templates render it, not just refuse it
    tool_templates = {c["template"] for c in CASES
                      if c["conversation"] == "tools_and_tool_calls" and "expected" in c
                      and "get_time" in c["expected"] and "Paris" in c["expected"]}
    for family in ("Qwen-Qwen3", "Llama-3.1", "Mistral-Small", "granite-4.0", "Hermes-3"):
        assert any(family in t for t in tool_templates), family


def test_qwen3_drops_the_reasoning_of_earlier_turns_only() -> None:
    case = next(c for c in CASES if c["template"] == "Qwen-Qwen3-0.6B.jinja"
                and c["conversation"] == "think_earlier_turns")
    out = case["expected"]
    assert "Two and two" not in out and "Three and three" not in out  # earlier turns' reasoning
    assert "<|im_start|>assistant\n2+2 = 4.<|im_end|>" in out
    assert out.endswith("<|im_start|>user\nAnd 4+4?<|im_end|>\n<|im_start|>assistant\n")


def _kwargs(case: dict) -> dict:
    return dict(
        bos_token=case["bos_token"], eos_token=case["eos_token"],
        add_generation_prompt=case["add_generation_prompt"], tools=case.get("tools"),
        continue_final_message=case.get("continue_final_message", False), now=FIXED_NOW,
    )


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c['template']}-{c['conversation']}" for c in CASES]
)
def test_matches_transformers(case: dict) -> None:
    source = (DATA / case["template"]).read_text(encoding="utf-8")
    kwargs = _kwargs(case)
    before = json.dumps(case["messages"])
    if "expected" in case:
        assert render_template(source, case["messages"], **kwargs) == case["expected"]
    else:
        with pytest.raises(TemplateError) as ei:
            render_template(source, case["messages"], **kwargs)
        for words in ("System role not supported", "roles must alternate"):
            if words in case["error"]:
                assert isinstance(ei.value, TemplateRefused)
                assert words in str(ei.value) and words in ei.value.reason
    assert json.dumps(case["messages"]) == before  # the caller's messages are never changed


def test_continue_final_message_and_generation_prompt_exclude_each_other() -> None:
    with pytest.raises(TemplateError, match="cannot go together"):
        render_template(BUILTIN_TEMPLATES["chatml"], [{"role": "assistant", "content": "x"}],
                        add_generation_prompt=True, continue_final_message=True)


@pytest.mark.parametrize(("messages", "words"), [
    ([], "conversation is empty"),
    ([{"role": "assistant", "content": None}], "no content to continue"),
    ([{"role": "assistant", "content": [{"type": "image"}]}], "no text part"),
    ([{"role": "assistant", "content": "Paris"}], "changes the final message"),
])
def test_continue_final_message_refusals_in_words(messages: list, words: str) -> None:
    src = "{% for m in messages %}{{ m.content | replace('Paris', 'Rome') }}{% endfor %}"
    with pytest.raises(TemplateError, match=words):
        render_template(src, messages, add_generation_prompt=False, continue_final_message=True)


def test_strftime_now_uses_the_clock() -> None:
    out = render_template("{{ strftime_now('%Y-%m-%d') }}", [], now=datetime(2030, 1, 2))
    assert out == "2030-01-02"
    today = datetime.now().strftime("%Y")
    assert render_template("{{ strftime_now('%Y') }}", []) == today


def test_tojson_and_loop_controls_and_specials() -> None:
    src = (
        "{{ bos_token }}{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
        "{% if m.role == 'skip' %}{% continue %}{% endif %}{{ m | tojson }}{% endfor %}{{ eos_token }}"
    )
    msgs = [{"role": "skip", "content": "x"}, {"role": "user", "content": "é<b>"},
            {"role": "user", "content": "never"}]
    assert render_template(src, msgs, bos_token="<s>", eos_token="</s>") == (
        '<s>{"role": "user", "content": "é<b>"}</s>'
    )


def test_trim_and_lstrip_blocks() -> None:
    src = "A\n  {% if true %}\nB\n  {% endif %}\nC"
    assert render_template(src, []) == "A\nB\nC"


def test_none_values_are_dropped_from_messages() -> None:
    src = "{% for m in messages %}{{ 'tc' if m.tool_calls is defined else 'no' }}{% endfor %}"
    assert render_template(src, [{"role": "user", "content": "a", "tool_calls": None}]) == "no"


# -- strangers' templates --------------------------------------------------------------------


ESCAPES = [
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch {marker}') }}",
    "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "{{ joiner.__init__.__globals__.os.system('touch {marker}') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{% set x = namespace() %}{% set x.__class__ = 1 %}",
    "{{ messages.append({'role': 'evil'}) }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_escape_attempts_are_blocked(payload: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = payload.replace("{marker}", str(marker))
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(TemplateSecurityError) as ei:
        render_template(src, msgs)
    assert "sandbox" in str(ei.value)
    assert not marker.exists()
    assert msgs == [{"role": "user", "content": "hi"}]


def test_endless_loop_is_stopped_in_time() -> None:
    src = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    t0 = time.perf_counter()
    with pytest.raises(TemplateLimitError, match="longer than"):
        render_template(src, [], timeout_s=0.5)
    assert time.perf_counter() - t0 < 10  # generous: only checks that it does not hang


@pytest.mark.parametrize(
    ("src", "word"),
    [
        ("{{ 'a' * 10000000000 }}", "gigantic"),
        ("{% for i in range(10**12) %}{% endfor %}", "range"),
        ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "more than"),
        ("{{ 'a' | center(10000000000) }}", "gigantic"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursed"),
        ("{{ 2 ** 100000000 }}", "enormous"),
    ],
)
def test_resource_limits(src: str, word: str) -> None:
    with pytest.raises(TemplateLimitError, match=word):
        render_template(src, [])


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError, match="line 2"):
        render_template("ok\n{% for x in %}", [])


def test_raise_exception_carries_the_templates_words() -> None:
    with pytest.raises(TemplateRefused, match="Only user and assistant roles"):
        render_template("{{ raise_exception('Only user and assistant roles') }}", [])


def test_runtime_errors_become_plain_sentences() -> None:
    with pytest.raises(TemplateError, match="use another template"):
        render_template("{{ messages[5]['content'] + 1 }}", [{"role": "user", "content": "x"}])


def test_builtin_templates_render() -> None:
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    for name, src in BUILTIN_TEMPLATES.items():
        out = render_template(src, msgs, bos_token="<s>", eos_token="</s>")
        assert "U" in out, name
