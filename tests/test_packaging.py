"""Packaging: the resources the installers ship, and (marked `bundle`) the built bundle itself.

The bundle test runs nothing but the built app: `based --self-test` with an empty environment,
plus an ldd check on Linux. Build the bundle first with packaging/build_linux.sh (or the macOS /
Windows steps in docs/packaging.md), then run `pytest -m bundle tests/test_packaging.py`; point
BASED_BUNDLE at the executable when it is not in dist/.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "resources"
APP_ID = "io.github.based.Based"
SVG_NS = "{http://www.w3.org/2000/svg}"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def test_svg_icon_parses_and_the_app_ships_the_same_file() -> None:
    svg = RES / "icons" / "based.svg"
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG_NS}svg"
    vb = [float(x) for x in root.attrib["viewBox"].split()]
    assert vb[2] == vb[3] > 0  # square
    assert (ROOT / "desktop" / "assets" / "icons" / "based.svg").read_bytes() == svg.read_bytes()


@pytest.mark.parametrize("size", [16, 32, 48, 64, 128, 256, 512])
def test_png_icons_have_their_sizes(size: int) -> None:
    data = (RES / "icons" / "png" / f"based-{size}.png").read_bytes()
    assert _png_size(data) == (size, size)


def test_ico_and_icns_containers() -> None:
    ico = (RES / "icons" / "based.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind) == (0, 1) and count >= 5
    sizes = set()
    for i in range(count):
        w, _h, _c, _r, _p, _b, length, offset = struct.unpack("<BBBBHHII", ico[6 + 16 * i: 22 + 16 * i])
        assert _png_size(ico[offset: offset + length])[0] == (w or 256)
        sizes.add(w or 256)
    assert {16, 32, 48, 256} <= sizes
    icns = (RES / "icons" / "based.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    pos, kinds = 8, set()
    while pos < len(icns):
        kind_, length = icns[pos: pos + 4], struct.unpack(">I", icns[pos + 4: pos + 8])[0]
        kinds.add(kind_)
        pos += length
    assert pos == len(icns)
    assert {b"ic07", b"ic08", b"ic09", b"ic10"} <= kinds


def test_desktop_entry_has_the_required_keys() -> None:
    path = RES / "linux" / f"{APP_ID}.desktop"
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(path, encoding="utf-8")
    entry = cp["Desktop Entry"]
    for key in ("Type", "Name", "Comment", "Exec", "Icon", "Categories", "Terminal"):
        assert entry.get(key), key
    assert entry["Type"] == "Application"
    assert entry["Icon"] == APP_ID
    assert entry["Exec"].split()[0] == "based"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";")


def test_metainfo_is_wellformed_appstream() -> None:
    root = ET.parse(RES / "linux" / f"{APP_ID}.metainfo.xml").getroot()
    assert root.tag == "component" and root.attrib["type"] == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == f"{APP_ID}.desktop"
    for tag in ("name", "summary", "metadata_license", "project_license"):
        assert (root.findtext(tag) or "").strip(), tag
    assert root.find("description/p") is not None


def test_licence_notices_cover_qt_llama_cpp_and_python() -> None:
    lic = RES / "licenses"
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in (lic / "LGPL-3.0.txt").read_text(encoding="utf-8")
    assert "GNU GENERAL PUBLIC LICENSE" in (lic / "GPL-3.0.txt").read_text(encoding="utf-8")
    assert "MIT License" in (lic / "llama.cpp-MIT.txt").read_text(encoding="utf-8")
    qt = (lic / "Qt-LGPL-NOTICE.md").read_text(encoding="utf-8")
    assert "dynamic" in qt.lower() and "replace" in qt.lower()
    summary = (lic / "THIRD_PARTY_NOTICES.md").read_text(encoding="utf-8")
    for name in ("Python", "PSF", "Qt", "LGPL", "llama.cpp", "libgomp", "numpy", "gguf", "Jinja2",
                 "huggingface-hub", "platformdirs"):
        assert name in summary, name


def test_spec_collects_llama_libraries_openmp_and_assets() -> None:
    spec = (ROOT / "packaging" / "based.spec").read_text(encoding="utf-8")
    assert '"llama_cpp/lib"' in spec
    assert "omp" in spec and "ldd" in spec
    assert 'collect_data_files("desktop", includes=["assets/**/*"])' in spec
    assert "tkinter" in spec
    for keep in ("qoffscreen", "qxcb", "qwayland"):
        assert keep in spec
    assert (ROOT / "packaging" / "based_main.py").is_file()
    assert (ROOT / "desktop" / "assets" / "selftest" / "selftest.gguf").is_file()


def test_build_scripts_exist_and_parse() -> None:
    linux = ROOT / "packaging" / "build_linux.sh"
    fresh = ROOT / "packaging" / "check_fresh_machine.sh"
    assert os.access(linux, os.X_OK) and os.access(fresh, os.X_OK)
    if shutil.which("bash"):
        for script in (linux, fresh, ROOT / "packaging" / "macos" / "build_macos.sh"):
            r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    windows = ROOT / "packaging" / "build_windows.sh"
    assert os.access(windows, os.X_OK)
    for script in (windows, ROOT / "packaging" / "windows" / "build_llama.sh",
                   ROOT / "packaging" / "windows" / "wine_prefix.sh"):
        assert os.access(script, os.X_OK), script
        if shutil.which("bash"):
            r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    nsi = (ROOT / "packaging" / "windows" / "based.nsi").read_text(encoding="utf-8")
    for needed in ("RequestExecutionLevel user", "MUI_PAGE_LICENSE", "CreateShortcut",
                   "$SMPROGRAMS", "HKCU", "UninstallString", "WriteUninstaller"):
        assert needed in nsi, needed
    assert "HKLM" not in nsi  # per user: no admin rights
    wf = (ROOT / ".github" / "workflows" / "build.yml").read_text(encoding="utf-8")
    for runner in ("ubuntu-", "windows-", "macos-14"):
        assert runner in wf
    assert wf.count("--self-test") >= 3


def test_llama_build_is_portable_and_shared() -> None:
    """One list of CMake flags and CPU variants for every installer's llama.cpp (Linux, Windows)."""
    script = ROOT / "packaging" / "build_llama.sh"
    assert os.access(script, os.X_OK)
    if not shutil.which("bash"):
        pytest.skip("needs bash")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    flags = subprocess.run([str(script), "--print-cmake-args"], capture_output=True, text=True,
                           check=True, env={**os.environ, "BASED_LLAMA_CMAKE_ARGS": "-DGGML_VULKAN=ON"}).stdout.split()
    for flag in ("-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON",
                 "-DLLAVA_BUILD=OFF", "-DGGML_VULKAN=ON"):
        assert flag in flags
    assert not any("march=native" in f or f == "-DGGML_NATIVE=ON" for f in flags)
    variants = subprocess.run([str(script), "--print-cpu-variants"], capture_output=True, text=True,
                              check=True).stdout.split()
    assert variants[0] == "sse42"  # the x86-64-v2 floor desktop.core.cpu checks
    assert {"sandybridge", "haswell", "skylakex"} <= set(variants) and "x64" not in variants


