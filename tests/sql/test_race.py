"""Concurrency: a client that follows the protocol always ends on the truth.

The protocol (docs/sql.md): LISTEN first, then read is_system_stable(); on every
notification, whatever its payload, read it again. Payloads are hints computed inside a
writer's transaction, which a concurrent commit can make stale: a client that trusts them
(the seed's client) can end on the wrong value, and the deterministic tests below make that
happen on purpose, with the seed's triggers and with ours.
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
import time
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import errors

from tests.sql.conftest import (
    BUSY_TASK_STATES,
    TASK_STATES,
    Conn,
    Listener,
    add_job,
    add_task,
    payload,
)
from traystatus._paths import sql_dir

SENTINEL = "race_sentinel"
SEED_SQL = sql_dir() / "fixtures" / "seed_stability.sql"


@dataclass
class Views:
    """What two clients believe after each round: one follows the protocol, one trusts."""

    protocol: bool | None = None
    trusting: bool | None = None
    notifications: int = 0


class ProtocolClient(threading.Thread):
    """LISTEN, then read; on every notification read again. Also tracks the last payload."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.reports: queue.Queue[tuple[int, Views]] = queue.Queue()
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as listen, \
                    psycopg.connect(self.dsn, autocommit=True) as read:
                listen.execute("LISTEN system_stability")
                listen.execute(f"LISTEN {SENTINEL}")
                views = Views()
                views.protocol = self._read(read)  # after LISTEN: nothing can slip between
                views.trusting = views.protocol
                self.ready.set()
                for n in listen.notifies():
                    if n.channel == SENTINEL:
                        if n.payload == "stop":
                            return
                        self.reports.put((int(n.payload), Views(**vars(views))))
                        continue
                    views.notifications += 1
                    views.trusting = json.loads(n.payload)["stable"]
                    views.protocol = self._read(read)
        except BaseException as ex:  # reported to the test thread
            self.failure = ex
            self.ready.set()

    @staticmethod
    def _read(conn: Conn) -> bool:
        row = conn.execute("SELECT public.is_system_stable()").fetchone()
        assert row is not None
        return bool(row[0])


BUSY = [s for s in TASK_STATES if s in BUSY_TASK_STATES]  # no 'interrupted' on older StatBus
IDLE_TASK = ["completed", "failed"]
ACTIVE_JOB = ["upload_completed", "preparing_data", "analysing_data", "approved",
              "processing_data"]
IDLE_JOB = ["waiting_for_upload", "waiting_for_review", "rejected", "failed", "finished"]


def _task_state(rng: random.Random) -> str:
    return rng.choice(BUSY) if rng.random() < 0.3 else rng.choice(IDLE_TASK)


def _writer(c: Conn, rng: random.Random, tasks: list[int], jobs: list[int], ops: int) -> None:
    """A few random writes, each its own transaction or several in one, with small pauses.
    Biased so that the truth is "stable" about half of the time: it flips often."""
    for _ in range(ops):
        try:
            kind = rng.random()
            if kind < 0.35:
                c.execute("UPDATE worker.tasks SET state = %s WHERE id = %s",
                          (_task_state(rng), rng.choice(tasks)))
            elif kind < 0.55:
                state = rng.choice(ACTIVE_JOB) if rng.random() < 0.2 else rng.choice(IDLE_JOB)
                c.execute("UPDATE public.import_job SET state = %s WHERE id = %s",
                          (state, rng.choice(jobs)))
            elif kind < 0.65:
                c.execute("INSERT INTO worker.tasks (command, state) "
                          "VALUES ('derive_statistical_unit', 'pending')")
            elif kind < 0.75:
                c.execute("DELETE FROM worker.tasks WHERE id <> ALL(%s) "
                          "AND command = 'derive_statistical_unit'", (tasks,))
            else:  # a transaction of several statements, with a pause inside
                with c.transaction():
                    for _ in range(rng.randint(2, 3)):
                        c.execute("UPDATE worker.tasks SET state = %s WHERE id = %s",
                                  (_task_state(rng), rng.choice(tasks)))
                        time.sleep(rng.random() * 0.002)
        except (errors.DeadlockDetected, errors.SerializationFailure):
            pass  # the transaction rolled back as a whole: a legitimate outcome
        time.sleep(rng.random() * 0.001)


