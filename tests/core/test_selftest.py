"""`based --self-test`: the installation check that the bundles run, on the source tree."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OK_LINE = re.compile(
    r"based self-test: ok \(model loaded \d+\.\d\d s, template (\d+) tokens, (\d+) tokens at "
    r"[\d,.]+ tok/s, window ok, shown \d+\.\d\d s after (start|import), llama\.cpp backend [\w ,]+\)"
)


def _self_test(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.pop("BASED_SELFTEST_MODEL", None)
    full.pop("BASED_SELFTEST_ONLY", None)
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "desktop", "--self-test"],
        cwd=tmp_path, env=full, capture_output=True, text=True, timeout=240,
    )


def test_self_test_passes_with_one_summary_line(tmp_path: Path) -> None:
    r = _self_test(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    m = OK_LINE.fullmatch(lines[0])
    assert m, lines[0]
    assert int(m.group(1)) > 5  # the phi-3 template wraps the message in special tokens
    assert int(m.group(2)) == 8  # control tokens never win, so all requested tokens come
    assert "Traceback" not in r.stderr


def test_self_test_leaves_the_users_home_alone(tmp_path: Path) -> None:
    home = tmp_path / "user-home"
    r = _self_test(tmp_path, BASED_HOME=str(home))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not home.exists() or not any(home.rglob("*"))


def test_self_test_reports_a_broken_model_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    r = _self_test(tmp_path, BASED_SELFTEST_MODEL=str(bad))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    assert lines[0].startswith("based self-test: FAILED at load model: "), lines[0]
    assert "broken.gguf" in lines[0]
    assert "Traceback" not in r.stdout + r.stderr


def test_self_test_reports_a_missing_model(tmp_path: Path) -> None:
    r = _self_test(tmp_path, BASED_SELFTEST_MODEL=str(tmp_path / "nowhere.gguf"))
    assert r.returncode == 1
    assert r.stdout.startswith("based self-test: FAILED at load model: ")
    assert "nowhere.gguf" in r.stdout


def test_window_only_mode_times_the_window(tmp_path: Path) -> None:
    r = _self_test(tmp_path, BASED_SELFTEST_ONLY="window")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.fullmatch(r"based self-test: ok \(window ok, shown \d+\.\d\d s after (start|import)\)\n",
                        r.stdout), r.stdout


def test_the_shipped_model_is_small_and_has_a_chat_template() -> None:
    from desktop.core.gguf_info import validate_gguf

    ref = resources.files("desktop.assets").joinpath("selftest/selftest.gguf")
    with resources.as_file(ref) as path:
        info = validate_gguf(path)
        assert path.stat().st_size < 1_500_000
    assert info.chat_template and "<|assistant|>" in info.chat_template
    assert not info.vocab_only
    assert info.architecture == "llama"


def test_the_shipped_model_regenerates_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "again.gguf"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "make_selftest_model.py"), str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    shipped = ROOT / "desktop" / "assets" / "selftest" / "selftest.gguf"
    assert out.read_bytes() == shipped.read_bytes()
