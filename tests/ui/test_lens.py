"""The alignment lens in the real window: token-shift overlay, tokenizer refusal, gallery,
history and export — on tiny generated models with real llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

from desktop.core.shift import ShiftClass
from tests.ui.test_main_window import LONG
from tests.ui.test_main_window import run_and_wait as _run
from tests.ui.test_main_window import wait_loaded as _loaded


def test_shift_overlay_same_model_is_unshifted(qtbot, make_window, settings_for, tiny_phi3) -> None:
    # the same file as base and instruct: every greedy token is the base's own first choice
    w = make_window(settings_for(base_model=str(tiny_phi3), user_prompt="Tell me about llamas.",
                                 max_tokens=24))
    _loaded(qtbot, w)
    _run(qtbot, w)
    panel = w.lens.panel
    assert panel.analyze.isEnabled()
    with qtbot.waitSignal(w.lens.shiftReady, timeout=LONG) as sig:
        panel.analyze.click()
    res = sig.args[0]
    assert res.summary.n_tokens == len(w.instruct_pane.answer.tokens()) == 24
    assert res.summary.shares["unshifted"] >= 0.97
    assert "Unshifted" in panel.shares.text() and "%" in panel.shares.text()
    view = w.instruct_pane.answer
    assert view._overlay is not None and view._overlay[0] == ShiftClass.UNSHIFTED.value
    tip = view.tooltip_for(0)
    assert "the base model ranked this token" in tip and "#1" in tip
    assert "Token shift" in w.instruct_pane.legend.text()
    assert not panel.rerun.isVisible()  # greedy answer: no sampling note


def test_shift_between_different_models_and_source_choice(qtbot, make_window, settings_for) -> None:
    w = make_window(settings_for(user_prompt="Why is the sky blue?", max_tokens=16))
    _loaded(qtbot, w)
    _run(qtbot, w)
    with qtbot.waitSignal(w.lens.shiftReady, timeout=LONG) as chat:
        w.lens.panel.analyze.click()
    # switching the prompt the base model sees re-runs the analysis with the base-mode prompt
    with qtbot.waitSignal(w.lens.shiftReady, timeout=LONG) as mode:
        w.lens.panel.source.setCurrentIndex(1)
    assert chat.args[0].prompt_tokens != mode.args[0].prompt_tokens
    assert w.settings.shift_prompt_source == "base-mode"
    cls = [t.cls for t in mode.args[0].tokens]
    assert len(cls) == 16 and len(w.lens.panel.strip.classes) == 16


def test_sampled_answer_says_so_and_offers_greedy_rerun(qtbot, make_window, settings_for, tiny_phi3) -> None:
    w = make_window(settings_for(base_model=str(tiny_phi3), user_prompt="Hi", temperature=0.9, top_k=40,
                                 top_p=0.95, preset="custom", seed=7))
    _loaded(qtbot, w)
    _run(qtbot, w)
    with qtbot.waitSignal(w.lens.shiftReady, timeout=LONG):
        w.lens.panel.analyze.click()
    assert "sampled" in w.lens.panel.sampled.text().lower()
    assert w.lens.panel.rerun.isVisibleTo(w.lens.panel)
    with qtbot.waitSignal(w.lens.shiftReady, timeout=LONG * 2) as sig:
        w.lens.panel.rerun.click()
    assert sig.args[0].summary.greedy
    assert w.controls.params().temperature == 0.0


def test_different_tokenizers_are_refused_in_words(qtbot, make_window, settings_for, tiny_llama_spm) -> None:
    w = make_window(settings_for(base_model=str(tiny_llama_spm), user_prompt="Hello there"))
    _loaded(qtbot, w)
    _run(qtbot, w)
    w.lens.panel.analyze.click()
    qtbot.waitUntil(lambda: "tokenizer" in w.lens.panel.message.text().lower()
                    or "vocabulary" in w.lens.panel.message.text().lower(), timeout=LONG)
    assert w.lens.result is None
    assert w.instruct_pane.answer._overlay is None
    assert not w.lens.panel.analyze.isEnabled()


def test_gallery_loads_an_example(qtbot, make_window, settings_for) -> None:
    from desktop.core.examples import load_examples

    w = make_window(settings_for())
    w.show_gallery()
    g = w.gallery
    assert g is not None and g.list.count() == len(load_examples()) >= 8
    g.list.setCurrentRow(2)
    ex = g.examples[2]
    assert ex.title in g.detail.text() or ex.title.replace("&", "&amp;") in g.detail.text()
    g.choose(2)
    assert w.controls.prompt.toPlainText() == ex.user
    assert w.controls.base_mode() == ex.base_mode.value
    assert w.controls.max_tokens.value() == ex.max_tokens
    assert w.lens_bar.note.text() == ex.what_to_look_for
    _loaded(qtbot, w)


def test_history_saves_lists_and_exports(qtbot, make_window, settings_for, tmp_path: Path) -> None:
    w = make_window(settings_for(user_prompt="A question for history"))
    _loaded(qtbot, w)
    with qtbot.waitSignal(w.lens.saved, timeout=LONG) as saved:
        _run(qtbot, w)
    rid = saved.args[0]
    assert rid > 0 and w.lens_bar.export.isEnabled()
    out = tmp_path / "cmp.json"
    with qtbot.waitSignal(w.history_host.worker.happened, timeout=LONG,
                          check_params_cb=lambda ev: ev.kind == "exported"):
        w.lens.export_to(str(out))
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["prompts"]["user"] == "A question for history"
    assert len(data["answers"]["instruct"]["tokens"]) == 16
    assert len(data["models"]["base"]["sha256"]) == 64
    # the History tab lists it and finds it by a word of the prompt
    w.tabs.setCurrentWidget(w.history_panel)
    qtbot.waitUntil(lambda: w.history_panel.list.topLevelItemCount() == 1, timeout=LONG)
    w.history_panel.query.setText("history")
    qtbot.waitUntil(lambda: w.history_panel.list.topLevelItemCount() == 1, timeout=LONG)
    w.history_panel.list.setCurrentItem(w.history_panel.list.topLevelItem(0))
    qtbot.waitUntil(lambda: "A question for history" in w.history_panel.view.toPlainText(), timeout=LONG)
    w.history_panel.query.setText("zebra-not-there")
    qtbot.waitUntil(lambda: w.history_panel.list.topLevelItemCount() == 0, timeout=LONG)


def test_shift_is_stored_with_the_comparison(qtbot, make_window, settings_for, tiny_phi3) -> None:  # type: ignore[no-untyped-def]
    from desktop.core.history import HistoryStore

    w = make_window(settings_for(base_model=str(tiny_phi3), user_prompt="Store my shift"))
    _loaded(qtbot, w)
    with qtbot.waitSignal(w.lens.saved, timeout=LONG) as saved:
        _run(qtbot, w)
    with qtbot.waitSignal(w.history_host.worker.happened, timeout=LONG,
                          check_params_cb=lambda ev: ev.kind == "shift-saved"):
        w.lens.panel.analyze.click()
    with HistoryStore() as store:
        rec = store.get(saved.args[0])
        assert rec.shift is not None and rec.shift["summary"]["unshifted"] >= 0.97
        assert store.search("Store my shift")[0].has_shift


def test_raw_switch_runs_and_is_saved(qtbot, make_window, settings_for) -> None:  # type: ignore[no-untyped-def]
    from desktop.core.history import HistoryStore

    w = make_window(settings_for(user_prompt="<|user|>\nHi<|end|>\n<|assistant|>\n", base_mode="raw"))
    _loaded(qtbot, w)
    w.controls.raw_controls.setChecked(True)
    with qtbot.waitSignal(w.lens.saved, timeout=LONG) as saved:
        _run(qtbot, w)
    base = w.controller.run_report.base.inspection
    assert base is not None and base.rendered.parse_special
    assert [t.id for t in base.tokens].count(32010) == 1  # <|user|> as a control token
    assert w.controller.results["base"].stats.prompt_tokens == base.token_count
    with HistoryStore() as store:
        rec = store.get(saved.args[0])
    assert rec.raw_control_tokens and rec.base_answer.parse_special
