"""Built-in mode under a storm (issue 23): reads per second, client CPU, exactness and the
health check of one built-in monitor while StatBus's channels are flooded.

    eval "$(bash tests/statbus_real/kit/build.sh --env)"
    .venv/bin/python bench/bench_builtin_storm.py [--imports 2] [--changes 50000]
        [--seconds 60] [--forged 0]

On its own copy of the kit's template (traystatus's SQL not installed), as the kit's
analyst with default options, one ``Monitor(reader="builtin")`` watches while, at once:

* StatBus's worker (``worker.process_tasks``, as cli/src/worker.cr runs it) imports
  ``--imports`` demo files and derives them, then stays idle (its own notifications);
* ``--changes`` task state changes in ``--seconds`` seconds: old completed analytics rows
  toggled completed <-> failed by UPDATE, so StatBus's own trigger sends a real
  ``worker_task_changed`` for each (the answer does not change through them);
* with ``--forged N``: the analyst's own login sends N forged ids every 0.5 s.

An oracle (the rule as a plain query, RULE_NAIVE, as the superuser, every 100 ms, in its
own thread) gives the truth. Printed: notifications, stability reads and all statements
per second (average and the worst 1-s window), the monitor thread's CPU (the event loop:
the worker, the storm and the oracle run in other threads), the longest spell the monitor
disagreed with the oracle, its health (stale reads, any disconnected/error) and the flips.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.builtin.kit import Kit, KitDb, Worker  # noqa: E402
from tests.builtin.test_builtin_race import probe  # noqa: E402
from traystatus.core.model.state import State, Status  # noqa: E402
from traystatus.core.watch import _builtin_sql as builtin_sql  # noqa: E402
from traystatus.core.watch.monitor import Monitor  # noqa: E402
from traystatus.core.watch.options import MonitorOptions  # noqa: E402

STORM_ROWS = 5000


class Oracle(threading.Thread):
    """The truth every 100 ms: (mid-time of the read, stable)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.samples: list[tuple[float, bool]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            holds = probe(c).holds_queue
            while not self.stop.is_set():
                t0 = time.monotonic()
                row = c.execute(builtin_sql.RULE_NAIVE.encode(), {"holds": holds}).fetchone()
                t1 = time.monotonic()
                assert row is not None
                self.samples.append(((t0 + t1) / 2, bool(row[0])))
                self.stop.wait(0.1)


class Storm(threading.Thread):
    """``changes`` real state changes of old completed rows over ``seconds``."""

    def __init__(self, dsn: str, changes: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.dsn, self.changes, self.seconds = dsn, changes, seconds
        self.done = 0

    def run(self) -> None:
        rounds = max(1, int(self.seconds / 0.5))
        per = max(1, self.changes // rounds)
        with psycopg.connect(self.dsn, autocommit=True) as c:
            start = time.monotonic()
            for k in range(rounds):
                lo = (k * per) % STORM_ROWS
                c.execute(
                    "UPDATE worker.tasks SET "
                    "state = CASE state WHEN 'completed' THEN 'failed' ELSE 'completed' END"
                    "::worker.task_state, "
                    "error = CASE state WHEN 'completed' THEN 'storm' END "
                    "WHERE id IN (SELECT id FROM storm_rows ORDER BY id "
                    "OFFSET %s LIMIT %s)", (lo, per))
                self.done += per
                time.sleep(max(0.0, start + (k + 1) * 0.5 - time.monotonic()))


class Forger(threading.Thread):
    def __init__(self, dsn: str, per_half_second: int) -> None:
        super().__init__(daemon=True)
        self.dsn, self.n = dsn, per_half_second
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            k = 0
            while not self.stop.is_set():
                k += 1
                c.execute("SELECT count(pg_notify('worker_task_changed', "
                          "json_build_object('id', g)::text)) "
                          "FROM generate_series(%s::bigint, %s::bigint - 1) AS g",
                          (k * 10**8, k * 10**8 + self.n))
                self.sent += self.n
                self.stop.wait(0.5)


def longest_disagreement(timeline: list[tuple[float, Status]],
                         truth: list[tuple[float, bool]]) -> tuple[float, int]:
    """The longest spell the monitor's answer differed from the oracle's, and how many
    oracle samples differed."""
    longest, wrong, since, i = 0.0, 0, None, 0
    state: State | None = None
    for t, stable in truth:
        while i < len(timeline) and timeline[i][0] <= t:
            state = timeline[i][1].state
            i += 1
        says = {State.STABLE: True, State.PROCESSING: False}.get(state) if state else None
        if says is not None and says != stable:
            wrong += 1
            since = t if since is None else since
            longest = max(longest, t - since)
        else:
            since = None
    return longest, wrong


async def storm(db: KitDb, args: argparse.Namespace) -> None:
    with db.connect() as c:
        c.execute("INSERT INTO worker.tasks (command, state, completed_at) "
                  "SELECT 'derive_statistical_unit', 'completed', now() "
                  "FROM generate_series(1, %s)", (STORM_ROWS,))
        c.execute("CREATE TABLE storm_rows AS SELECT id FROM worker.tasks "
                  "WHERE command = 'derive_statistical_unit' AND state = 'completed' "
                  "ORDER BY id DESC LIMIT %s", (STORM_ROWS,))
        c.execute("VACUUM ANALYZE worker.tasks")
    m = Monitor(db.analyst_dsn, MonitorOptions(reader="builtin"))
    timeline: list[tuple[float, Status]] = []
    stable = asyncio.Event()

    def on_status(st: Status) -> None:
        timeline.append((time.monotonic(), st))
        if st.state is State.STABLE:
            stable.set()

    m.add_listener(on_status)
    task = asyncio.create_task(m.run())
    await stable.wait()
    oracle = Oracle(db.dsn)
    oracle.start()
    samples: list[tuple[float, int, int, int]] = []
    base = dict(vars(m.counters))
    cpu0, t0 = time.thread_time(), time.monotonic()
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            c = m.counters
            samples.append((time.monotonic(), c.stability_reads, c.queries, c.notifications))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    storm_thread = Storm(db.dsn, args.changes, args.seconds)
    storm_thread.start()
    forger = Forger(db.analyst_dsn, args.forged) if args.forged else None
    if forger:
        forger.start()
    for _ in range(args.imports):
        await asyncio.to_thread(db.start_import)
    with db.connect() as c, Worker(db.dsn) as w:
        await asyncio.to_thread(w.wait_idle, c, 600)
    await asyncio.to_thread(storm_thread.join)
    if forger:
        forger.stop.set()
        await asyncio.to_thread(forger.join)
    await asyncio.sleep(3.0)  # the last reads after the storm
    elapsed = time.monotonic() - t0
    cpu = time.thread_time() - cpu0
    done.set()
    await sampler
    oracle.stop.set()
    await asyncio.to_thread(oracle.join)
    m.stop()
    await task
    counts = m.counters
    reads = counts.stability_reads - base["stability_reads"]
    queries = counts.queries - base["queries"]
    notes = counts.notifications - base["notifications"]
    worst_r = worst_q = 0
    for i, (t, r, q, _) in enumerate(samples):
        for t2, r2, q2, _ in samples[i:]:
            if t2 - t > 1.0:
                break
            worst_r, worst_q = max(worst_r, r2 - r), max(worst_q, q2 - q)
    longest, wrong = longest_disagreement(timeline, oracle.samples)
    states = [s.state.value for _, s in timeline]
    flips = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    print(f"{elapsed:.1f} s: {notes} notifications ({notes / elapsed:.0f}/s; storm "
          f"{storm_thread.done} changes, forged {forger.sent if forger else 0}); stability "
          f"reads {reads} ({reads / elapsed:.2f}/s, worst 1-s window {worst_r}); all "
          f"statements {queries} ({queries / elapsed:.2f}/s, worst 1-s window {worst_q}); "
          f"monitor thread CPU {cpu / elapsed * 100:.1f} % of a core; longest disagreement "
          f"with the oracle {longest:.2f} s ({wrong} of {len(oracle.samples)} samples); "
          f"stale {counts.stale}, health checks {counts.health_checks}, "
          f"reconnects {counts.reconnects}; "
          f"flips {flips}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imports", type=int, default=2)
    parser.add_argument("--changes", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--forged", type=int, default=0, metavar="N",
                        help="also N forged ids every 0.5 s from the analyst's login")
    args = parser.parse_args()
    kit = Kit.from_env()
    if kit is None:
        sys.exit("bench_builtin_storm: the statbus-real kit is not set up (STATBUS_REAL_DSN)")
    print(f"load average {os.getloadavg()}", flush=True)
    with kit.database("ts_bench_storm") as db:
        db.setup_demo()
        asyncio.run(storm(db, args))
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
