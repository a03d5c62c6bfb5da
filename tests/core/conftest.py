"""Helpers for the core tests: run a Monitor in the test's loop and wait for what it says."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from tests.fix_db import PgServer, temporary_role
from traystatus.core.model.details import Details, WorkSummary
from traystatus.core.model.state import State, Status
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions
from traystatus.demo.embedded import EmbeddedPostgres

# Small intervals so failures show in seconds; generous waits because a CI machine
# may be loaded: a wait only bounds how long a FAILING test takes.
FAST = MonitorOptions(
    health_interval=1.0,
    health_timeout=1.0,
    connect_timeout=3.0,
    backoff_initial=0.2,
    backoff_cap=1.0,
    error_retry=1.0,
    details_interval=0.5,
)
WAIT = 30.0


class Recorder:
    """Collects every Status, Details and WorkSummary a monitor hands out."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.statuses: list[Status] = []
        self.details: list[Details] = []
        self.summaries: list[WorkSummary] = []
        monitor.add_listener(self.statuses.append)
        monitor.add_details_listener(self.details.append)
        monitor.add_summary_listener(self.summaries.append)

    @property
    def states(self) -> list[State]:
        return [s.state for s in self.statuses]

    @property
    def flips(self) -> list[State]:
        """The states with repeats collapsed: while processing, every progress read that
        moved on is a Status of its own, with the same state and since."""
        out: list[State] = []
        for state in self.states:
            if not out or out[-1] is not state:
                out.append(state)
        return out

    async def until(
        self, predicate: Callable[[], bool], within: float = WAIT, what: str = "condition"
    ) -> float:
        """Wait until ``predicate()``; return the seconds it took. Fails after ``within`` s."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > within:
                raise AssertionError(
                    f"{what} not reached in {within} s; status {self.monitor.status}, "
                    f"seen {self.states}, counters {self.monitor.counters}"
                )
            await asyncio.sleep(0.01)
        return time.monotonic() - start

    async def state(self, state: State, within: float = WAIT) -> Status:
        await self.until(lambda: self.monitor.status.state is state, within, f"state {state}")
        return self.monitor.status


@contextlib.asynccontextmanager
async def running(monitor: Monitor) -> AsyncIterator[Recorder]:
    """Run ``monitor`` in the background for the block; stop it and check it ended."""
    rec = Recorder(monitor)
    task = asyncio.create_task(monitor.run())
    try:
        yield rec
    finally:
        monitor.stop()
        await asyncio.wait_for(task, WAIT)  # run() returns after stop(), never raises


async def aconnect(dsn: str) -> psycopg.AsyncConnection[TupleRow]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


def with_params(dsn: str, **params: str) -> str:
    d = conninfo_to_dict(dsn)
    d.update(params)
    return make_conninfo("", **d)


# Work that moves the system across the line, as StatBus's worker would.
START_TASK = "INSERT INTO worker.tasks (command, state) VALUES ('collect_changes', 'pending')"
FINISH_TASKS = (
    "UPDATE worker.tasks SET state = 'completed', completed_at = now() "
    "WHERE command = 'collect_changes' AND state <> 'completed'"
)


@pytest.fixture
def own_server(pg_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A server of this test's own, to stop and start (the shared one must stay up).

    In ``pg_dir``, not ``tmp_path``: any pytest session that starts (another xdist run, the
    SQL suite beside it in .ci/run, a colleague's) re-locks pytest's temporary root to
    0700, and the server's user could no longer enter its folder (initdb PANICked so).
    """
    server = EmbeddedPostgres(pg_dir / "data")
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def plain_role(templates: PgServer) -> Iterator[tuple[str, str]]:
    """A LOGIN role that is NOT in authenticated: it may connect but not run our functions."""
    yield from temporary_role(templates, f"plain_{uuid.uuid4().hex[:8]}")
