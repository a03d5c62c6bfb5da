"""Benchmark of the SQL layer (sql/install.sql), run on demand; prints figures.

    .venv/bin/python bench/bench_sql.py [--lifecycles 20000] [--quick]

Starts its own embedded PostgreSQL 18 in a temporary folder (nothing else is touched) and
measures:

1. ``is_system_stable()`` on a big, idle register: 10^6 completed analytics tasks and 10^4
   finished import jobs. Server-side time per call (a PL/pgSQL loop timing each call with
   clock_timestamp(), so the client and the network are not in the figure) and the client's
   round trip, median and p99. Target: median under 1 ms.
2. A worker-like workload: task lifecycles (INSERT pending -> UPDATE processing -> UPDATE
   completed, every statement its own transaction, one client) on three databases that differ
   only in their triggers: none (StatBus's own only), the seed's, ours. The three run in
   interleaved chunks, so that noise from other processes on a shared machine hits all three
   alike; the throughput ratios are medians over the chunks. Two shapes:
     * sequential: one task at a time, so every lifecycle makes the system busy and then
       stable again (the worst case for ours: two crossings per lifecycle);
     * backlog: the worker keeps 10 tasks queued, as during a derive run (the common case:
       the system stays busy, nothing crosses).
   A listener on each database counts the notifications on ``system_stability``. The
   seed's triggers (``--with-seed``) are 20x slower and left out by default.
3. A busy period: one long analytics task runs while 4 worker threads run 1,000 task
   lifecycles (each step its own transaction); then the long task ends. Notifications on
   ``system_stability`` per busy period (target: at most 2, whatever the number of tasks).
4. The same busy period's throughput with 200 idle listeners on ``system_stability`` as a
   ratio to none (target: at least 0.90), interleaved runs, medians; and the sequential shape
   (where every lifecycle changes the answer twice, so 2 notifications are owed) likewise.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from traystatus.demo.embedded import EmbeddedPostgres  # noqa: E402

SQL = ROOT / "sql"
FIXTURE = SQL / "fixtures" / "statbus_schema.sql"
SEED = SQL / "fixtures" / "seed_stability.sql"
INSTALL = SQL / "install.sql"

Conn = psycopg.Connection[TupleRow]  # psycopg's default: a column's type is the database's


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def create_db(server: EmbeddedPostgres, name: str, *files: Path) -> str:
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    dsn = server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as c:
        for f in files:
            c.execute(f.read_text())
    return dsn


def fill(c: Conn, tasks: int, jobs: int) -> None:
    """A register as it looks in production: many completed tasks, many finished jobs."""
    c.execute(
        """
        INSERT INTO worker.tasks (command, state, created_at, process_start_at,
                                  process_stop_at, completed_at, process_duration_ms)
        SELECT (ARRAY['derive_statistical_unit', 'statistical_unit_refresh_batch',
                      'derive_statistical_history_period', 'collect_changes'])[1 + g %% 4],
               'completed', now() - interval '1 day', now() - interval '1 day',
               now() - interval '1 day', now() - interval '1 day', 12.5
        FROM generate_series(1, %s) AS g
        """,
        (tasks,),
    )
    c.execute(
        """
        INSERT INTO public.import_job (slug, state, definition_id, total_rows,
                                       imported_rows, processing_stop_at)
        SELECT 'job_' || g, 'finished', 1, 1000, 1000, now() - interval '1 day'
        FROM generate_series(1, %s) AS g
        """,
        (jobs,),
    )
    c.execute("VACUUM ANALYZE worker.tasks")
    c.execute("VACUUM ANALYZE public.import_job")


# -- 1. is_system_stable() on a big idle register ------------------------------------------
def bench_stable_call(server: EmbeddedPostgres, tasks: int, jobs: int, calls: int) -> None:
    dsn = create_db(server, "big", FIXTURE, INSTALL)
    with psycopg.connect(dsn, autocommit=True) as c:
        t0 = time.perf_counter()
        fill(c, tasks, jobs)
        print(f"  data: {tasks:,} completed tasks, {jobs:,} finished jobs "
              f"(loaded in {time.perf_counter() - t0:.1f} s)")
        assert c.execute("SELECT public.is_system_stable()").fetchone() == (True,)

        c.execute(
            """
            DO $$
            DECLARE
                t0 timestamptz;
                d float8[] := '{}';
            BEGIN
                FOR i IN 1..%s LOOP
                    t0 := clock_timestamp();
                    PERFORM public.is_system_stable();
                    d := d || (extract(epoch FROM clock_timestamp() - t0) * 1000)::float8;
                END LOOP;
                PERFORM set_config('bench.d', d::text, false);
            END $$
            """.replace("%s", str(calls))  # a DO block takes no parameters
        )
        row = c.execute("SELECT current_setting('bench.d')::float8[]").fetchone()
        assert row is not None
        server_ms = list(row[0])

        rtt: list[float] = []
        for _ in range(calls):
            t = time.perf_counter()
            c.execute("SELECT public.is_system_stable()", prepare=True).fetchone()
            rtt.append((time.perf_counter() - t) * 1000)
        base: list[float] = []
        for _ in range(calls):
            t = time.perf_counter()
            c.execute("SELECT true", prepare=True).fetchone()
            base.append((time.perf_counter() - t) * 1000)

        plan = c.execute(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
            "SELECT NOT EXISTS (SELECT FROM worker.tasks AS t "
            "JOIN worker.command_registry AS cr ON cr.command = t.command "
            "WHERE cr.queue = 'analytics' "
            "AND t.state IN ('pending', 'processing', 'waiting', 'interrupted') "
            "AND (t.scheduled_at IS NULL OR t.scheduled_at <= now()))"
        ).fetchall()
    print(f"  is_system_stable() server-side, {calls} calls: median "
          f"{statistics.median(server_ms):.3f} ms, p99 {pct(server_ms, 0.99):.3f} ms "
          f"(target: median < 1 ms)")
    print(f"  client round trip over TCP: median {statistics.median(rtt):.3f} ms, p99 "
          f"{pct(rtt, 0.99):.3f} ms (SELECT true: median {statistics.median(base):.3f} ms)")
    print("  plan of the task half:")
    for (line,) in plan:
        print(f"    {line}")


# -- 2. worker-like workload -------------------------------------------------------------------
class Variant:
    def __init__(self, name: str, dsn: str, prefill: tuple[int, int] = (10_000, 1_000)) -> None:
        self.name = name
        self.conn: Conn = psycopg.connect(dsn, autocommit=True)
        # Production holds 10^5..10^6 tasks; on a near-empty table the plans cached in the
        # first seconds (sequential scans) would stay while it grows, and the figures would
        # measure that instead of the triggers. 10^4 rows are enough for index plans, and
        # keep the seed (whose check scans worker.tasks) to minutes.
        fill(self.conn, *prefill)
        self.listener: Conn = psycopg.connect(dsn, autocommit=True)
        self.listener.execute("LISTEN system_stability")
        self.notifications = 0
        self.backlog: list[int] = []
        self.pids = [c.info.backend_pid for c in (self.conn, self.listener)]
        self.cpu_s = 0.0  # CPU seconds of both server backends + this client, while measured

    def server_cpu(self) -> float:
        """CPU seconds used so far by this variant's two server backends (Linux /proc)."""
        total = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        return total / os.sysconf("SC_CLK_TCK")

    def drain(self) -> None:
        self.notifications += sum(1 for _ in self.listener.notifies(timeout=0.5))

    def close(self) -> None:
        self.conn.close()
        self.listener.close()


