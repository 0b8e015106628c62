"""The Models view against a fake Hugging Face server on 127.0.0.1 (real huggingface-hub client):
browse the catalog, download a pair with pause and resume, and see it in the pickers."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.core.catalog import load_catalog, parse_catalog
from tests.fakehub import FakeHub

LONG = 20_000


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tiny_phi3_base: Path, tiny_phi3: Path):  # type: ignore[no-untyped-def]
    files = {
        "test/Tiny-Base-GGUF": {"tiny-base.Q8_0.gguf": tiny_phi3_base.read_bytes()},
        "test/Tiny-Instruct-GGUF": {"tiny-instruct.Q8_0.gguf": tiny_phi3.read_bytes()},
    }
    with FakeHub(files) as h:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        catalog = parse_catalog({"pairs": [{
            "id": "tiny", "family": "Tiny", "params": "1M", "params_b": 0.001, "licence": "MIT",
            "licence_url": "https://opensource.org/license/mit", "note": "A tiny test pair.",
            "verified": True,
            "base": {"repo": "test/Tiny-Base-GGUF", "files": [
                {"quant": "Q8_0", "file": "tiny-base.Q8_0.gguf", "size": len(files["test/Tiny-Base-GGUF"]["tiny-base.Q8_0.gguf"]), "verified": True}]},
            "instruct": {"repo": "test/Tiny-Instruct-GGUF", "files": [
                {"quant": "Q8_0", "file": "tiny-instruct.Q8_0.gguf", "size": len(files["test/Tiny-Instruct-GGUF"]["tiny-instruct.Q8_0.gguf"]), "verified": True}]},
            "recommended_quant": "Q8_0",
        }]})
        monkeypatch.setattr("desktop.ui.models_panel.load_catalog", lambda: catalog)
        yield h


def test_browse_the_shipped_catalog(qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop.core.settings import Settings
    from desktop.ui.models_panel import ModelsPanel

    panel = ModelsPanel(Settings())
    qtbot.addWidget(panel)
    pairs = load_catalog()
    assert panel.catalog.topLevelItemCount() == len(pairs)
    panel.catalog.setCurrentItem(panel.catalog.topLevelItem(0))
    text = panel.detail.text()
    assert pairs[0].title in text and pairs[0].base.repo in text and "need" in text
    assert panel.quant.count() == len(pairs[0].quants())
    assert panel.catalog.topLevelItem(0).text(3) in ("fits", "tight", "too big")
    assert panel.get_pair.isEnabled()
    panel.shutdown()


def test_download_pause_resume_and_pickers(qtbot, hub, make_window) -> None:  # type: ignore[no-untyped-def]
    from desktop.core.settings import Settings

    w = make_window(Settings())
    panel = w.models_panel
    assert w.stack.currentWidget() is w.empty  # no models yet
    panel.catalog.setCurrentItem(panel.catalog.topLevelItem(0))
    hub.stall_after = 64 * 1024  # the first file stalls part-way
    panel.get_pair.click()
    rows = panel.downloads.rows
    qtbot.waitUntil(lambda: len(rows) == 2, timeout=LONG)
    first_id = min(rows)
    qtbot.waitUntil(lambda: rows[first_id].state == "running" and rows[first_id].bar.value() > 0, timeout=LONG)
    rows[first_id].pause.click()
    qtbot.waitUntil(lambda: rows[first_id].state == "paused", timeout=LONG)
    assert "resume" in rows[first_id].status.text().lower()
    assert rows[first_id].pause.text() == "Resume"
    hub.stall_after = None
    with qtbot.waitSignal(panel.pairChosen, timeout=LONG * 2) as chosen:
        rows[first_id].pause.click()  # Resume
    base_path, inst_path = chosen.args
    assert Path(base_path).name == "tiny-base.Q8_0.gguf" and Path(inst_path).is_file()
    base_sha = hub.sha256("test/Tiny-Base-GGUF", "tiny-base.Q8_0.gguf")
    ranged = [r for r in hub.requests_for("GET", contains=base_sha) if r.range]
    assert ranged and ranged[-1].range.startswith("bytes=") and not ranged[-1].range.startswith("bytes=0-")
    # the new models are in both pickers and selected, without a restart
    qtbot.waitUntil(lambda: w.settings.base_model == base_path, timeout=LONG)
    assert w.base_pane.picker.findData(base_path) >= 0 or base_path in w.base_pane._paths
    assert w.stack.currentWidget() is w.splitter
    assert {m.text(0) for m in (panel.library.topLevelItem(i) for i in range(panel.library.topLevelItemCount()))} >= {
        "tiny-base.Q8_0.gguf", "tiny-instruct.Q8_0.gguf"}


def test_cancel_deletes_partial_and_remove_frees_space(qtbot, hub, make_window) -> None:  # type: ignore[no-untyped-def]
    from desktop.core.settings import Settings

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
    models = w.settings.resolved_models_dir()
    assert not list(models.rglob("tiny-base*"))  # partial and sidecar gone
    hub.stall_after = None
    second = max(rows)
    qtbot.waitUntil(lambda: rows[second].state == "done", timeout=LONG)
    inst = next(models.rglob("tiny-instruct.Q8_0.gguf"))
    size = inst.stat().st_size
    message = panel.remove_path(str(inst))
    assert not inst.exists() and "freed" in message
    assert size > 0


def test_startup_uses_no_network_and_offline_search_says_so(qtbot, hub, make_window, settings_for,
                                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    w = make_window(settings_for())
    qtbot.wait(500)
    w.tabs.setCurrentWidget(w.models_panel)
    qtbot.wait(200)
    assert hub.requests == []  # starting, listing models, showing the Models view: no network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    w.models_panel.browser.query.setText("tiny")
    w.models_panel.browser.search.click()
    qtbot.waitUntil(lambda: "offline" in w.models_panel.browser.status.text().lower(), timeout=LONG)
    assert hub.requests == []


def test_partial_from_an_earlier_session_resumes(qtbot, hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    from desktop.core.downloads import DownloadSpec, download
    from desktop.core.errors import DownloadCancelled
    from desktop.core.library import repo_dir
    from desktop.core.settings import Settings
    from desktop.ui.models_panel import ModelsPanel

    s = Settings()
    repo, name = "test/Tiny-Base-GGUF", "tiny-base.Q8_0.gguf"
    hub.stall_after = 40 * 1024
    cancel = threading.Event()
    spec = DownloadSpec(repo_id=repo, filename=name, dest_dir=repo_dir(s.resolved_models_dir(), repo))
    seen: list[int] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            download(spec, lambda p: seen.append(p.done_bytes), cancel)
        except DownloadCancelled as exc:
            errors.append(exc)

    t = threading.Thread(target=fetch)
    t.start()
    qtbot.waitUntil(lambda: bool(seen) and seen[-1] >= 40 * 1024, timeout=LONG)
    cancel.set()
    t.join(10)
    assert errors and not t.is_alive()
    hub.stall_after = None
    # "restart": a new panel finds the partial and offers to resume it
    panel = ModelsPanel(s)
    qtbot.addWidget(panel)
    (row,) = panel.downloads.rows.values()
    assert row.state == "paused" and row.job.filename == name and row.bar.value() > 0
    with qtbot.waitSignal(panel.libraryChanged, timeout=LONG):
        row.pause.click()  # Resume
    assert row.state == "done"
    sha = hub.sha256(repo, name)
    assert [r.range for r in hub.requests_for("GET", contains=sha)][-1] == f"bytes={40 * 1024}-"
    panel.shutdown()


def test_gated_download_says_what_to_do_with_a_link(qtbot, hub) -> None:  # type: ignore[no-untyped-def]
    from desktop.core.hub import RemoteFile
    from desktop.core.settings import Settings
    from desktop.ui.models_panel import ModelsPanel

    panel = ModelsPanel(Settings())
    qtbot.addWidget(panel)
    hub.fail("test/Tiny-Base-GGUF", 403)
    panel._download_remote(RemoteFile("test/Tiny-Base-GGUF", "tiny-base.Q8_0.gguf", None, "Q8_0", None, None))
    (row,) = panel.downloads.rows.values()
    qtbot.waitUntil(lambda: row.state == "failed", timeout=LONG)
    text = row.status.text()
    assert "gated" in text and "<a href='https://huggingface.co/test/Tiny-Base-GGUF'>" in text
    assert "token" in text and "Traceback" not in text
    assert row.pause.text() == "Retry" and row.pause.isEnabled()  # can retry after accepting
    assert panel.token.echoMode() == panel.token.EchoMode.Password
    panel.shutdown()


def test_closing_during_a_hung_search_does_not_wait(qtbot, make_window, settings_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading

    # a search that hangs (as on a dead network) until the test lets it go
    release = threading.Event()

    def hung_search(text: str, limit: int = 30) -> list[object]:
        release.wait(60)
        return []

    monkeypatch.setattr("desktop.core.hub.search_gguf_repos", hung_search)
    try:
        w = make_window(settings_for())
        w.models_panel.browser.query.setText("anything")
        w.models_panel.browser.search.click()
        qtbot.wait(200)
        assert "Searching" in w.models_panel.browser.status.text()
        w.close()
        # closed while the search still hangs: its thread was not waited for, and being a
        # daemon it cannot keep the app from exiting
        hung = [t for t in threading.enumerate() if t.name == "hub-search" and t.is_alive()]
        assert hung and all(t.daemon for t in hung)
        assert w.models_panel.host.thread_dl.isFinished()
    finally:
        release.set()
        for t in threading.enumerate():
            if t.name == "hub-search":
                t.join(10)
