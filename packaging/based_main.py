"""Entry point of the bundled `based` executable (PyInstaller runs this as __main__)."""

from __future__ import annotations

import sys
from pathlib import Path

# Only the standard library and desktop.cli's own light imports come before main(), whose first
# step refuses a processor below Based's floor in one sentence (desktop.core.cpu), before NumPy,
# Qt or llama.cpp could stop the process with an illegal instruction.
from desktop.cli import gui_main, main

if __name__ == "__main__":
    # The Windows bundle also has a windowed `based-gui.exe` built from this file (see based.spec).
    if Path(sys.argv[0]).stem.lower() == "based-gui":
        sys.exit(gui_main())
    sys.exit(main())
