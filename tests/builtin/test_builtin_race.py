"""Concurrency for the built-in source: a client that LISTENs on StatBus's own channels and
re-reads with builtin_sql (the protocol of traystatus.core.watch._builtin_protocol) ends on
the truth at every quiescent point.

The race of tests/sql/test_race.py, adapted: the writers change tasks and jobs the way
StatBus does (a new task announces its queue on worker_tasks in its own transaction, as
worker.spawn and the enqueue functions do; states change by UPDATE, which StatBus's
trigger announces on worker_task_changed; jobs by UPDATE, announced on import_job), and
remove only finished tasks (StatBus's cleanup). Deleting an active task is announced by
nothing: that case is the timed re-read's (tests/builtin/test_builtin_rule.py shows it).

Two truths are checked: the plain rule as a query (RULE_NAIVE) and, on the stand-in where
traystatus's SQL is installed, is_system_stable() itself, so the built-in rule is the same
rule, not a look-alike.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import TupleRow

from tests.builtin.kit import KitDb
from traystatus.core.watch import _builtin_sql as builtin_sql
from traystatus.core.watch._builtin_protocol import Probe, TaskTracker

Conn = psycopg.Connection[TupleRow]  # psycopg's default: a column's type is the database's
SENTINEL = "ts_builtin_race"

BUSY = ["pending", "processing", "waiting", "interrupted"]
IDLE_TASK = ["completed", "failed"]
ACTIVE_JOB = ["upload_completed", "preparing_data", "analysing_data", "approved",
              "processing_data"]
IDLE_JOB = ["waiting_for_review", "rejected", "failed", "finished", "finished"]


@dataclass
class View:
    value: bool | None = None
    reads: int = 0
    full_reads: int = 0
    notifications: int = 0


def read(conn: Conn, tracker: TaskTracker, view: View) -> bool:
    query = tracker.query()
    row = conn.execute(query.sql.encode(), query.params).fetchone()
    assert row is not None
    view.reads += 1
    view.full_reads += query.full
    return tracker.apply(row, query.full).stable


def probe(conn: Conn) -> Probe:
    row = conn.execute(builtin_sql.PROBE.encode()).fetchone()
    assert row is not None
    found = Probe.from_row(row)
    by_migration = None
    if found.ask_migrations:
        held = conn.execute(builtin_sql.MIGRATION_HOLDS_QUEUE.encode()).fetchone()
        by_migration = bool(held and held[0])
    return found.settle(by_migration)


class BuiltinClient(threading.Thread):
    """LISTEN on StatBus's channels, then read; on every notification read again."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.reports: queue.Queue[tuple[int, View]] = queue.Queue()
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as listen, \
                    psycopg.connect(self.dsn, autocommit=True) as conn:
                for ch in (*builtin_sql.CHANNELS, SENTINEL):
                    listen.execute(f"LISTEN {ch}")
                tracker = TaskTracker()
                tracker.holds_queue = probe(conn).holds_queue
                view = View()
                view.value = read(conn, tracker, view)
                self.ready.set()
                for n in listen.notifies():
                    if n.channel == SENTINEL:
                        if n.payload == "stop":
                            return
                        self.reports.put((int(n.payload), View(**vars(view))))
                        continue
                    view.notifications += 1
                    if n.channel == builtin_sql.TASK_CHANGED_CHANNEL:
                        tracker.note(n.payload)
                    view.value = read(conn, tracker, view)
        except BaseException as ex:  # reported to the test thread
            self.failure = ex
            self.ready.set()


def _spawn(c: Conn, has_spawn: bool) -> None:
    if has_spawn:
        c.execute("SELECT worker.spawn('derive_statistical_unit')")
    else:  # the stand-in has no worker.spawn: do what it does
        with c.transaction():
            c.execute("INSERT INTO worker.tasks (command) VALUES ('derive_statistical_unit')")
            c.execute("SELECT pg_notify('worker_tasks', 'analytics')")


# StatBus's CHECK: an error exactly when failed.
SET_STATE = ("SET state = %(s)s::text::worker.task_state, "
             "error = CASE WHEN %(s)s::text = 'failed' THEN 'x' END")


def _task_state(rng: random.Random) -> str:
    return rng.choice(BUSY) if rng.random() < 0.3 else rng.choice(IDLE_TASK)


