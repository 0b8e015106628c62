"""A GPU is used only after it computed right once: a test run in a child process, per device.

What llama.cpp does when a GPU fails depends on when (llama.cpp 0.3.36, ggml-vulkan):
- the Vulkan module cannot load (no loader) or the driver refuses an instance: the backend is
  not registered, llama.cpp sees no GPU (``ggml_backend_load``, ``ggml_backend_vk_reg``);
- out of device memory or a driver error while a model or its context is loaded: llama.cpp catches
  the backend's exception and returns an error, and the engine loads the model on the CPU;
- a driver error while a batch is computed (a lost device, a failed submit, memory that runs out
  when the backend grows its scratch buffers): ggml-vulkan throws a C++ exception out of
  ``llama_decode`` into the Python interpreter, which ends the process (std::terminate). So
  does a driver that crashes in its shader compiler, and a broken driver may compute garbage.

The last kind cannot be caught where it happens, so before Based first uses a set of GPUs it runs
the bundled self-test model on them in a child process (``based --gpu-check``): all layers on
the GPUs, greedy tokens and their log-probabilities compared with the CPU's. A crash, a hang,
NaN or answers that differ make the verdict "do not use", and models run on the CPU with one
sentence saying why. The verdict is kept in the cache folder by device, driver description and
llama.cpp build; a failed one is tried again after a week (a driver update may fix it).
``BASED_GPU_CHECK=0`` skips the check (the child itself runs with it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from desktop.core.devices import GpuDevice, devices_label

CHECK_VERSION = 1
TIMEOUT_S = 300.0  # a software device compiling its pipelines on a slow, busy machine
RETRY_FAILED_S = 7 * 24 * 3600
LOGPROB_TOL = 0.25  # nats: Q4_K/Q8_0 (the CPU quantizes activations to 8 bits, a GPU rounds them to F16); garbage is off by more than 1
GEN_TOKENS = 8

_LOCK = threading.Lock()
_MEMORY: dict[str, str] = {}  # key -> "" (fine) or the sentence, for this process


def _cache_file() -> Path:
    from desktop.core import paths

    return paths.cache_dir() / "gpu-check.json"


def _llama_build() -> str:
    try:
        import llama_cpp

        lib = Path(llama_cpp.__file__).resolve().parent / "lib"
        stamp = sorted((p.name, p.stat().st_size) for p in lib.glob("*ggml*"))
        return f"{getattr(llama_cpp, '__version__', '?')} {stamp}"
    except (ImportError, OSError):
        return "?"


def device_key(devices: Sequence[GpuDevice]) -> str:
    """What a verdict holds for: the devices (backend, driver's description, memory size) and
    the llama.cpp build (its version and libraries)."""
    parts = [str(CHECK_VERSION), _llama_build()]
    parts += sorted(f"{d.backend}|{d.description}|{d.total_bytes}" for d in devices)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(key: str, ok: bool, sentence: str) -> None:
    path = _cache_file()
    data = _read()
    data[key] = {"ok": ok, "sentence": sentence, "checked": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # no cache folder: the check runs again next time


def _command() -> list[str]:
    if getattr(sys, "frozen", False):  # the bundle: its console executable (not based-gui.exe)
        exe = Path(sys.executable)
        console = exe.with_name("based.exe" if os.name == "nt" else "based")
        return [str(console if console.is_file() else exe), "--gpu-check"]
    return [sys.executable, "-m", "desktop.cli", "--gpu-check"]


def check_devices(devices: Sequence[GpuDevice]) -> str:
    """"" when the GPUs may be used, else the one sentence the pane shows (the model then runs on
    the CPU). Runs the test child once per device key (seconds), then answers from the cache."""
    if not devices or os.environ.get("BASED_GPU_CHECK") == "0":
        return ""
    key = device_key(devices)
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
        hit = _read().get(key)
        if isinstance(hit, dict) and (hit.get("ok") or time.time() - float(hit.get("checked", 0)) < RETRY_FAILED_S):
            _MEMORY[key] = "" if hit.get("ok") else str(hit.get("sentence") or "")
            return _MEMORY[key]
        ok, why, keep = _run_child()
        where = devices_label(list(devices))
        sentence = "" if ok else (f"{where} failed Based's test run ({why}), so models run on the CPU.")
        _MEMORY[key] = sentence
        if keep:
            _write(key, ok, sentence)
        return sentence


def _run_child() -> tuple[bool, str, bool]:
    """(fine, why not in words, whether to remember the verdict)."""
    env = dict(os.environ)
    env["BASED_GPU_CHECK"] = "0"
    try:
        r = subprocess.run(_command(), env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                           stdin=subprocess.DEVNULL,
                           creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))  # no console flash
    except subprocess.TimeoutExpired:
        return False, "it did not finish in time", False
    except OSError as exc:
        return False, f"it could not start: {exc.strerror or exc}", False
    result: dict[str, Any] = {}
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                pass
            break
    if r.returncode != 0 or not result:
        if r.returncode < 0:
            return False, "the driver stopped the test process", True
        return False, "the driver failed", True
    if not result.get("gpu"):
        return True, "", False  # the child saw no GPU (nothing to judge): ask again next time
    if result.get("ok"):
        return True, "", True
    return False, str(result.get("why") or "wrong results"), True


# -- the child: `based --gpu-check` -----------------------------------------------------------


def _answer(engine: Any) -> tuple[list[int], list[float], list[list[float]]]:
    from desktop.core.types import GenerationRequest, SamplingParams

    params = SamplingParams.deterministic(max_tokens=GEN_TOKENS, top_logprobs=2)
    req = GenerationRequest(1, "The capital of France is", params, add_bos=True)
    res = engine.generate(req, threading.Event())
    return ([t.id for t in res.tokens], [t.logprob for t in res.tokens],
            [[a.logprob for a in t.top] for t in res.tokens])


def run_check() -> dict[str, Any]:
    """The test run itself (in the child): the self-test model with every layer on the GPUs and
    on the CPU; greedy tokens, their log-probabilities and the runner-up's must agree."""
    from importlib import resources

    from desktop.core.devices import gpu_devices
    from desktop.core.engine import Engine
    from desktop.core.types import LoadOptions

    devices = gpu_devices()
    if not devices:
        return {"gpu": False, "ok": False, "why": "no GPU"}
    model = resources.files("desktop.assets").joinpath("selftest/selftest.gguf")  # the self-test's model
    with resources.as_file(model) as path:
        with Engine(path, LoadOptions(n_ctx=256, n_threads=2, n_gpu_layers=-1, seed=0)) as e:
            if not e.info.gpu_used:
                return {"gpu": True, "ok": False, "why": "the model could not be loaded on it"}
            gpu = _answer(e)
        with Engine(path, LoadOptions(n_ctx=256, n_threads=2, n_gpu_layers=0, seed=0)) as e:
            cpu = _answer(e)
    ok, why = compare_answers(gpu, cpu)
    return {"gpu": True, "ok": ok, "why": why, "devices": [d.label for d in devices]}


def compare_answers(gpu: tuple[list[int], list[float], list[list[float]]],
                    cpu: tuple[list[int], list[float], list[list[float]]]) -> tuple[bool, str]:
    """Whether two greedy answers agree: the same tokens (a parting allowed only where the CPU's
    two best tokens were a near-tie), log-probabilities within ``LOGPROB_TOL``, nothing NaN."""
    g_ids, g_lp, _ = gpu
    c_ids, c_lp, c_top = cpu
    if not g_ids or any(not math.isfinite(x) for x in g_lp):
        return False, "it computed no numbers"
    for i, (a, b) in enumerate(zip(g_ids, c_ids, strict=False)):
        if abs(g_lp[i] - c_lp[i]) > LOGPROB_TOL:
            return False, "its results differ from the processor's"
        if a != b:
            near_tie = len(c_top[i]) >= 2 and c_top[i][0] - c_top[i][1] < LOGPROB_TOL
            return (True, "") if near_tie else (False, "its results differ from the processor's")
    return True, ""


def main() -> int:
    """``based --gpu-check``: print the verdict as one JSON line."""
    try:
        out = run_check()
    except Exception:  # noqa: BLE001 - a failure is a verdict, printed for the parent
        out = {"gpu": True, "ok": False, "why": "the test run on it stopped with an error"}
    print(json.dumps(out), flush=True)
    return 0
