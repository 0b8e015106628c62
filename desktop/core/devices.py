"""The GPUs llama.cpp can use here, read from ggml's device API (no Qt, no model needed).

A portable build ships llama.cpp's Vulkan backend as one more dynamically loaded module
(``libggml-vulkan``, next to the CPU variants in ``llama_cpp/lib``). When the machine has a Vulkan
loader and driver it registers one device per GPU; without them the module does not load, or
registers no device, and llama.cpp runs on the CPU. Everything here asks ggml, the library that
will do the work, so what Based shows is what llama.cpp will use:

- :func:`gpu_devices` lists the devices llama.cpp offloads to by default
  (``llama_prepare_model_devices`` in llama.cpp's ``src/llama.cpp``: discrete GPUs, or the
  integrated GPUs of one backend when there is no discrete GPU; a GPU seen by two backends once);
- :attr:`GpuDevice.free_bytes` / ``total_bytes`` come from ``ggml_backend_dev_memory``: for
  Vulkan, the device-local heaps (all heaps on an integrated GPU) and, where the driver has
  ``VK_EXT_memory_budget``, the budget left (``ggml_backend_vk_get_device_memory``).

Mesa's software Vulkan device (lavapipe, "llvmpipe") is a CPU device: llama.cpp's Vulkan backend
skips it unless ``GGML_VK_VISIBLE_DEVICES`` names it (the tests do; read when the backend loads).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

# enum ggml_backend_dev_type (ggml/include/ggml-backend.h)
DEV_CPU, DEV_GPU, DEV_IGPU, DEV_ACCEL, DEV_META = range(5)


class _Caps(ctypes.Structure):
    _fields_ = [("async_", ctypes.c_bool), ("host_buffer", ctypes.c_bool),
                ("buffer_from_host_ptr", ctypes.c_bool), ("events", ctypes.c_bool),
                ("mmap_support", ctypes.c_bool)]


class _Props(ctypes.Structure):  # struct ggml_backend_dev_props
    _fields_ = [("name", ctypes.c_char_p), ("description", ctypes.c_char_p),
                ("memory_free", ctypes.c_size_t), ("memory_total", ctypes.c_size_t),
                ("type", ctypes.c_int), ("device_id", ctypes.c_char_p), ("caps", _Caps)]


@dataclass(frozen=True)
class GpuDevice:
    """One device llama.cpp can offload layers to."""

    index: int  # ggml's device index (ggml_backend_dev_get)
    name: str  # ggml's device name: "Vulkan0"
    description: str  # the driver's name for it: "AMD Radeon 780M (RADV GFX1103_R1)", "llvmpipe (LLVM 15.0.6, 256 bits)"
    backend: str  # ggml's backend name: "Vulkan", "CUDA", "Metal"
    integrated: bool  # an integrated GPU: shares the computer's RAM
    free_bytes: int  # device memory free now, as the driver reports it (bytes)
    total_bytes: int  # device memory in all (bytes)

    @property
    def label(self) -> str:
        """"AMD Radeon 780M via Vulkan": how the pane names where a model runs."""
        return f"{self.description or self.name} via {self.backend}"


class _Ggml:
    """ggml's device functions, from the libggml that libllama itself uses."""

    def __init__(self) -> None:
        from desktop.core.llama_vocab import _ggml_function, _llama

        lib = _llama()  # loads the dynamically loaded backends first

        def fn(name: str, res: Any, *args: Any) -> Any:
            f = _ggml_function(lib, name)
            f.restype = res
            f.argtypes = list(args)
            return f

        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        self.dev_count = fn("ggml_backend_dev_count", sz)
        self.dev_get = fn("ggml_backend_dev_get", vp, sz)
        self.dev_name = fn("ggml_backend_dev_name", ctypes.c_char_p, vp)
        self.dev_description = fn("ggml_backend_dev_description", ctypes.c_char_p, vp)
        self.dev_type = fn("ggml_backend_dev_type", ctypes.c_int, vp)
        self.dev_memory = fn("ggml_backend_dev_memory", None, vp, ctypes.POINTER(sz), ctypes.POINTER(sz))
        self.dev_props = fn("ggml_backend_dev_get_props", None, vp, ctypes.POINTER(_Props))
        self.dev_reg = fn("ggml_backend_dev_backend_reg", vp, vp)
        self.reg_name = fn("ggml_backend_reg_name", ctypes.c_char_p, vp)


_GGML: _Ggml | None = None
_GGML_LOCK = threading.Lock()


def _ggml() -> _Ggml | None:
    global _GGML
    with _GGML_LOCK:
        if _GGML is None:
            try:
                _GGML = _Ggml()
            except (AttributeError, OSError, ImportError):
                return None
        return _GGML


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace").strip()


def _memory(g: _Ggml, dev: int) -> tuple[int, int]:
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    g.dev_memory(ctypes.c_void_p(dev), ctypes.byref(free), ctypes.byref(total))
    return int(free.value), int(total.value)


def gpu_devices() -> list[GpuDevice]:
    """The GPUs llama.cpp offloads to when a model is loaded with GPU layers, in its order.

    Mirrors llama.cpp's default device choice (``llama_prepare_model_devices``): every discrete
    GPU (a physical GPU seen by two backends counted once, by its PCI id; RPC servers left out),
    or, when there is none, the integrated GPUs of the first backend that has one. Memory is read
    now (``ggml_backend_dev_memory``). An empty list: no GPU backend, no driver, or no device."""
    g = _ggml()
    if g is None:
        return []
    gpus: list[tuple[GpuDevice, str]] = []
    igpus: list[tuple[GpuDevice, int]] = []
    for i in range(int(g.dev_count())):
        dev = g.dev_get(i)
        if not dev:
            continue
        kind = int(g.dev_type(dev))
        if kind not in (DEV_GPU, DEV_IGPU):
            continue
        reg = g.dev_reg(dev)
        backend = _text(g.reg_name(reg)) if reg else ""
        if backend == "RPC":
            continue
        props = _Props()
        g.dev_props(dev, ctypes.byref(props))
        free, total = _memory(g, dev)
        device = GpuDevice(i, _text(g.dev_name(dev)), _text(g.dev_description(dev)), backend,
                           kind == DEV_IGPU, free, total)
        if kind == DEV_GPU:
            pci = _text(props.device_id)
            if pci and any(pci == other for _, other in gpus):
                continue
            gpus.append((device, pci))
        elif not igpus or igpus[-1][1] == (reg or 0):
            igpus.append((device, reg or 0))
    if gpus:
        return [d for d, _ in gpus]
    return [d for d, _ in igpus]


def gpu_free_bytes() -> int | None:
    """Free memory over the GPUs llama.cpp would use (bytes), or None when there is no GPU.

    A device that cannot say (ggml reports 0 total) counts as unknown."""
    devices = gpu_devices()
    if not devices or any(d.total_bytes == 0 for d in devices):
        return None
    return sum(d.free_bytes for d in devices)


def devices_label(devices: list[GpuDevice]) -> str:
    """"AMD Radeon 780M via Vulkan", or "A + B via Vulkan" for a model split over two GPUs."""
    if not devices:
        return ""
    backends = sorted({d.backend for d in devices})
    if len(backends) == 1:
        return " + ".join(d.description or d.name for d in devices) + f" via {backends[0]}"
    return " + ".join(d.label for d in devices)
