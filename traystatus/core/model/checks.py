"""One check result for every report: ``traystatus doctor``, the desktop checks, and the
Settings dialog's Test connection. Pure data, no Qt.

``level`` says how it went: OK, INFO (a fact, not a judgement), WARN (works, but something
is missing or weak) or FAIL (this stops traystatus from working). ``detail`` is what was
found; ``fix`` is what to do, when there is something to do; ``problem`` is the monitor's
Problem kind when the check found one (Test connection branches on it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from traystatus.core.model.state import Problem
from traystatus.core.words.safetext import MAX_CHARS, printable


class Level(enum.Enum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    """One line of a report: what was checked, what was found, what to do."""

    name: str
    level: Level
    detail: str
    fix: str = ""
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        """Nothing to worry about (OK or INFO)."""
        return self.level in (Level.OK, Level.INFO)

    def line(self) -> str:
        """'ok    name: detail. To fix: fix.' (one line of the doctor's report). Details
        carry a database's or a server's words: printed through ``safetext.printable``."""
        text = f"{self.level.value:<5} {self.name}: {_sentence(_said(self.detail))}"
        return f"{text} To fix: {_sentence(_said(self.fix))}" if self.fix else text

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "level": self.level.value.lower(),
            "detail": self.detail,
            "fix": self.fix,
        }


def _said(text: str) -> str:
    return printable(text, 2 * MAX_CHARS)


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."