def _writer(c: Conn, rng: random.Random, tasks: list[int], jobs: list[int], ops: int,
            has_spawn: bool, failures: list[BaseException]) -> None:
    try:
        _writes(c, rng, tasks, jobs, ops, has_spawn)
    except BaseException as ex:  # reported by race()
        failures.append(ex)


def _writes(c: Conn, rng: random.Random, tasks: list[int], jobs: list[int], ops: int,
            has_spawn: bool) -> None:
    for _ in range(ops):
        try:
            kind = rng.random()
            if kind < 0.35:
                c.execute(f"UPDATE worker.tasks {SET_STATE} WHERE id = %(id)s",
                          {"s": _task_state(rng), "id": rng.choice(tasks)})
            elif kind < 0.55:
                state = rng.choice(ACTIVE_JOB) if rng.random() < 0.2 else rng.choice(IDLE_JOB)
                c.execute("UPDATE public.import_job SET state = %s WHERE id = %s",
                          (state, rng.choice(jobs)))
            elif kind < 0.60:
                _spawn(c, has_spawn)
            elif kind < 0.70:
                # The oldest spawned task runs or ends, each step its own transaction.
                c.execute(f"UPDATE worker.tasks {SET_STATE} WHERE id = ("
                          "SELECT min(id) FROM worker.tasks WHERE id <> ALL(%(tasks)s) "
                          "AND command = 'derive_statistical_unit' "
                          "AND state IN ('pending', 'processing'))",
                          {"s": rng.choice(["processing", "completed", "completed", "failed"]),
                           "tasks": tasks})
            elif kind < 0.75:
                c.execute("DELETE FROM worker.tasks WHERE id <> ALL(%s) "
                          "AND command = 'derive_statistical_unit' "
                          "AND state IN ('completed', 'failed')", (tasks,))
            else:  # several statements in one transaction, with a pause inside
                with c.transaction():
                    for _ in range(rng.randint(2, 3)):
                        c.execute(f"UPDATE worker.tasks {SET_STATE} WHERE id = %(id)s",
                                  {"s": _task_state(rng), "id": rng.choice(tasks)})
                        time.sleep(rng.random() * 0.002)
        except (errors.DeadlockDetected, errors.SerializationFailure):
            pass  # rolled back as a whole: a legitimate outcome
        time.sleep(rng.random() * 0.001)


def truth(c: Conn, installed: bool) -> bool:
    holds = probe(c).holds_queue
    row = c.execute(builtin_sql.RULE_NAIVE.encode(), {"holds": holds}).fetchone()
    assert row is not None
    if installed:
        inst = c.execute("SELECT public.is_system_stable()").fetchone()
        assert inst is not None and inst[0] == row[0], "the rules differ"
    return bool(row[0])


