"""The GPU test run's verdicts and their cache, with real child processes standing in for
`based --gpu-check` (tests/core/test_vulkan.py runs the real one on lavapipe)."""

from __future__ import annotations

import json
import sys
import time

import pytest

from desktop.core import gpu_check
from desktop.core.devices import GpuDevice

DEV = [GpuDevice(0, "Vulkan0", "Intel(R) Iris(R) Xe Graphics", "Vulkan", True, 2 << 30, 4 << 30)]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASED_GPU_CHECK", raising=False)
    monkeypatch.setattr(gpu_check, "_MEMORY", {})


def _child(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    monkeypatch.setattr(gpu_check, "_command", lambda: [sys.executable, "-c", code])


def test_a_good_device_is_checked_once_and_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    _child(monkeypatch, 'print("noise"); print(\'{"gpu": true, "ok": true}\')')
    assert gpu_check.check_devices(DEV) == ""
    stored = json.loads(gpu_check._cache_file().read_text())
    assert [v["ok"] for v in stored.values()] == [True]
    _child(monkeypatch, "import os; os.abort()")  # never run again: the verdict is kept
    monkeypatch.setattr(gpu_check, "_MEMORY", {})
    assert gpu_check.check_devices(DEV) == ""


def test_a_crashing_driver_keeps_models_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _child(monkeypatch, "import os; os.abort()")
    sentence = gpu_check.check_devices(DEV)
    assert sentence == ("Intel(R) Iris(R) Xe Graphics via Vulkan failed Based's test run (the driver "
                        "stopped the test process), so models run on the CPU.")
    # remembered, and tried again once a week has passed (a driver update may have fixed it)
    _child(monkeypatch, 'print(\'{"gpu": true, "ok": true}\')')
    monkeypatch.setattr(gpu_check, "_MEMORY", {})
    assert gpu_check.check_devices(DEV) == sentence
    monkeypatch.setattr(gpu_check, "_MEMORY", {})
    later = time.time() + gpu_check.RETRY_FAILED_S + 1
    monkeypatch.setattr(gpu_check.time, "time", lambda: later)
    assert gpu_check.check_devices(DEV) == ""


def test_wrong_answers_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _child(monkeypatch, 'print(\'{"gpu": true, "ok": false, "why": "its results differ from the processor\\\'s"}\')')
    assert gpu_check.check_devices(DEV).endswith(
        "failed Based's test run (its results differ from the processor's), so models run on the CPU.")


def test_skipped_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASED_GPU_CHECK", "0")
    _child(monkeypatch, "import os; os.abort()")
    assert gpu_check.check_devices(DEV) == ""
    assert gpu_check.check_devices([]) == ""


def test_another_device_or_build_is_checked_again() -> None:
    other = [GpuDevice(0, "Vulkan0", "AMD Radeon 780M", "Vulkan", True, 2 << 30, 4 << 30)]
    assert gpu_check.device_key(DEV) != gpu_check.device_key(other)
    assert gpu_check.device_key(DEV) == gpu_check.device_key(list(DEV))


def test_answers_compared_within_tolerance() -> None:
    cpu = ([5, 6, 7], [-0.5, -1.0, -0.2], [[-0.5, -2.0], [-1.0, -1.2], [-0.2, -3.0]])
    assert gpu_check.compare_answers(cpu, cpu) == (True, "")
    near = ([5, 6, 7], [-0.6, -0.9, -0.3], [])
    assert gpu_check.compare_answers(near, cpu) == (True, "")
    # parting where the CPU's two best were a near-tie (-1.0 against -1.2): fine
    assert gpu_check.compare_answers(([5, 9, 1], [-0.5, -1.1, -4.0], []), cpu) == (True, "")
    # parting at a clear choice, or numbers far off, or NaN: not fine
    assert gpu_check.compare_answers(([9, 6, 7], [-0.5, -1.0, -0.2], []), cpu)[0] is False
    assert gpu_check.compare_answers(([5, 6, 7], [-0.9, -1.0, -0.2], []), cpu)[0] is False
    assert gpu_check.compare_answers(([5, 6, 7], [float("nan"), -1.0, -0.2], []), cpu) == (
        False, "it computed no numbers")
