"""GUI test setup: offscreen Qt, and a fixture that fails any test leaving a thread running."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def no_leaked_threads(qapp) -> Iterator[None]:  # type: ignore[no-untyped-def]
    from desktop.workers.threads import running_threads

    before = {t.ident for t in threading.enumerate()}
    yield
    qapp.processEvents()
    leaked_q = running_threads()
    leaked_py = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()
                 and not t.daemon]
    assert leaked_q == [], f"QThreads still running after the test: {leaked_q}"
    assert leaked_py == [], f"Python threads still running after the test: {leaked_py}"


@pytest.fixture
def settings_for(tiny_phi3_base: Path, tiny_phi3: Path):  # type: ignore[no-untyped-def]
    from desktop.core.settings import Settings

    def make(**kw: object) -> Settings:
        s = Settings(base_model=str(tiny_phi3_base), instruct_model=str(tiny_phi3),
                     max_tokens=16, n_ctx=2048, base_mode="qa", run_mode="sequential")
        for k, v in kw.items():
            setattr(s, k, v)
        return s

    return make


@pytest.fixture
def make_window(qtbot):  # type: ignore[no-untyped-def]
    from desktop.ui.app import create_main_window

    windows = []

    def make(settings=None, **kw):  # type: ignore[no-untyped-def]
        w = create_main_window(settings, **kw)
        qtbot.addWidget(w)
        w.show()
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.close()
