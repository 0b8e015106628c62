"""The window's values: the core's presets and rules, Run refused with its reason next to Run,
an empty prompt, adjusted values said — on the real window with tiny models (offscreen Qt)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.core import paths
from desktop.core.sampling import DEFAULT_PRESET, PRESETS, SAMPLING_RULES, InvalidSetting
from desktop.core.settings import Settings
from tests.ui.test_main_window import LONG, run_and_wait, wait_loaded

SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens")


def test_every_box_holds_only_values_the_core_accepts(qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop.ui.controls import ControlsPanel

    c = ControlsPanel()
    qtbot.addWidget(c)
    assert set(c.fields) == set(SAMPLING)
    for field, box in c.fields.items():
        SAMPLING_RULES[field].check(field, box.minimum())
        SAMPLING_RULES[field].check(field, box.maximum())
    # top-p 0 is not a value: the box cannot reach it
    c.top_p.setValue(0.0)
    assert c.top_p.value() > 0


def test_the_preset_menu_is_the_cores_presets(qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop.ui.controls import ControlsPanel

    c = ControlsPanel()
    qtbot.addWidget(c)
    keys = [c.preset.itemData(i) for i in range(c.preset.count())]
    assert keys == [*PRESETS, "custom"]
    for key, preset in PRESETS.items():
        assert preset.describe() in c.preset.toolTip()
        c.choose_preset(key)
        p = c.params()
        for field, value in preset.values:
            assert getattr(p, field) == pytest.approx(value), (key, field)
        assert c.preset.currentData() == key
    c.temperature.setValue(1.3)
    assert c.preset.currentData() == "custom"


def test_the_windows_default_is_the_clis_default(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    from desktop.cli import _params, build_parser

    w = make_window(Settings())
    gui = w.controls.params()
    cli = _params(build_parser().parse_args(
        ["compare", "--base", "b", "--instruct", "i", "--user", "u"]))
    assert w.controls.preset.currentData() == DEFAULT_PRESET
    for field in SAMPLING:
        assert getattr(gui, field) == getattr(cli, field), field


def test_same_prompt_same_answer_in_the_window_and_the_cli(  # type: ignore[no-untyped-def]
    qtbot, make_window, settings_for, tiny_phi3_base: Path, tiny_phi3: Path
) -> None:
    # the window on its default preset, and `based compare` with no sampling option at all
    s = settings_for(user_prompt="Name three colours.", base_mode="qa", max_tokens=16)
    for field, value in PRESETS[DEFAULT_PRESET].values:
        assert getattr(s, field) == value
    w = make_window(s)
    wait_loaded(qtbot, w)
    run_and_wait(qtbot, w)
    gui = {side: w.controller.results[side] for side in ("base", "instruct")}
    threads = w.controller.threads_per_model()
    r = subprocess.run(
        [sys.executable, "-m", "desktop", "compare", "--base", str(tiny_phi3_base), "--instruct",
         str(tiny_phi3), "--user", "Name three colours.", "--mode", "qa", "--max-tokens", "16",
         "--n-ctx", "2048", "--threads", str(threads), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    for side in ("base", "instruct"):
        ev = gui[side]
        assert ev is not None and ev.text
        assert cli[side]["text"] == ev.text, side


def test_run_with_an_empty_prompt_is_refused_next_to_run(  # type: ignore[no-untyped-def]
    qtbot, make_window, settings_for
) -> None:
    w = make_window(settings_for(user_prompt="", base_mode="qa"))
    wait_loaded(qtbot, w)
    before = w.controller.run_id
    w.controls.run_button.click()
    msg = w.controls.message
    assert msg.isVisible() and msg.text().startswith("Type a message first: the prompt is empty")
    assert w.controller.run_id == before and not w.controller.active  # nothing ran
    assert not w.base_pane.error.isVisible()
    # whitespace is empty too, by Ctrl+Enter as well
    qtbot.keyClicks(w.controls.prompt, "   ")
    w.run()
    assert msg.isVisible() and w.controller.run_id == before
    # typing a message clears the refusal, and Run works
    qtbot.keyClicks(w.controls.prompt, "Hi")
    assert not msg.isVisible()
    run_and_wait(qtbot, w)
    assert w.instruct_pane.answer.text()


def test_raw_mode_empty_prompt_says_so_and_writes_from_bos(  # type: ignore[no-untyped-def]
    qtbot, make_window, settings_for
) -> None:
    w = make_window(settings_for(user_prompt="", base_mode="qa", max_tokens=6))
    wait_loaded(qtbot, w)
    note = w.controls.prompt_note
    assert not note.isVisible()
    w.controls.mode.setCurrentIndex(w.controls.mode.findData("raw"))
    assert note.isVisible() and "writes from nothing" in note.text() and "BOS" in note.text()
    run_and_wait(qtbot, w)
    assert not w.controls.message.isVisible()
    base = w.controller.results["base"]
    assert base is not None and base.stats.prompt_tokens == 1  # BOS only
    assert len(w.base_pane.answer.tokens()) == 6
    qtbot.keyClicks(w.controls.prompt, "Once")
    assert not note.isVisible()


def test_a_bad_value_refuses_run_with_its_sentence(qtbot, make_window, settings_for) -> None:  # type: ignore[no-untyped-def]
    w = make_window(settings_for(user_prompt="Hi"))
    wait_loaded(qtbot, w)
    c = w.controls
    c.top_p.setMinimum(0.0)  # a box widened by mistake cannot smuggle a bad value through
    c.top_p.setValue(0.0)
    with pytest.raises(InvalidSetting):
        c.params()
    before = w.controller.run_id
    c.run_button.click()
    assert c.message.isVisible()
    assert c.message.text() == "Top-p must be greater than 0 and at most 1, but it is 0."
    assert w.controller.run_id == before


def test_bad_saved_values_are_reset_and_said_at_the_top(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    paths.settings_file().parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file().write_text(json.dumps({"top_p": 1.5, "max_tokens": -5}), encoding="utf-8")
    w = make_window(None)
    assert w.notice.isVisible()
    assert "top-p must be greater than 0 and at most 1, but it is 1.5" in w.notice.text()
    assert "max tokens must be at least 1, but it is -5" in w.notice.text()
    assert w.controls.top_p.value() == 1.0 and w.controls.max_tokens.value() == 200


def test_a_saved_value_the_box_cannot_show_is_said(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    w = make_window(Settings(temperature=5.0, preset="custom"))  # valid, above the box's 2
    msg = w.controls.message
    assert msg.isVisible()
    assert "Based changed temperature from 5 to 2" in msg.text()
    assert w.controls.preset.currentData() == "custom"


def test_hand_edited_values_are_not_called_a_preset(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    w = make_window(Settings(preset="deterministic", temperature=0.7))
    assert w.controls.preset.currentData() == "custom"
    assert not w.controls.message.isVisible()


def test_a_bad_context_size_is_refused_in_the_pane(qtbot, make_window, settings_for) -> None:  # type: ignore[no-untyped-def]
    w = make_window(settings_for(n_ctx=0, user_prompt="Hi"))
    for pane in (w.base_pane, w.instruct_pane):
        assert pane.error.isVisible()
        assert pane.error.text() == ("The context size (n_ctx) must be from 1 to 1,048,576 tokens, "
                                     "but it is 0.")
    assert all(w.controller.load_error[s] for s in ("base", "instruct"))


def test_a_lowered_context_is_said_in_the_pane(qtbot, make_window, settings_for) -> None:  # type: ignore[no-untyped-def]
    w = make_window(settings_for(n_ctx=5000))
    wait_loaded(qtbot, w)
    for pane in (w.base_pane, w.instruct_pane):
        assert "lowered the context size from 5,000 to 2,048 tokens" in pane.info.text()
        assert "context 2,048 tokens" in pane.status.text()


def test_one_thread_is_singular(qtbot, make_window, tiny_phi3: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    w = make_window(Settings(n_ctx=512))
    monkeypatch.setattr(w.controller, "threads_per_model", lambda: 1)
    w.controller.set_model("instruct", str(tiny_phi3))
    qtbot.waitUntil(lambda: w.controller.loaded["instruct"] is not None, timeout=LONG)
    status = w.instruct_pane.status.text()
    assert status.endswith("· 1 thread") and "1 threads" not in status
