"""Does a model fit this machine? File size plus KV cache at the chosen context, against free memory."""

from __future__ import annotations

import ctypes
import enum
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from desktop.core.gguf_info import human_bytes

KIB = 1024
MIB = 1024 * KIB


class Verdict(str, enum.Enum):
    FITS = "fits"
    TIGHT = "tight"
    TOO_BIG = "too big"


def kv_bytes_per_token(params_b: float) -> int:
    """F16 K and V for every layer, estimated from the parameter count when the file is not here.

    Small models (SmolLM2, Qwen2.5 0.5-1.5B, Llama 3.2 1B, Gemma 3 1B, TinyLlama) use 12-32 KiB per
    token; 7-8B models with grouped-query attention about 128 KiB; larger ones more.
    """
    if params_b <= 2.0:
        return 32 * KIB
    if params_b <= 10.0:
        return 128 * KIB
    return 320 * KIB


def kv_bytes_from_shape(n_layer: int, n_head_kv: int, head_dim: int) -> int:
    return 2 * n_layer * n_head_kv * head_dim * 2  # K and V, f16


def free_ram_bytes() -> int | None:
    """Memory available to a new process without swapping, or None when it cannot be read."""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/meminfo", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * KIB
        elif sys.platform == "win32":

            class MemStatus(ctypes.Structure):
                _fields_ = [
                    ("dwLength", ctypes.c_ulong),
                    ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong),
                    ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong),
                    ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong),
                    ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("sullAvailExtendedVirtual", ctypes.c_ulonglong),
                ]

            st = MemStatus()
            st.dwLength = ctypes.sizeof(MemStatus)
            if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(st)):  # type: ignore[attr-defined]
                return int(st.ullAvailPhys)
        else:  # macOS and other Unixes: total memory; the OS frees caches on demand
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            return int(total * 0.7)
    except (OSError, ValueError, AttributeError):
        return None
    return None


def free_vram_bytes() -> int | None:
    """Free memory of the GPUs llama.cpp would offload to (bytes), or None when there is none.

    Read from the device through ggml (``ggml_backend_dev_memory``: the Vulkan device's heaps and,
    with ``VK_EXT_memory_budget``, its budget; :func:`desktop.core.devices.gpu_free_bytes`), so any
    GPU the bundled backend can use counts: Intel, AMD and NVIDIA, integrated or not. nvidia-smi
    is asked only when llama.cpp has no GPU device with a known memory size."""
    from desktop.core.devices import gpu_free_bytes

    free = gpu_free_bytes()
    if free is not None:
        return free
    return _nvidia_smi_free()


def _nvidia_smi_free() -> int | None:
    """Free memory of the first NVIDIA GPU via nvidia-smi, when there is one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=3, check=True,
        ).stdout
        return int(out.strip().splitlines()[0]) * MIB
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


@dataclass(frozen=True)
class FitReport:
    verdict: Verdict
    need_bytes: int
    free_bytes: int | None
    file_bytes: int
    kv_bytes: int
    where: str  # "RAM" or "GPU memory"
    sentence: str


def assess_fit(
    file_bytes: int,
    *,
    n_ctx: int = 4096,
    params_b: float = 0.0,
    kv_per_token: int | None = None,
    free_bytes: int | None = None,
    gpu: bool = False,
    also_loaded: int = 0,
) -> FitReport:
    """Plain-words verdict for loading a model of ``file_bytes`` with an ``n_ctx`` context.

    ``file_bytes`` is the whole model: every part of a split model (a catalog or hub listing's
    size is already the total; for a file on disk use :func:`assess_model_fit`). ``also_loaded``
    is memory the other model of the pair needs at the same time.
    """
    per_tok = kv_per_token if kv_per_token is not None else kv_bytes_per_token(params_b or file_bytes / 0.6e9)
    kv = per_tok * max(0, n_ctx)
    overhead = 64 * MIB + file_bytes // 10  # compute buffers and runtime
    need = file_bytes + kv + overhead + also_loaded
    where = "GPU memory" if gpu else "RAM"
    if free_bytes is None:
        free_bytes = free_vram_bytes() if gpu else free_ram_bytes()
    if free_bytes is None:
        return FitReport(Verdict.TIGHT, need, None, file_bytes, kv, where,
                         f"Needs about {human_bytes(need)} of {where}; Based could not tell how much is free.")
    if need <= free_bytes * 0.7:
        verdict, words = Verdict.FITS, "fits comfortably"
    elif need <= free_bytes * 0.95:
        verdict, words = Verdict.TIGHT, "is tight: close other apps first"
    else:
        verdict, words = Verdict.TOO_BIG, "is too big for this machine: pick a smaller model or quantization"
    sentence = (
        f"Needs about {human_bytes(need)} ({human_bytes(file_bytes)} file + {human_bytes(kv)} context "
        f"at {n_ctx} tokens) with {human_bytes(free_bytes)} of {where} free: it {words}."
    )
    return FitReport(verdict, need, free_bytes, file_bytes, kv, where, sentence)


def assess_model_fit(
    path: str | os.PathLike[str],
    *,
    n_ctx: int = 4096,
    params_b: float = 0.0,
    kv_per_token: int | None = None,
    free_bytes: int | None = None,
    gpu: bool = False,
    also_loaded: int = 0,
) -> FitReport:
    """:func:`assess_fit` for a model on disk: its size is every file of the model, all parts of a
    split model (``path`` is its part 1; :func:`desktop.core.gguf_split.model_bytes`)."""
    from desktop.core.gguf_split import model_bytes

    return assess_fit(model_bytes(path), n_ctx=n_ctx, params_b=params_b, kv_per_token=kv_per_token,
                      free_bytes=free_bytes, gpu=gpu, also_loaded=also_loaded)
