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
from dataclasses import dataclass, field

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


# The answer a client shows: the boolean and the review block's fingerprint (the ids of the
# jobs waiting for review, the number of imports queued behind them; None when none waits).
Review = tuple[tuple[int, ...], int] | None
Answer = tuple[bool, Review]


@dataclass
class Views:
    """What two clients believe after each round: one follows the protocol, one trusts."""

    protocol: Answer | None = None
    trusting: Answer | None = None
    notifications: int = 0


def _fingerprint(block: object) -> Review:
    """system_stability_review()'s jsonb, or a payload's "review", as a fingerprint."""
    if not isinstance(block, dict):
        return None
    ids = tuple(sorted(j["id"] if isinstance(j, dict) else j for j in block["jobs"]))
    return (ids, int(block["queued_behind"])) if ids else None


def answer_of(text: str) -> Answer:
    """What a payload says: {"stable": ...} plus the review fingerprint while a job waits."""
    value = json.loads(text)
    return bool(value["stable"]), _fingerprint(value.get("review"))


class ProtocolClient(threading.Thread):
    """LISTEN, then read; on every notification read again. Also tracks the last payload."""

    def __init__(self, dsn: str, review: bool = True) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.review = review  # False: the seed's SQL has no system_stability_review()
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
                views.protocol = self._read(read, self.review)  # after LISTEN: nothing slips
                views.trusting = views.protocol
                self.ready.set()
                for n in listen.notifies():
                    if n.channel == SENTINEL:
                        if n.payload == "stop":
                            return
                        self.reports.put((int(n.payload), Views(**vars(views))))
                        continue
                    views.notifications += 1
                    views.trusting = answer_of(n.payload)
                    views.protocol = self._read(read, self.review)
        except BaseException as ex:  # reported to the test thread
            self.failure = ex
            self.ready.set()

    @staticmethod
    def _read(conn: Conn, review: bool = True) -> Answer:
        """The installed reader's read: the boolean and the review block, one snapshot."""
        row = conn.execute(
            "SELECT public.is_system_stable(), "
            + ("public.system_stability_review()" if review else "NULL")).fetchone()
        assert row is not None
        return bool(row[0]), _fingerprint(row[1])


BUSY = [s for s in TASK_STATES if s in BUSY_TASK_STATES]  # no 'interrupted' on older StatBus
IDLE_TASK = ["completed", "failed"]
ACTIVE_JOB = ["upload_completed", "preparing_data", "analysing_data", "approved",
              "processing_data"]
IDLE_JOB = ["waiting_for_upload", "waiting_for_review", "rejected", "failed", "finished"]

# A deferred trigger of "StatBus" that runs at COMMIT after ours and may fail: the
# transaction then aborts after our decision was made.
LATE_FAILURE = """
    CREATE TABLE public.race_late (fail boolean NOT NULL);
    CREATE FUNCTION public.race_late_check() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.fail THEN
            RAISE EXCEPTION 'late failure' USING ERRCODE = 'P0001';
        END IF;
        RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER race_late_check AFTER INSERT ON public.race_late
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.race_late_check();
"""


@dataclass
class Tally:
    """What the writers did, and what went wrong that must not."""

    commits: int = 0
    late_aborts: int = 0
    savepoints_rolled_back: int = 0
    rr_commits: int = 0
    errors: list[str] = field(default_factory=list)  # deadlocks, serialization failures


def _task_state(rng: random.Random) -> str:
    return rng.choice(BUSY) if rng.random() < 0.2 else rng.choice(IDLE_TASK)


def _job_state(rng: random.Random) -> str:
    return rng.choice(ACTIVE_JOB) if rng.random() < 0.2 else rng.choice(IDLE_JOB)


