"""Export to Markdown / HTML / JSON and re-running from JSON on tiny real models."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from desktop.core.export import (
    ExportError,
    ModelFileChanged,
    load_json,
    rerun,
    run_comparison,
    same_outputs,
    to_html,
    to_json,
    to_markdown,
)
from desktop.core.history import HistoryStore
from desktop.core.prompts import Conversation
from desktop.core.shift import analyze_shift
from desktop.core.types import LoadOptions, SamplingParams

USER = 'Write <b>one</b> line & a "quote" about ```fences```.'


@pytest.fixture(scope="module")
def record(tiny_phi3: Path, tiny_phi3_base: Path):
    params = SamplingParams(temperature=0.9, seed=42, max_tokens=24, top_logprobs=3)
    return run_comparison(tiny_phi3_base, tiny_phi3, Conversation(USER, "Be <terse>."),
                          base_mode="qa", params=params,
                          load=LoadOptions(n_ctx=512, n_threads=1, seed=42))


def test_record_holds_everything(record, tiny_phi3: Path) -> None:
    assert record.instruct.name == "Tiny Instruct" and len(record.instruct.sha256) == 64
    assert record.base_mode == "qa" and record.seed == 42
    assert record.params["temperature"] == 0.9 and "stop" not in record.params
    assert record.base_answer.stop == ("\nQuestion:", "\n\n\n")
    assert record.instruct_answer.tokens and record.instruct_answer.tokens[0].top
    assert record.load["n_ctx"] == 512


def test_json_round_trip(record) -> None:
    text = to_json(record)
    d = json.loads(text)
    assert d["format_version"] == 1
    assert set(d["models"]["base"]) >= {"name", "sha256"}
    assert d["prompts"]["user"] == USER and d["prompts"]["system"] == "Be <terse>."
    assert d["params"]["top_p"] == 0.95 and d["seed"] == 42
    tok = d["answers"]["instruct"]["tokens"][0]
    assert set(tok) >= {"id", "piece", "logprob", "top"}
    assert set(d["answers"]["base"]["stats"]) >= {"generated_tokens", "stop_reason"}
    assert load_json(text) == record
    with pytest.raises(ExportError):
        load_json("{}")
    with pytest.raises(ExportError):
        load_json("not json")


def test_markdown(record) -> None:
    md = to_markdown(record)
    assert "# Based comparison" in md and record.base.sha256 in md
    assert "````text\n" + USER in md  # a longer fence than any run of backticks in the text
    assert record.instruct_answer.text in md


def test_html_is_escaped_and_self_contained(record, tiny_phi3_base: Path) -> None:
    page = to_html(record)
    assert "<b>one</b>" not in page and "&lt;b&gt;one&lt;/b&gt;" in page
    assert "&lt;terse&gt;" in page
    assert "<script" not in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    assert page.count('class="tok') >= len([t for t in record.instruct_answer.tokens if t.text])
    assert "Probability of the chosen token" in page


def test_html_with_shift_overlay(record, tiny_phi3: Path, tiny_phi3_base: Path) -> None:
    from desktop.core.engine import Engine

    with Engine(tiny_phi3_base, LoadOptions(n_ctx=512, n_threads=1)) as base:
        ids = base.tokenize_ids(record.instruct_prompt, **record.instruct_answer.token_args())
        shift = analyze_shift(base, ids, record.instruct_answer.tokens, greedy=False)
    page = to_html(record, shift)
    assert "Where did post-training change the answer?" in page
    assert "Unshifted" in page and "Shifted" in page
    assert "sampled, not greedy" in page
    assert "rank " in page
    md_record = record.__class__(**{**record.__dict__, "shift": shift.to_json_dict()})
    assert "% unshifted" in to_markdown(md_record)
    assert "Where did post-training" in to_html(md_record)


def test_rerun_reproduces_the_same_outputs(record) -> None:
    again = rerun(load_json(to_json(record)))
    assert same_outputs(record, again)
    assert again.instruct_answer.text == record.instruct_answer.text
    assert [t.logprob for t in again.base_answer.tokens] == pytest.approx(
        [t.logprob for t in record.base_answer.tokens], abs=1e-6)
    assert again.created >= record.created


def test_a_different_seed_changes_outputs(record) -> None:
    other = record.__class__(**{**record.__dict__, "seed": 43})
    assert not same_outputs(record, rerun(other))


def test_rerun_refuses_a_changed_file(record, tmp_path: Path) -> None:
    changed = tmp_path / "changed.gguf"
    shutil.copyfile(record.base.path, changed)
    with open(changed, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ModelFileChanged) as err:
        rerun(record, base_path=changed)
    msg = str(err.value)
    assert "changed.gguf is not the file this comparison was made with" in msg
    assert "\n" not in msg
    with pytest.raises(ModelFileChanged, match="was not found"):
        rerun(record, instruct_path=tmp_path / "missing.gguf")


def test_history_keeps_exports_identical(record) -> None:
    with HistoryStore() as store:
        rid = store.add(record)
        assert to_json(store.get(rid)) == to_json(record)


HAND_WRITTEN = "<|user|>\nHi<|end|>\n<|assistant|>\n"


@pytest.mark.parametrize("switch", [True, False])
def test_raw_control_token_switch_is_recorded_and_rerun(
    switch: bool, tiny_phi3: Path, tiny_phi3_base: Path
) -> None:
    from desktop.core.engine import Engine
    from desktop.core.types import GenerationRequest

    params = SamplingParams.deterministic(max_tokens=6)
    rec = run_comparison(tiny_phi3_base, tiny_phi3, Conversation(HAND_WRITTEN), base_mode="raw",
                         params=params, load=LoadOptions(n_ctx=512, n_threads=1),
                         raw_control_tokens=switch)
    ans = rec.base_answer
    assert rec.raw_control_tokens is switch and ans.parse_special is switch
    assert (ans.literal_spans == ()) is switch  # off: the markup is recorded as typed text
    assert rec.instruct_answer.parse_special  # the instruct side's template markup
    back = load_json(to_json(rec))
    assert back == rec
    assert json.loads(to_json(rec))["prompts"]["raw_control_tokens"] is switch
    with Engine(tiny_phi3_base, LoadOptions(n_ctx=512, n_threads=1)) as e:
        ids = e.prompt_ids(GenerationRequest(1, back.base_prompt, params, **back.base_answer.token_args()))
    assert (32010 in ids) is switch  # <|user|> is a control token only with the switch
    assert ans.stats["prompt_tokens"] == len(ids)
    again = rerun(back)
    assert same_outputs(rec, again) and again.raw_control_tokens is switch
    assert again.base_answer.stats["prompt_tokens"] == len(ids)
    if switch:
        assert "control tokens in the text sent as control tokens" in to_markdown(rec)


def test_version_1_records_read_as_they_ran(record) -> None:
    d = json.loads(to_json(record))
    for side in ("base", "instruct"):
        for key in ("add_eos", "parse_special", "literal_spans"):
            del d["answers"][side][key]
    del d["prompts"]["raw_control_tokens"]
    old = load_json(json.dumps(d))
    # before version 2 every prompt was tokenized with control tokens parsed, BOS and EOS together
    for ans in (old.base_answer, old.instruct_answer):
        assert ans.parse_special and ans.literal_spans == () and ans.add_eos == ans.add_bos
    assert not old.raw_control_tokens
