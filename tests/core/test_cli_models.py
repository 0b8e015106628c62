"""`based models ...` end to end against a fake Hugging Face server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop.cli import main
from tests.fakehub import FakeHub

REPO = "test/Tiny-GGUF"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tiny_phi3_base: Path, tiny_phi3: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    files = {REPO: {"tiny-base.Q8_0.gguf": tiny_phi3_base.read_bytes(),
                    "tiny-instruct.Q8_0.gguf": tiny_phi3.read_bytes(), "README.md": b"# tiny\n"}}
    with FakeHub(files, meta={REPO: {"downloads": 1234, "likes": 5}}) as h:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        catalog = {"pairs": [{
            "id": "tiny", "family": "Tiny", "params": "1M", "params_b": 0.001, "licence": "MIT",
            "note": "A tiny pair.", "licence_notice": "Tiny terms: be nice.",
            "base": {"repo": REPO, "files": [{"quant": "Q8_0", "file": "tiny-base.Q8_0.gguf",
                                              "size": len(files[REPO]["tiny-base.Q8_0.gguf"])}]},
            "instruct": {"repo": REPO, "files": [{"quant": "Q8_0", "file": "tiny-instruct.Q8_0.gguf",
                                                  "size": len(files[REPO]["tiny-instruct.Q8_0.gguf"])}]},
            "recommended_quant": "Q8_0"}]}
        cat = tmp_path / "catalog.json"
        cat.write_text(json.dumps(catalog), encoding="utf-8")
        monkeypatch.setenv("BASED_CATALOG", str(cat))
        yield h


def test_search_files_download_list_remove(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "search", "tiny"]) == 0
    assert REPO in capsys.readouterr().out
    assert main(["models", "files", REPO]) == 0
    out = capsys.readouterr().out
    assert "tiny-base.Q8_0.gguf" in out and "Q8_0" in out and "README" not in out
    assert main(["models", "download", REPO, "tiny-base.Q8_0.gguf", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    path = Path(got["path"])
    assert path.is_file() and path.stat().st_size == got["size"] > 0
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == ["tiny-base.Q8_0.gguf"] and listed[0]["repo"] == REPO
    assert main(["models", "remove", "tiny-base.Q8_0.gguf"]) == 0
    assert "freed" in capsys.readouterr().out and not path.exists()


def test_pair_needs_licence_then_downloads_and_selects(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pair", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "Tiny terms: be nice." in err and "--accept-licence" in err
    assert main(["models", "pair", "tiny", "--accept-licence", "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert Path(paths["base"]).is_file() and Path(paths["instruct"]).is_file()
    from desktop.core import settings

    s = settings.load().settings
    assert (s.base_model, s.instruct_model) == (paths["base"], paths["instruct"])


def test_errors_are_one_sentence(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "files", "nobody/nothing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("based: ") and "\n" not in err and "Traceback" not in err
    assert main(["models", "pair", "gpt-9"]) == 2
    assert "tiny" in capsys.readouterr().err


def test_ctrl_c_then_same_command_continues(hub: FakeHub, tmp_path: Path) -> None:
    hub.stall_after = 48 * 1024
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "desktop", "models", "download", REPO, "tiny-instruct.Q8_0.gguf"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sha = hub.sha256(REPO, "tiny-instruct.Q8_0.gguf")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not hub.requests_for("GET", contains=sha):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "run the same command again" in err
    partials = list(Path(env["BASED_HOME"]).rglob("*.incomplete"))
    assert partials and partials[0].stat().st_size == 48 * 1024
    hub.stall_after = None
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    final = Path(done.stdout.strip())
    assert final.stat().st_size == len(hub._repos[REPO]["tiny-instruct.Q8_0.gguf"].data)
    ranges = [r.range for r in hub.requests_for("GET", contains=sha) if r.range]
    assert ranges[-1] == f"bytes={48 * 1024}-"