class Writer:
    """One connection. Never deadlocks with the other writers on its own: every transaction
    locks its rows in ascending id order, tasks before jobs, and deletes one row it can lock
    at once. So a deadlock or a serialization failure can only come from our triggers."""

    def __init__(self, dsn: str, tasks: list[int], jobs: list[int], repeatable_read: bool,
                 lock: threading.Lock, tally: Tally) -> None:
        self.conn: Conn = psycopg.connect(dsn, autocommit=True)
        self.tasks, self.jobs = tasks, jobs
        self.rr = repeatable_read
        self.lock, self.tally = lock, tally

    def _count(self, what: str) -> None:
        with self.lock:
            setattr(self.tally, what, getattr(self.tally, what) + 1)

    def _update_tasks(self, rng: random.Random, n: int) -> None:
        for tid in sorted(rng.sample(self.tasks, min(n, len(self.tasks)))):
            self.conn.execute("UPDATE worker.tasks SET state = %s WHERE id = %s",
                              (_task_state(rng), tid))
            time.sleep(rng.random() * 0.002)

    def step(self, rng: random.Random) -> None:
        c = self.conn
        try:
            if self.rr:  # REPEATABLE READ: its own rows only, so no conflict is StatBus's
                with c.transaction():
                    c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    self._update_tasks(rng, rng.randint(1, 2))
                    if rng.random() < 0.1:
                        c.execute("INSERT INTO worker.tasks (command, state) "
                                  "VALUES ('derive_statistical_unit', 'pending')")
                self._count("rr_commits")
                return
            kind = rng.random()
            if kind < 0.25:
                self._update_tasks(rng, 1)
            elif kind < 0.40:
                c.execute("UPDATE public.import_job SET state = %s WHERE id = %s",
                          (_job_state(rng), rng.choice(self.jobs)))
            elif kind < 0.45:
                c.execute("INSERT INTO worker.tasks (command, state) "
                          "VALUES ('derive_statistical_unit', 'pending')")
            elif kind < 0.60:
                c.execute("DELETE FROM worker.tasks WHERE id = (SELECT id FROM worker.tasks "
                          "WHERE command = 'derive_statistical_unit' AND id <> ALL(%s) "
                          "LIMIT 1 FOR UPDATE SKIP LOCKED)", (ALL_FIXED,))
            elif kind < 0.75:  # several statements, with pauses
                with c.transaction():
                    self._update_tasks(rng, rng.randint(2, 3))
                    if rng.random() < 0.5:
                        c.execute("UPDATE public.import_job SET state = %s WHERE id = %s",
                                  (_job_state(rng), rng.choice(self.jobs)))
            elif kind < 0.87:  # a savepoint rolled back in the middle
                with c.transaction():
                    a, b = sorted(rng.sample(self.tasks, 2))
                    c.execute("UPDATE worker.tasks SET state = %s WHERE id = %s",
                              (_task_state(rng), a))
                    with c.transaction(force_rollback=True):
                        c.execute("UPDATE worker.tasks SET state = %s WHERE id = %s",
                                  (_task_state(rng), b))
                        c.execute("INSERT INTO worker.tasks (command, state) "
                                  "VALUES ('derive_statistical_unit', 'pending')")
                self._count("savepoints_rolled_back")
            else:  # aborts at COMMIT, after our decision: another deferred trigger fails
                try:
                    with c.transaction():
                        self._update_tasks(rng, rng.randint(1, 2))
                        c.execute("INSERT INTO public.race_late VALUES (true)")
                except errors.RaiseException:
                    self._count("late_aborts")
                    return
                raise AssertionError("the late failure did not abort the transaction")
            self._count("commits")
        except (errors.DeadlockDetected, errors.SerializationFailure) as ex:
            with self.lock:
                self.tally.errors.append(f"{type(ex).__name__}: {ex}")

    def close(self) -> None:
        self.conn.close()


ALL_FIXED: list[int] = []  # the rows the writers update; DELETE leaves them alone


