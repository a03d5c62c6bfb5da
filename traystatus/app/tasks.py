"""Background tasks of the tray app, kept and watched.

asyncio keeps only a weak reference to a task: one started with ``ensure_future`` and then
forgotten may be garbage-collected before it ends, and an exception it raises surfaces
only as "Task exception was never retrieved" when it is collected - long after the icon
should have said something went wrong. ``TaskSet`` keeps a reference until each task
ends, and its done-callback logs an unexpected exception with its traceback and hands it
to ``on_error`` so the window or icon can say so.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from traystatus.core.model.state import Problem, State, Status

log = logging.getLogger(__name__)

T = TypeVar("T")

ErrorHandler = Callable[[str, BaseException], None]


def bug_status(what: str, error: BaseException) -> Status:
    """What the icon says when a bug of ours stopped something: red, with the reason,
    never the last state (which nothing keeps true any more)."""
    return Status(
        State.ERROR,
        problem=Problem.INTERNAL,
        message=(
            f"traystatus hit a bug while {what} ({type(error).__name__}: {error}). "
            "The log file has the details; Reconnect now tries again."
        ),
    )


class TaskSet:
    """Tasks started by one owner (the controller, the Settings dialog)."""

    def __init__(self, on_error: ErrorHandler | None = None) -> None:
        self.on_error = on_error
        self._tasks: set[asyncio.Future[Any]] = set()

    def start(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Future[T]:
        """Run ``coro`` on the running loop; ``what`` names it in the log ("starting the
        monitor")."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, what))
        return task

    def _done(self, what: str, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # also marks it retrieved
        if error is None:
            return
        log.error("unexpected error while %s", what, exc_info=error)
        if self.on_error is not None:
            try:
                self.on_error(what, error)
            except Exception:  # the error handler itself must not hide the first error
                log.exception("could not show the error of %s", what)

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Wait until every task has ended (none is cancelled here)."""
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def cancel_all(self) -> None:
        """Cancel what is still running and wait for it to end."""
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
