"""What telling import endings costs the database (core/watch/endings.py): the ledger's queries
on a big import_job, and the statements a stable monitor sends with and without an
import listener (the tray app has one).

    .venv/bin/python bench/bench_endings.py [--jobs 100000] [--open 500] [--seconds 60]

1. ``ENDINGS_SQL`` (``--open`` ids by key plus up to NEW_LIMIT newer jobs) and
   ``BASELINE_SQL`` (once per database and login, ever) on an import_job of ``--jobs``
   rows: median and p90 of 50 runs (server-side, EXPLAIN ANALYZE).
2. A stable Monitor with the tray's defaults (health check every 15 s) for ``--seconds``,
   first without and then with an import listener: statements per minute and ledger
   reads per minute.
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
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_monitor import start_server
from traystatus.core.model.state import State, Status
from traystatus.core.watch.endings import BASELINE_SQL, ENDINGS_SQL, NEW_LIMIT
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions


def _timed(c: psycopg.Connection[Any], sql: str, params: Any = None) -> tuple[float, float]:
    times = []
    for _ in range(50):
        plan = c.execute(("EXPLAIN (ANALYZE, COSTS OFF) " + sql).encode(), params).fetchall()
        found = re.search(r"Execution Time: ([\d.]+) ms", "\n".join(str(r[0]) for r in plan))
        assert found is not None
        times.append(float(found.group(1)))
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


def query_time(dsn: str, jobs: int, open_jobs: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO public.import_job (slug, state, definition_id, total_rows) "
                  "SELECT 'b' || g, (CASE WHEN g > %s - %s THEN 'waiting_for_upload' "
                  "ELSE 'finished' END)::public.import_job_state, 1, 1000 "
                  "FROM generate_series(1, %s) AS g", (jobs, open_jobs, jobs))
        c.execute("ANALYZE public.import_job")
        newest = c.execute("SELECT max(id) FROM public.import_job").fetchone()
        assert newest is not None
        ids = list(range(newest[0] - open_jobs + 1, newest[0] + 1))
        params = {"ids": ids, "after": newest[0] - NEW_LIMIT, "limit": NEW_LIMIT}
        med, p90 = _timed(c, ENDINGS_SQL, params)
        print(f"ENDINGS_SQL, {jobs:,} jobs, {open_jobs} open + {NEW_LIMIT} newer: "
              f"median {med:.2f} ms, p90 {p90:.2f} ms (n=50)")
        med, p90 = _timed(c, BASELINE_SQL)
        print(f"BASELINE_SQL, {jobs:,} jobs (once per database and login): "
              f"median {med:.2f} ms, p90 {p90:.2f} ms (n=50)")


async def per_minute(dsn: str, seconds: float, listener: bool) -> None:
    m = Monitor(dsn, MonitorOptions())
    if listener:
        m.add_import_listener(lambda _end: None)
    stable = asyncio.Event()

    def seen(status: Status) -> None:
        if status.state is State.STABLE:
            stable.set()

    m.add_listener(seen)
    task = asyncio.create_task(m.run())
    try:
        await stable.wait()
        q0, e0, start = m.counters.queries, m.counters.endings_reads, time.monotonic()
        await asyncio.sleep(seconds)
        minutes = (time.monotonic() - start) / 60
        print(f"stable, {'with' if listener else 'no':>4} import listener: "
              f"{(m.counters.queries - q0) / minutes:5.1f} statements/min, "
              f"{(m.counters.endings_reads - e0) / minutes:4.1f} ledger reads/min")
    finally:
        m.stop()
        await task


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--open", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=60.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-endings-") as base:
        Path(base).chmod(0o755)
        server, dsn = start_server(Path(base), 20)
        try:
            asyncio.run(per_minute(dsn, a.seconds, listener=False))
            asyncio.run(per_minute(dsn, a.seconds, listener=True))
            query_time(dsn, a.jobs, a.open)
        finally:
            server.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
