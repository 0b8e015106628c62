"""Conversations end to end on tiny real models: several turns with each side's own answers,
history and export of whole conversations, a greedy re-run that reproduces every turn, the CLI's
--messages/--tools, token shift and the report for conversations."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from desktop.cli import main
from desktop.core.conversation import Conversation, Message, parse_messages
from desktop.core.export import (
    load_json,
    rerun,
    run_comparison,
    run_conversation,
    same_outputs,
    to_html,
    to_json,
    to_markdown,
)
from desktop.core.history import HistoryStore
from desktop.core.kv_cache import kept_prefix
from desktop.core.records import RECORD_VERSION
from desktop.core.templates import render_template
from desktop.core.types import LoadOptions, SamplingParams

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"
USERS = ["Name a colour.", "Why that one?", "And another?"]
LOAD = LoadOptions(n_ctx=1024, n_threads=1, seed=0)


@pytest.fixture(scope="module")
def conversation(tiny_phi3: Path, tiny_phi3_base: Path):  # type: ignore[no-untyped-def]
    return run_conversation(tiny_phi3_base, tiny_phi3, USERS, system="Be brief.",
                            base_mode="twin-template",
                            params=SamplingParams.deterministic(max_tokens=12, top_logprobs=2),
                            load=LOAD)


def test_each_side_keeps_its_own_answers(conversation) -> None:  # type: ignore[no-untyped-def]
    rec = conversation
    assert rec.n_turns == 3 and [t.user for t in rec.turns()] == USERS
    for k, turn in enumerate(rec.turns()[1:], 1):
        for side in ("base", "instruct"):
            prompt = turn.prompt(side)
            for earlier in rec.turns()[:k]:
                own = earlier.answer(side).text
                assert own.strip() and own in prompt  # its own earlier answers ...
                other = earlier.answer("instruct" if side == "base" else "base").text
                if other not in own:
                    assert other not in prompt  # ... never the other model's
            # the prompt begins with the previous turn's prompt and answer (the cache reuses them)
            before = rec.turns()[k - 1]
            assert prompt.startswith(before.prompt(side) + before.answer(side).text)
    # the follow-ups reused the KV cache: at least the previous prompt (as far as the cache's
    # alignment rules allow; a tiny random model's answer often tokenizes differently as text)
    turns = rec.turns()
    for before, turn in zip(turns, turns[1:]):
        for side in ("base", "instruct"):
            stats = turn.answer(side).stats
            prev = before.answer(side).stats["prompt_tokens"]
            assert stats["cached_tokens"] >= kept_prefix(prev, stats["prompt_tokens"] - 1, 512) > 0
    assert turns[0].base_answer.stats["cached_tokens"] == 0


def test_a_saved_conversation_reruns_identically(conversation) -> None:  # type: ignore[no-untyped-def]
    text = to_json(conversation)
    d = json.loads(text)
    assert d["format_version"] == 2 and d["record_version"] == RECORD_VERSION
    assert len(d["conversation"]["earlier"]) == 2
    loaded = load_json(text)
    assert loaded == conversation
    again = rerun(loaded)
    assert same_outputs(conversation, again) and again.n_turns == 3
    assert [t.answer("base").text for t in again.turns()] == \
        [t.answer("base").text for t in conversation.turns()]
    # a different earlier answer is a different conversation: same_outputs looks at every turn
    changed = conversation.earlier[0]
    from dataclasses import replace

    edited = replace(conversation, earlier=(replace(changed, base_answer=replace(
        changed.base_answer, text="other")), *conversation.earlier[1:]))
    assert not same_outputs(conversation, edited)


def test_a_sampled_conversation_reruns_identically(tiny_phi3: Path, tiny_phi3_base: Path) -> None:
    rec = run_conversation(tiny_phi3_base, tiny_phi3, USERS[:2], base_mode="qa",
                           params=SamplingParams(temperature=0.8, seed=7, max_tokens=10),
                           load=LOAD)
    assert same_outputs(rec, rerun(load_json(to_json(rec))))


def test_history_and_exports_hold_the_whole_conversation(conversation) -> None:  # type: ignore[no-untyped-def]
    with HistoryStore() as store:
        rid = store.add(conversation)
        assert store.get(rid) == conversation
        row = store.search("")[0]
        assert row.turns == 3 and row.user == USERS[-1]
    md = to_markdown(conversation)
    assert "## Conversation (3 turns" in md and md.count("#### Base answer") == 3
    for t in conversation.turns():
        assert t.user in md and t.answer("base").text in md
    page = to_html(conversation)
    assert page.count("<h3>Turn ") == 3 and "Each model read its own earlier answers" in page


def test_an_older_history_gains_the_turns_column(tmp_path: Path, tiny_phi3: Path,
                                                 tiny_phi3_base: Path) -> None:
    db = tmp_path / "old.sqlite3"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE comparisons (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL,
          base_name TEXT NOT NULL, instruct_name TEXT NOT NULL, system TEXT, user TEXT NOT NULL,
          base_text TEXT NOT NULL, instruct_text TEXT NOT NULL, has_shift INTEGER NOT NULL,
          record TEXT NOT NULL);""")
    one = run_comparison(tiny_phi3_base, tiny_phi3, Conversation("Hi"),
                         params=SamplingParams.deterministic(max_tokens=4), load=LOAD)
    d = one.to_json_dict()
    del d["conversation"]  # a version-2 record
    d["record_version"] = 2
    con.execute("INSERT INTO comparisons (created, base_name, instruct_name, system, user, "
                "base_text, instruct_text, has_shift, record) VALUES (?,?,?,?,?,?,?,?,?)",
                ("2025-01-01", "b", "i", None, "Hi", "x", "y", 0, json.dumps(d)))
    con.commit()
    con.close()
    with HistoryStore(db) as store:
        row = store.search("")[0]
        assert row.turns == 1
        old = store.get(row.id)
        assert old.n_turns == 1 and old.messages == () and old.user == "Hi"
        assert store.add(one) > row.id
    assert json.loads(to_json(one))["format_version"] == 1  # older Based reads one message


