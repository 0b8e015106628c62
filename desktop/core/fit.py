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
from desktop.core.words import count

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
    file_bytes: int  # every model file counted (both, for a pair)
    kv_bytes: int  # every KV cache counted
    where: str  # "RAM" or "GPU memory"
    sentence: str
    parts: tuple[tuple[str, int], ...] = ()  # (what, bytes) in the sentence's order; sum == need_bytes


_UNITS = ("B", "KB", "MB", "GB", "TB")


def amounts(values: list[int]) -> tuple[list[str], str]:
    """``values`` (bytes) and their total in one unit, the total's (as ``human_bytes`` picks it),
    each rounded to 0.1 unit; the total shown is the sum of the rounded parts, so the words add up
    ("105.5 MB + 134.2 MB = 239.7 MB") however the exact bytes round."""
    total = sum(values)
    k = 0
    while k < len(_UNITS) - 1 and abs(total) >= 1000 ** (k + 1):
        k += 1
    unit = _UNITS[k]
    if k == 0:
        return [f"{v} B" for v in values], f"{total} B"
    tenths = [int(v * 10 // 1000**k + (1 if (v * 10 % 1000**k) * 2 >= 1000**k else 0)) for v in values]

    def fmt(t: int) -> str:
        return f"{t // 10:,}.{t % 10} {unit}"

    return [fmt(t) for t in tenths], fmt(sum(tenths))


def assess_fit(
    file_bytes: int,
    *,
    n_ctx: int = 4096,
    params_b: float = 0.0,
    kv_per_token: int | None = None,
    free_bytes: int | None = None,
    gpu: bool = False,
    also_loaded: int = 0,
    other_file_bytes: int | None = None,
) -> FitReport:
    """Plain-words verdict for loading a model of ``file_bytes`` with an ``n_ctx`` context.

    ``file_bytes`` is the whole model: every part of a split model (a catalog or hub listing's
    size is already the total; for a file on disk use :func:`assess_model_fit`).
    ``other_file_bytes``: the pair's other model, loaded at the same time with the same context
    (it needs its file, its own KV cache and working memory too). ``also_loaded``: memory already
    taken by something else. Each model needs its file, a KV cache of ``kv_per_token`` (estimated
    from ``params_b`` when not given) times ``n_ctx``, and working memory (64 MB plus a tenth of
    the file, for llama.cpp's compute buffers). The sentence lists these parts, and the figures it
    shows add up to the total it shows (:func:`amounts`).
    """
    files = [file_bytes] + ([other_file_bytes] if other_file_bytes is not None else [])
    pair = len(files) == 2
    per_tok = kv_per_token if kv_per_token is not None else kv_bytes_per_token(params_b or file_bytes / 0.6e9)
    kv = per_tok * max(0, n_ctx) * len(files)
    overhead = sum(64 * MIB + f // 10 for f in files)  # compute buffers and runtime
    file_sum = sum(files)
    need = file_sum + kv + overhead + also_loaded
    where = "GPU memory" if gpu else "RAM"
    ctx = count(n_ctx, "token") + (" each" if pair else "")
    parts: list[tuple[str, int]] = [
        ("for the two files" if pair else "for the file", file_sum),
        (f"for the context at {ctx}", kv),
        ("working memory", overhead),
    ]
    if also_loaded:
        parts.append(("already in use by another model", also_loaded))
    shown, total = amounts([b for _, b in parts])
    listed = " + ".join(f"{a} {what}" for a, (what, _b) in zip(shown, parts))
    subject = "Both models together need" if pair else "Needs"
    head = f"{subject} about {total} of {where} ({listed})"
    if free_bytes is None:
        free_bytes = free_vram_bytes() if gpu else free_ram_bytes()
    if free_bytes is None:
        return FitReport(Verdict.TIGHT, need, None, file_sum, kv, where,
                         f"{head}; Based could not tell how much is free.", tuple(parts))
    if need <= free_bytes * 0.7:
        verdict, words = Verdict.FITS, "fits comfortably"
    elif need <= free_bytes * 0.95:
        verdict, words = Verdict.TIGHT, "is tight: close other apps first"
    else:
        verdict, words = Verdict.TOO_BIG, "is too big for this machine: pick a smaller model or quantization"
    sentence = f"{head}, and {human_bytes(free_bytes)} is free: it {words}."
    return FitReport(verdict, need, free_bytes, file_sum, kv, where, sentence, tuple(parts))


def assess_model_fit(
    path: str | os.PathLike[str],
    *,
    n_ctx: int = 4096,
    params_b: float = 0.0,
    kv_per_token: int | None = None,
    free_bytes: int | None = None,
    gpu: bool = False,
    also_loaded: int = 0,
    other_file_bytes: int | None = None,
) -> FitReport:
    """:func:`assess_fit` for a model on disk: its size is every file of the model, all parts of a
    split model (``path`` is its part 1; :func:`desktop.core.gguf_split.model_bytes`)."""
    from desktop.core.gguf_split import model_bytes

    return assess_fit(model_bytes(path), n_ctx=n_ctx, params_b=params_b, kv_per_token=kv_per_token,
                      free_bytes=free_bytes, gpu=gpu, also_loaded=also_loaded,
                      other_file_bytes=other_file_bytes)