def race(dsn: str, rounds: int, writers: int, rr_writers: int, seed: int,
         ) -> tuple[list[tuple[int, Answer, Views]], Tally, list[str]]:
    """Run the rounds; return (round, truth, views) for each, the tally, and every payload
    in commit order."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(LATE_FAILURE)
        # few rows, so that "all idle" (stable) is frequent and the truth flips often
        shared = [add_task(c, "completed") for _ in range(4)]
        private = [[add_task(c, "completed")] for _ in range(rr_writers)]
        jobs = [add_job(c, "finished", error="x") for _ in range(2)]
        ALL_FIXED[:] = shared + [t for p in private for t in p]
        lock, tally = threading.Lock(), Tally()
        pool = [Writer(dsn, shared, jobs, False, lock, tally) for _ in range(writers)]
        pool += [Writer(dsn, p, jobs, True, lock, tally) for p in private]
        client = ProtocolClient(dsn)
        client.start()
        assert client.ready.wait(30) and client.failure is None, client.failure
        payloads = Listener(dsn)
        sent: list[str] = []
        results = []
        rng = random.Random(seed)
        try:
            for r in range(rounds):
                def work(w: Writer, wrng: random.Random, ops: int) -> None:
                    for _ in range(ops):
                        w.step(wrng)
                        time.sleep(wrng.random() * 0.001)

                threads = [
                    threading.Thread(target=work,
                                     args=(w, random.Random(rng.random()), rng.randint(1, 3)))
                    for w in pool
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
                sent.extend(payloads.drain())
                results.append((r, truth, views))
        finally:
            c.execute("SELECT pg_notify(%s, 'stop')", (SENTINEL,))
            client.join(30)
            payloads.close()
            for w in pool:
                w.close()
        assert client.failure is None, client.failure
        return results, tally, sent


def _flips(results: list[tuple[int, Answer, Views]], part: int) -> int:
    """Rounds after which part 0 (the boolean) or 1 (the review block) of the truth differs
    from the round before."""
    return sum(1 for i in range(1, len(results))
               if results[i][1][part] != results[i - 1][1][part])


def _repeats(sent: list[str]) -> int:
    """Notifications that say what the one before said (the same boolean AND the same review
    block): none unless a transaction could not decide (REPEATABLE READ writers, the
    fail-safe). A change of either part is a change."""
    return sum(1 for i in range(1, len(sent)) if answer_of(sent[i]) == answer_of(sent[i - 1]))


def test_race_read_committed_writers_notify_exactly_on_changes(db_dsn: str) -> None:
    """8 READ COMMITTED writers: every notification says something other than the one before
    it, in the boolean or in the review block (so none is sent for a transaction that changed
    neither), and at every quiescent point even a client that trusts payloads holds the truth,
    both parts (so every change was announced, with the true answer at its commit)."""
    seed = int(os.environ.get("TRAYSTATUS_RACE_SEED", random.randrange(1 << 30)))
    rounds = int(os.environ.get("TRAYSTATUS_RACE_ROUNDS", "1000"))
    results, tally, sent = race(db_dsn, rounds=rounds, writers=8, rr_writers=0, seed=seed)
    wrong = [(r, truth, v) for r, truth, v in results if v.protocol != truth]
    assert wrong == [], f"seed {seed}: the protocol client ended wrong in {wrong[:5]}"
    trusting_wrong = [(r, truth, v) for r, truth, v in results if v.trusting != truth]
    assert trusting_wrong == [], f"seed {seed}: a payload was not the truth: {trusting_wrong[:5]}"
    assert tally.errors == [], f"seed {seed}: {tally.errors[:3]}"
    assert _repeats(sent) == 0, f"seed {seed}: a notification that changed nothing: {sent}"
    flips, review_flips = _flips(results, 0), _flips(results, 1)
    assert flips >= rounds // 10, f"seed {seed}: the truth changed only {flips} times"
    assert review_flips >= rounds // 20, f"seed {seed}: the review changed {review_flips} times"
    # review-only changes: the notifications that repeat the boolean of the one before
    review_only = sum(1 for i in range(1, len(sent))
                      if answer_of(sent[i])[0] == answer_of(sent[i - 1])[0])
    assert tally.late_aborts > rounds // 10 and tally.savepoints_rolled_back > rounds // 10
    print(f"seed {seed}: {rounds} rounds, 8 writers, {tally.commits} commits, "
          f"{tally.late_aborts} aborted after our decision, {tally.savepoints_rolled_back} "
          f"with a savepoint rolled back; between rounds the boolean changed {flips} times, "
          f"the review block {review_flips} times; {len(sent)} notifications ({review_only} "
          f"for a change of the review block alone), none repeating the one before")


def test_race_with_repeatable_read_writers_protocol_always_ends_on_the_truth(
    db_dsn: str,
) -> None:
    """10 writers, 2 of them REPEATABLE READ: they never fail because of us (they touch only
    their own rows, so any serialization failure or deadlock would be ours), and a client
    following the protocol holds the truth at every quiescent point. REPEATABLE READ commits
    cannot decide (their snapshot is old): each notifies, which is the only source of
    repeated notifications."""
    seed = int(os.environ.get("TRAYSTATUS_RACE_SEED", random.randrange(1 << 30)))
    rounds = int(os.environ.get("TRAYSTATUS_RACE_ROUNDS", "1000"))
    results, tally, sent = race(db_dsn, rounds=rounds, writers=8, rr_writers=2, seed=seed)
    wrong = [(r, truth, v) for r, truth, v in results if v.protocol != truth]
    assert wrong == [], f"seed {seed}: the protocol client ended wrong in {wrong[:5]}"
    assert tally.errors == [], f"seed {seed}: {tally.errors[:3]}"
    assert tally.rr_commits > rounds
    repeats = _repeats(sent)
    # each REPEATABLE READ commit that crossed sends one, and the decision after it may
    # repeat the truth once (the record says "unknown")
    assert repeats <= 2 * tally.rr_commits
    flips = _flips(results, 0)
    print(f"seed {seed}: {rounds} rounds, 8+2 writers, {tally.commits} commits, "
          f"{tally.rr_commits} REPEATABLE READ commits, {tally.late_aborts} aborted after our "
          f"decision; the truth flipped {flips} times between rounds; {len(sent)} "
          f"notifications, {repeats} repeating the one before")


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
    client = ProtocolClient(dsn, review=False)  # (no review in this scenario)
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

            def commit() -> None:
                t1.execute("COMMIT")
                done.set()

            committer = threading.Thread(target=commit)
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
        t2_done = threading.Event()

        def insert() -> None:
            add_task(t2, "pending")
            t2_done.set()

        t2_thread = threading.Thread(target=insert)
        t2_thread.start()  # the seed's T2 commits first; ours waits for T1's decision
        if hold_commit:
            for _ in range(600):
                if t2_done.is_set():
                    break
                row = controller.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted").fetchone()
                if row == (2,):  # T1 on the gate, T2 on our decision lock
                    break
                time.sleep(0.05)
            else:
                pytest.fail("T2 neither committed nor waited")
            controller.execute("COMMIT")  # release the gate: T1 commits
            committer.join(30)
            assert done.is_set()
        else:
            t2_thread.join(30)
            t1.execute("COMMIT")
        t2_thread.join(30)
        assert t2_done.is_set()
        controller.execute("SELECT 1")
        truth = ProtocolClient._read(controller, review=False)[0]
        sent = lst.drain()
        controller.execute("SELECT pg_notify(%s, '0')", (SENTINEL,))
        _, views = client.reports.get(timeout=30)
        controller.execute("SELECT pg_notify(%s, 'stop')", (SENTINEL,))
    client.join(30)
    lst.close()
    assert views.protocol is not None and views.trusting is not None
    return sent, truth, views.trusting[0], views.protocol[0]


def test_seed_triggers_fool_a_client_that_trusts_payloads(bare_db_dsn: str) -> None:
    with psycopg.connect(bare_db_dsn, autocommit=True) as c:
        c.execute(SEED_SQL.read_text())
    sent, truth, trusting, protocol = _stale_scenario(bare_db_dsn, hold_commit=False)
    assert truth is False  # T2's pending task is there
    # T1's payload, computed before T2 committed, came last
    assert [json.loads(x) for x in sent] == [{"stable": False}, {"stable": True}]
    assert trusting is True  # the seed's client ends on "stable": wrong, and stays wrong
    assert protocol is False  # re-reading ends on the truth


def test_our_payload_is_the_truth_at_its_commit(db_dsn: str) -> None:
    """The same race with ours: T1 decided "stable" and is held at COMMIT after its decision.
    T2 cannot decide before T1 has committed (the decision lock), so T2 decides on a
    snapshot that includes T1, and its "processing" comes last: even a client that trusted
    payloads would be right (ours does not trust them anyway)."""
    sent, truth, trusting, protocol = _stale_scenario(db_dsn, hold_commit=True)
    assert truth is False
    assert sent == [payload(True), payload(False)]  # T1's, then T2's
    assert trusting is False
    assert protocol is False
