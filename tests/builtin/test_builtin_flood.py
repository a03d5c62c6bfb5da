"""A forged flood of ``worker_task_changed`` payloads cannot hide a running task (issue 19.1).

Any login may NOTIFY. The built-in source tracks the ids named by ``worker_task_changed``;
a flood beyond what it parses used to drop the id of a real pending -> processing change
and hold the read that would have found it for 30 s: a running watcher said "stable" while
a task was processing (22 s and more on the stand-in, 1.8 s on the real StatBus, then a
false "disconnected" while the client was busy with the flood).

Two floods, each on the stand-in and on the real StatBus from the kit, read by the real
Monitor as an analyst login, every status change timed:

* ``same transaction`` (repro floodhide.py): 50,000 forged ids, then the real change, in
  one transaction, after a garbage payload started the full-read hold-back;
* ``continuous`` (repro floodhide2.py): the analyst's own login sends 30,000 forged ids
  every 0.5 s while the worker moves a task pending -> processing in its own transaction.

What must hold: the monitor never says "stable" for more than 2 s (the truth window)
while the task is processing, never says disconnected or error, and ends on the truth.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.builtin.kit import KitDb
from tests.core.conftest import running, with_params
from traystatus.core.model.state import State, Status
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions

REPO = Path(__file__).resolve().parents[2]
TRUTH_WINDOW = 2.0
FLOOD_IDS = 30_000
CLEAN = ("DELETE FROM worker.tasks AS t USING worker.command_registry AS cr "
         "WHERE cr.command = t.command AND cr.queue = 'analytics'")


@dataclass
class Target:
    superuser: str
    analyst: str


@pytest.fixture
def stand_in(bare_db_dsn: str, login_role: tuple[str, str]) -> Target:
    name, password = login_role
    return Target(bare_db_dsn, with_params(bare_db_dsn, user=name, password=password))


@pytest.fixture
def real(kit_db: KitDb) -> Target:
    return Target(kit_db.dsn, kit_db.analyst_dsn)


@dataclass
class Timeline:
    """Every status the monitor gave, with the monotonic time it was given."""

    changes: list[tuple[float, Status]] = field(default_factory=list)

    def add(self, status: Status) -> None:
        self.changes.append((time.monotonic(), status))

    def state_at(self, t: float) -> State | None:
        state = None
        for when, status in self.changes:
            if when > t:
                break
            state = status.state
        return state

    def longest(self, state: State, start: float, end: float) -> float:
        """The longest spell in ``state`` between ``start`` and ``end``."""
        longest = 0.0
        since = start if self.state_at(start) is state else None
        for when, status in self.changes:
            if when <= start or when >= end:
                continue
            if status.state is state and since is None:
                since = when
            elif status.state is not state and since is not None:
                longest = max(longest, when - since)
                since = None
        if since is not None:
            longest = max(longest, end - since)
        return longest

    def seen(self, start: float) -> set[State]:
        return {s.state for when, s in self.changes if when >= start}


def _sql(dsn: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.execute(query.encode(), params)
        row = cur.fetchone() if cur.description is not None else None
        return row[0] if row else None


def _enqueue(dsn: str) -> int:
    """A pending analytics task, announced on worker_tasks as StatBus's enqueue does."""
    with psycopg.connect(dsn, autocommit=True) as c, c.transaction():
        row = c.execute("INSERT INTO worker.tasks (command, state) "
                        "VALUES ('collect_changes', 'pending') RETURNING id").fetchone()
        c.execute("SELECT pg_notify('worker_tasks', 'analytics')")
    assert row is not None
    return int(row[0])


def _start_behind_a_flood(dsn: str, task: int, forged: int) -> None:
    """``forged`` forged ids, then the real change, in one transaction (floodhide.py)."""
    with psycopg.connect(dsn) as c:
        c.execute("SELECT pg_notify('worker_task_changed', "
                  "json_build_object('id', g, 'parent_id', null)::text) "
                  "FROM generate_series(900000001, %s) AS g", (900_000_000 + forged,))
        c.execute("UPDATE worker.tasks SET state = 'processing' WHERE id = %s", (task,))
        c.commit()


