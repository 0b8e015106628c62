"""The `based` CLI, in-process and as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop.cli import main
from desktop.core.templates import render_template

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "desktop", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_inspect_human_and_json(tiny_phi3: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tiny_phi3)]) == 0
    out = capsys.readouterr().out
    assert "Tiny Instruct" in out and "F16" in out and "32,064 tokens" in out
    assert main(["inspect", str(tiny_phi3), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "Tiny Instruct" and data["vocab_size"] == 32064
    assert data["chat_template"].startswith("{{ bos_token }}")


def test_prompt_template_equals_render_template(capsys: pytest.CaptureFixture[str]) -> None:
    tpl = TEMPLATES / "meta-llama-Llama-3.2-3B-Instruct.jinja"
    assert main(["prompt", "--template", str(tpl), "--system", "S", "--user", "U",
                 "--bos-token", "<|begin_of_text|>"]) == 0
    out = capsys.readouterr().out
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    expected = render_template(tpl.read_text(), messages, bos_token="<|begin_of_text|>")
    # the only difference allowed is the date strftime_now prints, which is today on both
    assert out == expected


def test_prompt_prints_exactly_the_string(vocab_dir: Path) -> None:
    r = run("prompt", "--model", str(vocab_dir / "ggml-vocab-qwen2.gguf"), "--user", "Hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("<|im_start|>assistant\n")  # no extra newline added
    assert r.stdout.startswith("<|im_start|>system\n")


def test_prompt_tokens_json_vocab_only(vocab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompt", "--model", str(vocab_dir / "ggml-vocab-qwen2.gguf"), "--user", "Hi",
                 "--tokens", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompt"].endswith("<|im_start|>assistant\n")
    assert data["tokens"][0] == {"id": 151644, "piece": "<|im_start|>", "special": True,
                                 "typed_as_text": False}
    assert data["token_count"] == len(data["tokens"])
    assert "".join(t["piece"] for t in data["tokens"]) == data["prompt"]


def test_prompt_bos_from_the_models_own_vocab(vocab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompt", "--model", str(vocab_dir / "ggml-vocab-phi-3.gguf"), "--user", "Hi", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompt"].startswith("<s><|user|>")
    assert data["add_bos"] is False


@pytest.mark.parametrize("mode", ["raw", "twin-template", "qa", "urial"])
def test_prompt_modes(mode: str, vocab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompt", "--model", str(vocab_dir / "ggml-vocab-llama-spm.gguf"),
                 "--twin", str(vocab_dir / "ggml-vocab-phi-3.gguf"),
                 "--user", "Why?", "--mode", mode, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == mode
    assert "Why?" in data["prompt"]
    if mode != "raw":
        assert data["stop"]


def test_compare_json(tiny_phi3_base: Path, tiny_phi3: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "--base", str(tiny_phi3_base), "--instruct", str(tiny_phi3), "--user", "Hi",
                 "--max-tokens", "8", "--threads", "2", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    for side in ("base", "instruct"):
        s = data[side]
        assert s["prompt"] and isinstance(s["text"], str)
        st = s["stats"]
        for key in ("prompt_tokens", "generated_tokens", "time_to_first_token_s",
                    "tokens_per_second", "stop_reason"):
            assert key in st
        assert st["generated_tokens"] >= 1
        assert re.fullmatch(r"CPU \([\w.,\- ]+\)", st["backend"])  # "CPU (AVX2)": the variant run
    # by default the base model gets the instruct twin's chat template, as the instruct model does
    assert "<|user|>\nHi" in data["base"]["prompt"] and "# Instruction" not in data["base"]["prompt"]
    assert data["instruct"]["prompt"].startswith("<s><|user|>")


def test_compare_is_reproducible(tiny_phi3_base: Path, tiny_phi3: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", "--base", str(tiny_phi3_base), "--instruct", str(tiny_phi3), "--user", "Hi",
            "--max-tokens", "12", "--preset", "creative", "--temperature", "0.9", "--seed", "11",
            "--threads", "2", "--json"]
    main(args)
    a = json.loads(capsys.readouterr().out)
    main(args)
    b = json.loads(capsys.readouterr().out)
    assert a["base"]["text"] == b["base"]["text"] and a["instruct"]["text"] == b["instruct"]["text"]


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "empty"), (b"hello world, not a model", "not a GGUF"), (None, "not found")],
)
def test_bad_inputs_one_line_no_traceback(tmp_path: Path, content: bytes | None, words: str) -> None:
    p = tmp_path / "model.gguf"
    if content is not None:
        p.write_bytes(content)
    for args in (["inspect", str(p)], ["prompt", "--model", str(p), "--user", "x"],
                 ["compare", "--base", str(p), "--instruct", str(p), "--user", "x"]):
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0]
        assert "Traceback" not in r.stderr


def test_truncated_model_in_compare(tmp_path: Path, tiny_phi3: Path) -> None:
    p = tmp_path / "cut.gguf"
    p.write_bytes(tiny_phi3.read_bytes()[:300_000])
    r = run("compare", "--base", str(p), "--instruct", str(tiny_phi3), "--user", "x")
    assert r.returncode == 2 and "truncated" in r.stderr and "Traceback" not in r.stderr


def test_unknown_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["prompt", "--user"])
    assert ei.value.code == 2


def test_ctrl_c_cancels_compare_cleanly(tiny_phi3_base: Path, tiny_phi3: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "desktop", "compare", "--base", str(tiny_phi3_base), "--instruct",
         str(tiny_phi3), "--user", "Hi", "--max-tokens", "100000", "--n-ctx", "2048",
         "--preset", "creative", "--temperature", "1.0", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    # wait until the base answer is streaming
    deadline = time.monotonic() + 60
    seen = ""
    while "== base" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "stopped by Ctrl-C" in err
    # the instruct side never ran to its 100,000-token limit
    assert "Reached the maximum" not in out
