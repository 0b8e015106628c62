"""Qt's display platform checked before the QApplication: one sentence instead of Qt's abort."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.ui import qt_platform

ROOT = Path(__file__).resolve().parents[2]
LINUX = sys.platform.startswith("linux")


@pytest.mark.parametrize(
    ("soname", "package"),
    [
        ("libxcb-icccm.so.4", "libxcb-icccm4"),
        ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
        ("libxcb-render-util.so.0", "libxcb-render-util0"),
        ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
        ("libX11-xcb.so.1", "libx11-xcb1"),
        ("libX11.so.6", "libx11-6"),
        ("libdbus-1.so.3", "libdbus-1-3"),
        ("libGL.so.1", "libgl1"),
        ("libwayland-cursor.so.0", "libwayland-cursor0"),
        ("libglib-2.0.so.0", "libglib2.0-0"),
        ("libz.so.1", "zlib1g"),
    ],
)
def test_debian_package_of_a_library(soname: str, package: str) -> None:
    assert qt_platform.debian_package(soname) == package


def test_the_platforms_qt_will_try() -> None:
    assert qt_platform.platform_candidates({"DISPLAY": ":0"}) == ["xcb"]
    assert qt_platform.platform_candidates({"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"}) == ["wayland", "xcb"]
    assert qt_platform.platform_candidates({"QT_QPA_PLATFORM": "wayland;xcb"}) == ["wayland", "xcb"]
    assert qt_platform.platform_candidates({"QT_QPA_PLATFORM": "xcb:nograb"}) == ["xcb"]
    # platforms without a display are not checked
    assert qt_platform.platform_problem({"QT_QPA_PLATFORM": "offscreen"}) is None


@pytest.mark.skipif(not LINUX, reason="Qt's xcb plugin is Linux's")
def test_no_display_is_one_sentence(tmp_path: Path) -> None:
    msg = qt_platform.platform_problem({"XDG_RUNTIME_DIR": str(tmp_path)})
    assert msg is not None and msg.startswith("No display was found")


def _broken(tmp_path: Path, soname: str) -> dict[str, str]:
    """An environment where the dynamic loader finds an unloadable ``soname`` first.

    The empty file on LD_LIBRARY_PATH shadows the system's copy for every dlopen in the child
    process (ld.so stops at "file too short"), exactly as a missing or broken package would."""
    shadow = tmp_path / "shadow"
    shadow.mkdir(exist_ok=True)
    (shadow / soname).write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "WAYLAND", "XDG_SESSION"))}
    env.update(DISPLAY=":97", LD_LIBRARY_PATH=str(shadow), PYTHONPATH=str(ROOT))
    return env


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="Qt's xcb plugin is Linux's")
def test_missing_xcb_library_is_one_sentence_not_qts_abort(tmp_path: Path) -> None:
    env = _broken(tmp_path, "libxcb-icccm.so.4")
    # Qt itself, with nothing in front of it, aborts the process without naming a package ...
    qt = subprocess.run(
        [sys.executable, "-c", "from PySide6.QtWidgets import QApplication; QApplication([])"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert qt.returncode != 0
    assert 'Could not load the Qt platform plugin "xcb"' in qt.stderr
    # ... Based checks the plugin's libraries first and says what to install, in one line.
    r = subprocess.run([sys.executable, "-m", "desktop"], env=env, capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "libxcb-icccm.so.4" in lines[0] and "sudo apt install libxcb-icccm4" in lines[0]
    assert "Qt platform plugin" not in r.stderr and "Aborted" not in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="Qt's xcb plugin is Linux's")
def test_self_test_checks_the_real_display_platform(tmp_path: Path) -> None:
    env = _broken(tmp_path, "libxcb-keysyms.so.1")
    r = subprocess.run([sys.executable, "-m", "desktop", "--self-test"], env=env,
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("based self-test: FAILED at display: "), r.stdout
    assert "sudo apt install libxcb-keysyms1" in r.stdout
    assert len(r.stdout.splitlines()) == 1
