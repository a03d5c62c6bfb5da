"""The cost of the day's history read (core/model/today.py DAY_SQL) on the REAL StatBus kit.

    eval "$(bash tests/statbus_real/kit/build.sh --env)"
    .venv/bin/python bench/bench_today.py [--tasks 1000000]

A copy of the kit's template filled with ``--tasks`` completed tasks over the last 7 days
(as StatBus keeps them; a derive run's root every 5,000 tasks). The
plan (EXPLAIN ANALYZE, BUFFERS) and the median of 20 runs, in two cases: derive runs today,
and none in the last 200,000 tasks (the worst case: the walk stops at DAY_TASKS). The read
runs only while the details window is open, at most once a minute (monitor.DAY_INTERVAL).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_estimate import drop_db, dsn, new_db, pct  # noqa: E402
from traystatus.core.model.today import DAY_SQL, day_start  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1_000_000)
    args = ap.parse_args()
    tasks = args.tasks
    name = new_db("bench_today")
    since = day_start(datetime.now(UTC))
    try:
        with psycopg.connect(dsn(name), autocommit=True) as c:
            c.execute("SET session_replication_role = replica")  # no triggers: a bulk fill
            t0 = time.monotonic()
            # spread over 7 days, the newest now
            c.execute(
                "INSERT INTO worker.tasks (command, state, created_at, process_start_at, "
                "completed_at, depth) "
                "SELECT CASE WHEN g %% 5000 = 0 THEN 'collect_changes' "
                "ELSE 'statistical_unit_refresh_batch' END, 'completed', "
                "now() - (%s - g) * interval '604.8 s' / (%s / 1000.0), "
                "now() - (%s - g) * interval '604.8 s' / (%s / 1000.0), "
                "now() - (%s - g) * interval '604.8 s' / (%s / 1000.0) + interval '1 s', "
                "CASE WHEN g %% 5000 = 0 THEN 0 ELSE 3 END "
                "FROM generate_series(1, %s) AS g", (tasks,) * 7)
            c.execute("ANALYZE worker.tasks")
            print(f"filled {tasks:,} tasks in {time.monotonic() - t0:.1f} s")
            for label in ("derive runs today", "no derive run in the last 200,000 tasks"):
                if label.startswith("no"):
                    c.execute("INSERT INTO worker.tasks (command, state, depth) SELECT "
                              "'statistical_unit_refresh_batch', 'completed', 3 "
                              "FROM generate_series(1, 200000)")
                    c.execute("ANALYZE worker.tasks")
                params = {"since": since}
                rows = c.execute("EXPLAIN (ANALYZE, BUFFERS) " + DAY_SQL, params).fetchall()
                times = []
                for _ in range(20):
                    t = time.perf_counter()
                    c.execute(DAY_SQL, params).fetchone()
                    times.append((time.perf_counter() - t) * 1000)
                print(f"\nDAY_SQL, {label}: median {statistics.median(times):.1f} ms, "
                      f"p90 {pct(times, 0.9):.1f} ms (20 runs)")
                for (line,) in rows:
                    if any(k in line for k in ("Scan", "Limit", "Execution", "rows=")):
                        print("   ", line[:150])
    finally:
        drop_db(name)


if __name__ == "__main__":
    main()
