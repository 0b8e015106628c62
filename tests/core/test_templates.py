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


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c['template']}-{c['conversation']}" for c in CASES]
)
def test_matches_transformers(case: dict) -> None:
    source = (DATA / case["template"]).read_text(encoding="utf-8")
    kwargs = dict(
        bos_token=case["bos_token"], eos_token=case["eos_token"],
        add_generation_prompt=case["add_generation_prompt"], now=FIXED_NOW,
    )
    if "expected" in case:
        assert render_template(source, case["messages"], **kwargs) == case["expected"]
    else:
        with pytest.raises(TemplateError) as ei:
            render_template(source, case["messages"], **kwargs)
        if "System role not supported" in case["error"]:
            assert isinstance(ei.value, TemplateRefused)
            assert "System role not supported" in str(ei.value)


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
    with pytest.raises(TemplateError, match="Use another template"):
        render_template("{{ messages[5]['content'] + 1 }}", [{"role": "user", "content": "x"}])


def test_builtin_templates_render() -> None:
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    for name, src in BUILTIN_TEMPLATES.items():
        out = render_template(src, msgs, bos_token="<s>", eos_token="</s>")
        assert "U" in out, name
