"""Exit codes of every ``traystatus`` process: scripts branch on these, so they are fixed.

One table for the command line, the tray app and the demo (docs/cli.md lists them).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """0 stable (or success), 1 processing (or ``wait`` timed out, or the tray app's loop
    stopped from outside), 2 usage error (argparse's own), 3 the database is not reachable
    or not usable (or a check failed, or the demo cannot run here), 129 SIGHUP, 130 Ctrl-C,
    143 SIGTERM where they are handled."""

    STABLE = 0
    PROCESSING = 1
    USAGE = 2
    UNUSABLE = 3
    HANGUP = 129  # SIGHUP (install-sql: cancelled, nothing changed)
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
    TERMINATED = 143  # SIGTERM, handled so the connection closes cleanly

    OK = 0
    TIMEOUT = 1
    STOPPED = 1  # the tray app's event loop stopped before Quit (display lost)
