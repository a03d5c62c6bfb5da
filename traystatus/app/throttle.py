"""At most a few repaints a second, and never a stale last frame.

While processing, progress arrives with every read and every NOTIFY; repainting the icon,
the tooltip and the windows for each one helps nobody. ``Throttle`` (after qutebrowser's
misc/throttle.py) calls its function at once the first time, then at most once per
interval; a call asked for meanwhile is made when the interval ends, so the last state
is always rendered. ``request(urgent=True)`` renders at once (a change of state - stable
to processing - must not wait). It throttles rendering only: whoever decides what to say
(the notification policy) still sees every Status.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer


class Throttle(QObject):
    """Call ``func`` at most once per ``interval_ms``, the last request always honoured."""

    def __init__(
        self, func: Callable[[], None], interval_ms: int = 250, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.func = func
        self.calls = 0  # how often func ran (tests, bench)
        self._pending = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._elapsed)

    def request(self, urgent: bool = False) -> None:
        if urgent or not self._timer.isActive():
            self._call()
        else:
            self._pending = True

    def flush(self) -> None:
        """Make a pending call now."""
        if self._pending:
            self._call()

    @property
    def pending(self) -> bool:
        return self._pending

    def stop(self) -> None:
        self._timer.stop()
        self._pending = False

    def _elapsed(self) -> None:
        if self._pending:
            self._call()

    def _call(self) -> None:
        self._pending = False
        self._timer.start()  # the interval counts from this call
        self.calls += 1
        self.func()
