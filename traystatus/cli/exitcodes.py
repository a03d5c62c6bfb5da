"""The CLI's error type; the exit codes themselves are :mod:`traystatus.core.model.exitcodes`."""

from __future__ import annotations

from traystatus.core.model.exitcodes import ExitCode

__all__ = ["CliError", "ExitCode"]


class CliError(Exception):
    """An environment problem to tell the user (no traceback): message and exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.UNUSABLE) -> None:
        super().__init__(message)
        self.code = code
