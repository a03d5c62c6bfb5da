"""Burst coalescing: the first change is shown at once, a burst costs one more read.

StatBus can send thousands of notifications in a second (every analytics task that
starts or ends). Re-reading the state for each would hammer the server for nothing: the
answer only matters after the burst. The rule:

* a notification after a quiet period (no read in the last ``window`` seconds) asks for
  a read **now**, so a single change is shown without delay;
* so does a notification right after a read that found a CHANGE (``result(True)``):
  real flips in quick succession (a job queued, then started, then done) are each shown
  at once. The bound below is on noise, not on real changes, which are limited by the
  writers' commits and each cost one cheap read;
* notifications that arrive within ``window`` of a read that found nothing new only mark
  a read as pending; one read happens when the window ends, whatever their number.

So N notifications that change nothing, spread over T seconds, cost at most
1 + T / window reads, and the last read always comes after the last notification: the
client ends on the truth.
Pure and clock-free: the caller passes ``now`` (a monotonic time in seconds).
"""

from __future__ import annotations

import math


class Coalescer:
    def __init__(self, window: float = 0.2) -> None:
        if window < 0:
            raise ValueError("window must be >= 0")
        self.window = window
        self._last_read = -math.inf
        self._pending = False
        self._changed = False

    @property
    def pending(self) -> bool:
        """A read is owed (a notification came after the last read started)."""
        return self._pending

    def notify(self, now: float) -> bool:
        """A notification arrived. True: read now. False: a read is scheduled (``deadline``)."""
        if not self._pending and (self._changed or now - self._last_read >= self.window):
            return True
        self._pending = True
        return False

    def deadline(self) -> float | None:
        """When the owed read is due, or None when nothing is owed."""
        return self._last_read + self.window if self._pending else None

    def due(self, now: float) -> bool:
        """True when a read is owed and its window has ended."""
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def mark_read(self, now: float) -> None:
        """A read started at ``now``: everything notified before is covered by it."""
        self._last_read = now
        self._pending = False

    def result(self, changed: bool) -> None:
        """What the read found: a change (the next notification is read at once) or not."""
        self._changed = changed

    def reset(self) -> None:
        """Forget the history (after a reconnect, where a full read happens anyway)."""
        self._last_read = -math.inf
        self._pending = False
        self._changed = False
