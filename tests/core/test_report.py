"""The alignment report on tiny real models: plots embedded, nothing external, cancel keeps."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from desktop.core.errors import BasedError, TokenizerMismatch
from desktop.core.examples import load_examples, load_starter_prompts, parse_examples
from desktop.core.prompts import BaseMode
from desktop.core.report import build_report, render_report_html

PROMPTS = ["Tell me a joke.", "What is 2 + 2?", "Describe a <forest> & a river."]


@pytest.fixture(scope="module")
def data(tiny_phi3: Path, tiny_phi3_base: Path):
    seen: list[tuple[int, int, str]] = []
    d = build_report(tiny_phi3_base, tiny_phi3, PROMPTS, max_tokens=16, n_ctx=512, threads=1,
                     on_progress=lambda done, total, p: seen.append((done, total, p)))
    return d, seen


def test_report_runs_every_prompt(data) -> None:
    d, seen = data
    assert [it.prompt for it in d.items] == PROMPTS and not d.cancelled
    assert seen == [(0, 3, PROMPTS[0]), (1, 3, PROMPTS[1]), (2, 3, PROMPTS[2]), (3, 3, "")]
    assert all(it.shift.summary.n_tokens == len(it.answer_tokens) > 0 for it in d.items)
    assert d.overall.n_tokens == sum(it.shift.summary.n_tokens for it in d.items)
    assert d.base.name == "Tiny Base" and len(d.instruct.sha256) == 64
    assert d.timings["score_s"] > 0 and d.settings["max_tokens"] == 16


def test_html_embeds_the_plots_and_nothing_external(data, tmp_path: Path) -> None:
    d, _ = data
    page = render_report_html(d)
    out = tmp_path / "report.html"
    out.write_text(page, encoding="utf-8")
    imgs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 3 and all(len(b) > 2000 for b in imgs)
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert "&lt;forest&gt; &amp; a river" in page
    assert "Tiny Base" in page and d.instruct.sha256[:16] in page
    assert page.count('<div class="prompt">') == 3


def test_cancel_keeps_what_finished(tiny_phi3: Path, tiny_phi3_base: Path) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int, prompt: str) -> None:
        if done == 1:
            cancel.set()  # Ctrl-C while the second prompt is starting

    d = build_report(tiny_phi3_base, tiny_phi3, PROMPTS, max_tokens=16, n_ctx=512, threads=1,
                     on_progress=progress, cancel=cancel)
    assert d.cancelled and [it.prompt for it in d.items] == PROMPTS[:1]
    page = render_report_html(d)
    assert "cancelled" in page and "1 of 3 finished" in page


def test_same_model_report_is_labelled(tiny_phi3: Path) -> None:
    d = build_report(tiny_phi3, tiny_phi3, PROMPTS[:2], max_tokens=16, n_ctx=512, threads=1)
    assert d.same_model and d.overall.shares["unshifted"] >= 0.97
    assert "The same model file is used as base and instruct" in render_report_html(d)


def test_refusals(tiny_phi3: Path, tiny_llama_spm: Path) -> None:
    with pytest.raises(TokenizerMismatch):
        build_report(tiny_llama_spm, tiny_phi3, PROMPTS)
    with pytest.raises(BasedError):
        build_report(tiny_phi3, tiny_phi3, ["  "])


def test_shipped_examples_and_starter_prompts() -> None:
    ex = load_examples()
    assert 8 <= len(ex) <= 14 and len({e.id for e in ex}) == len(ex)
    modes = {e.base_mode for e in ex}
    assert {BaseMode.RAW, BaseMode.URIAL, BaseMode.TWIN} <= modes
    ids = {e.id for e in ex}
    assert {"continuation", "few-shot", "zero-shot", "urial-rescue", "refusal", "format-json",
            "leaked-markup"} <= ids
    for e in ex:
        assert e.what_to_look_for.count(". ") >= 1 and 1 <= e.max_tokens <= 4096
    starter = load_starter_prompts()
    assert 18 <= len(starter) <= 25 and len(set(starter)) == len(starter)
    with pytest.raises(ValueError):
        parse_examples([{"id": "x", "title": "t", "user": "u", "base_mode": "nope",
                         "what_to_look_for": "w"}])
