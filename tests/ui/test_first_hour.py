"""Issue 13 in the real window (tiny generated models, real llama.cpp, offscreen Qt): the first
hour of a non-programmer. One test (or more) per item; the window sizes and text fit of item 3
are in test_fit.py, the core's halves in tests/core/test_first_hour.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop.core import paths
from desktop.core.prompts import DEFAULT_BASE_MODE
from desktop.core.settings import Settings
from tests.plainwords import jargon
from tests.ui.test_main_window import LONG, run_and_wait, wait_loaded
from tests.ui.test_models_panel import hub  # noqa: F401  (the fake Hugging Face fixture)

# -- 1. a fair default -----------------------------------------------------------------------------


def test_the_window_starts_with_the_same_prompt_on_both_sides(qtbot, make_window, tiny_phi3_base,  # type: ignore[no-untyped-def]
                                                               tiny_phi3) -> None:
    w = make_window(Settings(base_model=str(tiny_phi3_base), instruct_model=str(tiny_phi3),
                             user_prompt="Tell me a long story about a dragon.", n_ctx=2048))
    c = w.controls
    assert c.base_mode() == DEFAULT_BASE_MODE.value == "twin-template"
    assert "same prompt" in c.mode_help.text()
    base_ins, inst_ins = w.base_pane.inspector, w.instruct_pane.inspector
    qtbot.waitUntil(lambda: base_ins.inspection is not None and inst_ins.inspection is not None,
                    timeout=LONG)
    # the same chat markup on both sides (the base file has no template of its own)
    assert "<|user|>" in base_ins.inspection.rendered.text
    assert base_ins.inspection.rendered.text.replace("<s>", "") == \
        inst_ins.inspection.rendered.text.replace("<s>", "")
    # URIAL is one choice away, and says that small models may copy its examples
    urial = c.mode.findData("urial")
    assert urial >= 0 and "copy" in c.mode.itemData(urial, Qt.ItemDataRole.ToolTipRole)
    c.mode.setCurrentIndex(urial)
    assert "copy those examples" in c.mode_help.text() and c.mode_help.isVisible()


def test_settings_from_an_older_version_get_the_new_default_and_say_so(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    old = {k: v for k, v in Settings(base_mode="urial").to_dict().items() if k != "version"}
    paths.settings_file().write_text(json.dumps(old), encoding="utf-8")
    w = make_window(None)
    assert w.controls.base_mode() == "twin-template"
    assert w.notice.isVisible() and "URIAL is still one choice away" in w.notice.text()
    w.notice_ok.click()
    assert not w.notice_box.isVisible()
    w.close()
    saved = json.loads(paths.settings_file().read_text(encoding="utf-8"))
    assert saved["base_mode"] == "twin-template" and saved["version"] == 2
    w2 = make_window(None)  # said once: the file is now of this version
    assert not w2.notice_box.isVisible()


# -- 3. a window for answers (the rest is in test_fit.py) -----------------------------------------


def test_sampling_sits_behind_settings_with_the_preset_visible(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    w = make_window(Settings())
    c = w.controls
    assert not c.settings_panel.isVisible() and c.settings_button.text() == "Settings: Deterministic"
    c.settings_button.click()
    assert c.settings_panel.isVisible() and c.temperature.isVisible()
    c.choose_preset("creative")
    assert c.settings_button.text() == "Settings: Creative"
    c.temperature.setValue(1.7)
    assert c.settings_button.text() == "Settings: Custom"
    c.settings_button.click()
    assert not c.settings_panel.isVisible()


# -- 4. actions that do nothing visible ------------------------------------------------------------


def test_run_with_no_models_is_disabled_and_says_why(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    w = make_window(Settings(user_prompt="Hello"))
    c = w.controls
    assert w.stack.currentWidget() is w.empty
    assert not c.run_button.isEnabled()
    assert c.run_button.toolTip().startswith("Choose the two models first")
    before = w.controller.run_id
    qtbot.keyClick(c.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert c.message.isVisible() and c.message.text().startswith("Choose the two models first")
    assert w.controller.run_id == before
    # from another tab, Ctrl+Enter brings the Compare tab (and its reason) into sight
    w.tabs.setCurrentWidget(w.history_panel)
    w.run()
    assert w.tabs.currentIndex() == 0 and c.message.isVisible()


def test_run_is_disabled_while_no_chosen_model_loads(qtbot, make_window, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      tiny_phi3: Path) -> None:
    # a file that passes validation but that llama.cpp refuses to load (a weight is missing): it
    # stays chosen, and its load fails (a file that is not a valid model is forgotten before any
    # load instead)
    from tests.gguf_corpus import parse

    doc = parse(tiny_phi3)
    doc.tensors = [t for t in doc.tensors if t.name != b"blk.0.attn_q.weight"]
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(doc.to_bytes())
    w = make_window(Settings(base_model=str(bad), instruct_model=str(bad), user_prompt="Hi"))
    qtbot.waitUntil(lambda: all(w.controller.load_error.values()), timeout=LONG)
    c = w.controls
    assert not c.run_button.isEnabled() and "Neither model could be loaded" in c.run_button.toolTip()


def test_run_is_enabled_once_a_model_is_chosen(qtbot, make_window, settings_for) -> None:  # type: ignore[no-untyped-def]
    from desktop.ui.controls import RUN_TIP

    w = make_window(settings_for(user_prompt="Hi"))
    assert w.controls.run_button.isEnabled() and w.controls.run_button.toolTip() == RUN_TIP
    wait_loaded(qtbot, w)
    run_and_wait(qtbot, w)
    assert w.instruct_pane.copy_button.isEnabled()  # Copy works once there is an answer


# -- 5. offline, in plain words ---------------------------------------------------------------------


def test_a_search_without_network_says_so_in_plain_words(qtbot, make_window, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://based-test.invalid")
    w = make_window(Settings())
    w.tabs.setCurrentWidget(w.models_panel)
    b = w.models_panel.browser
    w.models_panel.sources.setCurrentWidget(b)
    b.query.setText("qwen")
    b.search.click()
    qtbot.waitUntil(lambda: "offline" in b.status.text(), timeout=LONG)
    text = b.status.text()
    assert text.startswith("You seem to be offline") and "still work" in text
    assert jargon(text) == []


# -- 6. stale state ------------------------------------------------------------------------------


def test_a_guided_example_clears_the_old_answers(qtbot, make_window, settings_for) -> None:  # type: ignore[no-untyped-def]
    from desktop.core.examples import load_examples

    w = make_window(settings_for(user_prompt="Old question", max_tokens=8))
    wait_loaded(qtbot, w)
    with qtbot.waitSignal(w.lens.saved, timeout=LONG):
        run_and_wait(qtbot, w)
    assert w.base_pane.answer.text() and w.lens_bar.export.isEnabled()
    assert w.lens.panel.analyze.isEnabled()
    ex = load_examples()[0]
    w.show_gallery()
    w.gallery.choose(0)
    for pane in (w.base_pane, w.instruct_pane):
        assert pane.answer.text() == "" and pane.answer.tokens() == []
        assert "prompt token" not in pane.status.text()  # the old run's stats went too
        assert not pane.copy_button.isEnabled()
    assert not w.lens_bar.export.isEnabled() and not w.lens.panel.analyze.isEnabled()
    assert w.controls.prompt.toPlainText() == ex.user and w.lens_bar.note.text() == ex.what_to_look_for


def test_new_inputs_mark_the_answers_and_a_new_model_clears_them(qtbot, make_window, settings_for,  # type: ignore[no-untyped-def]
                                                                 tiny_qwen2) -> None:
    from desktop.ui.controller import STALE

    w = make_window(settings_for(user_prompt="First", max_tokens=6))
    wait_loaded(qtbot, w)
    run_and_wait(qtbot, w)
    stats = w.base_pane.status.text()
    assert "prompt token" in stats
    qtbot.keyClicks(w.controls.prompt, " and more")
    assert w.base_pane.status.text() == STALE == w.instruct_pane.status.text()
    assert w.base_pane.answer.text()  # kept, to compare with, but said to be old
    w.controls.prompt.setPlainText("First")  # back to the message it answered
    assert w.base_pane.status.text() == stats
    w.choose("instruct", str(tiny_qwen2))  # another model: the old answers mean nothing now
    assert w.base_pane.answer.text() == "" and w.instruct_pane.answer.text() == ""
    wait_loaded(qtbot, w)  # (closing mid-load of a 150k-token vocabulary can outlast the wait)


def test_history_detail_follows_the_search(qtbot, make_window, settings_for) -> None:  # type: ignore[no-untyped-def]
    w = make_window(settings_for(user_prompt="About llamas", max_tokens=6))
    wait_loaded(qtbot, w)
    with qtbot.waitSignal(w.lens.saved, timeout=LONG):
        run_and_wait(qtbot, w)
    h = w.history_panel
    w.tabs.setCurrentWidget(h)
    qtbot.waitUntil(lambda: h.list.topLevelItemCount() == 1, timeout=LONG)
    h.list.setCurrentItem(h.list.topLevelItem(0))
    qtbot.waitUntil(lambda: "About llamas" in h.view.toPlainText(), timeout=LONG)
    h.query.setText("llamas")  # still listed: still shown
    qtbot.waitUntil(lambda: h.list.topLevelItemCount() == 1, timeout=LONG)
    qtbot.wait(100)
    assert "About llamas" in h.view.toPlainText() and h.delete.isEnabled()
    h.query.setText("zebra-not-there")  # filtered out: the detail goes with it
    qtbot.waitUntil(lambda: h.list.topLevelItemCount() == 0, timeout=LONG)
    qtbot.waitUntil(lambda: h.view.toPlainText() == "", timeout=LONG)
    assert not h.delete.isEnabled()
    assert not any(b.isEnabled() for b in h.export_buttons.values())


def test_after_a_tokenizer_mismatch_token_shift_never_says_ready_again(qtbot, make_window,  # type: ignore[no-untyped-def]
                                                                       settings_for, tiny_llama_spm) -> None:
    w = make_window(settings_for(base_model=str(tiny_llama_spm), user_prompt="Hello there",
                                 max_tokens=6))
    wait_loaded(qtbot, w)
    panel = w.lens.panel
    qtbot.waitUntil(lambda: w.controller.pair is not None, timeout=LONG)
    for _ in range(2):  # the same pair, run after run
        run_and_wait(qtbot, w)
        assert "Ready" not in panel.message.text()
        assert "share a tokenizer" in panel.message.text() and not panel.analyze.isEnabled()
    # even when the pair check is not back yet, the refusal from the analysis sticks
    w.controller.pair = None
    w.lens.refused = None
    panel.analyze.setEnabled(True)
    panel.analyze.click()
    qtbot.waitUntil(lambda: "tokenizer" in panel.message.text(), timeout=LONG)
    run_and_wait(qtbot, w)
    assert "Ready" not in panel.message.text() and not panel.analyze.isEnabled()


# -- 7. pair sanity, up front ------------------------------------------------------------------


def test_the_pair_is_checked_when_picked(qtbot, make_window, settings_for, tiny_llama_spm,  # type: ignore[no-untyped-def]
                                        tmp_path: Path) -> None:
    from desktop.core.tinymodel import build_tiny_model

    w = make_window(settings_for())
    qtbot.waitUntil(lambda: w.controller.pair is not None, timeout=LONG)
    assert not w.pair_note.isVisible() and w.lens_bar.report.isEnabled()  # twins: nothing to say
    w.choose("base", str(tiny_llama_spm))
    qtbot.waitUntil(lambda: w.pair_note.isVisible(), timeout=LONG)  # before any run
    assert "do not share a tokenizer" in w.pair_note.text()
    assert "token shift and the alignment report are not available" in w.pair_note.text()
    assert not w.lens_bar.report.isEnabled() and "tokenizer" in w.lens_bar.report.toolTip()
    assert len(w.pair_note.text().splitlines()) == 1  # one line per thing to know
    chatty = build_tiny_model(tmp_path / "Tiny-Chat-Instruct.gguf", vocab="phi-3",
                              name="Tiny Chat Instruct")
    w.choose("base", str(chatty))
    qtbot.waitUntil(lambda: "looks like an instruct model" in w.pair_note.text(), timeout=LONG)
    assert "Tiny-Chat-Instruct.gguf" in w.pair_note.text()
    assert w.lens_bar.report.isEnabled()  # same tokenizer: the report is possible


# -- 8. the Downloads view -----------------------------------------------------------------------


def test_cancelled_and_failed_downloads_say_so_and_can_be_retried_or_cleared(  # type: ignore[no-untyped-def]
    qtbot, hub, make_window  # noqa: F811
) -> None:
    w = make_window(Settings())
    panel = w.models_panel
    panel.catalog.setCurrentItem(panel.catalog.topLevelItem(0))
    hub.stall_after = 32 * 1024
    panel.get_pair.click()
    rows = panel.downloads.rows
    qtbot.waitUntil(lambda: len(rows) == 2 and rows[min(rows)].bar.value() > 0, timeout=LONG)
    first = min(rows)
    rows[first].cancel.click()
    qtbot.waitUntil(lambda: rows[first].state == "cancelled", timeout=LONG)
    row = rows[first]
    assert row.status.text().startswith("Cancelled: the partial file was deleted")
    assert (row.pause.text(), row.cancel.text()) == ("Retry", "Clear")
    assert row.pause.isEnabled() and row.cancel.isEnabled() and row.bar.format() == "Cancelled"
    hub.stall_after = None
    second = max(rows)
    qtbot.waitUntil(lambda: rows[second].state == "done", timeout=LONG)
    with qtbot.waitSignal(panel.pairChosen, timeout=LONG):  # Retry: downloaded after all
        row.pause.click()
    assert row.state == "done" and (row.cancel.text(), row.pause.isVisible()) == ("Clear", False)
    n = len(rows)
    row.cancel.click()  # Clear: the line goes, the model stays
    assert len(rows) == n - 1
    assert next(w.settings.resolved_models_dir().rglob("tiny-base.Q8_0.gguf")).is_file()


def test_a_failed_download_says_what_happened(qtbot, hub) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from desktop.core.hub import RemoteFile
    from desktop.core.settings import Settings
    from desktop.ui.models_panel import ModelsPanel

    panel = ModelsPanel(Settings())
    qtbot.addWidget(panel)
    hub.fail("test/Tiny-Base-GGUF", 500)
    panel._download_remote(RemoteFile("test/Tiny-Base-GGUF", "tiny-base.Q8_0.gguf", None, "Q8_0", None, None))
    (row,) = panel.downloads.rows.values()
    qtbot.waitUntil(lambda: row.state == "failed", timeout=LONG)
    try:
        assert row.status.text().startswith("Failed. Hugging Face had a server error (500)")
        assert "Retry continues where it stopped" in row.status.text()
        assert (row.pause.text(), row.cancel.text()) == ("Retry", "Clear")
        row.cancel.click()
        assert panel.downloads.rows == {} and not panel.downloads.empty.isHidden()
    finally:
        panel.shutdown()


# -- 9. catalog trust ----------------------------------------------------------------------------


def test_the_catalog_says_what_is_known_and_its_figures_add_up(qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop.core.settings import Settings
    from desktop.ui.models_panel import ModelsPanel

    panel = ModelsPanel(Settings())
    qtbot.addWidget(panel)
    for n in range(panel.catalog.topLevelItemCount()):
        item = panel.catalog.topLevelItem(n)
        assert "*" not in item.text(0)
        panel.catalog.setCurrentItem(item)
        p = panel.selected_pair()
        text = panel.detail.text()
        for jargon_word in ("QuantFactory naming", "assumed", "Not verified", "*"):
            assert jargon_word not in text, (p.id, jargon_word)
        import html as _html

        assert _html.escape(p.what_is_known(panel.quant.currentText())) in text
        m = re.search(r"need about ([\d,.]+) ([KMG]B) of \w+ \(([^)]*)\)", text)
        assert m, text
        parts = re.findall(r"([\d,.]+) ([KMG]B)", m.group(3))
        assert {u for _, u in parts} == {m.group(2)}
        assert round(sum(float(v.replace(",", "")) for v, _ in parts), 1) == float(m.group(1).replace(",", ""))
    panel.shutdown()


# -- 10. the inspector wraps at whitespace --------------------------------------------------------


def test_the_inspector_never_breaks_a_word(qtbot) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QTextBrowser

    from desktop.ui.inspector import prompt_html

    text = ("The assistant gives helpful, accurate and well-organized answers. It is honest: when "
            "it does not know something, it says so instead of making things up. ") * 4
    view = QTextBrowser()
    qtbot.addWidget(view)
    view.resize(260, 400)
    view.show()
    view.setHtml(prompt_html((), text))
    qtbot.wait(20)
    doc = view.document()
    plain = doc.toPlainText()
    breaks = 0
    block = doc.begin()
    while block.isValid():
        layout = block.layout()
        for i in range(layout.lineCount() - 1):
            line = layout.lineAt(i)
            end = block.position() + line.textStart() + line.textLength()
            before, after = plain[end - 1], plain[end]
            breaks += 1
            assert not (before.isalnum() and after.isalnum()), f"broken at {plain[end - 8:end + 8]!r}"
        block = block.next()
    assert breaks >= 5  # it did wrap, many times


# -- 11. the report dialog -----------------------------------------------------------------------


def test_the_report_dialog_names_its_models_in_plain_words_and_closes(qtbot, make_window,  # type: ignore[no-untyped-def]
                                                                      settings_for, tiny_llama_spm) -> None:
    w = make_window(settings_for())
    w.show_report()
    d = w.report_dialog
    assert "tiny-base-phi3.gguf" in d.models.text() and "tiny-instruct-phi3.gguf" in d.models.text()
    texts = [d.source.itemText(i) for i in range(d.source.count())]
    assert texts and not any("paper" in t for t in texts)
    assert "Lin et al., 2024" in d.source_help.text() and "paper" not in d.source_help.text()
    assert d.start.isEnabled()
    assert Path(d.out.text()).parent == paths.documents_dir()
    assert d.close_button.isVisible()
    d.close_button.click()
    assert not d.isVisible()
    w.choose("base", str(tiny_llama_spm))
    qtbot.waitUntil(lambda: w.pair_note.isVisible(), timeout=LONG)
    w.lens_bar.report.setEnabled(True)  # even if opened anyway, the dialog says why not
    w.show_report()
    assert not w.report_dialog.start.isEnabled()
    assert "share a tokenizer" in w.report_dialog.status.text()
    w.report_dialog.close_button.click()


# -- 12. exports are saved to Documents ------------------------------------------------------------


def test_save_dialogs_open_in_documents(qtbot, make_window, settings_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QFileDialog

    asked: list[str] = []

    def fake_save(_parent, _title, start, _filter="", *a, **k):  # type: ignore[no-untyped-def]
        asked.append(start)
        return "", ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_save))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake_save))
    w = make_window(settings_for(user_prompt="Export me", max_tokens=6))
    wait_loaded(qtbot, w)
    with qtbot.waitSignal(w.lens.saved, timeout=LONG):
        run_and_wait(qtbot, w)
    w.lens_bar.export.click()
    h = w.history_panel
    w.tabs.setCurrentWidget(h)
    qtbot.waitUntil(lambda: h.list.topLevelItemCount() == 1, timeout=LONG)
    h.list.setCurrentItem(h.list.topLevelItem(0))
    qtbot.waitUntil(lambda: h.delete.isEnabled(), timeout=LONG)
    h.export_buttons["html"].click()
    w.show_report()
    w.report_dialog._pick_prompts()
    w.report_dialog._choose_out()
    w.report_dialog.reject()
    docs = paths.documents_dir()
    assert len(asked) == 4
    assert all(Path(a) == docs or Path(a).parent == docs for a in asked), asked


@pytest.mark.parametrize("fmt", ["html"])
def test_an_html_export_from_the_window_shows_one_seed(qtbot, make_window, settings_for, fmt,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path) -> None:
    w = make_window(settings_for(user_prompt="Just once", max_tokens=6, seed=7))
    wait_loaded(qtbot, w)
    with qtbot.waitSignal(w.lens.saved, timeout=LONG):
        run_and_wait(qtbot, w)
    out = tmp_path / f"cmp.{fmt}"
    with qtbot.waitSignal(w.history_host.worker.happened, timeout=LONG,
                          check_params_cb=lambda ev: ev.kind == "exported"):
        w.lens.export_to(str(out))
    page = out.read_text(encoding="utf-8")
    assert len(re.findall(r"\bseed\b", page, re.IGNORECASE)) == 1
    assert page.count('<td class="hash">') == 2


def test_an_answer_without_text_says_why(qtbot, make_window, settings_for) -> None:  # type: ignore[no-untyped-def]
    from desktop.core.types import GenerationStats, StopReason
    from desktop.ui.pane import PLACEHOLDER

    w = make_window(settings_for())
    pane = w.base_pane
    pane.start_answer()
    pane.finish_answer(GenerationStats(prompt_tokens=5, generated_tokens=6, time_to_first_token_s=0.1,
                                       tokens_per_second=5.0, stop_reason=StopReason.STOP_STRING))
    assert "stop string" in pane.answer.placeholderText() and not pane.copy_button.isEnabled()
    pane.start_answer()
    assert pane.answer.placeholderText() == PLACEHOLDER


def test_a_long_reason_for_no_text_wraps_inside_the_answer(qtbot) -> None:  # type: ignore[no-untyped-def]
    # Qt's own placeholder is one line, cut at the edge: the reason must wrap onto more lines
    from PySide6.QtGui import QColor

    from desktop.core.types import StopReason
    from desktop.core.words import no_text_reason
    from desktop.ui.answer_view import AnswerView

    view = AnswerView()
    qtbot.addWidget(view)
    view.resize(300, 200)
    view.show()
    view.setPlaceholderText(f"({no_text_reason(StopReason.STOP_STRING)})")
    img = view.viewport().grab().toImage()
    bg = QColor(img.pixel(img.width() - 2, img.height() - 2))
    line = view.fontMetrics().lineSpacing()
    margin = round(view.document().documentMargin())

    def ink_rows(top: int, bottom: int) -> int:
        return sum(any(QColor(img.pixel(x, y)) != bg for x in range(img.width()))
                   for y in range(top, min(bottom, img.height())))

    assert ink_rows(margin, margin + line) > 0
    assert ink_rows(margin + 2 * line, margin + 3 * line) > 0  # a third line: it wrapped
    view.setPlainText("text")
    assert view.placeholderText().startswith("(No text")  # kept, shown again once emptied


def test_models_in_use_are_listed_on_this_machine(qtbot, make_window, tiny_phi3_base, tiny_phi3) -> None:  # type: ignore[no-untyped-def]
    w = make_window(None, base=str(tiny_phi3_base), instruct=str(tiny_phi3))  # `based gui --base`
    lib = w.models_panel.library
    listed = {lib.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole) for i in range(lib.topLevelItemCount())}
    assert {str(tiny_phi3_base), str(tiny_phi3)} <= listed


def test_a_failed_download_of_unknown_size_still_says_failed_on_its_bar(qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop.ui.downloads_view import DownloadsView
    from desktop.workers.download_worker import DownloadJob, DownloadUpdate

    view = DownloadsView()
    qtbot.addWidget(view)
    row = view.add(DownloadJob(1, "a/b", "f.gguf", "/tmp", None))
    row.apply(DownloadUpdate(1, "failed", message="You seem to be offline."))
    assert row.bar.value() >= row.bar.minimum() and row.bar.text() == "Failed"