INSERT = ("INSERT INTO worker.tasks (command, state) "
          "VALUES ('derive_statistical_unit', 'pending') RETURNING id")
TO_PROCESSING = ("UPDATE worker.tasks SET state = 'processing', process_start_at = now(), "
                 "worker_pid = pg_backend_pid() WHERE id = %s")
TO_COMPLETED = ("UPDATE worker.tasks SET state = 'completed', process_stop_at = now(), "
                "completed_at = now(), process_duration_ms = 1.5 WHERE id = %s")


def lifecycle_sequential(v: Variant) -> None:
    c = v.conn
    row = c.execute(INSERT, prepare=True).fetchone()
    assert row is not None
    c.execute(TO_PROCESSING, (row[0],), prepare=True)
    c.execute(TO_COMPLETED, (row[0],), prepare=True)


def lifecycle_backlog(v: Variant, depth: int = 10) -> None:
    c = v.conn
    row = c.execute(INSERT, prepare=True).fetchone()
    assert row is not None
    v.backlog.append(int(row[0]))
    if len(v.backlog) > depth:
        tid = v.backlog.pop(0)
        c.execute(TO_PROCESSING, (tid,), prepare=True)
        c.execute(TO_COMPLETED, (tid,), prepare=True)


def finish_backlog(v: Variant) -> None:
    while v.backlog:
        tid = v.backlog.pop(0)
        v.conn.execute(TO_PROCESSING, (tid,), prepare=True)
        v.conn.execute(TO_COMPLETED, (tid,), prepare=True)


