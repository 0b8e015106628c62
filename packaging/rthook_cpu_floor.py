"""PyInstaller runtime hook, run before every other hook: refuse a processor below Based's floor.

PyInstaller's own PySide6 hook imports QtCore before the app's code runs, and Qt (like NumPy) is
compiled for x86-64-v2: on an older processor the process would die with an illegal instruction
before `based` could say anything. This hook runs first (custom runtime hooks precede
PyInstaller's) and says it in one sentence (desktop.core.cpu), then exits with status 2.
"""


def _based_cpu_floor() -> None:
    import sys

    from desktop.cli import unsupported_cpu

    code = unsupported_cpu()
    if code is not None:
        sys.exit(code)


_based_cpu_floor()