def race(writer_dsn: str, reader_dsn: str, jobs: list[int], rounds: int, seed: int,
         installed: bool, writers: int = 4) -> list[tuple[int, bool, View]]:
    with psycopg.connect(writer_dsn, autocommit=True) as c:
        row = c.execute("SELECT to_regproc('worker.spawn') IS NOT NULL").fetchone()
        has_spawn = bool(row and row[0])
        tasks = []
        for _ in range(3):
            new = c.execute("INSERT INTO worker.tasks (command, state) "
                            "VALUES ('derive_statistical_unit', 'completed') RETURNING id"
                            ).fetchone()
            assert new is not None
            tasks.append(int(new[0]))
        conns = [psycopg.connect(writer_dsn, autocommit=True) for _ in range(writers)]
        client = BuiltinClient(reader_dsn)
        client.start()
        assert client.ready.wait(60) and client.failure is None, client.failure
        results = []
        failures: list[BaseException] = []
        rng = random.Random(seed)
        try:
            for r in range(rounds):
                threads = [
                    threading.Thread(target=_writer, args=(
                        w, random.Random(rng.random()), tasks, jobs, rng.randint(1, 4),
                        has_spawn, failures))
                    for w in conns
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                assert not failures, failures[0]
                now_true = truth(c, installed)
                c.execute("SELECT pg_notify(%s, %s)", (SENTINEL, str(r)))
                got_round, view = client.reports.get(timeout=60)
                assert got_round == r
                results.append((r, now_true, view))
        finally:
            c.execute("SELECT pg_notify(%s, 'stop')", (SENTINEL,))
            client.join(30)
            for w in conns:
                w.close()
        assert client.failure is None, client.failure
        return results


def check(results: list[tuple[int, bool, View]], seed: int) -> None:
    wrong = [(r, t, v) for r, t, v in results if v.value != t]
    assert wrong == [], f"seed {seed}: the built-in client ended wrong in {wrong[:5]}"
    flips = sum(1 for i in range(1, len(results)) if results[i][1] != results[i - 1][1])
    assert flips >= 5, f"seed {seed}: the truth changed only {flips} times: a weak race"
    last = results[-1][2]
    # Only the first read of the connection reads every row.
    assert last.full_reads == 1, last
    print(f"seed {seed}: {len(results)} rounds, truth flipped {flips} times, "
          f"{last.notifications} notifications, {last.reads} reads (1 full)")


def _seed() -> int:
    return int(os.environ.get("TRAYSTATUS_RACE_SEED", random.randrange(1 << 30)))


def test_race_on_the_stand_in_matches_is_system_stable(db_dsn: str, login_role: tuple[str, str]
                                                       ) -> None:
    from tests.core.conftest import with_params

    with psycopg.connect(db_dsn, autocommit=True) as c:
        jobs = []
        for i in range(2):
            r = c.execute("INSERT INTO public.import_job (slug, definition_id, state, error) "
                          "VALUES (%s, 1, 'finished', 'x') RETURNING id", (f"race{i}",)
                          ).fetchone()
            assert r is not None
            jobs.append(int(r[0]))
    name, password = login_role
    analyst = with_params(db_dsn, user=name, password=password)
    seed = _seed()
    check(race(db_dsn, analyst, jobs, rounds=150, seed=seed, installed=True), seed)


def test_race_on_the_real_statbus(kit_db: KitDb) -> None:
    kit_db.setup_demo()
    jobs = [kit_db.start_import()[0] for _ in range(2)]
    with kit_db.connect() as c:
        c.execute("UPDATE public.import_job SET state = 'finished', error = 'x'")
    seed = _seed()
    check(race(kit_db.dsn, kit_db.analyst_dsn, jobs, rounds=150, seed=seed, installed=False),
          seed)


@pytest.mark.asyncio
async def test_the_monitor_in_builtin_mode_ends_on_the_truth_after_every_round(
    db_dsn: str, login_role: tuple[str, str]
) -> None:
    """The same race, read by the real Monitor (coalescing, schedule, rate-limited full
    reads): after every round it settles on the truth and stays there."""
    import asyncio
    from dataclasses import replace

    from tests.core.conftest import FAST, running, with_params
    from traystatus.core.model.state import State
    from traystatus.core.watch.monitor import Monitor

    with psycopg.connect(db_dsn, autocommit=True) as c:
        jobs = []
        for i in range(2):
            r = c.execute("INSERT INTO public.import_job (slug, definition_id, state, error) "
                          "VALUES (%s, 1, 'finished', 'x') RETURNING id", (f"mrace{i}",)
                          ).fetchone()
            assert r is not None
            jobs.append(int(r[0]))
        tasks = []
        for _ in range(3):
            new = c.execute("INSERT INTO worker.tasks (command, state) "
                            "VALUES ('derive_statistical_unit', 'completed') RETURNING id"
                            ).fetchone()
            assert new is not None
            tasks.append(int(new[0]))
    name, password = login_role
    m = Monitor(with_params(db_dsn, user=name, password=password),
                replace(FAST, reader="builtin", health_interval=60.0))
    seed = _seed()
    rng = random.Random(seed)
    conns = [psycopg.connect(db_dsn, autocommit=True) for _ in range(3)]
    flips = 0
    try:
        async with running(m) as rec:
            await rec.state(State.STABLE)
            with psycopg.connect(db_dsn, autocommit=True) as c:
                before = True
                for rnd in range(80):
                    if rnd >= 30 and flips >= 4:
                        break  # enough crossings seen
                    failures: list[BaseException] = []
                    await asyncio.gather(*(
                        asyncio.to_thread(_writer, w, random.Random(rng.random()), tasks, jobs,
                                          rng.randint(1, 4), False, failures)
                        for w in conns))
                    assert not failures, failures[0]
                    now_true = truth(c, installed=True)
                    flips += now_true != before
                    before = now_true
                    want = State.STABLE if now_true else State.PROCESSING
                    await rec.state(want, within=10)
                    await asyncio.sleep(0.7)  # one coalescing window more: still there
                    assert m.status.state is want, (seed, rnd, m.status)
    finally:
        for w in conns:
            w.close()
    assert flips >= 2, f"seed {seed}: the truth changed only {flips} times"
