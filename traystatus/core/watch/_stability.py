"""Stability tracking: when a work summary is owed. Pure.

``StabilityTracker.observe()`` takes every stability answer (and the work mark read with
a stable one) and says what follows from it:

* at stable -> processing, the mark of the last stable read and the time are kept (a
  ``WorkMark``): the work that is starting has task ids above that mark;
* at processing -> stable, a summary of the work since the mark is owed (``Seen.owed``),
  with the run's duration. A monitor that starts while processing owes no summary for
  that run: it never saw it start.

The answer survives a reconnect (a run that began before a dropped connection and ended
after it still gets its summary), and so does the mark.

The rule for ``Status.since`` is ``core/model/state.py``'s ``carry_since``, the same for
the monitor and a relay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class WorkMark:
    """Where a run of work began: a worker.tasks id, the wall time, the monotonic time."""

    mark: int
    since: datetime
    started: float


@dataclass(frozen=True)
class Owed:
    """A work summary to read: what finished after ``mark`` / ``since``, in ``duration`` s."""

    mark: int
    since: datetime
    duration: float


@dataclass(frozen=True)
class Seen:
    previous: bool | None  # the answer before this one (None: the first ever)
    stable: bool
    owed: Owed | None = None

    @property
    def changed(self) -> bool:
        return self.previous != self.stable


class StabilityTracker:
    def __init__(self) -> None:
        self.known: bool | None = None  # the last answer, across reconnects
        self.last_mark: int | None = None  # the work mark of the last stable read
        self.work: WorkMark | None = None  # the run in progress, when its start was seen

    def observe(
        self, stable: bool, mark: int | None, wall: datetime, now: float, want_summary: bool
    ) -> Seen:
        """One stability answer at ``wall`` (UTC) / ``now`` (monotonic).

        ``mark``: the work mark read with a stable answer (None when not read).
        ``want_summary``: someone listens for summaries; without one the run is
        forgotten at its end rather than summarised.
        """
        previous = self.known
        self.known = stable
        if stable:
            self.last_mark = mark
        if previous is True and not stable and self.last_mark is not None:
            self.work = WorkMark(self.last_mark, wall, now)
        owed = None
        if previous is False and stable and self.work is not None:
            work, self.work = self.work, None
            if want_summary:
                owed = Owed(work.mark, work.since, max(0.0, now - work.started))
        return Seen(previous, stable, owed)
