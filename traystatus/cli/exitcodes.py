"""Exit codes of every ``traystatus`` command: scripts branch on these, so they are fixed."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """0 stable (or success), 1 processing (or ``wait`` timed out), 2 usage error
    (argparse's own), 3 the database is not reachable or not usable (or a check failed)."""

    STABLE = 0
    PROCESSING = 1
    USAGE = 2
    UNUSABLE = 3
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
    TERMINATED = 143  # SIGTERM, handled so the connection closes cleanly

    OK = 0
    TIMEOUT = 1


class CliError(Exception):
    """An environment problem to tell the user (no traceback): message and exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.UNUSABLE) -> None:
        super().__init__(message)
        self.code = code
