"""What the monitor reads next, and when: pure, fed a monotonic clock by its caller.

A connected monitor has three reasons to read the stability answer and three to read
details (docs/architecture.md, "Notification protocol"):

* a notification: coalesced (coalesce.py), so the first is read at once and a burst costs
  one more read at the end of its window;
* the health interval passed without a read (the read proves the connection alive and
  catches a future-scheduled task becoming due, which no write announces);
* details only, while someone subscribed: every ``details_interval`` while processing.

And progress (the small aggregate behind the icon's ring and the tooltip), only while
processing, whoever watches: on a notification of any channel, but at most once per
``progress_interval`` (a burst of 3,600 ``worker_status`` notifications costs one read a
second), and every ``progress_refresh`` when nothing notifies. Never while stable.

``ReadSchedule`` holds that bookkeeping and nothing else: no I/O, no asyncio. The
monitor asks ``stable_due(now)`` / ``details_due(now, processing)``, tells it when a read
starts and what it found, and waits until ``deadline(processing)``.
"""

from __future__ import annotations

import enum

from traystatus.core.watch._coalesce import Coalescer


class Channel(enum.Enum):
    """What a notification means to the schedule (the reader maps channel names to it)."""

    STABILITY = "stability"  # the answer may have changed: re-read it (and details)
    DETAILS = "details"  # only details (and progress) may have changed
    PROGRESS = "progress"  # only progress may have changed
    IGNORED = "ignored"


class ReadSchedule:
    def __init__(
        self,
        health_interval: float,
        details_interval: float,
        window: float,
        progress_interval: float = 1.0,
        progress_refresh: float = 10.0,
    ) -> None:
        self.health_interval = health_interval
        self.details_interval = details_interval
        self.progress_interval = progress_interval
        self.progress_refresh = progress_refresh
        self.progress_on = False
        self._want_progress = False
        self.last_progress = -1e18
        self._stable = Coalescer(window)
        self._details = Coalescer(window)
        self._want_stable = False
        self._want_details = False
        self.next_health = 0.0
        self.next_details = 0.0
        self.details_on = False
        self.next_forced: float | None = None  # the reader's own "read by" time

    def set_window(self, window: float) -> None:
        """The reader's coalescing window (chatty channels want a longer one)."""
        self._stable.window = window
        self._details.window = window

    def read_by(self, when: float | None) -> None:
        """The reader wants a stability read at ``when`` (monotonic) at the latest."""
        self.next_forced = when

    def start(self, now: float) -> None:
        """A new connection: its first read just happened at ``now``."""
        self._stable.reset()
        self._details.reset()
        self._want_stable = self._want_details = False
        self.details_on = False
        self.progress_on = False
        self._want_progress = False
        self.next_health = now + self.health_interval
        self.next_details = 0.0
        self.next_forced = None

    # -- details on/off -------------------------------------------------------------------
    def details_started(self) -> None:
        """Details are now wanted (and listened to): read them at once."""
        self.details_on = True
        self._details.reset()
        self._want_details = True

    def details_stopped(self) -> None:
        self.details_on = False
        self._details.reset()
        self._want_details = False

    # -- progress on/off (processing or not) ----------------------------------------------
    def progress_started(self) -> None:
        """Processing began: read progress as soon as the rate allows."""
        self.progress_on = True
        self._want_progress = True

    def progress_stopped(self) -> None:
        self.progress_on = False
        self._want_progress = False

    # -- notifications --------------------------------------------------------------------
    def notified(self, channel: Channel, now: float) -> None:
        if self.progress_on and channel is not Channel.IGNORED:
            self._want_progress = True
        if channel is Channel.STABILITY:
            if self._stable.notify(now):
                self._want_stable = True
            if self.details_on and self._details.notify(now):
                self._want_details = True
        elif channel is Channel.DETAILS and self.details_on and self._details.notify(now):
            self._want_details = True

    # -- stability reads ------------------------------------------------------------------
    def stable_due(self, now: float) -> bool:
        forced = self.next_forced is not None and now >= self.next_forced
        return self._want_stable or self._stable.due(now) or now >= self.next_health or forced

    def is_health_check(self, now: float) -> bool:
        """The read due now is owed to the interval alone, not to a notification."""
        forced = self.next_forced is not None and now >= self.next_forced
        return now >= self.next_health and not self._want_stable and not forced

    def stable_reading(self, now: float) -> None:
        """A stability read starts: it covers every notification before ``now``."""
        self._want_stable = False
        self._stable.mark_read(now)

    def stable_read(self, now: float, changed: bool) -> None:
        """The read answered; ``changed``: the answer differs from the one before."""
        self._stable.result(changed)
        self.next_health = now + self.health_interval

    # -- details reads --------------------------------------------------------------------
    def details_due(self, now: float, processing: bool) -> bool:
        if not self.details_on:
            return False
        periodic = processing and now >= self.next_details
        return self._want_details or self._details.due(now) or periodic

    def details_reading(self, now: float) -> None:
        self._want_details = False
        self._details.mark_read(now)

    def details_read(self, now: float) -> None:
        self.next_details = now + self.details_interval

    # -- progress reads -------------------------------------------------------------------
    def progress_due(self, now: float) -> bool:
        if not self.progress_on or now < self.last_progress + self.progress_interval:
            return False
        return self._want_progress or now >= self.last_progress + self.progress_refresh

    def progress_reading(self, now: float) -> None:
        """A progress read starts: it covers every notification before ``now``."""
        self._want_progress = False
        self.last_progress = now

    def _progress_deadline(self) -> float | None:
        if not self.progress_on:
            return None
        if self._want_progress:
            return self.last_progress + self.progress_interval
        return self.last_progress + self.progress_refresh

    # -- waiting --------------------------------------------------------------------------
    def deadline(self, processing: bool) -> float:
        """When the next read is due, if no notification comes first."""
        deadline = self.next_health
        if self.next_forced is not None:
            deadline = min(deadline, self.next_forced)
        progress = self._progress_deadline()
        if progress is not None:
            deadline = min(deadline, progress)
        for c in (self._stable, self._details):
            d = c.deadline()
            if d is not None:
                deadline = min(deadline, d)
        if self.details_on and processing:
            deadline = min(deadline, self.next_details)
        return deadline
