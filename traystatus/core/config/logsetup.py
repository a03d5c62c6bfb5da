"""Logging set-up for the two front ends: stderr for the CLI, a rotating file for the tray.

Both configure the ``traystatus`` logger only (not the root logger), so libraries keep their
own defaults and a test's log capture still works. The tray app's file sits in the platform's
user log folder (``~/.local/state/traystatus/log`` on Linux), where "send me your log" can
find it; ``TRAYSTATUS_LOG_DIR`` overrides the folder.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

LOGGER = "traystatus"
LOG_ENV = "TRAYSTATUS_LOG_DIR"
LOG_FILE = "traystatus.log"
MAX_BYTES = 1_000_000  # per file, then it rotates
BACKUPS = 3  # older files kept: 4 MB at most
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MARK = "_traystatus_handler"


def log_dir() -> Path:
    override = os.environ.get(LOG_ENV)
    if override:
        return Path(override)
    import platformdirs  # only the tray logs to a file; the CLI need not load it

    return platformdirs.user_log_path("traystatus", appauthor=False)


def _say(line: str) -> None:
    """One line on stderr, if there is one (a tray app may have none)."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def _install(handler: logging.Handler, level: int) -> logging.Logger:
    logger = logging.getLogger(LOGGER)
    for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(old)
        old.close()
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger


def setup_stderr_logging(verbose: int = 0, stream: TextIO | None = None) -> logging.Logger:
    """CLI logging: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        logging.Formatter("traystatus: %(levelname)s: %(message)s" if verbose <= 0 else _FORMAT)
    )
    return _install(handler, level)


def setup_file_logging(debug: bool = False) -> Path:
    """Tray logging: a rotating file (MAX_BYTES x BACKUPS + 1) in :func:`log_dir`. Returns
    the file's path."""
    folder = log_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / LOG_FILE
    import logging.handlers

    class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
        """Owner only (0600), like the settings file: the log names hosts, databases and
        users. Every file it opens (after each rollover too) is created 0600, and an
        older file with wider permissions is narrowed."""

        failing = False  # the last write failed; said once on stderr, quiet since
        _failed_now = False

        def _open(self) -> io.TextIOWrapper:
            fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if hasattr(os, "fchmod"):  # POSIX: narrow a file an older version created
                os.fchmod(fd, 0o600)
            return open(fd, "a", encoding=self.encoding, errors=self.errors)

        def emit(self, record: logging.LogRecord) -> None:
            self._failed_now = False
            super().emit(record)
            if self.failing and not self._failed_now:
                self.failing = False
                _say(f"traystatus: the log file {self.baseFilename} can be written again")

        def handleError(self, record: logging.LogRecord) -> None:
            """A full disk (or a removed folder) fails every line: say so once, on one
            line, instead of logging's traceback per record, and drop lines until a
            write works again."""
            self._failed_now = True
            if self.failing:
                return
            self.failing = True
            why = sys.exc_info()[1]
            _say(f"traystatus: cannot write the log file {self.baseFilename} ({why}); "
                 "log lines are dropped until it can be written again")

    handler = PrivateRotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(_FORMAT))
    _install(handler, logging.DEBUG if debug else logging.INFO)
    return path