def run_workload(
    variants: list[Variant], lifecycles: int, chunks: int, step: Callable[[Variant], None]
) -> dict[str, Result]:
    per_chunk = lifecycles // chunks
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    for v in variants:  # warm up: plans, caches
        for _ in range(200):
            step(v)
        finish_backlog(v)
        # A real worker.tasks has statistics (autovacuum analyses it every few hundred
        # changes); without them, plans cached while the table was tiny stay on sequential
        # scans, and the benchmark would measure the missing ANALYZE, not the triggers.
        v.conn.execute("ANALYZE worker.tasks")
        v.drain()
        v.notifications = 0
    for chunk in range(chunks):
        order = variants[chunk % len(variants):] + variants[:chunk % len(variants)]
        for v in order:
            t = time.perf_counter()
            cpu = time.process_time() + v.server_cpu()
            for _ in range(per_chunk):
                step(v)
            rates[v.name].append(per_chunk / (time.perf_counter() - t))
            v.cpu_s += time.process_time() + v.server_cpu() - cpu
    result: dict[str, Result] = {}
    base = rates[variants[0].name]
    n = per_chunk * chunks
    for v in variants:
        finish_backlog(v)
        v.drain()
        ratios = [r / b for r, b in zip(rates[v.name], base, strict=True)]
        result[v.name] = Result(
            statistics.median(rates[v.name]), ratios, v.notifications / n, v.cpu_s / n * 1e6
        )
        v.notifications = 0
        v.cpu_s = 0.0
    return result


class Result:
    def __init__(self, rate: float, ratios: list[float], notifies: float, cpu_us: float) -> None:
        self.rate, self.ratios, self.notifies, self.cpu_us = rate, ratios, notifies, cpu_us


def report(title: str, result: dict[str, Result]) -> None:
    base_cpu = next(iter(result.values())).cpu_us
    print(f"  {title}:")
    print(f"    {'triggers':<8} {'lifecycles/s':>13} {'ratio to none':>14} {'(min..max)':>12} "
          f"{'CPU us/lifecycle':>17} {'CPU ratio':>10} {'NOTIFY/lifecycle':>17}")
    for name, r in result.items():
        spread = f"{min(r.ratios):.2f}..{max(r.ratios):.2f}"
        print(f"    {name:<8} {r.rate:>13,.0f} {statistics.median(r.ratios):>14.3f} "
              f"{spread:>12} {r.cpu_us:>17.0f} {base_cpu / r.cpu_us:>10.3f} "
              f"{r.notifies:>17.4f}")


