"""`python -m desktop` is the `based` command."""

from desktop.cli import main

raise SystemExit(main())
