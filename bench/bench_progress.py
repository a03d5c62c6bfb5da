"""What progress at a glance costs the database: calls per minute while processing and
while stable, and the aggregate query's own time on a big worker.tasks.

    .venv/bin/python bench/bench_progress.py [--seconds 30] [--rate 50] [--tasks 500000]

1. One Monitor (the tray's defaults: health check every 15 s, progress at most 1/s) on a
   fresh embedded PostgreSQL. A writer sends StatBus's progress notifications
   (``worker_status`` pipeline_progress and ``import_job_progress``) ``--rate`` times a
   second, as a busy worker does (a reviewed import sends about 3,600 in a run), first
   while the system is stable, then while it is processing (an import job and a derive
   pipeline running). Printed: statements the monitor sent per minute, and progress reads
   per minute, in each phase.
2. ``PROGRESS_SQL`` on a worker.tasks of ``--tasks`` completed rows plus a running
   pipeline of 412 tasks: median and p90 of 50 runs (server-side, EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_monitor import start_server
from traystatus.core.model.state import State, Status
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions
from traystatus.core.watch.readers import PROGRESS_SQL

PIPELINE = """
WITH r AS (INSERT INTO worker.tasks (command, state, child_mode)
           VALUES ('collect_changes', 'waiting', 'serial') RETURNING id),
ph AS (INSERT INTO worker.tasks (command, state, parent_id, depth, child_mode)
       SELECT 'derive_units_phase', 'waiting', id, 1, 'serial' FROM r RETURNING id),
cp AS (INSERT INTO worker.tasks (command, state, parent_id, depth, child_mode)
       SELECT 'derive_statistical_unit', 'waiting', id, 2, 'concurrent' FROM ph RETURNING id)
INSERT INTO worker.tasks (command, state, parent_id, depth)
SELECT 'statistical_unit_refresh_batch',
       (CASE WHEN g <= 120 THEN 'completed' ELSE 'pending' END)::worker.task_state, cp.id, 3
  FROM cp, generate_series(1, 412) AS g
"""
NOTES = ("SELECT pg_notify('worker_status', '{\"type\":\"pipeline_progress\",\"phases\":[]}'),"
         " pg_notify('import_job_progress', '{\"job_id\":1}')")


async def phase(m: Monitor, dsn: str, seconds: float, rate: float) -> tuple[float, float]:
    """Statements and progress reads per minute over ``seconds`` of notifications."""
    q0, p0 = m.counters.queries, m.counters.progress_reads
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as w:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            await w.execute(NOTES)
            n += 1
            until = min(start + n / rate, start + seconds)
            await asyncio.sleep(max(0.0, until - time.monotonic()))
    minutes = (time.monotonic() - start) / 60
    return (m.counters.queries - q0) / minutes, (m.counters.progress_reads - p0) / minutes


async def calls(dsn: str, seconds: float, rate: float) -> None:
    m = Monitor(dsn, MonitorOptions())
    stable, progress = asyncio.Event(), asyncio.Event()

    def seen(status: Status) -> None:
        if status.state is State.STABLE:
            stable.set()
        if status.progress is not None:
            progress.set()

    m.add_listener(seen)
    task = asyncio.create_task(m.run())
    try:
        await stable.wait()
        q, p = await phase(m, dsn, seconds, rate)
        print(f"stable, {rate:g} notes/s:     {q:6.1f} statements/min, "
              f"{p:5.1f} progress reads/min")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO public.import_job (slug, state, definition_id, total_rows, "
                      "import_completed_pct) VALUES ('bench', 'processing_data', 1, 1000, 10)")
            c.execute(PIPELINE)
        await progress.wait()
        q, p = await phase(m, dsn, seconds, rate)
        text = m.status.progress.text if m.status.progress else ""
        print(f"processing, {rate:g} notes/s: {q:6.1f} statements/min, "
              f"{p:5.1f} progress reads/min  ({text})")
        q, p = await phase(m, dsn, seconds, 1 / seconds)
        print(f"processing, no notes:     {q:6.1f} statements/min, {p:5.1f} progress reads/min")
    finally:
        m.stop()
        await task


def query_time(dsn: str, tasks: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO worker.tasks (command, state, depth) "
                  "SELECT 'derive_statistical_unit', 'completed', 3 "
                  "FROM generate_series(1, %s)", (tasks,))
        c.execute("ANALYZE worker.tasks")
        times = []
        for _ in range(50):
            plan = c.execute("EXPLAIN (ANALYZE, COSTS OFF) " + PROGRESS_SQL).fetchall()
            text = "\n".join(str(r[0]) for r in plan)
            found = re.search(r"Execution Time: ([\d.]+) ms", text)
            assert found is not None
            times.append(float(found.group(1)))
        rows = c.execute("SELECT count(*) FROM worker.tasks").fetchone()
        times.sort()
        print(f"PROGRESS_SQL on {rows[0] if rows else '?':,} tasks: median "
              f"{statistics.median(times):.2f} ms, p90 {times[int(len(times) * 0.9)]:.2f} ms"
              f" (n={len(times)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--tasks", type=int, default=500_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-progress-") as base:
        Path(base).chmod(0o755)
        server, dsn = start_server(Path(base), 20)
        try:
            asyncio.run(calls(dsn, a.seconds, a.rate))
            query_time(dsn, a.tasks)
        finally:
            server.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
