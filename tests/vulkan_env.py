"""A Vulkan device for tests: Mesa's lavapipe, a software GPU that runs on the CPU.

llama.cpp's Vulkan backend skips CPU-type devices unless ``GGML_VK_VISIBLE_DEVICES`` names them,
and reads that when the backend loads, so the test process itself never sees lavapipe (its models
run on the CPU as everywhere else) and every Vulkan test runs in a child process
(``tests/vulkan_child.py``) with an environment from :func:`lavapipe_env`. :func:`limits_env` adds
``tests/vk_limits_layer.c``, a Vulkan layer that makes the device small or broken, and
:func:`no_loader_env` a machine without a Vulkan loader.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
LAYER_SOURCE = HERE / "vk_limits_layer.c"
LAYER_NAME = "VK_LAYER_BASED_test_limits"
ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")


def llama_lib_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "lib"


def lavapipe_icd() -> Path | None:
    for d in ICD_DIRS:
        for p in sorted(Path(d).glob("lvp_icd*.json")) if Path(d).is_dir() else ():
            return p
    return None


def why_no_lavapipe() -> str | None:
    """None when the Vulkan tests can run here, else why not (a skip reason)."""
    lib = llama_lib_dir()
    if not any(lib.glob("*ggml-vulkan*")):
        return "this llama-cpp-python has no Vulkan backend (build it with packaging/build_llama.sh)"
    if lavapipe_icd() is None:
        return "Mesa's lavapipe is not installed (apt install mesa-vulkan-drivers)"
    import ctypes.util

    if ctypes.util.find_library("vulkan") is None:
        return "there is no Vulkan loader (apt install libvulkan1)"
    return None


def lavapipe_env(base: dict[str, str] | None = None, *, gpu_check: bool = False) -> dict[str, str]:
    """The environment of a child that sees lavapipe, and only lavapipe, as Vulkan device 0.
    Without ``gpu_check`` the engine skips its GPU test run (desktop.core.gpu_check), which the
    tests of the check itself turn on."""
    env = dict(os.environ if base is None else base)
    if gpu_check:
        env.pop("BASED_GPU_CHECK", None)
    else:
        env["BASED_GPU_CHECK"] = "0"
    icd = str(lavapipe_icd())
    env["VK_ICD_FILENAMES"] = icd  # the Vulkan loader's name up to 1.3.207
    env["VK_DRIVER_FILES"] = icd  # and since
    env["GGML_VK_VISIBLE_DEVICES"] = "0"
    env.pop("VK_INSTANCE_LAYERS", None)
    return env


def _built_layer() -> Path:
    """The layer's .so and manifest, built once per source version (C compiler + Vulkan headers)."""
    digest = hashlib.sha256(LAYER_SOURCE.read_bytes()).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"based-vk-limits-{digest}-{os.getuid()}"
    lib = out / "libbased_vk_limits.so"
    if not lib.is_file():
        out.mkdir(parents=True, exist_ok=True)
        cc = shutil.which(os.environ.get("CC", "cc")) or "cc"
        tmp = out / f".lib-{os.getpid()}.so"
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-fvisibility=hidden", "-o", str(tmp),
                        str(LAYER_SOURCE), "-lpthread"], check=True, capture_output=True)
        os.replace(tmp, lib)
    manifest = out / "based_vk_limits.json"
    manifest.write_text(json.dumps({
        "file_format_version": "1.0.0",
        "layer": {"name": LAYER_NAME, "type": "GLOBAL", "library_path": str(lib),
                  "api_version": "1.3.0", "implementation_version": "1",
                  "description": "Based tests: a small or failing GPU"},
    }))
    return out


def limits_env(*, memory_limit: int | None = None, fail: str | None = None,
               gpu_check: bool = False) -> dict[str, str]:
    """:func:`lavapipe_env` with the test layer: at most ``memory_limit`` bytes of device memory,
    and/or a driver failure (``fail="create_device"`` or ``"submit"``)."""
    env = lavapipe_env(gpu_check=gpu_check)
    env["VK_LAYER_PATH"] = str(_built_layer())
    env["VK_INSTANCE_LAYERS"] = LAYER_NAME
    if memory_limit is not None:
        env["BASED_VK_MEMORY_LIMIT"] = str(memory_limit)
    if fail is not None:
        env["BASED_VK_FAIL"] = fail
    return env


def no_loader_env() -> dict[str, str]:
    """A machine without a Vulkan loader: an empty ``libvulkan.so.1`` comes first on the library
    path, so llama.cpp's Vulkan module cannot load (its Vulkan symbols are missing)."""
    out = Path(tempfile.gettempdir()) / f"based-no-vulkan-{os.getuid()}"
    lib = out / "libvulkan.so.1"
    if not lib.is_file():
        out.mkdir(parents=True, exist_ok=True)
        src = out / "empty.c"
        src.write_text("int based_no_vulkan_here;\n")
        cc = shutil.which(os.environ.get("CC", "cc")) or "cc"
        subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libvulkan.so.1", "-o", str(lib), str(src)],
                       check=True, capture_output=True)
    env = lavapipe_env()
    env["LD_LIBRARY_PATH"] = f"{out}{os.pathsep}{env.get('LD_LIBRARY_PATH', '')}".rstrip(os.pathsep)
    return env


def run_child(task: str, env: dict[str, str], *args: str, timeout: float = 600) -> dict[str, object]:
    """Run ``tests/vulkan_child.py TASK ARGS`` and return the JSON it prints last; a crash or a
    non-zero exit fails with its output."""
    r = child(task, env, *args, timeout=timeout)
    assert r.returncode == 0, f"child {task} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert lines, r.stdout + r.stderr
    return json.loads(lines[-1])


def child(task: str, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``tests/vulkan_child.py TASK ARGS`` as it ended (crashes included)."""
    return subprocess.run([sys.executable, str(HERE / "vulkan_child.py"), task, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)

