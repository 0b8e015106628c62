"""The window with a split model (one row in the hub browser, the library and the pickers; loads
whole; removed whole) and with files that are not models (refused where the user looks, never
remembered, forgotten when they stop validating)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from desktop.core.gguf_info import human_bytes
from desktop.core.gguf_split import model_parts
from tests.fakehub import FakeHub, split_repo_files, use_hub

LONG = 30_000
REPO = "test/Tiny-Split-GGUF"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_split: Path, tiny_llama_spm: Path):  # type: ignore[no-untyped-def]
    files = split_repo_files(tiny_split, "F16")
    files["tiny-llama.Q8_0.gguf"] = tiny_llama_spm.read_bytes()
    with FakeHub({REPO: files}) as h:
        use_hub(monkeypatch, tmp_path, h)
        yield h


def picker_labels(pane) -> list[str]:  # type: ignore[no-untyped-def]
    return [pane.picker.itemText(i) for i in range(pane.picker.count())]


def test_models_view_shows_downloads_and_removes_a_split_model_as_one(qtbot, hub, make_window,  # type: ignore[no-untyped-def]
                                                                      tiny_split: Path) -> None:
    from desktop.core.settings import Settings

    total = sum(p.stat().st_size for p in model_parts(tiny_split))
    w = make_window(Settings(n_ctx=512))
    panel = w.models_panel
    panel._list_files(REPO)
    files = panel.browser.files
    qtbot.waitUntil(lambda: files.count() == 2, timeout=LONG)
    rows = [files.item(i).text() for i in range(files.count())]
    [split_row] = [r for r in rows if "Tiny-Split" in r]
    assert split_row.startswith("F16/Tiny-Split-F16 (3 parts)") and human_bytes(total) in split_row
    files.setCurrentRow(rows.index(split_row))
    with qtbot.waitSignal(panel.libraryChanged, timeout=LONG):
        panel.browser.download.click()
    (row,) = panel.downloads.rows.values()
    assert row.state == "done" and "Tiny-Split-F16 (3 parts)" in row.title.text()
    assert row.bar.value() == row.bar.maximum()

    lib = panel.library
    assert lib.topLevelItemCount() == 1
    item = lib.topLevelItem(0)
    assert item.text(0) == "Tiny-Split-F16 (3 parts)" and item.text(1) == "F16"
    assert item.text(2) == human_bytes(total) and REPO in item.text(3)
    assert item.text(4) in ("fits", "tight", "too big")
    assert picker_labels(w.base_pane).count("Tiny-Split-F16 (3 parts)") == 1
    assert not any("-0000" in label for label in picker_labels(w.base_pane))

    lib.setCurrentItem(item)
    panel.library_box.use_base.click()
    first = str(item.data(0, 0x0100))
    qtbot.waitUntil(lambda: w.controller.loaded["base"] is not None, timeout=LONG)
    assert w.settings.base_model == first
    assert w.controller.loaded["base"].gguf.n_tensors == 21  # all three parts loaded

    message = panel.remove_path(first)
    assert "freed" in message and "Tiny-Split-F16 (3 parts)" in message
    assert not any(p.exists() for p in model_parts(first))
    assert lib.topLevelItemCount() == 0
    assert "Tiny-Split-F16 (3 parts)" not in picker_labels(w.base_pane)


def test_a_file_that_is_not_a_model_is_refused_and_never_remembered(qtbot, make_window, settings_for,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path, tiny_split: Path) -> None:
    from desktop.core import settings as settings_mod

    text = tmp_path / "story.gguf"
    text.write_text("Once upon a time there was a text file called a model.\n" * 20)
    w = make_window(settings_for())
    base_before = w.settings.base_model
    w.choose("base", str(text))
    assert w.base_pane.error.isVisible() and w.base_pane.error.text().startswith("story.gguf")
    assert w.settings.base_model == base_before and w.controller.paths["base"] == base_before
    assert str(text) not in w.settings.extra_model_files
    assert "story.gguf" not in picker_labels(w.base_pane)
    assert w.base_pane.current_path() == base_before  # the picker shows the side's model again

    second = model_parts(tiny_split)[1]
    w.choose("instruct", str(second))
    assert "open its first part, Tiny-Split-F16-00001-of-00003.gguf" in w.instruct_pane.error.text()
    assert str(second) not in w.settings.extra_model_files
    w.save_settings()
    w.close()

    again = make_window(settings_mod.load().settings)  # a restart
    assert "story.gguf" not in picker_labels(again.base_pane)
    assert str(text) not in again.settings.extra_model_files


def test_a_remembered_model_that_vanished_is_forgotten_in_words(qtbot, make_window, settings_for,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path, tiny_llama_spm: Path) -> None:
    mine, other = tmp_path / "mine.gguf", tmp_path / "other.gguf"
    shutil.copy(tiny_llama_spm, mine)
    shutil.copy(tiny_llama_spm, other)
    s = settings_for(base_model=str(mine), extra_model_files=[str(mine), str(other)])
    mine.unlink()
    other.write_text("overwritten with notes\n")
    w = make_window(s)
    assert w.base_pane.error.isVisible() and "mine.gguf is no longer in" in w.base_pane.error.text()
    assert w.notice.isVisible() and "Based took other.gguf off your model list" in w.notice.text()
    assert w.settings.base_model == ""
    assert not {str(mine), str(other)} & set(w.settings.extra_model_files)
    assert not any(name in " ".join(picker_labels(w.base_pane)) for name in ("mine.gguf", "other.gguf"))


def test_a_split_download_from_an_earlier_session_resumes_as_one(qtbot, hub, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                  tiny_split: Path, monkeypatch) -> None:
    import threading

    from desktop.core import downloads
    from desktop.core.downloads import DownloadSpec, download
    from desktop.core.errors import DownloadError
    from desktop.core.library import repo_dir
    from desktop.core.settings import Settings
    from desktop.ui.models_panel import ModelsPanel

    s = Settings()
    first = "F16/Tiny-Split-F16-00001-of-00003.gguf"
    dest = repo_dir(s.resolved_models_dir(), REPO)
    monkeypatch.setattr(downloads, "MAX_RETRIES", 0)
    hub.drop_after, hub.drops_left = 1 << 20, 1000
    with pytest.raises(DownloadError):
        download(DownloadSpec(repo_id=REPO, filename=first, dest_dir=dest), None, threading.Event())
    hub.drop_after = None
    total = sum(p.stat().st_size for p in model_parts(tiny_split))
    panel = ModelsPanel(s)  # "restart"
    qtbot.addWidget(panel)
    (row,) = panel.downloads.rows.values()
    assert row.state == "paused" and row.job.filename == first
    assert "Tiny-Split-F16 (3 parts)" in row.title.text() and 0 < row.bar.value() < row.bar.maximum()
    with qtbot.waitSignal(panel.libraryChanged, timeout=LONG):
        row.pause.click()  # Resume
    assert row.state == "done"
    assert panel.library.topLevelItemCount() == 1
    assert panel.library.topLevelItem(0).text(2) == human_bytes(total)
    panel.shutdown()
