"""Start the window: `based`, `based gui --base B --instruct I`."""

from __future__ import annotations

import sys

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from desktop.core import settings as settings_mod
from desktop.core.errors import BasedError
from desktop.core.settings import Settings
from desktop.ui.main_window import MainWindow
from desktop.ui.qt_platform import platform_problem


def app_icon() -> QIcon:
    from importlib import resources

    try:
        ref = resources.files("desktop.assets").joinpath("icons/based.svg")
        with resources.as_file(ref) as p:
            if p.exists():
                return QIcon(str(p))
    except (FileNotFoundError, ModuleNotFoundError):
        pass
    return QIcon()


def ensure_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication, made once. Raises BasedError (one sentence naming the Debian packages
    to install) when Qt's display platform cannot load, instead of letting Qt abort."""
    app = QApplication.instance()
    if isinstance(app, QApplication):
        return app
    problem = platform_problem()
    if problem:
        raise BasedError(problem)
    QApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication(argv or sys.argv[:1])
    app.setApplicationName("Based")
    app.setOrganizationName("Based")
    app.setDesktopFileName("io.github.based.Based")
    app.setWindowIcon(app_icon())
    # Fusion follows the system's light/dark colour scheme on every platform.
    app.setStyle("Fusion")
    return app


def create_main_window(
    settings: Settings | None = None,
    base: str | None = None,
    instruct: str | None = None,
    notice: str | None = None,
) -> MainWindow:
    ensure_app()
    if settings is None:
        loaded = settings_mod.load_or_default()
        settings, notice = loaded.settings, notice or loaded.message
    if base:
        settings.base_model = base
    if instruct:
        settings.instruct_model = instruct
    return MainWindow(settings, notice)


def run_app(base: str | None = None, instruct: str | None = None) -> int:
    app = ensure_app()
    win = create_main_window(None, base, instruct)
    win.show()
    return int(app.exec())
