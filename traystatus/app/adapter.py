"""The one QObject between the core's source of state and the widgets.

The source (traystatus.core.source.StateSource: a Monitor of the database, or a relay)
calls plain Python callbacks from the asyncio loop. Under qasync that loop IS the Qt main
loop, so the callbacks run on the GUI thread and can emit signals directly; this class
turns them into Qt signals, throttles repaints (details arrive with every progress NOTIFY:
a window repainted 50 times a second helps nobody), and keeps the details subscription open
only while someone wants details (a refcount: the details window while it is visible,
nothing else).

Signals carry ``object`` (the core's frozen dataclasses), never ``bool``: PySide6 6.12 on
Python 3.11 leaks a reference to True on every ``Signal(bool)`` emit and aborts at exit
(tests/app/test_bool_signal.py keeps the regression test).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from traystatus.app.tasks import bug_status
from traystatus.core.model.state import Status, utcnow
from traystatus.core.model.today import Day, SeenLog, day_view
from traystatus.core.source import StateSource

log = logging.getLogger(__name__)


class MonitorAdapter(QObject):
    """Qt face of one Monitor. ``statusChanged(Status)``, ``detailsChanged(Details)``,
    ``workFinished(WorkSummary)``."""

    statusChanged = Signal(object)
    detailsChanged = Signal(object)
    workFinished = Signal(object)
    importEnded = Signal(object)  # core.progress.EndedJob (database sources only)
    dayChanged = Signal(object)  # core.today.DayView, while details are wanted

    def __init__(
        self, monitor: StateSource, parent: QObject | None = None, details_interval_ms: int = 300
    ) -> None:
        super().__init__(parent)
        self.monitor = monitor
        self._task: asyncio.Task[None] | None = None
        self._details_wanted = 0
        self._pending_details: Any = None
        self._has_pending = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(details_interval_ms)
        self._timer.timeout.connect(self._flush_details)
        monitor.add_listener(self._on_status)
        monitor.add_details_listener(self._on_details)
        monitor.add_summary_listener(self._on_summary)
        # Which import jobs ended: a database monitor tells; a source that cannot, cannot.
        add_import_listener = getattr(monitor, "add_import_listener", None)
        if add_import_listener is not None:
            add_import_listener(self.importEnded.emit)
        # What happened today (core/model/today.py): what this app saw, every Status; StatBus's
        # record from a database source while details are wanted (a relay cannot).
        self.seen = SeenLog()
        add_day_listener = getattr(monitor, "add_day_listener", None)
        self._day_relay = add_day_listener is None
        if add_day_listener is not None:
            add_day_listener(self._on_day)

    # -- life cycle ------------------------------------------------------------------------
    @property
    def status(self) -> Status:
        return self.monitor.status

    def start(self) -> asyncio.Task[None]:
        """Run the monitor on the running (qasync) loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return self._task

    async def _run(self) -> None:
        try:
            await self.monitor.run()
        except asyncio.CancelledError:
            raise
        except Exception as ex:  # the monitor promises not to raise; if it does, it is a bug
            log.exception("the monitor stopped with an unexpected error")
            # Nothing keeps the last state true any more: say so (never a stale green).
            self._on_status(bug_status("watching the database", ex))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the monitor and wait (up to ``grace`` s) for it to close its connections."""
        self._timer.stop()
        self.monitor.stop()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            log.warning("the monitor did not stop within %.0f s; cancelling it", grace)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def reconnect_now(self) -> None:
        self.monitor.reconnect_now()

    # -- details subscription --------------------------------------------------------------
    def want_details(self, wanted: bool) -> None:
        """Count one more (True) or one less (False) viewer of the details."""
        if wanted:
            self._details_wanted += 1
            if self._details_wanted == 1:
                self.monitor.subscribe_details()
                if self._day_relay:
                    self.dayChanged.emit(day_view(None, self.seen, utcnow(), relay=True))
        elif self._details_wanted > 0:
            self._details_wanted -= 1
            if self._details_wanted == 0:
                self.monitor.unsubscribe_details()
                self._timer.stop()
                self._has_pending = False
                self._pending_details = None

    # -- callbacks from the core -----------------------------------------------------------
    def _on_status(self, status: Status) -> None:
        # State changes are rare (the core already damps them) and matter: no throttle.
        self.seen.observe(status, utcnow())
        self.statusChanged.emit(status)

    def _on_day(self, day: Day) -> None:
        if self._details_wanted:
            self.dayChanged.emit(day_view(day, self.seen, utcnow()))

    def _on_details(self, details: Any) -> None:
        if self._details_wanted == 0:
            return  # a late snapshot after the window closed
        self._pending_details = details
        self._has_pending = True
        if not self._timer.isActive():
            # First one at once, then at most one per interval (the latest wins).
            self._flush_details()
            self._timer.start()

    def _flush_details(self) -> None:
        if not self._has_pending:
            return
        details, self._pending_details, self._has_pending = self._pending_details, None, False
        self.detailsChanged.emit(details)
        if not self._timer.isActive():
            self._timer.start()

    def _on_summary(self, summary: Any) -> None:
        self.workFinished.emit(summary)
