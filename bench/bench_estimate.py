"""How good is the estimate of when StatBus will be stable? Measured on the REAL StatBus kit.

    eval "$(bash tests/statbus_real/kit/build.sh --env)"
    .venv/bin/python bench/bench_estimate.py [--sizes 23,300] [--reps 6] [--plan-only]

1. Accuracy. A fresh copy of the kit's template with StatBus's test users and demo settings.
   Imports of legal units (StatBus's demo CSV, 23 rows, and generated ones of more rows,
   every unit new) are run one after another, sizes interleaved, each through StatBus's own
   code paths (tests/statbus_real/statbus.py: the app's INSERT and COPY, then
   ``worker.process_tasks`` until idle). A traystatus Monitor (auto reader: the built-in one
   here, nothing installed) watches throughout; every ``--sample`` seconds the estimate is
   recorded. The true moment is when the worker went idle. For each run whose size already
   has three earlier runs in the history, at 25 %, 50 % and 75 % of the way from upload to
   stable, the error is |estimated - actual| / remaining (the estimate then in force); an
   unknown estimate counts separately. Printed: median and p90 per point, and how many
   estimates were unknown. Goal: within 25 % at halfway.
   ``--history-interval`` (default 5 s) replaces the monitor's 60 s, because a demo-size run
   lasts seconds, not hours; the tray keeps 60 s.

2. Cost of the history read (readers.HISTORY_SQL) on a worker.tasks of 10^6 rows: a copy
   of the template filled with 10^6 completed tasks (a derive run every 5,000 tasks, and a
   worst case with no run in the last 200,000), the plan (EXPLAIN ANALYZE) and the median
   of 20 runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.statbus_real import statbus  # noqa: E402
from traystatus.core.model.estimate import Estimate, History  # noqa: E402
from traystatus.core.model.state import State  # noqa: E402
from traystatus.core.watch.monitor import Monitor  # noqa: E402
from traystatus.core.watch.options import MonitorOptions  # noqa: E402
from traystatus.core.watch.readers import HISTORY_SQL  # noqa: E402


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"bench_estimate: {name} is not set: eval \"$(bash tests/statbus_real/kit/"
                 "build.sh --env)\" first (docs/statbus-compat.md)")
    return value


def dsn(dbname: str) -> str:
    return make_conninfo(host=env("STATBUS_REAL_HOST"), port=env("STATBUS_REAL_PORT"),
                         user="postgres", dbname=dbname)


def new_db(prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn("postgres"), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER statbus_app STRATEGY FILE_COPY")
                  .format(sql.Identifier(name),
                          sql.Identifier(os.environ.get("STATBUS_REAL_TEMPLATE",
                                                        "statbus_template"))))
    return name


def drop_db(name: str) -> None:
    with psycopg.connect(dsn("postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def setup_demo(name: str) -> None:
    src = Path(env("STATBUS_REAL_SRC"))
    script = ("BEGIN;\n\\i test/setup.sql\nCALL test.set_user_from_email('test.admin@statbus.org')"
              ";\n\\i samples/demo/getting-started.sql\nCOMMIT;\n")
    proc = subprocess.run([str(Path(env("STATBUS_REAL_BIN")) / "psql"), "-X", "-q", "-v",
                           "ON_ERROR_STOP=1", dsn(name)], input=script, text=True, cwd=src,
                          capture_output=True, timeout=600, check=False,
                          env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})
    if proc.returncode:
        sys.exit(f"bench_estimate: the demo setup failed: {proc.stderr[-500:]}")
    statbus.run_worker(dsn(name))


def make_csv(rows: int, first: int, out: Path) -> Path:
    """``rows`` legal units, all new (idents from ``first``), the rest from the demo file."""
    demo = (Path(env("STATBUS_REAL_SRC")) / "app/public/demo/legal_units_demo.csv").read_text(
        encoding="utf-8").splitlines()
    header, body = demo[0], [line.split(",") for line in demo[1:] if line.strip()]
    lines = [header]
    for i in range(rows):
        cols = list(body[i % len(body)])
        n = first + i
        cols[0] = str(3_000_000_000 + n)
        cols[1] = str(1_000_000 + n)
        cols[2] = f"BENCH UNIT {n}"
        lines.append(",".join(cols))
    path = out / f"lu_{rows}_{first}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Run:
    size: int
    start: float  # time.time() at the upload's commit
    end: float = 0.0  # the worker went idle
    samples: list[tuple[float, Estimate | None]] = field(default_factory=list)
    prior_similar: int = 0


def at_fraction(run: Run, f: float) -> tuple[float | None, bool]:
    """The relative error of the estimate in force at fraction f of the way (None: unknown
    or none yet), and whether one was known."""
    t = run.start + f * (run.end - run.start)
    before = [e for when, e in run.samples if when <= t]
    if not before or before[-1] is None or before[-1].at is None:
        return None, False
    est = before[-1].at.timestamp()
    remaining = run.end - t
    return abs(est - run.end) / remaining if remaining > 0 else None, True


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def accuracy(sizes: list[int], reps: int, sample: float, interval: float) -> None:
    name = new_db("bench_est")
    try:
        setup_demo(name)
        target = dsn(name)
        tmp = Path("/tmp") / f"bench_est_{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        opts = replace(MonitorOptions(), history_interval=interval)
        monitor = Monitor(target, opts)
        task = asyncio.create_task(monitor.run())
        for _ in range(600):
            if monitor.status.state is State.STABLE:
                break
            await asyncio.sleep(0.1)
        runs: list[Run] = []
        first = 0
        order = [s for _ in range(reps) for s in sizes]
        for i, size in enumerate(order):
            csv = make_csv(size, first, tmp)
            first += size
            slug = f"bench_{i}"
            with psycopg.connect(target, autocommit=True) as conn:
                statbus.create_job(conn, slug)
                statbus.upload(conn, slug, csv)
            run = Run(size, time.time(),
                      prior_similar=sum(1 for r in runs if r.size == size))
            done = threading.Event()

            def work(r: Run = run, ev: threading.Event = done) -> None:
                statbus.run_worker(target, limit=100_000)
                r.end = time.time()
                ev.set()

            threading.Thread(target=work, daemon=True).start()
            while not done.is_set():
                p = monitor.status.progress
                run.samples.append((time.time(), p.estimate if p is not None else None))
                await asyncio.sleep(sample)
            runs.append(run)
            for _ in range(100):  # the monitor sees it stable before the next run
                if monitor.status.state is State.STABLE:
                    break
                await asyncio.sleep(0.1)
            known = [e for _, e in run.samples if e is not None and e.known]
            unknown = [e.how for _, e in run.samples if e is not None and not e.known]
            print(f"run {i + 1:2}: {size:5} rows, {run.end - run.start:6.1f} s, load "
                  f"{os.getloadavg()[0]:.1f}, {len(run.samples)} samples, {len(known)} known"
                  + (f", last how: {known[-1].how}" if known else "")
                  + (f"; unknown because: {unknown[-1]}" if unknown else ""), flush=True)
        monitor.stop()
        await asyncio.wait_for(task, 15)
        with psycopg.connect(target, autocommit=True) as conn:
            row = conn.execute(HISTORY_SQL).fetchone()
        assert row is not None
        history = History.from_rows(*row)
        print("where the time went (StatBus's own timestamps):")
        for job in sorted(history.jobs, key=lambda j: j.id):
            print(f"  job {job.id}: {job.rows} rows, prepare {job.prepare_s or 0:.1f} s, "
                  f"analyse {job.analyse_s or 0:.1f} s, import {job.process_s or 0:.1f} s")
        for d in history.derives:
            print(f"  derive {d.id}: after {d.rows} rows, {d.seconds:.1f} s")
        print(f"history reads: {monitor.counters.history_reads}, "
              f"progress reads: {monitor.counters.progress_reads}")
        print("\nerror |estimated - actual| / remaining, runs with >= 3 earlier runs of "
              "their size:")
        for size in sizes:
            eligible = [r for r in runs if r.size == size and r.prior_similar >= 3]
            durations = [r.end - r.start for r in runs if r.size == size]
            print(f"  size {size} rows (runs {len(durations)}, duration median "
                  f"{statistics.median(durations):.1f} s, min {min(durations):.1f}, max "
                  f"{max(durations):.1f}):")
            for f in (0.25, 0.5, 0.75):
                errs: list[float] = []
                n_unknown = 0
                for r in eligible:
                    err, _ = at_fraction(r, f)
                    if err is None:
                        n_unknown += 1
                    else:
                        errs.append(err)
                if errs:
                    print(f"    at {int(f * 100)} %: median {statistics.median(errs):.0%}, "
                          f"p90 {pct(errs, 0.9):.0%} (n={len(errs)}, unknown {n_unknown})")
                else:
                    print(f"    at {int(f * 100)} %: no known estimate (unknown {n_unknown})")
    finally:
        drop_db(name)


def plan(tasks: int = 1_000_000) -> None:
    name = new_db("bench_est_plan")
    try:
        with psycopg.connect(dsn(name), autocommit=True) as c:
            c.execute("SET session_replication_role = replica")  # no triggers: a bulk fill
            t0 = time.monotonic()
            c.execute(
                "INSERT INTO worker.tasks (command, state, created_at, process_start_at, "
                "completed_at, depth) "
                "SELECT CASE WHEN g %% 5000 = 0 THEN 'collect_changes' "
                "ELSE 'statistical_unit_refresh_batch' END, 'completed', "
                "now() - make_interval(secs => %s - g), now() - make_interval(secs => %s - g),"
                "now() - make_interval(secs => %s - g) + interval '1 s', "
                "CASE WHEN g %% 5000 = 0 THEN 0 ELSE 3 END "
                "FROM generate_series(1, %s) AS g", (tasks, tasks, tasks, tasks))
            c.execute("ANALYZE worker.tasks")
            print(f"filled {tasks:,} tasks in {time.monotonic() - t0:.1f} s")
            for label in ("a derive run every 5,000 tasks", "no derive run in the last 200,000"):
                if label.startswith("no"):
                    c.execute("SET session_replication_role = replica")
                    c.execute("INSERT INTO worker.tasks (command, state, depth) SELECT "
                              "'statistical_unit_refresh_batch', 'completed', 3 "
                              "FROM generate_series(1, 200000)")
                    c.execute("ANALYZE worker.tasks")
                rows = c.execute("EXPLAIN (ANALYZE, BUFFERS) " + HISTORY_SQL).fetchall()
                times = []
                for _ in range(20):
                    t = time.perf_counter()
                    c.execute(HISTORY_SQL).fetchone()
                    times.append((time.perf_counter() - t) * 1000)
                print(f"\nHISTORY_SQL, {label}: median {statistics.median(times):.1f} ms, "
                      f"p90 {pct(times, 0.9):.1f} ms (20 runs)")
                for (line,) in rows:
                    if any(k in line for k in ("Scan", "Limit", "Execution", "rows=")):
                        print("   ", line[:150])
    finally:
        drop_db(name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="23,300")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--sample", type=float, default=0.5)
    ap.add_argument("--history-interval", type=float, default=5.0)
    ap.add_argument("--plan-only", action="store_true")
    ap.add_argument("--accuracy-only", action="store_true")
    args = ap.parse_args()
    print(f"bench_estimate {datetime.now().isoformat(timespec='seconds')}, load "
          f"{os.getloadavg()[0]:.1f}")
    if not args.accuracy_only:
        plan()
    if not args.plan_only:
        asyncio.run(accuracy([int(s) for s in args.sizes.split(",")], args.reps, args.sample,
                             args.history_interval))


if __name__ == "__main__":
    main()
