"""The CLI's values: help for every option, presets shared with the window, bad values refused
before any work (one line, the option named), empty prompts, context adjustments said."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.cli import build_parser, main
from desktop.core.sampling import DEFAULT_PRESET, PRESETS
from desktop.core.settings import Settings


def _parsers(parser: argparse.ArgumentParser, path: str = "based"):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_of_every_command_has_help() -> None:
    missing = []
    seen = 0
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            seen += 1
            if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert seen > 60  # every command was walked, including models/shift/report/rerun
    assert missing == [], "options without help: " + ", ".join(missing)


def test_compare_help_shows_every_presets_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    for key, preset in PRESETS.items():
        assert f"{key}: {preset.describe()}" in out
    assert "deterministic: temperature 0, top-p 1, top-k 1, min-p 0, repeat penalty 1, seed 0" in out
    assert "--preset {deterministic,creative,urial}" in out


def _args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["compare", "--base", "b", "--instruct", "i", "--user", "u", *extra])


def test_the_cli_default_is_the_windows_default() -> None:
    from desktop.cli import _params

    p = _params(_args())
    s = Settings()  # what the window starts with
    for f in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens"):
        assert getattr(p, f) == getattr(s, f), f
    assert p == PRESETS[DEFAULT_PRESET].params(max_tokens=s.max_tokens, top_logprobs=0)
    assert p.greedy and p.top_k == 1 and p.repeat_penalty == 1.0  # not 40 / 1.1 any more


def test_a_preset_with_explicit_options_on_top() -> None:
    from desktop.cli import _params

    p = _params(_args("--preset", "creative", "--seed", "5", "--top-k", "0"))
    c = PRESETS["creative"].params()
    assert (p.temperature, p.top_p, p.min_p, p.repeat_penalty) == (
        c.temperature, c.top_p, c.min_p, c.repeat_penalty)
    assert (p.seed, p.top_k) == (5, 0)
    u = _params(_args("--preset", "urial"))
    assert (u.temperature, u.top_p, u.repeat_penalty) == (0.3, 1.0, 1.1)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "desktop", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--max-tokens", "-5", "--max-tokens must be at least 1, but it is -5."),
        ("--temperature", "-1", "--temperature must be 0 or more"),
        ("--temperature", "nan", "but it is NaN"),
        ("--top-p", "inf", "but it is infinity"),
        ("--top-p", "1.5", "--top-p must be greater than 0 and at most 1, but it is 1.5."),
        ("--min-p", "2", "--min-p must be from 0 to 1"),
        ("--top-k", "-1", "--top-k must be 0 or more"),
        ("--repeat-penalty", "0", "--repeat-penalty must be greater than 0"),
        ("--seed", "-1", "--seed must be from 0 to 4,294,967,294"),
        ("--n-ctx", "0", "--n-ctx must be from 1 to 1,048,576 tokens"),
        ("--threads", "0", "--threads must be from 1 to 512"),
        ("--n-gpu-layers", "-3", "--n-gpu-layers must be -2 (Auto), -1 (all layers)"),
    ],
)
def test_compare_refuses_bad_values_before_any_work(tmp_path: Path, option: str, value: str,
                                                     words: str) -> None:
    gone = str(tmp_path / "gone.gguf")  # the files are never opened: the value is checked first
    r = run("compare", "--base", gone, "--instruct", gone, "--user", "Hi", option, value)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "not found" not in lines[0]
    assert "Traceback" not in r.stderr and "InvalidSetting" not in r.stderr
    assert "Reached the maximum" not in r.stdout and r.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["shift", "--top-k", "11"],
        ["shift", "--max-tokens", "0"],
        ["shift", "--n-ctx", "-1"],
        ["report", "--out", "x.html", "--max-tokens", "-3"],
        ["report", "--out", "x.html", "--threads", "0"],
    ],
)
def test_the_lens_commands_refuse_bad_values(tmp_path: Path, args: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    gone = str(tmp_path / "gone.gguf")
    extra = [] if args[0] == "report" else ["--user", "Hi"]
    argv = [args[0], "--base", gone, "--instruct", gone, *extra, *args[1:]]
    if args[0] == "report":
        argv[argv.index("x.html")] = str(tmp_path / "x.html")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "must be" in err and "not found" not in err
    assert args[-2] in err  # the option the user typed is named


def test_rerun_refuses_bad_threads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rerun", str(tmp_path / "x.json"), "--threads", "0"]) == 2
    assert "--threads must be from 1 to 512" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["urial", "qa", "twin-template"])
def test_compare_refuses_an_empty_prompt(tmp_path: Path, mode: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    gone = str(tmp_path / "gone.gguf")
    for user in ("", "  \n "):
        assert main(["compare", "--base", gone, "--instruct", gone, "--user", user,
                     "--mode", mode]) == 2
        err = capsys.readouterr().err
        assert "Type a message first: the prompt is empty" in err and "not found" not in err


def test_shift_and_prompt_refuse_an_empty_prompt(vocab_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    gone = str(tmp_path / "gone.gguf")
    assert main(["shift", "--base", gone, "--instruct", gone, "--user", " "]) == 2
    assert "Type a message first" in capsys.readouterr().err
    assert main(["prompt", "--model", str(vocab_dir / "ggml-vocab-qwen2.gguf"), "--user", ""]) == 2
    assert "Type a message first" in capsys.readouterr().err


def test_prompt_raw_mode_with_an_empty_message_says_what_happens(
    vocab_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prompt", "--model", str(vocab_dir / "ggml-vocab-phi-3.gguf"), "--user", "",
                 "--mode", "raw", "--tokens", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompt"] == "" and [t["piece"] for t in data["tokens"]] == ["<s>"]
    assert any("writes from nothing" in w for w in data["warnings"])


def test_compare_raw_mode_empty_prompt_writes_from_bos(
    tiny_phi3_base: Path, tiny_phi3: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "--base", str(tiny_phi3_base), "--instruct", str(tiny_phi3),
                 "--user", "", "--mode", "raw", "--max-tokens", "4", "--n-ctx", "512",
                 "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    base = data["base"]
    assert base["prompt"] == "" and base["stats"]["prompt_tokens"] == 1  # BOS only
    assert base["stats"]["generated_tokens"] == 4 and base["text"]
    assert any("writes from nothing" in n for n in base["notes"])
    assert data["instruct"]["stats"]["generated_tokens"] >= 1


def test_compare_says_when_the_context_size_changed(
    tiny_phi3_base: Path, tiny_phi3: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", "--base", str(tiny_phi3_base), "--instruct", str(tiny_phi3), "--user", "Hi",
            "--mode", "qa", "--max-tokens", "2", "--threads", "1"]
    assert main([*args, "--n-ctx", "5000"]) == 0
    out = capsys.readouterr().out
    assert out.count("[note] This model was trained with a context of 2,048 tokens, so Based "
                     "lowered the context size from 5,000 to 2,048 tokens.") == 2
    assert main([*args, "--n-ctx", "128", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    made = data["base"]["stats"]["n_ctx"]
    assert made >= 128
    if made != 128:  # the bundled llama.cpp rounds up to a multiple of 256: said, not silent
        assert f"llama.cpp rounded the context size up from 128 to {made:,} tokens." in data["base"]["notes"]
    assert main([*args, "--n-ctx", "1024"]) == 0
    assert "[note]" not in capsys.readouterr().out


def test_one_thread_is_singular(tiny_phi3: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hi\n", encoding="utf-8")
    assert main(["report", "--base", str(tiny_phi3), "--instruct", str(tiny_phi3), "--prompts",
                 str(prompts), "--out", str(out), "--max-tokens", "2", "--threads", "1",
                 "--n-ctx", "512", "--mode", "qa", "--prompt-source", "base-mode"]) == 0
    page = out.read_text(encoding="utf-8")
    assert re.search(r"CPU( \([^)<]*\))?, 1 thread<", page) and "1 threads" not in page
    assert "1 of 1 prompt;" in capsys.readouterr().err


@pytest.mark.parametrize(("given", "value"), [("auto", -2), ("AUTO", -2), ("all", -1), ("cpu", 0),
                                              ("0", 0), ("12", 12), ("-1", -1)])
def test_gpu_layers_option_takes_words_and_numbers(given: str, value: int) -> None:
    args = build_parser().parse_args(["compare", "--base", "b", "--instruct", "i", "--user", "x",
                                      "--n-gpu-layers", given])
    assert args.n_gpu_layers == value
    default = build_parser().parse_args(["compare", "--base", "b", "--instruct", "i", "--user", "x"])
    assert default.n_gpu_layers == -2  # Auto


def test_gpu_layers_option_refuses_other_words(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone.gguf")
    r = run("compare", "--base", gone, "--instruct", gone, "--user", "Hi", "--n-gpu-layers", "lots")
    assert r.returncode == 2
    assert r.stderr.strip() == ("based: argument --n-gpu-layers: must be auto, all, 0 (CPU only) or a "
                                "number of layers, not 'lots' (see `based compare --help`)")
    assert "Traceback" not in r.stderr
