"""Child process of the Vulkan tests (tests/core/test_vulkan.py): runs one task with the Vulkan
environment its parent set (tests/vulkan_env.py) and prints one JSON line.

    python tests/vulkan_child.py devices
    python tests/vulkan_child.py compare MODEL N_GPU_LAYERS [N_CTX]
    python tests/vulkan_child.py load MODEL N_GPU_LAYERS [N_CTX]
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"
GEN = 24


def devices() -> dict[str, object]:
    from desktop.core.devices import gpu_devices, gpu_free_bytes
    from desktop.core.engine import gpu_backend_available
    from desktop.core.fit import free_vram_bytes

    devs = gpu_devices()
    return {
        "offload": gpu_backend_available(),
        "devices": [{"name": d.name, "description": d.description, "backend": d.backend,
                     "integrated": d.integrated, "free": d.free_bytes, "total": d.total_bytes,
                     "label": d.label} for d in devs],
        "free": gpu_free_bytes(),
        "fit_free": free_vram_bytes(),
    }


def _info(e: object) -> dict[str, object]:
    info = e.info  # type: ignore[attr-defined]
    plan = e.plan  # type: ignore[attr-defined]
    return {"where": info.where, "backend": info.backend, "gpu_used": info.gpu_used,
            "gpu_layers": info.gpu_layers, "n_layer": info.n_layer, "note": info.note,
            "need": plan.need_bytes, "free": plan.free_bytes, "n_gpu_layers": plan.n_gpu_layers}


def _run(e: object, other: list[int] | None = None) -> dict[str, object]:
    """Greedy generation and score() of the answer under e; with ``other`` (another device's
    greedy answer), score() and the token shift of that answer under e too."""
    from desktop.core.shift import analyze_shift
    from desktop.core.types import GenerationRequest, SamplingParams

    params = SamplingParams.deterministic(max_tokens=GEN, top_logprobs=3)
    req = GenerationRequest(1, PROMPT, params, add_bos=True)
    res = e.generate(req, threading.Event())  # type: ignore[attr-defined]
    ids = [t.id for t in res.tokens]
    prompt_ids = e.prompt_ids(req)  # type: ignore[attr-defined]
    scored = e.score(prompt_ids, ids, top_k=3)  # type: ignore[attr-defined]
    out: dict[str, object] = {}
    if other is not None:
        theirs = e.score(prompt_ids, other, top_k=3)  # type: ignore[attr-defined]
        shift = analyze_shift(e, prompt_ids, other)  # type: ignore[arg-type]
        out = {"other_score": [s.logprob for s in theirs], "other_ranks": [s.rank for s in theirs],
               "other_shift": [[t.rank, t.base_logprob, t.cls.value] for t in shift.tokens]}
    return {**out,
        "ids": ids,
        "logprobs": [t.logprob for t in res.tokens],
        "top": [[a.id for a in t.top] for t in res.tokens],
        "top_logprobs": [[a.logprob for a in t.top] for t in res.tokens],
        "score": [s.logprob for s in scored],
        "ranks": [s.rank for s in scored],
        "stop": res.stats.stop_reason.value,
    }


def load(model: str, n_gpu_layers: int, n_ctx: int, other: list[int] | None = None) -> dict[str, object]:
    from desktop.core.engine import Engine
    from desktop.core.types import LoadOptions

    with Engine(model, LoadOptions(n_ctx=n_ctx, n_threads=2, n_gpu_layers=n_gpu_layers, seed=0)) as e:
        return {"info": _info(e), "run": _run(e, other)}


def compare(model: str, n_gpu_layers: int, n_ctx: int) -> dict[str, object]:
    """The same model on the CPU only and on the GPU (as asked), in one process; the GPU also
    scores the CPU's greedy answer (teacher forcing: every position compared)."""
    cpu = load(model, 0, n_ctx)
    gpu = load(model, n_gpu_layers, n_ctx, other=cpu["run"]["ids"])  # type: ignore[index]
    return {"gpu": gpu, "cpu": cpu}


def main() -> None:
    task = sys.argv[1]
    if task == "devices":
        out = devices()
    else:
        model, ngl = sys.argv[2], int(sys.argv[3])
        n_ctx = int(sys.argv[4]) if len(sys.argv) > 4 else 512
        out = (compare if task == "compare" else load)(model, ngl, n_ctx)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