class Flooder(threading.Thread):
    """The analyst's own login: ``FLOOD_IDS`` forged ids every 0.5 s (floodhide2.py)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.sent = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as c:
                k = 0
                while not self.stop.is_set():
                    k += 1
                    c.execute("SELECT count(pg_notify('worker_task_changed', "
                              "json_build_object('id', g)::text)) "
                              "FROM generate_series(%s::bigint, %s::bigint - 1) AS g",
                              (k * 10**7, k * 10**7 + FLOOD_IDS))
                    self.sent += FLOOD_IDS
                    self.stop.wait(0.5)
        except BaseException as ex:  # reported by the test
            self.failure = ex


async def _watch(target: Target) -> tuple[Monitor, Timeline]:
    await asyncio.to_thread(_sql, target.superuser, CLEAN)
    m = Monitor(target.analyst, MonitorOptions(reader="builtin", connect_timeout=5.0))
    timeline = Timeline()
    m.add_listener(timeline.add)
    return m, timeline


def _check(m: Monitor, timeline: Timeline, busy_from: float, busy_until: float) -> None:
    hidden = timeline.longest(State.STABLE, busy_from, busy_until)
    says = [(round(t - busy_from, 2), s.state.value) for t, s in timeline.changes]
    assert hidden < TRUTH_WINDOW, (
        f"said stable for {hidden:.1f} s while a task was processing; {says}; "
        f"{m.counters}")
    wrong = timeline.seen(busy_from) & {State.DISCONNECTED, State.ERROR, State.CONNECTING}
    assert not wrong, f"said {wrong} during the flood; {says}; {m.counters}"


async def same_transaction(target: Target) -> None:
    m, timeline = await _watch(target)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        # A garbage payload: the (allowed) full read it asks for starts the hold-back.
        await asyncio.to_thread(_sql, target.analyst,
                                "SELECT pg_notify('worker_task_changed', 'garbage')")
        await asyncio.sleep(1.0)
        task = await asyncio.to_thread(_enqueue, target.superuser)
        await rec.state(State.PROCESSING)
        await asyncio.to_thread(_start_behind_a_flood, target.superuser, task, 50_000)
        busy_from = time.monotonic()
        await asyncio.sleep(4.5)
        busy_until = time.monotonic()
        assert await asyncio.to_thread(
            _sql, target.superuser, "SELECT state::text FROM worker.tasks WHERE id = %s",
            (task,)) == "processing"
        await asyncio.to_thread(
            _sql, target.superuser,
            "UPDATE worker.tasks SET state = 'completed' WHERE id = %s RETURNING id", (task,))
        await rec.state(State.STABLE, within=10)
    _check(m, timeline, busy_from, busy_until)


_READS: dict[int, tuple[float, int]] = {}


def reads_during(m: Monitor, since: float) -> int:
    at, reads = _READS[id(m)]
    assert at <= since
    return m.counters.stability_reads - reads


async def continuous(target: Target) -> None:
    m, timeline = await _watch(target)
    flooder = Flooder(target.analyst)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        task = await asyncio.to_thread(_enqueue, target.superuser)
        await rec.state(State.PROCESSING)
        _READS[id(m)] = (time.monotonic(), m.counters.stability_reads)
        flooder.start()
        try:
            await asyncio.sleep(1.2)
            await asyncio.to_thread(
                _sql, target.superuser,
                "UPDATE worker.tasks SET state = 'processing' WHERE id = %s RETURNING id",
                (task,))
            busy_from = time.monotonic()
            await asyncio.sleep(4.5)
            busy_until = time.monotonic()
        finally:
            flooder.stop.set()
            await asyncio.to_thread(flooder.join, 30)
        assert flooder.failure is None, flooder.failure
        assert flooder.sent >= 6 * FLOOD_IDS, f"the flood was small: {flooder.sent}"
        # Issue 23: a flood costs a bounded number of reads, and the health of the
        # connection is never in doubt (no read without an answer in time).
        assert reads_during(m, busy_from) <= 10 * (time.monotonic() - busy_from), m.counters
        assert m.counters.stale == 0, m.counters
        await asyncio.to_thread(
            _sql, target.superuser,
            "UPDATE worker.tasks SET state = 'completed' WHERE id = %s RETURNING id", (task,))
        await rec.state(State.STABLE, within=15)
    _check(m, timeline, busy_from, busy_until)


@pytest.mark.asyncio
async def test_a_flood_in_the_same_transaction_hides_nothing_on_the_stand_in(
    stand_in: Target,
) -> None:
    await same_transaction(stand_in)


@pytest.mark.asyncio
async def test_a_flood_in_the_same_transaction_hides_nothing_on_the_real_statbus(
    real: Target,
) -> None:
    await same_transaction(real)


@pytest.mark.asyncio
async def test_a_continuous_flood_hides_nothing_on_the_stand_in(stand_in: Target) -> None:
    await continuous(stand_in)


@pytest.mark.asyncio
async def test_a_continuous_flood_hides_nothing_on_the_real_statbus(real: Target) -> None:
    await continuous(real)


def _cli_env(analyst: str) -> tuple[list[str], dict[str, str]]:
    params = psycopg.conninfo.conninfo_to_dict(analyst)
    password = str(params.pop("password"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
               TRAYSTATUS_CONFIG_DIR=str(REPO / ".pytest_cache" / "builtin-cli"))
    return ["--source", "builtin", "--dsn", psycopg.conninfo.make_conninfo("", **params)], env


def test_watch_and_wait_in_their_own_processes_under_a_continuous_flood(real: Target) -> None:
    """floodhide2.py as it ran: ``watch --json`` and ``wait`` as child processes on the
    real StatBus. watch never says stable for 2 s while the task runs, nor disconnected;
    wait does not end while it runs."""
    _sql(real.superuser, CLEAN)
    base, env = _cli_env(real.analyst)
    cmd = [sys.executable, "-m", "traystatus"]
    watch = subprocess.Popen([*cmd, "watch", "--json", *base], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[tuple[float, str]] = []

    def collect() -> None:
        assert watch.stdout is not None
        for line in watch.stdout:
            if line.strip():
                lines.append((time.monotonic(), json.loads(line)["state"]))

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    flooder = Flooder(real.analyst)
    waiter = None
    try:
        deadline = time.monotonic() + 60
        while not lines and time.monotonic() < deadline:
            time.sleep(0.05)
        task = _enqueue(real.superuser)
        flooder.start()
        time.sleep(1.2)
        _sql(real.superuser, "UPDATE worker.tasks SET state = 'processing' WHERE id = %s "
             "RETURNING id", (task,))
        busy_from = time.monotonic()
        waiter = subprocess.Popen([*cmd, "wait", "--timeout", "5", *base], env=env,
                                  text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, wait_err = waiter.communicate(timeout=60)
        time.sleep(max(0.0, busy_from + 4.5 - time.monotonic()))
        busy_until = time.monotonic()
        _sql(real.superuser, "UPDATE worker.tasks SET state = 'completed' WHERE id = %s "
             "RETURNING id", (task,))
        # Until watch says stable again (it ends on the truth), at most 30 s.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                lines and lines[-1][0] >= busy_until and lines[-1][1] == "stable"):
            time.sleep(0.05)
    finally:
        flooder.stop.set()
        flooder.join(30)
        watch.terminate()
        _, watch_err = watch.communicate(timeout=30)
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
    assert flooder.failure is None, flooder.failure
    timeline = Timeline([(t, Status(State(state))) for t, state in lines])
    says = [(round(t - busy_from, 2), state) for t, state in lines]
    hidden = timeline.longest(State.STABLE, busy_from, busy_until)
    assert hidden < TRUTH_WINDOW, f"watch said stable for {hidden:.1f} s: {says} {watch_err}"
    wrong = timeline.seen(busy_from) - {State.STABLE, State.PROCESSING}
    assert not wrong, f"watch said {wrong}: {says} {watch_err}"
    assert waiter.returncode == 1, f"wait ended with {waiter.returncode}: {wait_err}"
    assert says[-1][1] == "stable", says  # and ends on the truth