def test_compare_runs_a_given_conversation(tiny_phi3: Path, tiny_phi3_base: Path,
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]},
    ]))
    assert main(["compare", "--base", str(tiny_phi3_base), "--instruct", str(tiny_phi3),
                 "--messages", str(conv), "--max-tokens", "4", "--n-ctx", "512", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for side in ("base", "instruct"):
        assert "2+2?" in out[side]["prompt"] and "<|assistant|>\n4<|end|>" in out[side]["prompt"]
        assert out[side]["prompt"].endswith("And 3+3?<|end|>\n<|assistant|>\n")
    conv.write_text(json.dumps([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]))
    assert main(["compare", "--base", str(tiny_phi3_base), "--instruct", str(tiny_phi3),
                 "--messages", str(conv)]) == 2
    err = capsys.readouterr().err
    assert "conv.json ends with an assistant message" in err and err.count("\n") == 1


def test_prompt_takes_messages_tools_and_both_endings(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    tpl = TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja"
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "18 C"}]
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                                "parameters": {"type": "object"}}}]
    (tmp_path / "conv.json").write_text(json.dumps(messages))
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    base = ["prompt", "--template", str(tpl), "--messages", str(tmp_path / "conv.json")]
    assert main([*base, "--tools", str(tmp_path / "tools.json")]) == 0
    out = capsys.readouterr().out
    assert out == render_template(tpl.read_text(), messages, tools=tools)
    assert main([*base, "--no-generation-prompt", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompt"] == render_template(tpl.read_text(), messages, add_generation_prompt=False)
    assert data["messages"] == 3 and data["tools"] == 0
    (tmp_path / "partial.json").write_text(json.dumps(
        [{"role": "user", "content": "Capital of France?"},
         {"role": "assistant", "content": "The capital is"}]))
    assert main(["prompt", "--template", str(tpl), "--messages", str(tmp_path / "partial.json"),
                 "--continue-final-message"]) == 0
    assert capsys.readouterr().out.endswith("<|im_start|>assistant\nThe capital is")
    assert main(["prompt", "--template", str(tpl), "--messages", str(tmp_path / "partial.json"),
                 "--mode", "qa", "--continue-final-message"]) == 0
    assert capsys.readouterr().out == "Question: Capital of France?\nAnswer: The capital is"
    # mistakes: one line each, exit 2
    for args, words in (
        ([*base, "--continue-final-message"], "needs a conversation that ends with an assistant"),
        ([*base, "--tools", str(tmp_path / "conv.json")], "Tool 1 in conv.json has no name"),
        (["prompt", "--template", str(TEMPLATES / "chatml.jinja"), "--messages",
          str(tmp_path / "conv.json"), "--tools", str(tmp_path / "tools.json")],
         "no place for tools"),
        (["prompt", "--template", str(tpl), "--messages", str(tmp_path / "nope.json")],
         "nope.json was not found"),
    ):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    (tmp_path / "bad.json").write_text('[{"role": "user", "content": "x"},]')
    assert main(["prompt", "--template", str(tpl), "--messages", str(tmp_path / "bad.json")]) == 2
    assert "bad.json is not valid JSON" in capsys.readouterr().err


def test_shift_scores_the_last_answer_given_the_whole_conversation(
        tiny_phi3: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps([{"role": "user", "content": "Hi there."},
                                {"role": "assistant", "content": "Hello!"},
                                {"role": "user", "content": "Tell me about cats."}]))
    assert main(["shift", "--base", str(tiny_phi3), "--instruct", str(tiny_phi3), "--messages",
                 str(conv), "--max-tokens", "8", "--n-ctx", "512", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "Hello!" in data["instruct_prompt"] and data["base_prompt"] == data["instruct_prompt"]
    # the same model on both sides with the same whole-conversation prefix: nothing shifts
    assert data["summary"]["unshifted"] == 1.0
    assert main(["shift", "--base", str(tiny_phi3), "--instruct", str(tiny_phi3), "--messages",
                 str(conv), "--max-tokens", "8", "--n-ctx", "512", "--prompt-source", "base-mode",
                 "--mode", "qa", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["base_prompt"].startswith("Question: Hi there.\nAnswer: Hello!\nQuestion: Tell")


def test_report_over_a_prompt_set_with_conversations(tiny_phi3: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "set.json"
    prompts.write_text(json.dumps([
        "Name a fruit.",
        [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello, friend!"},
         {"role": "user", "content": "Name a tree."}],
    ]))
    out = tmp_path / "r.html"
    assert main(["report", "--base", str(tiny_phi3), "--instruct", str(tiny_phi3), "--prompts",
                 str(prompts), "--out", str(out), "--max-tokens", "6", "--n-ctx", "512"]) == 0
    page = out.read_text()
    assert "P2. Name a tree." in page and "The conversation before this answer" in page
    assert "Hello, friend!" in page and "2 of 2 finished" in page
    prompts.write_text(json.dumps(["ok", [{"role": "user"}]]))
    assert main(["report", "--base", str(tiny_phi3), "--instruct", str(tiny_phi3), "--prompts",
                 str(prompts), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert 'Message 1 in conversation 2 of set.json (user) has no "content"' in err


def test_parse_messages_keeps_what_the_template_gets() -> None:
    conv = parse_messages([{"role": "user", "content": "a", "reasoning_content": None},
                           {"role": "assistant", "content": "b", "reasoning_content": "r"}])
    assert conv.turns[1].extra == (("reasoning_content", "r"),)
    assert conv.turns[0].extra == ()  # None values are dropped, as transformers drops them
    assert Conversation(turns=(Message("user", "x"),)).messages() == [{"role": "user", "content": "x"}]


def test_a_conversation_ending_with_an_answer_says_what_happens(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    tpl = TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja"
    conv = tmp_path / "ends.json"
    conv.write_text(json.dumps([{"role": "user", "content": "Hi"},
                                {"role": "assistant", "content": "Hello, I"}]))
    base = ["prompt", "--template", str(tpl), "--messages", str(conv)]
    assert main(base) == 0
    err = capsys.readouterr().err
    assert "ends.json ends with an assistant message" in err and "--continue-final-message" in err
    for ending in ("--continue-final-message", "--no-generation-prompt"):
        assert main([*base, ending]) == 0
        assert "ends with an assistant message" not in capsys.readouterr().err