def bench_workload(server: EmbeddedPostgres, lifecycles: int, chunks: int,
                   with_seed: bool, compare: Path | None = None) -> None:
    variants = [Variant("none", create_db(server, "w_none", FIXTURE))]
    if with_seed:
        variants.append(Variant("seed", create_db(server, "w_seed", FIXTURE, SEED)))
    if compare is not None:  # another install.sql (e.g. main's), interleaved with ours
        variants.append(Variant("compare", create_db(server, "w_compare", FIXTURE, compare)))
    variants.append(Variant("ours", create_db(server, "w_ours", FIXTURE, INSTALL)))
    try:
        print(f"  {lifecycles:,} lifecycles per variant and shape, {chunks} interleaved chunks, "
              "3 statements (3 transactions) each")
        report("sequential (every lifecycle: stable -> busy -> stable)",
               run_workload(variants, lifecycles, chunks, lifecycle_sequential))
        report("backlog of 10 (busy throughout, as in a derive run)",
               run_workload(variants, lifecycles, chunks, lifecycle_backlog))
    finally:
        for v in variants:
            v.close()


# -- 3./4. a busy period, and idle listeners ---------------------------------------------------
def busy_period(dsn: str, lifecycles: int, workers: int = 4) -> tuple[float, int]:
    """One long task runs while ``workers`` threads run ``lifecycles`` task lifecycles; then
    it ends. Returns the seconds the lifecycles took and the notifications sent."""
    with psycopg.connect(dsn, autocommit=True) as c:
        listener: Conn = psycopg.connect(dsn, autocommit=True)
        listener.execute("LISTEN system_stability")
        row = c.execute("INSERT INTO worker.tasks (command, state) "
                        "VALUES ('derive_statistical_unit', 'processing') RETURNING id").fetchone()
        assert row is not None
        per = lifecycles // workers

        def work() -> None:
            with psycopg.connect(dsn, autocommit=True) as w:
                for _ in range(per):
                    r = w.execute(INSERT, prepare=True).fetchone()
                    assert r is not None
                    w.execute(TO_PROCESSING, (r[0],), prepare=True)
                    w.execute(TO_COMPLETED, (r[0],), prepare=True)

        threads = [threading.Thread(target=work) for _ in range(workers)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - t0
        c.execute(TO_COMPLETED, (row[0],))
        sent = sum(1 for _ in listener.notifies(timeout=0.5))
        listener.close()
    return took, sent


def sequential_run(dsn: str, lifecycles: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as c:
        t0 = time.perf_counter()
        for _ in range(lifecycles):
            r = c.execute(INSERT, prepare=True).fetchone()
            assert r is not None
            c.execute(TO_PROCESSING, (r[0],), prepare=True)
            c.execute(TO_COMPLETED, (r[0],), prepare=True)
        return time.perf_counter() - t0


def listener_ratios(dsn: str, lifecycles: int, runs: int, listeners: int
                    ) -> tuple[list[float], list[float]]:
    """Throughput with ``listeners`` idle LISTEN connections on ``dsn`` / with none, per run
    (interleaved: alternately none first and listeners first): busy period, sequential."""
    idle: list[Conn] = []
    ratios_busy: list[float] = []
    ratios_seq: list[float] = []
    seq_n = max(200, lifecycles // 5)
    try:
        for run in range(runs):
            results: dict[bool, tuple[float, float]] = {}
            for with_listeners in ((False, True) if run % 2 == 0 else (True, False)):
                if with_listeners and not idle:
                    for _ in range(listeners):
                        lc: Conn = psycopg.connect(dsn, autocommit=True)
                        lc.execute("LISTEN system_stability")
                        idle.append(lc)
                elif not with_listeners:
                    for lc in idle:
                        lc.close()
                    idle.clear()
                t_busy, _ = busy_period(dsn, lifecycles)
                t_seq = sequential_run(dsn, seq_n)
                results[with_listeners] = (t_busy, t_seq)
            ratios_busy.append(results[False][0] / results[True][0])
            ratios_seq.append(results[False][1] / results[True][1])
    finally:
        for lc in idle:
            lc.close()
    return ratios_busy, ratios_seq


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.2f}..{max(values):.2f})"


def bench_busy_period(server: EmbeddedPostgres, lifecycles: int, runs: int,
                      listeners: int) -> None:
    ours = create_db(server, "busy_ours", FIXTURE, INSTALL)
    none = create_db(server, "busy_none", FIXTURE)
    for dsn in (ours, none):
        with psycopg.connect(dsn, autocommit=True) as c:
            fill(c, 10_000, 1_000)
        busy_period(dsn, 200)  # warm up
    took, sent = busy_period(ours, lifecycles)
    print(f"  one busy period of {lifecycles:,} lifecycles (4 worker threads): "
          f"{sent} notifications on system_stability (target: at most 2); "
          f"{lifecycles / took:,.0f} lifecycles/s")
    # PostgreSQL (up to 18 at least) wakes EVERY backend that LISTENs in a database on ANY
    # notification in it, whatever the channel. StatBus's own trigger sends
    # worker_task_changed on every task state change (2 per lifecycle here), so idle
    # listeners cost the worker even with no notification of ours: measured without
    # traystatus, and with StatBus's trigger switched off to isolate ours.
    print(f"  throughput with {listeners} idle listeners / none, median (min..max) of {runs} "
          "interleaved runs; busy period (target at least 0.90) and sequential shape "
          "(2 changes of the answer per lifecycle, so 2 notifications owed):")
    cases = [
        ("traystatus installed, StatBus's own NOTIFY trigger on", ours, True),
        ("no traystatus, StatBus's own NOTIFY trigger on", none, True),
        ("traystatus installed, StatBus's own NOTIFY trigger off", ours, False),
    ]
    for label, dsn, statbus_notify in cases:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("ALTER TABLE worker.tasks "
                      + ("ENABLE" if statbus_notify else "DISABLE")
                      + " TRIGGER trg_notify_task_changed")
        busy, seq = listener_ratios(dsn, lifecycles, runs, listeners)
        print(f"    {label}: busy period {_spread(busy)}, sequential {_spread(seq)}")
    with psycopg.connect(ours, autocommit=True) as c:
        c.execute("ALTER TABLE worker.tasks ENABLE TRIGGER trg_notify_task_changed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lifecycles", type=int, default=20_000)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--with-seed", action="store_true", help="also the seed's triggers")
    parser.add_argument("--busy-lifecycles", type=int, default=1_000)
    parser.add_argument("--listener-runs", type=int, default=4)
    parser.add_argument("--listeners", type=int, default=200)
    parser.add_argument("--skip", default="", help="comma list of sections to skip: 1,2,3")
    parser.add_argument("--version", type=int, default=None, help="PostgreSQL major (16, 18)")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another install.sql run interleaved in section 2 ('compare'), "
                        "e.g. `git show main:sql/install.sql > /tmp/main.sql`")
    args = parser.parse_args()
    if args.quick:
        args.lifecycles, args.tasks, args.jobs, args.calls = 2_000, 50_000, 1_000, 200
        args.listener_runs = 2

    # Ctrl-C or kill: unwind through the finally below, so the server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="traystatus-bench-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", version=args.version,
                                  settings={"max_connections": str(args.listeners + 50)})
        server.start()
        try:
            with psycopg.connect(server.dsn(), autocommit=True) as c:
                row = c.execute("SHOW server_version").fetchone()
            print(f"PostgreSQL {row[0] if row else '?'} (embedded, fsync off, "
                  "synchronous_commit off), client on the same machine over TCP")
            skip = set(args.skip.split(","))
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared)")
            if "1" not in skip:
                print("1. is_system_stable() on a big idle register")
                bench_stable_call(server, args.tasks, args.jobs, args.calls)
            if "2" not in skip:
                print("2. worker-like workload")
                bench_workload(server, args.lifecycles, args.chunks, args.with_seed, args.compare)
            if "3" not in skip:
                print("3./4. a busy period, and idle listeners")
                bench_busy_period(server, args.busy_lifecycles, args.listener_runs,
                                  args.listeners)
        finally:
            server.destroy()


if __name__ == "__main__":
    main()
