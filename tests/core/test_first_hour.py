"""Issue 13 in the core: a fair default prompt, pair sanity, catalog trust and memory figures that
add up, offline in a few seconds, exports that fit the page with one seed, files saved to
Documents."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from desktop.core import paths
from desktop.core import settings as settings_mod
from desktop.core.prompts import DEFAULT_BASE_MODE, BaseMode
from desktop.core.settings import SETTINGS_VERSION, Settings

# -- 1. a fair default ---------------------------------------------------------------------------


def test_the_base_side_defaults_to_the_twins_chat_template() -> None:
    from desktop.cli import DEFAULT_MODE, _params, build_parser  # noqa: F401

    assert DEFAULT_BASE_MODE is BaseMode.TWIN
    assert Settings().base_mode == DEFAULT_BASE_MODE.value == DEFAULT_MODE
    args = build_parser().parse_args(["compare", "--base", "b", "--instruct", "i", "--user", "u"])
    assert args.mode == DEFAULT_BASE_MODE.value
    shift = build_parser().parse_args(["shift", "--base", "b", "--instruct", "i", "--user", "u"])
    assert shift.mode == DEFAULT_BASE_MODE.value
    # URIAL says, where it is chosen, that small models may copy its examples
    assert "copy" in BaseMode.URIAL.describe() and "example" in BaseMode.URIAL.describe()


def test_old_settings_that_never_chose_urial_get_the_new_default(tmp_path: Path) -> None:
    f = tmp_path / "settings.json"
    old = {k: v for k, v in Settings(base_mode="urial").to_dict().items() if k != "version"}
    f.write_text(json.dumps(old), encoding="utf-8")  # written by a version-1 Based
    loaded = settings_mod.load(f)
    assert loaded.settings.base_mode == DEFAULT_BASE_MODE.value
    assert loaded.settings.version == SETTINGS_VERSION
    assert loaded.message is not None and "URIAL is still one choice away" in loaded.message
    # a mode chosen by hand in version 1 is kept, silently
    f.write_text(json.dumps({**old, "base_mode": "qa"}), encoding="utf-8")
    kept = settings_mod.load(f)
    assert kept.settings.base_mode == "qa" and kept.message is None
    # URIAL chosen today (a version-2 file) stays URIAL, silently
    settings_mod.save(Settings(base_mode="urial"), f)
    now = settings_mod.load(f)
    assert now.settings.base_mode == "urial" and now.message is None


# -- 7. pair sanity ------------------------------------------------------------------------------


def test_pair_check_says_what_a_pair_can_do(tiny_phi3: Path, tiny_phi3_base: Path,
                                            tiny_llama_spm: Path, tmp_path: Path) -> None:
    from desktop.core.pair import check_pair
    from desktop.core.tinymodel import build_tiny_model

    twins = check_pair(tiny_phi3_base, tiny_phi3)
    assert twins.shares_tokenizer and twins.shift_available and twins.lines == ()
    strangers = check_pair(tiny_llama_spm, tiny_phi3)
    assert strangers.shares_tokenizer is False and not strangers.shift_available
    assert len(strangers.lines) == 1 and "do not share a tokenizer" in strangers.lines[0]
    assert "token shift and the alignment report are not available" in strangers.lines[0]
    # a chat template alone is common in base files; with an instruct-style name it is a warning
    assert not check_pair(tiny_phi3_base, tiny_phi3).base_looks_instruct
    chat_named = build_tiny_model(tmp_path / "SmolThing-135M-Instruct.gguf", vocab="phi-3",
                                  name="SmolThing 135M Instruct")
    looks = check_pair(chat_named, tiny_phi3)
    assert looks.base_looks_instruct
    assert any("looks like an instruct model" in line and "SmolThing-135M-Instruct.gguf" in line
               for line in looks.lines)
    no_template = build_tiny_model(tmp_path / "thing-it.gguf", vocab="phi-3", chat_template=None)
    assert not check_pair(no_template, tiny_phi3).base_looks_instruct
    same = check_pair(tiny_phi3, tiny_phi3)
    assert same.same_file and not same.base_looks_instruct and "same file" in same.lines[0]
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"nope")
    unknown = check_pair(broken, tiny_phi3)
    assert unknown.shares_tokenizer is None and unknown.lines == ()


# -- 9. catalog trust and figures that add up ----------------------------------------------------


def _numbers(sentence: str) -> tuple[float, list[float]]:
    total = re.search(r"about ([\d,.]+) [KMGT]?B", sentence)
    inside = re.search(r"\(([^()]*)\)", sentence)
    assert total and inside, sentence
    parts = [float(x.replace(",", "")) for x in re.findall(r"([\d,.]+) [KMGT]?B", inside.group(1))]
    return float(total.group(1).replace(",", "")), parts


@pytest.mark.parametrize("size", [105_500_000, 105_454_432, 999_999, 1_234_567_890, 7_300_000_000])
@pytest.mark.parametrize("other", [None, 105_454_432, 2_000_000_001])
@pytest.mark.parametrize("n_ctx", [512, 4096, 32768])
def test_the_memory_estimate_adds_up(size: int, other: int | None, n_ctx: int) -> None:
    from desktop.core.fit import assess_fit

    r = assess_fit(size, n_ctx=n_ctx, params_b=0.135, other_file_bytes=other, free_bytes=16 * 10**9)
    total, parts = _numbers(r.sentence)
    assert len(parts) == 3
    assert round(sum(parts), 1) == total, r.sentence
    assert sum(b for _, b in r.parts) == r.need_bytes
    units = set(re.findall(r"[\d,.]+ ([KMGT]?B)", r.sentence.split(", and")[0]))
    assert len(units) == 1, r.sentence  # one unit throughout, so the sum can be checked by eye
    if other is not None:
        assert r.sentence.startswith("Both models together need") and "each" in r.sentence


def test_the_catalog_says_what_is_known_in_plain_words() -> None:
    from desktop.core.catalog import load_catalog

    for p in load_catalog():
        for q in p.quants():
            words = p.what_is_known(q)
            assert "*" not in words and "QuantFactory" not in words and "assumed" not in words
            assert "checksum" in words
            b, i = p.files_for(q)
            if not (b.name_known and i.name_known):
                assert "could not be checked" in words and q in words
            exact = b.verified and i.verified
            assert p.size_words(q).startswith("about ") != exact
            assert ("estimate" in words) == (not exact and b.name_known and i.name_known)


# -- 5. offline, noticed in seconds ----------------------------------------------------------------


def test_no_network_is_noticed_before_any_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.utils import _http

    from desktop.core import hub
    from desktop.core.errors import DownloadError

    sleeps: list[float] = []
    monkeypatch.setattr(_http.time, "sleep", sleeps.append)  # huggingface_hub's back-off
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://based-test.invalid")  # a name that never resolves
    for call in (lambda: hub.search_gguf_repos("qwen"), lambda: hub.list_gguf_files("a/b")):
        with pytest.raises(DownloadError) as err:
            call()
        msg = str(err.value)
        assert msg.startswith("You seem to be offline: this computer cannot reach based-test.invalid")
        assert "models already on this computer still work" in msg and "connect to the internet" in msg
    assert sleeps == []  # refused up front: huggingface_hub never started its retries


def test_the_probe_gives_up_at_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import hub

    release = threading.Event()

    def hangs(*_a: object, **_k: object) -> None:  # a name lookup or connect that never returns
        release.wait(60)
        raise OSError("late")

    monkeypatch.setattr(hub.socket, "create_connection", hangs)
    try:
        assert hub.reachable("huggingface.co", 443, timeout_s=0.05) is False
    finally:
        release.set()
    assert hub.PROBE_TIMEOUT_S <= 3.0


def test_the_probe_follows_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import hub

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert hub.probe_target("https://huggingface.co") == ("proxy.example", 3128)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("https_proxy")
    assert hub.probe_target("https://huggingface.co") == ("huggingface.co", 443)
    assert hub.probe_target("http://127.0.0.1:8123") == ("127.0.0.1", 8123)


def test_huggingface_hubs_retry_lines_are_not_printed(monkeypatch: pytest.MonkeyPatch,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    import logging

    from huggingface_hub.utils import _http

    from desktop.core import hub

    hub.quiet_hub_logging()
    _http.logger.warning("Retrying in 1s [Retry 1/5].")  # as http_backoff logs it
    assert "Retry" not in capfd.readouterr().err
    assert logging.getLogger("huggingface_hub").getEffectiveLevel() >= logging.ERROR


# -- 12. HTML export -----------------------------------------------------------------------------


def _record(seed: int = 42):  # type: ignore[no-untyped-def]
    from desktop.core.history import AnswerRecord, ComparisonRecord, ModelRef

    ref = ModelRef(name="M", path="m-Q4_K_M.gguf", sha256="ab" * 32, file_size=1, quant="Q4_K_M")
    ans = AnswerRecord("hi", (), {}, True, ())
    return ComparisonRecord(
        created="2025-01-01T00:00:00", base=ref, instruct=ref, user="u", system=None,
        base_mode="twin-template", base_prompt="p", instruct_prompt="p",
        params={"temperature": 0.0, "top_p": 1.0, "top_k": 1, "min_p": 0.0, "repeat_penalty": 1.0,
                "seed": seed, "max_tokens": 8, "top_logprobs": 5},
        seed=seed, base_answer=ans, instruct_answer=ans,
        load={"n_ctx": 2048, "n_threads": 2, "n_gpu_layers": 0, "seed": 1234},
    )


def test_html_export_shows_one_seed_and_hashes_that_wrap() -> None:
    from desktop.core.export import CSS, to_html, to_markdown

    for page in (to_html(_record()), to_markdown(_record())):
        assert len(re.findall(r"\bseed\b", page, re.IGNORECASE)) == 1, page
        assert "42" in page and "1234" not in page
    page = to_html(_record())
    sha = "ab" * 32
    assert page.count(f'<td class="hash">{sha}</td>') == 2
    rules = dict(re.findall(r"([.\w][\w.:\- >]*)\{([^}]*)\}", CSS))
    assert "word-break:break-all" in rules[".hash"]  # a hash has no spaces: it breaks anywhere
    assert "table-layout:fixed" in rules["table.pair"] and "width:100%" in rules["table.pair"]
    assert '<table class="pair">' in page


def test_files_are_saved_to_documents_by_default() -> None:
    d = paths.documents_dir()
    assert d.is_dir() and d.name == "documents"  # under BASED_HOME in tests


def test_based_compare_says_the_pair_is_not_twins(tiny_llama_spm: Path, tiny_phi3: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from desktop.cli import main

    assert main(["compare", "--base", str(tiny_llama_spm), "--instruct", str(tiny_phi3), "--user",
                 "Hi", "--max-tokens", "2", "--threads", "1", "--n-ctx", "512", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any("do not share a tokenizer" in n for n in data["base"]["notes"])
    assert main(["compare", "--base", str(tiny_llama_spm), "--instruct", str(tiny_phi3), "--user",
                 "Hi", "--max-tokens", "2", "--threads", "1", "--n-ctx", "512"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[note] These two models do not share a tokenizer (they are not twins)")