# -- the built bundle ---------------------------------------------------------------------------


def _bundle_exe() -> Path:
    env = os.environ.get("BASED_BUNDLE")
    if env:
        p = Path(env)
        return p / ("based.exe" if sys.platform == "win32" else "based") if p.is_dir() else p
    if sys.platform == "darwin":
        return ROOT / "dist" / "Based.app" / "Contents" / "MacOS" / "based"
    return ROOT / "dist" / "Based" / ("based.exe" if sys.platform == "win32" else "based")


def _require_bundle(request: pytest.FixtureRequest) -> Path:
    exe = _bundle_exe()
    if exe.is_file():
        return exe
    msg = "no built bundle; build it with packaging/build_linux.sh or set BASED_BUNDLE"
    if "bundle" in str(request.config.getoption("markexpr", "")) or os.environ.get("BASED_BUNDLE"):
        pytest.fail(msg)  # asked for explicitly: a missing bundle is a failure
    pytest.skip(msg + " (select with -m bundle)")


def _clean_env(home: Path) -> dict[str, str]:
    env = {"HOME": str(home), "PATH": os.defpath}
    if sys.platform == "win32":
        for k in ("SYSTEMROOT", "SYSTEMDRIVE", "TEMP", "TMP", "USERPROFILE", "LOCALAPPDATA", "APPDATA"):
            if k in os.environ:
                env[k] = os.environ[k]
    return env


