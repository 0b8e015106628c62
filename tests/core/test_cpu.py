"""The processor floor (x86-64-v2, read with CPUID) and the name of llama.cpp's CPU variant."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.core import cpu
from desktop.core.llama_vocab import cpu_variant_label

ROOT = Path(__file__).resolve().parents[2]
X86_64 = platform.machine().lower() in ("x86_64", "amd64")
QEMU = shutil.which("qemu-x86_64")


@pytest.mark.skipif(not X86_64, reason="CPUID is an x86 instruction")
def test_cpuid_runs_and_this_machine_is_above_the_floor() -> None:
    top = cpu.cpuid(0)
    assert top is not None and top[0] >= 1
    vendor = b"".join(r.to_bytes(4, "little") for r in (top[1], top[3], top[2]))
    assert vendor in (b"GenuineIntel", b"AuthenticAMD", b"HygonGenuine", b"CentaurHauls",
                      b"  Shanghai  ", b"TCGTCGTCGTCG")
    feats = cpu.x86_features()
    assert feats is not None and set(cpu.X86_64_V2) <= feats  # NumPy would not run otherwise
    assert cpu.cpu_floor_message() is None


def test_the_refusal_names_what_is_missing_in_one_sentence() -> None:
    msg = cpu.cpu_floor_message(frozenset({"SSE3", "SSSE3", "CX16", "LAHF"}))
    assert msg is not None
    assert "SSE4.1, SSE4.2 and POPCNT" in msg and "x86-64-v2" in msg
    assert msg.count(".") - msg.count("SSE4.") == 1 and msg.endswith(".") and "\n" not in msg
    assert cpu.missing_features(frozenset(cpu.X86_64_V2)) == []
    assert cpu.cpu_floor_message(frozenset(cpu.X86_64_V2)) is None


@pytest.mark.parametrize(
    ("info", "label"),
    [
        # llama.cpp's portable variants (ggml_backend_get_features), as llama_print_system_info prints
        ("CPU : SSE3 = 1 | SSSE3 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ", "SSE4.2"),
        ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | LLAMAFILE = 1 | OPENMP = 1 | ", "AVX"),
        ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | ", "AVX2"),
        ("CPU : SSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | FMA = 1 | ", "AVX2"),
        ("CPU : AVX2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_BF16 = 1 | ", "AVX-512"),
        ("CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 | ", "AVX-512, AMX"),
        ("CPU : OPENMP = 1 | REPACK = 1 | ", "SSE2"),
        ("CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | ", "AVX2"),
        ("Metal : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ARM_FMA = 1 | DOTPROD = 1 | ", "NEON"),
        ("", "CPU"),
    ],
)
def test_variant_label_from_llama_cpp_features(info: str, label: str) -> None:
    assert cpu_variant_label(info) == label


def test_the_engine_names_the_cpu_variant_it_runs(tiny_phi3: Path) -> None:
    from desktop.core.engine import Engine, cpu_backend_name
    from desktop.core.types import LoadOptions

    name = cpu_backend_name()
    assert name.startswith("CPU (") and name.endswith(")")
    with Engine(tiny_phi3, LoadOptions(n_ctx=64, n_threads=1)) as eng:
        assert eng.info.backend == name


# -- under emulation: the whole Python process runs on an emulated older CPU ----------------------


def _run_emulated(cpu_model: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert QEMU
    return subprocess.run([QEMU, "-cpu", cpu_model, sys.executable, "-m", "desktop", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def _stderr_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    # qemu warns about host features its emulator leaves out; the rest is the program's
    return [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("qemu-x86_64: warning")]


@pytest.mark.slow
@pytest.mark.skipif(not (X86_64 and QEMU), reason="needs qemu-user (apt install qemu-user)")
def test_below_the_floor_one_sentence_instead_of_an_illegal_instruction() -> None:
    # A Core 2 has no SSE4.2: NumPy would stop the process with SIGILL at import.
    r = _run_emulated("core2duo", "--version")
    lines = _stderr_lines(r)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("based: This computer's processor lacks SSE4.1"), lines
    assert "x86-64-v2" in lines[0]
    assert r.stdout == ""


@pytest.mark.slow
@pytest.mark.skipif(not (X86_64 and QEMU), reason="needs qemu-user (apt install qemu-user)")
def test_at_the_floor_the_cpu_check_lets_based_start() -> None:
    r = _run_emulated("Nehalem", "--version")  # SSE4.2 and POPCNT, no AVX: x86-64-v2 exactly
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("based ")
