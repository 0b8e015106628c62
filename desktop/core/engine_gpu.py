"""How the engine loads a model: where its layers go (the offload plan), the GPU test run, and
the CPU when the GPU cannot take the model.

- Auto / CPU only / a layer count (``LoadOptions.n_gpu_layers``) becomes an
  :class:`~desktop.core.offload.OffloadPlan` over the GPUs llama.cpp would use
  (:func:`desktop.core.devices.gpu_devices`), after the GPUs passed Based's test run
  (:func:`desktop.core.gpu_check.check_devices`).
- CPU only means no GPU device at all (split mode NONE with main_gpu -1 empties llama.cpp's
  device list), so nothing runs on a GPU, not even the big matrix products of a long prompt
  (llama.cpp's op offload).
- A GPU load that fails (out of device memory, a driver error: llama.cpp catches its backends'
  exceptions while loading and returns an error) is loaded again on the CPU, with one sentence.
- GPU loads run one at a time, so each plan sees the memory the previous load took; for drivers
  that do not report use (free == total, no ``VK_EXT_memory_budget``), what Based's loaded
  models were planned to take is subtracted.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from desktop.core.devices import GpuDevice, gpu_devices
from desktop.core.engine_parts import LoadCancelled, _load_progress
from desktop.core.gpu_check import check_devices
from desktop.core.llama_vocab import gpu_backend_available
from desktop.core.offload import AUTO_LAYERS, OffloadPlan, model_shape, plan_offload
from desktop.core.types import LoadOptions

_SPLIT_NONE, _SPLIT_LAYER = 0, 1  # enum llama_split_mode

_GPU_LOCK = threading.RLock()  # close() may run from __del__ during a load on the same thread
_RESERVED: dict[int, int] = {}  # ggml device index -> bytes Based's loaded models were planned to take

Reservation = tuple[tuple[int, ...], int]
NO_GPU = "There is no GPU that llama.cpp can use here, so the model runs on the CPU."


@contextlib.contextmanager
def _gpu_load_lock(requested: int) -> Iterator[None]:
    if requested == 0:
        yield
        return
    with _GPU_LOCK:
        yield


def _reserved(devices: Sequence[GpuDevice]) -> int:
    return sum(_RESERVED.get(d.index, 0) for d in devices if d.free_bytes >= d.total_bytes)


def _reserve(plan: OffloadPlan) -> Reservation:
    idx = tuple(d.index for d in plan.devices)
    share = plan.need_bytes // max(1, len(idx))
    for i in idx:
        _RESERVED[i] = _RESERVED.get(i, 0) + share
    return idx, share


def release(reservation: Reservation | None) -> None:
    """Give back what :func:`load_model` reserved (the engine's ``close``)."""
    if reservation is None:
        return
    with _GPU_LOCK:
        idx, share = reservation
        for i in idx:
            _RESERVED[i] = max(0, _RESERVED.get(i, 0) - share)


def gpu_failure_note(plan: OffloadPlan) -> str:
    """The one sentence the pane shows when the GPU could not take the model."""
    return (f"{plan.device_label} could not take this model (out of GPU memory or a driver "
            "error), so it runs on the CPU.")


def plan_for(path: str, requested: int, n_ctx: int, n_batch: int) -> tuple[OffloadPlan, str]:
    """Where the layers go (:func:`desktop.core.offload.plan_offload`), and a sentence when a GPU
    was asked for and cannot be used."""
    cpu = OffloadPlan(0, 0, 0, (), 0, None)
    if requested == 0:
        return cpu, ""
    devices = gpu_devices() if gpu_backend_available() else []
    if not devices:
        return cpu, ("" if requested == AUTO_LAYERS else NO_GPU)
    problem = check_devices(devices)  # once per device and driver: a test run in a child
    if problem:
        return cpu, problem
    plan = plan_offload(model_shape(path), n_ctx=n_ctx, n_ubatch=min(n_batch, 512),
                        requested=requested, devices=devices, reserved=_reserved(devices))
    return plan, plan.note


def load_model(
    lib: Any,
    path: str,
    opts: LoadOptions,
    *,
    n_ctx: int,
    n_batch: int,
    n_threads: int,
    progress: Callable[[float], bool | None] | None,
) -> tuple[Any, OffloadPlan, list[str], Reservation | None]:
    """``llama_cpp.Llama`` for ``path`` where the plan puts it: (llm, the plan it was loaded
    with, sentences for the pane, the device memory reserved). Raises LoadCancelled, or what
    llama-cpp-python raises when the CPU load fails too."""
    notes: list[str] = []
    with _gpu_load_lock(opts.n_gpu_layers):
        plan, note = plan_for(path, opts.n_gpu_layers, n_ctx, n_batch)
        if note:
            notes.append(note)

        def load(on: OffloadPlan) -> Any:
            gpu = on.on_gpu
            with _load_progress(progress):
                return lib.Llama(
                    model_path=path,
                    n_ctx=n_ctx,
                    n_batch=n_batch,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    n_gpu_layers=on.n_gpu_layers if gpu else 0,
                    split_mode=_SPLIT_LAYER if gpu else _SPLIT_NONE,
                    main_gpu=0 if gpu else -1,
                    logits_all=False,
                    seed=opts.seed,
                    verbose=False,
                )

        try:
            llm = load(plan)
        except LoadCancelled:
            raise
        except Exception:
            if not plan.on_gpu:
                raise
            notes.append(gpu_failure_note(plan))
            plan = replace(plan, n_gpu_layers=0, gpu_layers=0, devices=(), need_bytes=0)
            llm = load(plan)
        reservation = _reserve(plan) if plan.on_gpu and plan.free_bytes is not None else None
    return llm, plan, notes, reservation

