"""llama.cpp's Vulkan backend on a real Vulkan device: Mesa's lavapipe, a software GPU.

Each test runs a child process (tests/vulkan_child.py) whose environment shows lavapipe to
llama.cpp as Vulkan device 0 (tests/vulkan_env.py): the test process itself keeps running its
models on the CPU. The tests skip where the installed llama-cpp-python has no Vulkan backend or
the machine has no lavapipe, unless BASED_REQUIRE_VULKAN=1 (set by .ci/run), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from desktop.core.tinymodel import build_tiny_model
from tests.vulkan_env import (
    lavapipe_env,
    limits_env,
    no_loader_env,
    run_child,
    why_no_lavapipe,
)

MIB = 1024 * 1024
# What "the same" means between lavapipe and llama.cpp's CPU backend, in nats. The two devices
# round differently by design: for its matrix-matrix products (a prompt, score()) the Vulkan
# backend converts activations to F16 (relative error 2^-11 per value), and for Q8_0 weights the
# CPU backend quantizes activations to 8 bits (Q8_0 x Q8_0 dot products, 2^-8). On these random
# tiny models (logits with a spread of about 3) that moves log-probabilities by up to ~0.1.
LOGPROB_TOL = 0.15
# F16 weights, one token at a time: F32 activations on both devices, only the summation order differs
VEC_TOL = 0.03


@pytest.fixture(scope="module", autouse=True)
def _lavapipe() -> None:
    reason = why_no_lavapipe()
    if reason is None:
        return
    if os.environ.get("BASED_REQUIRE_VULKAN") == "1":
        pytest.fail(f"the Vulkan tests must run here, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def vk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vulkan")


@pytest.fixture(scope="module")
def f16_model(vk_dir: Path) -> Path:
    return build_tiny_model(vk_dir / "vk-f16.gguf", vocab="llama-spm", n_layer=4, n_embd=128,
                            n_head=4, n_head_kv=2, seed=11, chat_template=None)


@pytest.fixture(scope="module")
def q8_model(vk_dir: Path) -> Path:
    return build_tiny_model(vk_dir / "vk-q8.gguf", vocab="llama-spm", n_layer=4, n_embd=128,
                            n_head=4, seed=12, ftype="q8_0", chat_template=None)


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _check_agreement(out: dict, stream_tol: float = LOGPROB_TOL) -> None:
    """The GPU's greedy answer, its score() and the token shift against the CPU's."""
    gpu, cpu = out["gpu"]["run"], out["cpu"]["run"]
    cpu_gap = [top[0] - top[1] for top in cpu["top_logprobs"]]  # the CPU's margin at each step
    # greedy generation: the same tokens until a step where the CPU's two best were a near-tie
    # (another rounding may pick the other one; from there the answers are different texts)
    n = _first_difference(gpu["ids"], cpu["ids"])
    if n < len(cpu["ids"]):
        assert cpu_gap[n] < LOGPROB_TOL, (n, gpu["ids"], cpu["ids"], cpu["top_logprobs"][n])
    np.testing.assert_allclose(gpu["logprobs"][:n], cpu["logprobs"][:n], atol=stream_tol)
    # teacher forcing, every position: the CPU's answer scored on the GPU (one batched score())
    np.testing.assert_allclose(gpu["other_score"], cpu["score"], atol=LOGPROB_TOL)
    for i, (rank, gap) in enumerate(zip(gpu["other_ranks"], cpu_gap, strict=True)):
        assert rank == 1 or (rank == 2 and gap < LOGPROB_TOL), (i, rank, gap)
    # ... and through the token shift (analyze_shift: score() of the base engine)
    shift = gpu["other_shift"]
    assert [t[0] for t in shift] == gpu["other_ranks"]
    np.testing.assert_allclose([t[1] for t in shift], cpu["score"], atol=LOGPROB_TOL)
    # score() of the GPU's own answer on the GPU agrees with its stream's log-probabilities
    np.testing.assert_allclose(gpu["score"], gpu["logprobs"], atol=LOGPROB_TOL)
    # greedy: each token was the top one (on the CPU exactly; on the GPU, the batched score()
    # may turn a near-tie of its one-token-at-a-time stream around)
    assert cpu["ranks"] == [1] * len(cpu["ids"])
    gpu_gap = [top[0] - top[1] for top in gpu["top_logprobs"]]
    for i, (rank, gap) in enumerate(zip(gpu["ranks"], gpu_gap, strict=True)):
        assert rank == 1 or (rank == 2 and gap < LOGPROB_TOL), (i, rank, gap)


def test_lavapipe_is_a_gpu_device_with_its_memory() -> None:
    out = run_child("devices", lavapipe_env())
    assert out["offload"] is True
    [dev] = out["devices"]
    assert dev["backend"] == "Vulkan" and dev["name"] == "Vulkan0"
    assert dev["description"].startswith("llvmpipe")
    assert dev["label"] == f"{dev['description']} via Vulkan"
    assert 0 < dev["free"] <= dev["total"]
    assert out["free"] == dev["free"]
    assert out["fit_free"] == out["free"]  # the fit estimate reads the Vulkan device


def test_all_layers_on_the_vulkan_device_match_the_cpu(f16_model: Path) -> None:
    out = run_child("compare", lavapipe_env(), str(f16_model), "-1")
    info = out["gpu"]["info"]
    assert info["gpu_used"] is True and info["backend"] == "Vulkan"
    assert (info["gpu_layers"], info["n_layer"]) == (4, 4)
    assert info["where"].startswith("GPU: llvmpipe") and info["where"].endswith("via Vulkan, 4/4 layers")
    assert info["note"] == ""
    cpu = out["cpu"]["info"]
    assert cpu["gpu_used"] is False and cpu["where"].startswith("CPU (") and cpu["gpu_layers"] == 0
    _check_agreement(out, stream_tol=VEC_TOL)


def test_quantized_model_on_the_vulkan_device_matches_the_cpu(q8_model: Path) -> None:
    out = run_child("compare", lavapipe_env(), str(q8_model), "-1")
    assert out["gpu"]["info"]["gpu_layers"] == 4
    _check_agreement(out)


def test_auto_offloads_everything_when_it_fits(f16_model: Path) -> None:
    out = run_child("load", lavapipe_env(), str(f16_model), "-2")
    info = out["info"]
    assert info["n_gpu_layers"] == -1 and info["gpu_layers"] == 4 and info["note"] == ""
    assert info["need"] < info["free"]


def test_auto_offloads_part_on_a_small_device(f16_model: Path) -> None:
    from desktop.core.offload import HEADROOM, USABLE_SHARE, gpu_bytes, model_shape

    shape = model_shape(f16_model)
    two = gpu_bytes(shape, 2, 512, 512, output_on_gpu=False)
    three = gpu_bytes(shape, 3, 512, 512, output_on_gpu=False)
    limit = int((two + HEADROOM + (three - two) // 2) / USABLE_SHARE)
    out = run_child("compare", limits_env(memory_limit=limit), str(f16_model), "-2")
    info = out["gpu"]["info"]
    assert info["free"] <= limit
    assert (info["n_gpu_layers"], info["gpu_layers"]) == (2, 2), info
    assert info["where"].endswith("via Vulkan, 2/4 layers, the rest on " + out["cpu"]["info"]["where"])
    assert info["note"].startswith("Only 2 of 4 layers fit the ")
    _check_agreement(out)


def test_out_of_device_memory_falls_back_to_the_cpu(f16_model: Path) -> None:
    # all layers asked for, 48 MiB of device memory: llama.cpp cannot allocate the weights there
    out = run_child("load", limits_env(memory_limit=48 * MIB), str(f16_model), "-1")
    info = out["info"]
    assert info["gpu_used"] is False and info["gpu_layers"] == 0 and info["where"].startswith("CPU (")
    assert info["note"].endswith(
        "via Vulkan could not take this model (out of GPU memory or a driver error), so it runs on the CPU.")
    assert info["note"].startswith("llvmpipe")
    assert len(out["run"]["ids"]) > 0


def test_auto_on_a_device_too_small_for_one_layer_runs_on_the_cpu(f16_model: Path) -> None:
    out = run_child("load", limits_env(memory_limit=8 * MIB), str(f16_model), "-2")
    info = out["info"]
    assert info["gpu_used"] is False and info["where"].startswith("CPU (")
    assert "of GPU memory and llvmpipe" in info["note"] and info["note"].endswith(
        "free, so the model runs on the CPU.")


def test_a_driver_that_fails_falls_back_to_the_cpu(f16_model: Path) -> None:
    from tests.vulkan_env import child

    # vkCreateDevice fails: llama.cpp returns the error from the load and the engine loads the
    # model on the CPU, but ggml-vulkan keeps the half-made device and its destructor aborts the
    # process when it exits (vkDestroyFence on no device). So the fallback alone is not enough ...
    r = child("load", limits_env(fail="create_device"), str(f16_model), "-1")
    info = json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1])["info"]
    assert info["gpu_used"] is False and "could not take this model" in info["note"]
    assert r.returncode in (0, -6), r.returncode
    # ... and the GPU test run catches such a driver first, in its own process: nothing in
    # Based's process ever touches the failing device, and it exits normally
    out = run_child("load", limits_env(fail="create_device", gpu_check=True), str(f16_model), "-1")
    info = out["info"]
    assert info["gpu_used"] is False and info["where"].startswith("CPU (")
    assert "via Vulkan failed Based's test run (" in info["note"]
    assert len(out["run"]["ids"]) > 0


@pytest.mark.parametrize("machine", ["no Vulkan driver", "no Vulkan loader"])
def test_no_vulkan_device_runs_on_the_cpu(f16_model: Path, machine: str) -> None:
    if machine == "no Vulkan driver":
        env = lavapipe_env()
        env["VK_ICD_FILENAMES"] = env["VK_DRIVER_FILES"] = "/nonexistent/none.json"
        env.pop("GGML_VK_VISIBLE_DEVICES")
    else:
        env = no_loader_env()
    devs = run_child("devices", env)
    assert devs["devices"] == [] and devs["offload"] is False and devs["free"] is None
    out = run_child("load", env, str(f16_model), "-2")
    assert out["info"]["gpu_used"] is False and out["info"]["note"] == ""
    assert out["info"]["where"].startswith("CPU (")


def test_compare_json_says_where_each_model_ran(f16_model: Path, tmp_path: Path) -> None:
    env = lavapipe_env()
    env["BASED_HOME"] = str(tmp_path / "home")
    r = subprocess.run(
        [sys.executable, "-m", "desktop.cli", "compare", "--base", str(f16_model), "--instruct",
         str(f16_model), "--mode", "raw", "--user", "Hello", "--max-tokens", "4", "--json",
         "--n-ctx", "256"],
        env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for side in ("base", "instruct"):
        st = data[side]["stats"]
        assert st["backend"] == "Vulkan" and st["gpu_layers"] == 4 and st["n_layer"] == 4
        assert st["device"].startswith("GPU: llvmpipe") and st["device"].endswith("4/4 layers")
    r = subprocess.run(
        [sys.executable, "-m", "desktop.cli", "compare", "--base", str(f16_model), "--instruct",
         str(f16_model), "--mode", "raw", "--user", "Hello", "--max-tokens", "4", "--json",
         "--n-ctx", "256", "--n-gpu-layers", "cpu"],
        env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)["base"]["stats"]
    assert st["backend"].startswith("CPU (") and st["gpu_layers"] == 0 and st["device"] == st["backend"]


def test_gpu_check_runs_once_and_lets_a_good_device_in(f16_model: Path) -> None:
    from desktop.core import paths

    out = run_child("load", lavapipe_env(gpu_check=True), str(f16_model), "-1")
    assert out["info"]["gpu_used"] is True and out["info"]["note"] == ""
    verdicts = json.loads((paths.cache_dir() / "gpu-check.json").read_text())
    assert [v["ok"] for v in verdicts.values()] == [True]


def test_a_driver_that_fails_while_computing_is_caught_by_the_check(f16_model: Path) -> None:
    from tests.vulkan_env import child

    # without the check, a lost device during a batch ends the process: llama.cpp lets
    # ggml-vulkan's exception out of llama_decode (or, where the load itself submits work, the
    # load fails and the engine falls back)
    r = child("load", limits_env(fail="submit"), str(f16_model), "-1")
    crashed = r.returncode != 0
    if not crashed:
        assert "could not take this model" in json.loads(r.stdout.splitlines()[-1])["info"]["note"]
    # with it (the default), the GPU is never used for a model: one sentence, the CPU runs it
    out = run_child("load", limits_env(fail="submit", gpu_check=True), str(f16_model), "-1")
    info = out["info"]
    assert info["gpu_used"] is False and info["where"].startswith("CPU (")
    assert info["note"].startswith("llvmpipe") and "via Vulkan failed Based's test run (" in info["note"]
    assert info["note"].endswith("), so models run on the CPU.")
    assert len(out["run"]["ids"]) > 0