@pytest.mark.slow
@pytest.mark.bundle
def test_built_bundle_self_test(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    exe = _require_bundle(request)
    r = subprocess.run([str(exe), "--self-test"], env=_clean_env(tmp_path), cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.fullmatch(r"based self-test: ok \(.*window ok.*llama\.cpp backend .+\)\n", r.stdout), r.stdout


@pytest.mark.slow
@pytest.mark.bundle
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ldd is Linux's loader check")
def test_built_bundle_libraries_resolve(request: pytest.FixtureRequest) -> None:
    exe = _require_bundle(request)
    internal = exe.parent / "_internal"
    libs = sorted((internal / "llama_cpp" / "lib").glob("*.so*"))
    libs += sorted((internal / "PySide6" / "Qt" / "plugins" / "platforms").glob("*.so"))
    names = {p.name for p in libs}
    assert "libllama.so" in names and any(n.startswith("libggml-cpu") for n in names)
    # portable CPU code: one module per x86-64 level, chosen at run time; no native build
    variants = subprocess.run([str(ROOT / "packaging" / "build_llama.sh"), "--print-cpu-variants"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert {f"libggml-cpu-{v}.so" for v in variants} <= names, sorted(names)
    assert "libggml-cpu.so" not in names
    assert "libqoffscreen.so" in names and "libqxcb.so" in names
    assert any(p.name.startswith(("libgomp", "libomp")) for p in internal.rglob("lib*omp*.so*"))
    # Qt's xcb/wayland plugins need the desktop's X11/Wayland client libraries, which every
    # desktop has and the .deb depends on; everything else must resolve inside the bundle.
    system = re.compile(r"lib(xcb|X11|xkbcommon|wayland|EGL|GL|GLX|OpenGL|fontconfig|freetype|dbus)")
    for lib in libs:
        # llama-cpp-python loads llama.cpp from llama_cpp/lib, and libggml loads the CPU variant
        # modules from there after libggml-base (which they need, by soname, without a RUNPATH)
        env = {**os.environ, "LD_LIBRARY_PATH": str(lib.parent)} if lib.parent.name == "lib" else None
        out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, env=env).stdout
        missing = [ln.split()[0] for ln in out.splitlines() if "not found" in ln]
        missing = [m for m in missing if not (lib.parent.name == "platforms" and system.match(m))]
        assert not missing, f"{lib.name}: {missing}"
    assert (internal / "desktop" / "assets" / "icons" / "based.svg").is_file()
    assert (internal / "desktop" / "assets" / "selftest" / "selftest.gguf").is_file()
    assert (internal / "licenses" / "THIRD_PARTY_NOTICES.md").is_file()


# -- the built bundle on older processors (qemu-user) ---------------------------------------------

QEMU = shutil.which("qemu-x86_64")
LINUX_X86_64 = sys.platform.startswith("linux") and os.uname().machine == "x86_64"
needs_qemu = pytest.mark.skipif(not (LINUX_X86_64 and QEMU), reason="needs qemu-user (apt install qemu-user)")
# Emulated CPU -> the llama.cpp CPU variant the bundle must choose on it (and name).
OLDER_CPUS = {"Haswell": "AVX2", "SandyBridge": "AVX", "Nehalem": "SSE4.2"}


def _emulated(exe: Path, cpu: str, args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Run the bundle's executable with the whole process on an emulated ``cpu``.

    PyInstaller's Linux bootloader (one-folder) sets LD_LIBRARY_PATH and restarts itself with
    execvp; qemu-user lets an exec'd program run natively, so the app itself would escape the
    emulation (and pass on any build). The bootloader skips the restart when the environment
    says it already happened: _PYI_ARCHIVE_FILE names this executable and
    _PYI_PARENT_PROCESS_LEVEL is -1 (PYI_PROCESS_LEVEL_PARENT_NEEDS_RESTART, bootloader/src/
    pyi_main.c); LD_LIBRARY_PATH is then what the restart would have set."""
    env = _clean_env(home)
    env.update(
        _PYI_ARCHIVE_FILE=str(exe.resolve()),
        _PYI_PARENT_PROCESS_LEVEL="-1",
        LD_LIBRARY_PATH=str(exe.resolve().parent / "_internal"),
    )
    assert QEMU
    return subprocess.run([QEMU, "-cpu", cpu, str(exe.resolve()), *args], env=env, cwd=home,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)


def _program_stderr(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in r.stderr.splitlines()
            if ln.strip() and not ln.startswith("qemu-x86_64: warning")  # features TCG leaves out
            and "locale" not in ln.lower() and not ln.startswith(("Qt depends", "If this causes"))]


@pytest.mark.slow
@pytest.mark.bundle
@needs_qemu
@pytest.mark.parametrize("cpu", list(OLDER_CPUS))
def test_bundle_generates_on_older_cpus(cpu: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The self-test (Q4_K and Q8_0 weights, 256 wide: llama.cpp's SIMD kernels) on an emulated
    Haswell, Sandy Bridge and Nehalem. The variant it names proves the whole run was emulated:
    outside qemu the build machine's own (wider) variant would be chosen."""
    exe = _require_bundle(request)
    r = _emulated(exe, cpu, ["--self-test"], tmp_path)
    assert r.returncode == 0, f"{cpu}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    assert re.fullmatch(r"based self-test: ok \(.*8 tokens at .*window ok.*llama\.cpp backend "
                        + re.escape(f"CPU ({OLDER_CPUS[cpu]})") + r"\)\n", r.stdout), r.stdout


@pytest.mark.slow
@pytest.mark.bundle
@needs_qemu
def test_bundle_compare_names_the_variant_on_an_older_cpu(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    exe = _require_bundle(request)
    model = exe.resolve().parent / "_internal" / "desktop" / "assets" / "selftest" / "selftest.gguf"
    r = _emulated(exe, "SandyBridge", ["compare", "--base", str(model), "--instruct", str(model),
                                       "--mode", "raw", "--user", "Hi", "--max-tokens", "4", "--json"],
                  tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    for side in ("base", "instruct"):
        assert data[side]["stats"]["backend"] == "CPU (AVX)"
        assert data[side]["stats"]["generated_tokens"] == 4


@pytest.mark.slow
@pytest.mark.bundle
@needs_qemu
@pytest.mark.parametrize("cpu", ["core2duo", "qemu64"])
def test_bundle_refuses_below_the_floor_in_one_sentence(cpu: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    exe = _require_bundle(request)
    for args in (["--self-test"], []):  # the self-test and the window: no illegal instruction
        r = _emulated(exe, cpu, args, tmp_path)
        lines = _program_stderr(r)
        assert r.returncode == 2, f"{cpu} {args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
        assert len(lines) == 1 and lines[0].startswith("based: This computer's processor lacks "), lines
        assert "x86-64-v2" in lines[0] and "SSE4.2" in lines[0]
def test_windows_llama_wheel_packs_the_dlls_with_a_valid_record(tmp_path: Path) -> None:
    """packaging/windows/make_llama_wheel.py: a win_amd64 wheel pip accepts (RECORD hashes)."""
    import base64
    import hashlib
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location(
        "make_llama_wheel", ROOT / "packaging" / "windows" / "make_llama_wheel.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    sdist = tmp_path / "llama_cpp_python-0.3.36"
    (sdist / "llama_cpp" / "lib").mkdir(parents=True)
    (sdist / "llama_cpp" / "__init__.py").write_text('__version__ = "0.3.36"\n')
    (sdist / "llama_cpp" / "lib" / "libllama.so").write_bytes(b"linux leftovers")
    (sdist / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36\n")
    (sdist / "pyproject.toml").write_text(
        '[project]\nname = "llama_cpp_python"\ndependencies = ["numpy>=1.20.0", "diskcache>=5.6.1"]\n')
    (sdist / "LICENSE.md").write_text("MIT\n")
    dlls = tmp_path / "dlls"
    dlls.mkdir()
    for name in ("llama.dll", "ggml.dll", "ggml-cpu-haswell.dll"):
        (dlls / name).write_bytes(b"MZ" + name.encode())

    whl = mod.make_wheel(sdist, dlls, tmp_path / "out")
    assert whl.name == "llama_cpp_python-0.3.36-py3-none-win_amd64.whl"
    with zipfile.ZipFile(whl) as zf:
        names = set(zf.namelist())
        assert {"llama_cpp/__init__.py", "llama_cpp/lib/llama.dll",
                "llama_cpp/lib/ggml-cpu-haswell.dll"} <= names
        assert "llama_cpp/lib/libllama.so" not in names
        info = "llama_cpp_python-0.3.36.dist-info"
        wheel = zf.read(f"{info}/WHEEL").decode()
        assert "Tag: py3-none-win_amd64" in wheel and "Root-Is-Purelib: false" in wheel
        meta = zf.read(f"{info}/METADATA").decode()
        assert "Version: 0.3.36" in meta and "Requires-Dist: numpy>=1.20.0" in meta
        record = zf.read(f"{info}/RECORD").decode().splitlines()
        assert len(record) == len(names)
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            if name.endswith("/RECORD"):
                continue
            data = zf.read(name)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={want}" and int(size) == len(data), name
