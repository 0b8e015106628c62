"""`based shift | report | history | export | rerun` in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.cli import main
from desktop.core.export import run_comparison
from desktop.core.history import HistoryStore
from desktop.core.prompts import Conversation
from desktop.core.types import LoadOptions, SamplingParams


def test_shift_json(tiny_phi3: Path, tiny_phi3_base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shift", "--base", str(tiny_phi3_base), "--instruct", str(tiny_phi3), "--user",
                 "Hello", "--max-tokens", "12", "--n-ctx", "512", "--threads", "1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["tokens"]) == d["summary"]["n_tokens"] > 0
    for t in d["tokens"]:
        assert {"piece", "rank", "base_logprob", "instruct_logprob", "cls"} <= set(t)
    s = d["summary"]
    assert {"unshifted", "marginal", "shifted"} <= set(s)
    assert abs(s["unshifted"] + s["marginal"] + s["shifted"] - 1) < 1e-9


def test_shift_text_same_model(tiny_phi3: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shift", "--base", str(tiny_phi3), "--instruct", str(tiny_phi3), "--user", "Hi",
                 "--max-tokens", "12", "--n-ctx", "512", "--threads", "1", "--prompt-source", "base-mode",
                 "--mode", "raw"]) == 0
    out = capsys.readouterr().out
    assert "tokens:" in out and "unshifted" in out and "one batched evaluation" in out


def test_shift_refuses_other_tokenizer(tiny_phi3: Path, tiny_llama_spm: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shift", "--base", str(tiny_llama_spm), "--instruct", str(tiny_phi3),
                 "--user", "Hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("based: ") and "tokenizer" in err and "Traceback" not in err


def test_report_cli(tiny_phi3: Path, tiny_phi3_base: Path, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("First prompt\n\nSecond prompt\n", encoding="utf-8")
    out = tmp_path / "r.html"
    assert main(["report", "--base", str(tiny_phi3_base), "--instruct", str(tiny_phi3),
                 "--prompts", str(prompts), "--out", str(out), "--max-tokens", "8",
                 "--n-ctx", "512", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "[0/2] First prompt" in err and "[2/2] done" in err and "wrote" in err
    assert out.read_text(encoding="utf-8").count("data:image/png;base64,") == 3
    bad = tmp_path / "p.json"
    bad.write_text('{"not": "a list"}', encoding="utf-8")
    assert main(["report", "--base", str(tiny_phi3), "--instruct", str(tiny_phi3),
                 "--prompts", str(bad), "--out", str(out)]) == 2
    assert "JSON list" in capsys.readouterr().err


def test_report_ctrl_c_keeps_finished(tiny_phi3: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([f"Prompt {i}: tell me a long story." for i in range(30)]))
    out = tmp_path / "r.html"
    p = subprocess.Popen(
        [sys.executable, "-m", "desktop", "report", "--base", str(tiny_phi3), "--instruct",
         str(tiny_phi3), "--prompts", str(prompts), "--out", str(out), "--max-tokens", "400",
         "--threads", "1"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert p.stderr is not None
    lines = []
    for line in p.stderr:
        lines.append(line)
        if line.startswith("[1/30]"):
            p.send_signal(signal.SIGINT)
            break
    rest = p.communicate(timeout=120)[1]
    assert p.returncode == 130, "".join(lines) + rest
    assert "Traceback" not in rest and "stopped by Ctrl-C" in rest
    page = out.read_text(encoding="utf-8")
    assert "cancelled" in page and "1 of 30 finished" in page


@pytest.fixture()
def saved(tiny_phi3: Path, tiny_phi3_base: Path) -> int:
    rec = run_comparison(tiny_phi3_base, tiny_phi3, Conversation("Name a planet."),
                         base_mode="qa",
                         params=SamplingParams(temperature=0.7, seed=3, max_tokens=12),
                         load=LoadOptions(n_ctx=512, n_threads=1, seed=3))
    with HistoryStore() as store:
        store.add(run_comparison(tiny_phi3_base, tiny_phi3, Conversation("Other thing"),
                                 params=SamplingParams(max_tokens=4),
                                 load=LoadOptions(n_ctx=512, n_threads=1)))
        return store.add(rec)


def test_history_export_rerun(saved: int, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows][0] == saved and len(rows) == 2
    assert main(["history", "--search", "planet"]) == 0
    out = capsys.readouterr().out
    assert "Name a planet." in out and "Other thing" not in out
    for fmt in ("md", "html", "json"):
        f = tmp_path / f"x.{fmt}"
        assert main(["export", str(saved), "--format", fmt, "--out", str(f)]) == 0
        assert f.stat().st_size > 200
    assert main(["rerun", str(tmp_path / "x.json"), "--out", str(tmp_path / "y.json")]) == 0
    assert "Reproduced" in capsys.readouterr().out
    assert json.loads((tmp_path / "y.json").read_text())["seed"] == 3
    assert main(["export", "9999", "--format", "md"]) == 2
    assert "no comparison number 9999" in capsys.readouterr().err
