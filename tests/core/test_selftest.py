"""`based --self-test`: the installation check that the bundles run, on the source tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OK_LINE = re.compile(
    r"based self-test: ok \(model loaded \d+\.\d\d s, template (\d+) tokens, (\d+) tokens at "
    r"[\d,.]+ tok/s, window ok, shown \d+\.\d\d s after (start|import), llama\.cpp backend "
    r"(CPU \((SSE4\.2|AVX|AVX2|AVX-512|AVX-512, AMX|NEON|SVE)\)|[\w ,()-]+ offload available|\w+)\)"
)


def _self_test(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    # a display only where a test gives one; the GUI tests' offscreen setting is not the user's
    for var in ("BASED_SELFTEST_MODEL", "BASED_SELFTEST_ONLY", "DISPLAY", "WAYLAND_DISPLAY",
                "QT_QPA_PLATFORM"):
        full.pop(var, None)
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
    assert "load_backend" not in r.stderr  # llama.cpp's log stays quiet while choosing the variant


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


@pytest.mark.slow
@pytest.mark.skipif(not (sys.platform.startswith("linux") and shutil.which("Xvfb")),
                    reason="needs an X server (apt install xvfb)")
def test_self_test_opens_the_window_on_a_real_x_display(tmp_path: Path) -> None:
    number = 90 + os.getpid() % 9
    xvfb = subprocess.Popen(["Xvfb", f":{number}", "-nolisten", "tcp", "-screen", "0", "1280x800x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert xvfb.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.1)
        r = _self_test(tmp_path, DISPLAY=f":{number}")
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ", display xcb ok, " in r.stdout, r.stdout


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
        assert path.stat().st_size < 6_500_000
    assert info.chat_template and "<|assistant|>" in info.chat_template
    assert not info.vocab_only
    assert info.architecture == "llama"


def test_the_shipped_model_reaches_the_quantized_simd_kernels() -> None:
    """256-wide Q4_K and Q8_0 matrices: llama.cpp runs them through the vector dot products of
    the CPU variant it chose (a 4-wide F16 model never reached those)."""
    import gguf

    ref = resources.files("desktop.assets").joinpath("selftest/selftest.gguf")
    with resources.as_file(ref) as path:
        reader = gguf.GGUFReader(path)
        kinds = {t.name: t.tensor_type.name for t in reader.tensors}
        width = int(reader.fields["llama.embedding_length"].parts[-1][0])
    assert width == 256
    assert kinds["token_embd.weight"] == "Q4_K" and kinds["blk.0.ffn_down.weight"] == "Q4_K"
    assert kinds["blk.0.attn_q.weight"] == "Q8_0" and kinds["blk.0.attn_output.weight"] == "Q8_0"


def test_the_q4_k_writer_round_trips_through_ggufs_reader() -> None:
    import importlib.util

    import numpy as np
    from gguf import GGMLQuantizationType, quants

    spec = importlib.util.spec_from_file_location("make_selftest_model", ROOT / "tools" / "make_selftest_model.py")
    assert spec and spec.loader
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 512)).astype(np.float32)
    x[3] = 0.0  # a control token's row
    x[5] = np.abs(x[5]) + 1.0  # all positive: min clipped at 0
    raw = tool.quantize_q4_k(x)
    assert raw.shape == (16, 2 * 144) and raw.dtype == np.uint8
    y = quants.dequantize(raw, GGMLQuantizationType.Q4_K)
    assert np.all(y[3] == 0.0)
    # 4 bits over each 32-value range: at most half a step of about range/15, plus scale rounding
    step = (x.reshape(16, -1, 32).max(-1) - np.minimum(x.reshape(16, -1, 32).min(-1), 0)) / 15
    err = np.abs(y - x).reshape(16, -1, 32).max(-1)
    assert np.all(err <= step * 0.5 + step * 0.1 + 1e-3)


def test_the_shipped_model_regenerates_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "again.gguf"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "make_selftest_model.py"), str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    shipped = ROOT / "desktop" / "assets" / "selftest" / "selftest.gguf"
    assert out.read_bytes() == shipped.read_bytes()
