"""Token-shift analysis on tiny real models (real llama.cpp, no mocks)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from desktop.core.engine import Engine
from desktop.core.errors import TokenizerMismatch
from desktop.core.prompts import Conversation
from desktop.core.shift import (
    SAMPLED_NOTE,
    ShiftClass,
    ShiftResult,
    analyze_shift,
    classify,
    reference_shift,
    vocab_compatible,
)
from desktop.core.shift_run import run_shift, shift_prompt
from desktop.core.types import LoadOptions, SamplingParams

PROMPTS = [
    "Tell me a story about a dragon.",
    "What is the capital of France?",
    "Write a poem about the sea.",
    "How do I bake bread?",
]


@pytest.fixture(scope="module")
def instruct(tiny_phi3: Path):
    with Engine(tiny_phi3, LoadOptions(n_ctx=1024, n_threads=1)) as e:
        yield e


@pytest.fixture(scope="module")
def base(tiny_phi3_base: Path):
    with Engine(tiny_phi3_base, LoadOptions(n_ctx=1024, n_threads=1)) as e:
        yield e


def greedy_answer(engine: Engine, user: str, n: int = 48) -> tuple[list[int], tuple]:
    rendered = shift_prompt("chat", Conversation(user), base_info=engine.gguf,
                            instruct_info=engine.gguf)
    req = rendered.request(1, SamplingParams.deterministic(max_tokens=n))
    res = engine.generate(req)
    return engine.prompt_ids(req), res.tokens


def test_classify_boundaries() -> None:
    assert classify(1) is ShiftClass.UNSHIFTED
    assert classify(2) is ShiftClass.MARGINAL and classify(3) is ShiftClass.MARGINAL
    assert classify(4) is ShiftClass.SHIFTED and classify(30000) is ShiftClass.SHIFTED
    assert all(c.words and c.color.startswith("#") for c in ShiftClass)


def test_vocab_check_same_tokenizer(tiny_phi3: Path, tiny_phi3_base: Path) -> None:
    check = vocab_compatible(tiny_phi3_base, tiny_phi3)
    assert check.ok and check.reason == ""
    assert check.n_base == check.n_instruct == 32064
    assert check.first_mismatch is None


def test_different_vocabularies_are_refused(tiny_phi3: Path, tiny_llama_spm: Path) -> None:
    check = vocab_compatible(tiny_llama_spm, tiny_phi3)
    assert not check.ok
    assert check.n_base == 32000 and check.n_instruct == 32064
    assert check.first_mismatch is not None
    assert "different tokenizers" in check.reason or "more tokens" in check.reason
    assert "share" in check.reason and "\n" not in check.reason
    with pytest.raises(TokenizerMismatch) as err:
        run_shift(tiny_llama_spm, tiny_phi3, Conversation("Hi"), max_tokens=4, threads=1)
    assert str(err.value) == check.reason


def test_same_model_as_base_and_instruct_is_unshifted(instruct: Engine) -> None:
    """Greedy answer scored by the very model that wrote it: 100% up to float ties."""
    totals = {c: 0 for c in ShiftClass}
    worst = 0.0
    for user in PROMPTS:
        prefix, tokens = greedy_answer(instruct, user, 64)
        res = analyze_shift(instruct, prefix, tokens)
        assert res.complete and len(res.tokens) == len(tokens)
        for t in res.tokens:
            totals[t.cls] += 1
        # the batched log-probabilities match the ones seen while generating
        for st, gt in zip(res.tokens, tokens):
            assert st.instruct_logprob == pytest.approx(gt.logprob, abs=1e-5)
            worst = max(worst, abs(st.base_logprob - gt.logprob))
    n = sum(totals.values())
    share = totals[ShiftClass.UNSHIFTED] / n
    print(f"\nsame model: {totals[ShiftClass.UNSHIFTED]}/{n} unshifted ({100 * share:.2f}%), "
          f"{totals[ShiftClass.MARGINAL]} marginal, {totals[ShiftClass.SHIFTED]} shifted; "
          f"largest batched-vs-incremental logprob gap {worst:.2e}")
    assert worst < 0.02
    assert share >= 0.97


def test_run_shift_same_file_end_to_end(tiny_phi3: Path) -> None:
    run = run_shift(tiny_phi3, tiny_phi3, Conversation("Tell me about cats."), max_tokens=48,
                    n_ctx=512, threads=1)
    s = run.result.summary
    assert s.greedy and s.note == "" and s.complete
    assert s.n_tokens == len(run.answer.tokens) > 0
    assert s.shares["unshifted"] >= 0.97
    assert run.base_prompt == run.instruct_prompt and run.prompt_source == "chat"
    assert {"load_s", "generate_s", "score_s", "total_s"} <= set(run.timings)


def test_classes_equal_the_stepwise_reference(instruct: Engine, base: Engine) -> None:
    for user in PROMPTS[:3]:
        prefix, tokens = greedy_answer(instruct, user, 48)
        fast = analyze_shift(base, prefix, tokens, top_k=5)
        ref = reference_shift(base, prefix, tokens, top_k=5)
        assert [t.cls for t in fast.tokens] == [t.cls for t in ref.tokens]
        for a, b in zip(fast.tokens, ref.tokens):  # deep-tail ranks may differ by float noise
            assert a.rank == b.rank or min(a.rank, b.rank) > 10
        for a, b in zip(fast.tokens, ref.tokens):
            assert a.base_logprob == pytest.approx(b.base_logprob, abs=1e-2)
            gap = b.base_top[0].logprob - b.base_top[1].logprob
            assert a.base_top[0].id == b.base_top[0].id or gap < 1e-2  # near-ties may swap
        assert fast.summary == ref.summary
    # a different model does shift some tokens, so the comparison above is not vacuous
    assert fast.summary.shifted + fast.summary.marginal > 0


def test_bare_ids_and_sampled_answers(instruct: Engine, base: Engine) -> None:
    prefix, tokens = greedy_answer(instruct, PROMPTS[0], 16)
    ids = [t.id for t in tokens]
    res = analyze_shift(base, prefix, ids, greedy=False)
    assert all(t.instruct_logprob is None for t in res.tokens)
    assert not res.summary.greedy and res.summary.note == SAMPLED_NOTE
    lps = [t.logprob for t in tokens]
    res2 = analyze_shift(base, prefix, ids, instruct_logprobs=lps)
    assert [t.instruct_logprob for t in res2.tokens] == pytest.approx(lps)
    assert analyze_shift(base, prefix, []).summary.n_tokens == 0


def test_cancelled_scoring_is_marked_incomplete(instruct: Engine, base: Engine) -> None:
    prefix, tokens = greedy_answer(instruct, PROMPTS[1], 16)
    cancel = threading.Event()
    cancel.set()
    res = analyze_shift(base, prefix, tokens, cancel=cancel)
    assert not res.complete and len(res.tokens) < len(tokens)


def test_base_mode_prompt_source(tiny_phi3: Path, tiny_phi3_base: Path) -> None:
    run = run_shift(tiny_phi3_base, tiny_phi3, Conversation("Name a colour.", "Be brief."),
                    prompt_source="base-mode", mode="qa", max_tokens=12, n_ctx=512, threads=1)
    assert run.base_prompt.text.endswith("Answer:") and run.base_prompt.mode == "qa"
    assert run.instruct_prompt.text != run.base_prompt.text
    assert run.result.summary.n_tokens == len(run.answer.tokens)


def test_json_shape_and_round_trip(tiny_phi3: Path, tiny_phi3_base: Path) -> None:
    run = run_shift(tiny_phi3_base, tiny_phi3, Conversation("Hello there"), max_tokens=16,
                    n_ctx=512, threads=1)
    d = json.loads(json.dumps(run.to_json_dict()))
    assert set(d) >= {"tokens", "summary"}
    for t in d["tokens"]:
        assert set(t) >= {"piece", "rank", "base_logprob", "instruct_logprob", "cls"}
        assert t["cls"] in ("unshifted", "marginal", "shifted") and t["rank"] >= 1
    s = d["summary"]
    assert abs(s["unshifted"] + s["marginal"] + s["shifted"] - 1.0) < 1e-9
    assert all(0.0 <= s[k] <= 1.0 for k in ("unshifted", "marginal", "shifted"))
    again = ShiftResult.from_json_dict(run.result.to_json_dict())
    assert [t.cls for t in again.tokens] == [t.cls for t in run.result.tokens]
    assert again.summary == run.result.summary
