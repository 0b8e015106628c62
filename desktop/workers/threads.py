"""A registry of the QThreads Based starts, so shutdown and tests can check none is left."""

from __future__ import annotations

import weakref

from PySide6.QtCore import QThread

_THREADS: weakref.WeakSet[QThread] = weakref.WeakSet()


def new_thread(name: str) -> QThread:
    t = QThread()
    t.setObjectName(name)
    _THREADS.add(t)
    return t


def running_threads() -> list[str]:
    out = []
    for t in list(_THREADS):
        try:
            if t.isRunning():
                out.append(t.objectName())
        except RuntimeError:  # the C++ object is gone
            continue
    return out


def quit_and_wait(thread: QThread, timeout_ms: int = 3000) -> bool:
    """Ask a worker thread's event loop to end and wait for it; False if it did not stop in time.

    Callers set their cancel events first, so a job in flight returns promptly."""
    thread.quit()
    return bool(thread.wait(timeout_ms))
