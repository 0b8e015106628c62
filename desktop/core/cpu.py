"""The processor Based runs on: its x86-64 features, read with the CPUID instruction itself.

Based needs an x86-64 processor of the x86-64-v2 level (SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT,
CMPXCHG16B, LAHF/SAHF: every Intel Core i3/i5/i7 since Nehalem, 2008, and every AMD processor
since Bulldozer, 2011). NumPy (2.4 and later) is compiled for that level and stops with an
illegal instruction on older processors, before any message could be shown; llama.cpp's own
CPU code goes lower. :func:`cpu_floor_message` checks the level before NumPy, Qt or llama.cpp
are imported, so such a machine gets one sentence instead of a crash.

Standard library only (this module runs before anything else is imported). The features come
from the CPUID instruction, executed from a few bytes of machine code through ctypes, not from
/proc/cpuinfo: that file is the host's under CPU emulation (qemu-user), and Windows has none.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import sys

# CPUID leaf 1, ECX bits; leaf 0x80000001, ECX bit 0 (LAHF/SAHF in 64-bit mode)
_LEAF1_ECX = {"SSE3": 0, "SSSE3": 9, "CX16": 13, "SSE4.1": 19, "SSE4.2": 20, "POPCNT": 23}
X86_64_V2 = ("SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT", "CX16", "LAHF")
FLOOR = "x86-64-v2 (SSE4.2 and POPCNT)"

# cpuid(uint32 leaf, uint32 subleaf, uint32 out[4]): push rbx; eax=leaf; ecx=subleaf; cpuid;
# out[0..3] = eax, ebx, ecx, edx; pop rbx; ret.
_STORE = bytes.fromhex("0fa2" "418900" "41895804" "41894808" "4189500c" "5b" "c3")
_CODE_SYSV = bytes.fromhex("53" "89f8" "89f1" "4989d0") + _STORE  # edi, esi, rdx
_CODE_WIN64 = bytes.fromhex("53" "89c8" "89d1") + _STORE  # ecx, edx, r8

_CPUID: object = None  # the callable, or False when CPUID cannot be run here


def _is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "x64")


def _make_cpuid() -> object:
    """A ctypes function running CPUID, or False (not x86-64, or no executable memory)."""
    if not _is_x86_64() or sys.platform == "darwin":
        return False
    proto = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))
    try:
        if os.name == "nt":
            kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
            kernel32.VirtualAlloc.restype = ctypes.c_void_p
            kernel32.VirtualAlloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32,
                                              ctypes.c_uint32]
            addr = kernel32.VirtualAlloc(None, len(_CODE_WIN64), 0x3000, 0x40)  # commit|reserve, RWX
            if not addr:
                return False
            ctypes.memmove(addr, _CODE_WIN64, len(_CODE_WIN64))
            return proto(addr)
        prot = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
        buf = mmap.mmap(-1, mmap.PAGESIZE, prot=prot)
        buf.write(_CODE_SYSV)
        cell = ctypes.c_char.from_buffer(buf)
        fn = proto(ctypes.addressof(cell))
        fn._based_keep = (buf, cell)  # type: ignore[attr-defined]  # the code lives as long as fn
        return fn
    except (OSError, ValueError, AttributeError):  # no RWX memory (SELinux execmem, PaX, ...)
        return False


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int] | None:
    """(EAX, EBX, ECX, EDX) of CPUID ``leaf``/``subleaf``; None where CPUID cannot run here.

    Runs the instruction itself (Intel SDM vol. 2A, "CPUID"), so an emulated processor answers
    for itself."""
    global _CPUID
    if _CPUID is None:
        _CPUID = _make_cpuid()
    if not _CPUID:
        return None
    out = (ctypes.c_uint32 * 4)()
    _CPUID(leaf, subleaf, out)  # type: ignore[operator]
    return (out[0], out[1], out[2], out[3])


def x86_features() -> frozenset[str] | None:
    """The x86-64-v2 features this processor has (names as in :data:`X86_64_V2`), or None
    when they cannot be read (not x86-64, or CPUID cannot be run)."""
    top = cpuid(0)
    if top is None:
        return None
    found: set[str] = set()
    if top[0] >= 1:
        ecx = cpuid(1)[2]  # type: ignore[index]
        found |= {name for name, bit in _LEAF1_ECX.items() if ecx >> bit & 1}
    ext = cpuid(0x80000000)
    if ext is not None and ext[0] >= 0x80000001 and cpuid(0x80000001)[2] & 1:  # type: ignore[index]
        found.add("LAHF")
    return frozenset(found)


def missing_features(features: frozenset[str] | None = None) -> list[str]:
    """The x86-64-v2 features this processor lacks, in :data:`X86_64_V2` order; [] when it has
    them all or when they cannot be read (then nothing is refused)."""
    have = x86_features() if features is None else features
    if have is None:
        return []
    return [f for f in X86_64_V2 if f not in have]


def cpu_floor_message(features: frozenset[str] | None = None) -> str | None:
    """One sentence when this processor is below Based's floor (x86-64-v2), else None."""
    missing = missing_features(features)
    if not missing:
        return None
    names = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
    return (
        f"This computer's processor lacks {names}, which Based needs (an x86-64-v2 processor: "
        "Intel Core i3/i5/i7 or AMD FX and anything newer), so Based cannot run here."
    )
