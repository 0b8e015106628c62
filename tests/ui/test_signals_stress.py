"""PySide6 6.12.x on CPython 3.11 aborts after a few hundred cross-thread Signal.emit() calls
(Fatal Python error: bool_dealloc); pyproject pins <6.12 there. This emits thousands."""

from __future__ import annotations

from PySide6.QtCore import QObject, QThread, Signal, Slot


class Emitter(QObject):
    ping = Signal(object)

    @Slot()
    def go(self) -> None:
        for i in range(5000):
            self.ping.emit((i, "x" * (i % 7)))


class Receiver(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.got: list[int] = []

    @Slot(object)
    def on_ping(self, payload: tuple[int, str]) -> None:
        self.got.append(payload[0])


def test_thousands_of_cross_thread_emits(qtbot) -> None:
    import PySide6

    thread = QThread()
    em = Emitter()
    em.moveToThread(thread)
    rec = Receiver()
    em.ping.connect(rec.on_ping)
    thread.started.connect(em.go)
    thread.start()
    try:
        qtbot.waitUntil(lambda: len(rec.got) == 5000, timeout=30_000)
    finally:
        thread.quit()
        thread.wait(5000)
    assert rec.got == list(range(5000))
    assert PySide6.__version__  # the installed version is reported on failure
