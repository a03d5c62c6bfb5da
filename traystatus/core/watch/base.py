"""The shell every StateSource shares, whatever it reads from.

Listeners, the refcounted details subscription, ``stop()`` / ``reconnect_now()`` and
waking the source's loop from any thread are the same for a database monitor and for a
relay of a traystatus server; only the loop that learns the state differs. A source
subclasses ``SourceBase``, calls ``_begin_run()`` / ``_end_run()`` around its loop, waits
on ``self._wake`` and reports through ``_set_status()`` and ``_emit()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Self, TypeVar

from traystatus.core.model.details import Details, WorkSummary
from traystatus.core.model.state import Counters, Status

log = logging.getLogger(__name__)

T = TypeVar("T")


class SourceBase:
    """Listeners, details refcount, stop/reconnect and the thread-safe wake-up."""

    def __init__(self, status: Status) -> None:
        self.counters = Counters()
        self._status = status
        self._listeners: list[Callable[[Status], None]] = []
        self._details_listeners: list[Callable[[Details], None]] = []
        self._summary_listeners: list[Callable[[WorkSummary], None]] = []
        self._details_refs = 0
        self._stopping = False
        self._restart = False
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None  # the thread run() runs in
        self._wake: asyncio.Event | None = None

    # -- StateSource ------------------------------------------------------------------------
    @property
    def status(self) -> Status:
        return self._status

    @property
    def details_subscribers(self) -> int:
        return self._details_refs

    def add_listener(self, callback: Callable[[Status], None]) -> None:
        self._listeners.append(callback)

    def add_details_listener(self, callback: Callable[[Details], None]) -> None:
        self._details_listeners.append(callback)

    def add_summary_listener(self, callback: Callable[[WorkSummary], None]) -> None:
        self._summary_listeners.append(callback)

    def stop(self) -> None:
        """Ask ``run()`` to close its connection and return. Safe from any thread."""
        self._stopping = True
        self._poke()

    def reconnect_now(self) -> None:
        """Drop the current connection (if any) or cut the retry wait short, and connect."""
        self._restart = True
        self._poke()

    def subscribe_details(self) -> None:
        """One more party wants details (refcounted); the first one starts them."""
        self._details_refs += 1
        if self._details_refs == 1:
            self._poke()

    def unsubscribe_details(self) -> None:
        """One party less; when none is left, no more details are read."""
        if self._details_refs == 0:
            log.warning("unsubscribe_details() without subscribe_details(): ignored")
            return
        self._details_refs -= 1
        if self._details_refs == 0:
            self._poke()

    @contextlib.asynccontextmanager
    async def details(self) -> AsyncIterator[Self]:
        """``async with source.details():`` details flow while inside the block."""
        self.subscribe_details()
        try:
            yield self
        finally:
            self.unsubscribe_details()

    # -- for subclasses ---------------------------------------------------------------------
    def _begin_run(self) -> None:
        """Called first thing in ``run()``: one run at a time, and the loop's thread."""
        if self._running:
            raise RuntimeError(f"{type(self).__name__}.run() is already running")
        self._running = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()

    def _end_run(self) -> None:
        self._running = False

    def _emit(self, listeners: list[Callable[[T], None]], value: T) -> None:
        """Call every listener; one that raises is logged and counted, never fatal."""
        for callback in list(listeners):
            try:
                callback(value)
            except Exception:
                self.counters.callback_errors += 1
                log.exception("a %s listener raised; ignored", type(self).__name__)

    def _set_wake(self) -> None:
        """Set the events the loop waits on (runs on the loop's thread)."""
        if self._wake is not None:
            self._wake.set()

    def _poke(self) -> None:
        """Wake the loop, from its own thread or another one."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._set_wake()
        else:
            loop.call_soon_threadsafe(self._set_wake)
