"""Before the QApplication exists: can Qt's display platform start on this machine? (Linux)

Qt picks a platform plugin (``xcb`` for X11, ``wayland``) when the QApplication is made. When
the plugin's system libraries are missing, Qt prints "Could not load the Qt platform plugin" and
aborts the process: no message Based could catch, and nothing that says what to install. On a
stock Debian desktop that happens with ``libxcb-icccm4`` and ``libxcb-keysyms1`` missing.

:func:`platform_problem` finds the plugin Qt would load, reads the shared libraries it needs from
its ELF dynamic section (DT_NEEDED, with pyelftools), follows those that come with Qt (PySide6's
``Qt/lib``, the bundle's own folder) and asks the dynamic loader for the others (``dlopen``),
then names the Debian packages that hold the missing ones, in one sentence. No Qt is imported
here (only PySide6's folder is looked up), so this runs before Qt could abort.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

# Platforms whose libraries are checked; others (offscreen, minimal, vnc, ...) need no display.
CHECKED = ("xcb", "wayland")

# Debian's library packages are named after the soname (Debian policy 8.1): libfoo.so.N is in
# libfooN, libfoo2.so.N in libfoo2-N. The exceptions that a Qt plugin can need:
_DEBIAN_EXCEPTIONS = {
    "libc.so.6": "libc6", "libm.so.6": "libc6", "libdl.so.2": "libc6", "ld-linux-x86-64.so.2": "libc6",
    "libpthread.so.0": "libc6", "librt.so.1": "libc6",
    "libgcc_s.so.1": "libgcc-s1",
    "libz.so.1": "zlib1g",
    "libglib-2.0.so.0": "libglib2.0-0", "libgobject-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0", "libgio-2.0.so.0": "libglib2.0-0",
    "libharfbuzz.so.0": "libharfbuzz0b",
}


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships ``soname``: "libxcb-icccm.so.4" -> "libxcb-icccm4"."""
    if soname in _DEBIAN_EXCEPTIONS:
        return _DEBIAN_EXCEPTIONS[soname]
    m = re.fullmatch(r"(lib[\w+.-]+?)\.so\.(\d+)(?:\.\d+)*", soname)
    if not m:
        return soname
    name, version = m.group(1).lower(), m.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def platform_candidates(env: Mapping[str, str] | None = None) -> list[str]:
    """The platform plugins Qt will try, in order (QT_QPA_PLATFORM, else Qt 6's default for
    the session: Wayland first on a Wayland session, X11 otherwise)."""
    env = os.environ if env is None else env
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return [p.split(":", 1)[0].strip() for p in chosen.split(";") if p.strip()]
    if env.get("XDG_SESSION_TYPE") == "wayland" or (env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")):
        return ["wayland", "xcb"]
    return ["xcb"]


def _qt_dirs() -> tuple[Path | None, Path | None]:
    """(Qt's plugins folder, Qt's library folder) of the installed PySide6, without importing Qt."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    qt = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    return qt / "plugins", qt / "lib"


def plugin_file(platform: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The file of Qt's ``platform`` plugin (QT_QPA_PLATFORM_PLUGIN_PATH first, as Qt does)."""
    env = os.environ if env is None else env
    dirs = [Path(d) for d in env.get("QT_QPA_PLATFORM_PLUGIN_PATH", "").split(os.pathsep) if d]
    plugins, _ = _qt_dirs()
    if plugins is not None:
        dirs.append(plugins / "platforms")
    for d in dirs:
        f = d / f"libq{platform}.so"
        if f.is_file():
            return f
    return None


def _dynamic(path: Path) -> tuple[list[str], list[Path]]:
    """(DT_NEEDED names, DT_RUNPATH/DT_RPATH folders with $ORIGIN expanded) of an ELF file."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    needed: list[str] = []
    search: list[Path] = []
    try:
        with open(path, "rb") as fh:
            for section in ELFFile(fh).iter_sections():
                if not isinstance(section, DynamicSection):
                    continue
                for tag in section.iter_tags():
                    tag = cast(Any, tag)  # pyelftools sets .needed/.runpath/.rpath per tag kind
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                        value = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                        for d in value.split(":"):
                            d = d.replace("${ORIGIN}", "$ORIGIN").replace("$ORIGIN", str(path.parent))
                            if d:
                                search.append(Path(d))
    except (OSError, ELFError):
        pass
    return needed, search


def missing_libraries(plugin: Path) -> list[str]:
    """The sonames the dynamic loader cannot load for ``plugin`` and what it needs, in order.

    Libraries found next to Qt (its RUNPATH, PySide6's Qt/lib, the bundle's folder) are followed
    into their own needs; every other one is loaded with ``dlopen`` the way Qt's loader would,
    and a failure records the library the loader names (a present library may be missing one of
    its own)."""
    _, qt_lib = _qt_dirs()
    local = [d for d in (qt_lib, Path(getattr(sys, "_MEIPASS", "")) if hasattr(sys, "_MEIPASS") else None)
             if d is not None]
    seen: set[str] = set()
    missing: list[str] = []
    todo = [plugin]
    while todo:
        needed, runpath = _dynamic(todo.pop())
        for name in needed:
            if name in seen:
                continue
            seen.add(name)
            here = next((d / name for d in runpath + local if (d / name).is_file()), None)
            if here is not None:
                todo.append(here)
                continue
            try:
                ctypes.CDLL(name, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
            except OSError as exc:
                # the loader's text is parsed for the missing library's name, never shown
                detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
                m = re.match(r"\s*([^\s:]+\.so[.\d]*):", detail)
                lost = os.path.basename(m.group(1)) if m else name
                if lost not in missing:
                    missing.append(lost)
    return missing


def _no_display(env: Mapping[str, str]) -> bool:
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return False
    runtime = env.get("XDG_RUNTIME_DIR")
    return not (runtime and Path(runtime, "wayland-0").exists())


def platform_problem(env: Mapping[str, str] | None = None) -> str | None:
    """One sentence when Qt's display platform cannot start here, else None.

    Linux only (None elsewhere, and for platforms that need no display, such as offscreen).
    Qt tries its candidate platforms in order; this says what is wrong only when none of them
    can load: the Debian packages holding the missing libraries of the first checked one, or
    that there is no display to open a window on."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return None
    candidates = platform_candidates(env)
    if any(p not in CHECKED for p in candidates):
        return None
    if _no_display(env):
        return ("No display was found, so the window cannot open: start Based from a desktop "
                "session, or use its command line (see `based --help`).")
    first: tuple[str, list[str]] | None = None
    for platform in candidates:
        plugin = plugin_file(platform, env)
        if plugin is None:
            continue
        lost = missing_libraries(plugin)
        if not lost:
            return None
        if first is None:
            first = (platform, lost)
    if first is None:
        return None  # no plugin file to check: leave it to Qt
    platform, lost = first
    packages = " ".join(dict.fromkeys(debian_package(s) for s in lost))
    kind = "X11 (xcb)" if platform == "xcb" else "Wayland"
    return (f"The window cannot open because Qt's {kind} display support is missing system "
            f"libraries ({', '.join(lost)}): install them with `sudo apt install {packages}` "
            "(Debian and Ubuntu package names).")