def race(dsn: str, rounds: int, writers: int, seed: int) -> list[tuple[int, bool, Views]]:
    """Run the rounds; return (round, truth, views) for each."""
    with psycopg.connect(dsn, autocommit=True) as c:
        tasks = [add_task(c, "completed") for _ in range(3)]
        jobs = [add_job(c, "finished", error="x") for _ in range(2)]
        conns = [psycopg.connect(dsn, autocommit=True) for _ in range(writers)]
        client = ProtocolClient(dsn)
        client.start()
        assert client.ready.wait(30) and client.failure is None, client.failure
        results = []
        rng = random.Random(seed)
        try:
            for r in range(rounds):
                threads = [
                    threading.Thread(
                        target=_writer,
                        args=(w, random.Random(rng.random()), tasks, jobs, rng.randint(1, 4)),
                    )
                    for w in conns
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                # every writer has committed: the truth cannot change until the next round,
                # and the sentinel reaches the client after every notification sent so far
                truth = ProtocolClient._read(c)
                c.execute("SELECT pg_notify(%s, %s)", (SENTINEL, str(r)))
                got_round, views = client.reports.get(timeout=60)
                assert got_round == r
                results.append((r, truth, views))
        finally:
            c.execute("SELECT pg_notify(%s, 'stop')", (SENTINEL,))
            client.join(30)
            for w in conns:
                w.close()
        assert client.failure is None, client.failure
        return results


def test_randomized_race_protocol_always_ends_on_the_truth(db_dsn: str) -> None:
    seed = int(os.environ.get("TRAYSTATUS_RACE_SEED", random.randrange(1 << 30)))
    results = race(db_dsn, rounds=200, writers=4, seed=seed)
    wrong = [(r, truth, v) for r, truth, v in results if v.protocol != truth]
    assert wrong == [], f"seed {seed}: the protocol client ended wrong in {wrong[:5]}"
    flips = sum(1 for i in range(1, len(results)) if results[i][1] != results[i - 1][1])
    assert flips >= 10, f"seed {seed}: the truth changed only {flips} times: a weak race"
    assert results[-1][2].notifications > 100
    trusting_wrong = sum(1 for _, truth, v in results if v.trusting != truth)
    print(f"seed {seed}: 200 rounds, truth flipped {flips} times, "
          f"{results[-1][2].notifications} notifications; a payload-trusting client "
          f"ended wrong in {trusting_wrong} rounds, the protocol client in 0")


# -- deterministic: a stale payload, and who is fooled by it --------------------------------------
def _stale_scenario(dsn: str, hold_commit: bool) -> tuple[list[str], bool, bool, bool]:
    """T1 completes the last active task; T2 adds one and commits while T1's payload,
    computed without T2's row, waits to be committed. Returns the payloads, the truth, what
    a payload-trusting client and what a protocol client end on."""
    with psycopg.connect(dsn, autocommit=True) as setup:
        a = add_task(setup, "processing")
        if hold_commit:
            # A deferred trigger that runs after ours at COMMIT and waits for the test: it
            # holds T1 between computing its payload and committing it.
            setup.execute("""
                CREATE TABLE gate (x int);
                CREATE FUNCTION gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$;
                CREATE CONSTRAINT TRIGGER zz_gate AFTER INSERT ON gate
                    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gate_wait();
            """)
    client = ProtocolClient(dsn)
    client.start()
    assert client.ready.wait(30)
    lst = Listener(dsn)
    with psycopg.connect(dsn, autocommit=True) as controller, \
            psycopg.connect(dsn, autocommit=True) as t1, \
            psycopg.connect(dsn, autocommit=True) as t2:
        if hold_commit:
            controller.execute("BEGIN")
            controller.execute("SELECT pg_advisory_xact_lock(4242)")
        t1.execute("BEGIN")
        t1.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (a,))
        if hold_commit:
            t1.execute("INSERT INTO gate VALUES (1)")
            done = threading.Event()
            committer = threading.Thread(target=lambda: (t1.execute("COMMIT"), done.set()))
            committer.start()
            # wait until T1 sits in its COMMIT, past our trigger, blocked by the gate
            for _ in range(600):
                row = controller.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted").fetchone()
                if row == (1,):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("T1 never reached the gate")
        add_task(t2, "pending")  # T2 commits first
        if hold_commit:
            controller.execute("COMMIT")  # release the gate: T1 commits its stale payload
            committer.join(30)
            assert done.is_set()
        else:
            t1.execute("COMMIT")
        controller.execute("SELECT 1")
        truth = ProtocolClient._read(controller)
        sent = lst.drain()
        controller.execute("SELECT pg_notify(%s, '0')", (SENTINEL,))
        _, views = client.reports.get(timeout=30)
        controller.execute("SELECT pg_notify(%s, 'stop')", (SENTINEL,))
    client.join(30)
    lst.close()
    assert views.protocol is not None and views.trusting is not None
    return sent, truth, views.trusting, views.protocol


def test_seed_triggers_fool_a_client_that_trusts_payloads(bare_db_dsn: str) -> None:
    with psycopg.connect(bare_db_dsn, autocommit=True) as c:
        c.execute(SEED_SQL.read_text())  # type: ignore[arg-type]
    sent, truth, trusting, protocol = _stale_scenario(bare_db_dsn, hold_commit=False)
    assert truth is False  # T2's pending task is there
    # T1's payload, computed before T2 committed, came last
    assert [json.loads(x) for x in sent] == [{"stable": False}, {"stable": True}]
    assert trusting is True  # the seed's client ends on "stable": wrong, and stays wrong
    assert protocol is False  # re-reading ends on the truth


def test_our_payloads_are_hints_too_and_the_protocol_copes(db_dsn: str) -> None:
    sent, truth, trusting, protocol = _stale_scenario(db_dsn, hold_commit=True)
    assert truth is False
    assert sent == [payload(False), payload(True)]  # T2's, then T1's stale one
    assert trusting is True
    assert protocol is False
