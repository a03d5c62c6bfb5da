"""PyInstaller entry point: the same as the ``traystatus`` console script."""

from __future__ import annotations

import sys

from traystatus.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
