"""Sampling and load values: one set of rules and presets (desktop.core.sampling), checked before
any work, on real tiny models where llama.cpp is involved."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from desktop.core import settings as settings_mod
from desktop.core import urial
from desktop.core.engine import Engine
from desktop.core.errors import BasedError
from desktop.core.export import ExportError, load_json, rerun, run_comparison, to_json
from desktop.core.llama_vocab import MAX_TOP_K
from desktop.core.prompts import BaseMode, Conversation, render_base
from desktop.core.sampling import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_PRESET,
    LOAD_RULES,
    MAX_N_CTX,
    MAX_TOP_LOGPROBS,
    PRESETS,
    SAMPLING_RULES,
    SEED_MAX,
    InvalidSetting,
    UnknownPreset,
    check,
    fit_context,
    get_preset,
    matching_preset,
    preset_params,
)
from desktop.core.settings import Settings
from desktop.core.shift_run import run_shift
from desktop.core.types import GenerationRequest, LoadOptions, SamplingParams

BAD_SAMPLING = [
    ("temperature", -0.1, "0 or more"),
    ("temperature", -1, "0 or more"),
    ("top_p", 0.0, "greater than 0 and at most 1"),
    ("top_p", -0.5, "greater than 0 and at most 1"),
    ("top_p", 1.01, "greater than 0 and at most 1"),
    ("min_p", -0.01, "from 0 to 1"),
    ("min_p", 1.5, "from 0 to 1"),
    ("top_k", -1, "0 or more"),
    ("top_k", 2**31, "at most 2,147,483,647"),
    ("top_k", 2.5, "a whole number"),
    ("repeat_penalty", 0.0, "greater than 0"),
    ("repeat_penalty", -1.1, "greater than 0"),
    ("max_tokens", 0, "at least 1"),
    ("max_tokens", -5, "at least 1"),
    ("seed", -1, "from 0 to 4,294,967,294"),
    ("seed", 2**32 - 1, "from 0 to 4,294,967,294"),  # llama.cpp's "random seed" value
    ("top_logprobs", 11, "from 0 to 10"),
    ("top_logprobs", -1, "from 0 to 10"),
    ("temperature", "hot", "a number"),
    ("top_k", True, "a whole number"),
    ("max_tokens", None, "a whole number"),
]
FLOAT_FIELDS = ["temperature", "top_p", "min_p", "repeat_penalty"]
BAD_LOAD = [
    ("n_ctx", 0, "from 1 to 1,048,576 tokens"),
    ("n_ctx", -128, "from 1 to 1,048,576 tokens"),
    ("n_ctx", MAX_N_CTX + 1, "from 1 to 1,048,576 tokens"),
    ("n_ctx", 2048.0, "a whole number"),
    ("n_threads", 0, "from 1 to 512"),
    ("n_threads", 513, "from 1 to 512"),
    ("n_gpu_layers", -3, "-2 (Auto), -1 (all layers)"),
    ("seed", -3, "from 0 to 4,294,967,294"),
]


def _one_sentence(text: str) -> None:
    assert text.endswith(".") and text.count(". ") == 0, text
    for bad in ("Error", "Traceback", "b'", "int(", "float(", "__"):
        assert bad not in text, text


@pytest.mark.parametrize(("field", "value", "words"), BAD_SAMPLING)
def test_bad_sampling_values_are_refused_in_one_sentence(field: str, value: Any, words: str) -> None:
    with pytest.raises(InvalidSetting) as ei:
        SamplingParams(**{field: value})
    msg = str(ei.value)
    assert words in msg and ei.value.field == field
    _one_sentence(msg)


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_nan_and_infinity_are_refused_everywhere(field: str, value: Any) -> None:
    with pytest.raises(InvalidSetting, match="finite number"):
        SamplingParams(**{field: value})
    with pytest.raises(InvalidSetting, match="but it is (NaN|infinity|minus infinity|a number)"):
        check(field, value)


@pytest.mark.parametrize("field", ["n_ctx", "n_threads", "n_gpu_layers", "seed"])
@pytest.mark.parametrize("value", [math.nan, math.inf, 1.5])
def test_nan_and_fractions_are_refused_for_whole_numbers(field: str, value: float) -> None:
    with pytest.raises(InvalidSetting, match="a whole number"):
        LoadOptions(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value", "words"), BAD_LOAD)
def test_bad_load_values_are_refused_in_one_sentence(field: str, value: Any, words: str) -> None:
    with pytest.raises(InvalidSetting) as ei:
        LoadOptions(**{field: value})
    assert words in str(ei.value) and ei.value.field == field
    _one_sentence(str(ei.value))


def test_the_edges_of_every_range_are_accepted() -> None:
    SamplingParams(temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=0.01, seed=0,
                   max_tokens=1, top_logprobs=0)
    SamplingParams(top_p=1e-6, min_p=1.0, seed=SEED_MAX, top_logprobs=MAX_TOP_LOGPROBS,
                   temperature=100.0, repeat_penalty=5.0, top_k=2**31 - 1)
    LoadOptions(n_ctx=1, n_threads=None, n_gpu_layers=-1, seed=0)
    LoadOptions(n_ctx=MAX_N_CTX, n_threads=512, n_gpu_layers=999, seed=SEED_MAX)
    assert MAX_TOP_LOGPROBS == MAX_TOP_K  # the engine reports at most this many alternatives


def test_stop_strings_must_be_text() -> None:
    with pytest.raises(InvalidSetting, match="Each stop string must be text, but it is 3"):
        SamplingParams(stop=("ok", 3))  # type: ignore[arg-type]
    with pytest.raises(InvalidSetting, match="list of texts"):
        SamplingParams(stop="\n")  # type: ignore[arg-type]


def test_the_message_can_name_the_value_as_its_context_does() -> None:
    with pytest.raises(InvalidSetting) as ei:
        SamplingParams(top_p=1.5)
    err = ei.value
    assert str(err) == "Top-p must be greater than 0 and at most 1, but it is 1.5."
    assert err.sentence(name="--top-p") == "--top-p must be greater than 0 and at most 1, but it is 1.5."
    assert err.sentence(prefix="In this file, ") == (
        "In this file, top-p must be greater than 0 and at most 1, but it is 1.5.")


def test_every_rule_has_a_name_and_words() -> None:
    for field, rule in {**SAMPLING_RULES, **LOAD_RULES}.items():
        assert rule.name and rule.words, field
        if field in SAMPLING_RULES:
            assert field in SamplingParams.__dataclass_fields__
        else:
            assert field in LoadOptions.__dataclass_fields__


# -- nothing bad reaches llama.cpp ----------------------------------------------------------------


def test_engine_refuses_bad_load_options_before_touching_the_file(tmp_path: Path) -> None:
    opts = LoadOptions(n_ctx=512)
    object.__setattr__(opts, "n_ctx", -1)  # past the constructor's check
    with pytest.raises(InvalidSetting, match="context size"):
        Engine(tmp_path / "does-not-exist.gguf", opts)  # not "not found": checked first


def test_engine_refuses_bad_sampling_before_decoding(tiny_phi3: Path) -> None:
    with Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=1)) as e:
        p = SamplingParams.deterministic(max_tokens=4)
        object.__setattr__(p, "max_tokens", -5)  # past the constructor's check
        with pytest.raises(InvalidSetting, match="Max tokens must be at least 1, but it is -5"):
            next(e.stream(GenerationRequest(1, "Hello", p)))
        assert e.last_stats.generated_tokens == 0  # nothing ran
        ok = e.generate(GenerationRequest(2, "Hello", SamplingParams.deterministic(max_tokens=3)))
        assert ok.stats.generated_tokens == 3


# -- the context size: adjusted values are said -----------------------------------------------


def test_fit_context_lowers_to_the_trained_context_and_says_so() -> None:
    assert fit_context(1024, 2048) == (1024, "")
    assert fit_context(1024, 0) == (1024, "")  # the file does not say: nothing to lower to
    n, note = fit_context(8192, 2048)
    assert n == 2048
    assert note == ("This model was trained with a context of 2,048 tokens, so Based lowered the "
                    "context size from 8,192 to 2,048 tokens.")
    with pytest.raises(InvalidSetting):
        fit_context(0, 2048)


def test_llama_cpp_rounding_the_context_is_said(tiny_phi3: Path) -> None:
    with Engine(tiny_phi3, LoadOptions(n_ctx=128, n_threads=1)) as e:
        assert e.info.n_ctx >= 128
        if e.info.n_ctx != 128:  # the bundled llama.cpp makes contexts in steps of 256
            assert f"rounded the context size up from 128 to {e.info.n_ctx:,} tokens" in e.info.note
    with Engine(tiny_phi3, LoadOptions(n_ctx=256, n_threads=1)) as e:
        assert e.info.n_ctx == 256 and e.info.note == ""


def test_a_context_past_the_trained_one_is_lowered_and_said(tiny_phi3: Path) -> None:
    with Engine(tiny_phi3, LoadOptions(n_ctx=5000, n_threads=1)) as e:
        assert e.info.n_ctx == e.info.n_ctx_train == 2048
        assert "lowered the context size from 5,000 to 2,048 tokens" in e.info.note


# -- presets ----------------------------------------------------------------------------------


def test_presets_are_one_set_used_everywhere() -> None:
    det = PRESETS["deterministic"]
    assert det.describe() == ("temperature 0, top-p 1, top-k 1, min-p 0, repeat penalty 1, seed 0")
    assert SamplingParams.deterministic() == det.params()
    assert SamplingParams.deterministic().greedy
    assert SamplingParams.creative() == PRESETS["creative"].params()
    u = urial.URIAL_SAMPLING  # the paper's setting for URIAL
    assert (u.temperature, u.top_p, u.repeat_penalty) == (0.3, 1.0, 1.1)
    assert matching_preset(u) == "urial" and matching_preset(SamplingParams()) is None
    assert preset_params("creative", seed=9).seed == 9
    with pytest.raises(UnknownPreset, match="choose one of: deterministic, creative, urial"):
        get_preset("greedy")


def test_the_windows_defaults_are_the_default_preset() -> None:
    s = Settings()
    assert s.preset == DEFAULT_PRESET
    for field, value in PRESETS[DEFAULT_PRESET].values:
        assert getattr(s, field) == value, field
    assert s.max_tokens == DEFAULT_MAX_TOKENS


# -- the settings file ------------------------------------------------------------------------


def test_bad_values_in_the_settings_file_are_reset_and_said(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"top_p": 1.5, "temperature": NaN, "max_tokens": -5, "n_ctx": 0, '
                    '"top_k": "forty", "seed": 7, "preset": "greedy"}', encoding="utf-8")
    loaded = settings_mod.load_or_default(path)
    s = loaded.settings
    assert (s.top_p, s.max_tokens, s.n_ctx, s.top_k) == (1.0, 200, 4096, 1)
    assert s.temperature == 0.0 and s.seed == 7 and s.preset == "custom"
    assert loaded.notice is None and path.exists()  # not a corrupt file: it is kept
    msg = loaded.message or ""
    assert ("In your settings file, top-p must be greater than 0 and at most 1, but it is 1.5, so "
            "Based used 1 instead.") in msg
    assert "temperature must be a finite number" in msg and "but it is NaN" in msg
    assert "max tokens must be at least 1, but it is -5" in msg
    assert "but it is 'forty'" in msg
    assert "preset Based does not know ('greedy')" in msg
    assert len(loaded.fixed) == 6


def test_good_settings_files_say_nothing(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings_mod.save(Settings(temperature=1.5, top_k=0, preset="custom"), path)
    loaded = settings_mod.load_or_default(path)
    assert loaded.message is None and loaded.settings.temperature == 1.5


# -- based rerun's JSON -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def record_json(tiny_phi3: Path, tiny_phi3_base: Path) -> str:
    rec = run_comparison(tiny_phi3_base, tiny_phi3, Conversation("Hi"), base_mode="qa",
                         params=SamplingParams.deterministic(max_tokens=2),
                         load=LoadOptions(n_ctx=256, n_threads=1))
    return to_json(rec)


@pytest.mark.parametrize(
    ("where", "key", "value", "words"),
    [
        ("params", "top_p", 0, "In this comparison file, top-p must be greater than 0"),
        ("params", "max_tokens", -5, "In this comparison file, max tokens must be at least 1"),
        ("params", "temperature", math.nan, "but it is NaN"),
        ("params", "repeat_penalty", math.inf, "but it is infinity"),
        ("params", "top_k", "40", "top-k must be a whole number"),
        ("load", "n_ctx", 128.5, "the context size (n_ctx) must be a whole number"),
        ("load", "n_gpu_layers", -7, "the number of GPU layers"),
        (None, "seed", 1e400, "the seed must be a whole number"),
    ],
)
def test_rerun_checks_the_files_values_before_any_work(
    record_json: str, tmp_path: Path, where: str | None, key: str, value: Any, words: str
) -> None:
    d = json.loads(record_json)
    (d[where] if where else d)[key] = value
    for side in ("base", "instruct"):  # hashing or loading would fail with "not found"
        d["models"][side]["path"] = str(tmp_path / "gone.gguf")
    text = json.dumps(d)  # NaN and Infinity are valid in Python's JSON, and in files people edit
    with pytest.raises(ExportError) as ei:
        rerun(load_json(text))
    assert words in str(ei.value)
    assert "not found" not in str(ei.value)
    _one_sentence(str(ei.value))


def test_rerun_refuses_bad_threads(record_json: str) -> None:
    with pytest.raises(InvalidSetting, match="CPU threads"):
        rerun(load_json(record_json), threads=-2)


# -- the token-shift analysis and the report ------------------------------------------------------


def test_shift_checks_its_values_before_any_work(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone.gguf")
    with pytest.raises(InvalidSetting, match="base alternatives per token .top-k. must be from 0 to 10"):
        run_shift(gone, gone, Conversation("Hi"), top_k=11)
    with pytest.raises(InvalidSetting, match="Max tokens"):
        run_shift(gone, gone, Conversation("Hi"), max_tokens=0)
    with pytest.raises(InvalidSetting, match="context size"):
        run_shift(gone, gone, Conversation("Hi"), n_ctx=-1)
    with pytest.raises(BasedError, match="Type a message first"):
        run_shift(gone, gone, Conversation("   "))


# -- raw mode: an empty prompt writes from BOS only ---------------------------------------------


def test_raw_mode_empty_prompt_generates_from_bos_only(tiny_phi3_base: Path) -> None:
    from desktop.core.gguf_info import read_gguf

    info = read_gguf(tiny_phi3_base)
    rendered = render_base(BaseMode.RAW, Conversation(""), base=info)
    assert rendered.text == ""
    with Engine(tiny_phi3_base, LoadOptions(n_ctx=256, n_threads=1)) as e:
        assert e.tokenize_ids(rendered.text, rendered.add_bos) == [info.bos_token_id]
        p = replace(SamplingParams.deterministic(max_tokens=5), stop=rendered.stop)
        res = e.generate(GenerationRequest(1, rendered.text, p, add_bos=rendered.add_bos),
                         threading.Event())
    assert res.stats.prompt_tokens == 1  # BOS, and nothing else
    assert res.stats.generated_tokens == 5
