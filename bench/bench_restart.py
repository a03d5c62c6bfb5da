"""Fast restarts under a Monitor with the installed SQL and DEFAULT options. Prints figures.

    .venv/bin/python bench/bench_restart.py [--restarts 20] [--standby 5]

1. ``pg_ctl restart -m fast`` (stop fast, start) --restarts times, the truth flipped while
   the server was down: seconds from "the server takes logins again" (pg_ctl start
   returned) to the Monitor reporting the new truth (median, p90, max), and how many
   statuses were ERROR (a person's problem; the goal is 0).
2. A server that answers every login with 57P03 (a standby without hot standby) for
   --standby seconds, then promoted: the states the Monitor reported meanwhile and the
   seconds from the promotion to the answer.

The server is a fresh EmbeddedPostgres of the benchmark's own (fsync off), so a restart
takes well under a second; a real server's restart takes longer, the retry cadence is the
same (backoff 1 s doubling, 1 s flat while the server says it is starting up).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from traystatus._paths import sql_dir
from traystatus.core.model.state import State, Status
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions
from traystatus.demo.embedded import EmbeddedPostgres

START = "INSERT INTO worker.tasks (command, state) VALUES ('collect_changes', 'pending')"
FINISH = ("UPDATE worker.tasks SET state = 'completed', completed_at = now() "
          "WHERE command = 'collect_changes' AND state <> 'completed'")


def prepare(server: EmbeddedPostgres) -> str:
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE watched")
    dsn = server.dsn("watched")
    with psycopg.connect(dsn, autocommit=True) as c:
        for name in ("fixtures/statbus_schema.sql", "install.sql"):
            c.execute((sql_dir() / name).read_text().encode())
    return dsn


async def until(monitor: Monitor, state: State, within: float = 120) -> float:
    start = time.monotonic()
    while monitor.status.state is not state:
        if time.monotonic() - start > within:
            raise SystemExit(f"no {state} within {within} s: {monitor.status}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def restarts(server: EmbeddedPostgres, dsn: str, n: int) -> None:
    seen: list[Status] = []
    m = Monitor(dsn, MonitorOptions())
    m.add_listener(seen.append)
    task = asyncio.create_task(m.run())
    await until(m, State.STABLE)
    took = []
    for i in range(n):
        processing = i % 2 == 0
        await asyncio.to_thread(server.stop, "fast")
        await asyncio.to_thread(server.start)
        up = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(START if processing else FINISH)
        await until(m, State.PROCESSING if processing else State.STABLE)
        took.append(time.monotonic() - up)
    m.stop()
    await task
    errors = [s for s in seen if s.state is State.ERROR]
    took.sort()
    print(f"fast restarts: {n}; seconds from up to the right answer: median "
          f"{statistics.median(took):.2f}, p90 {took[int(0.9 * (n - 1))]:.2f}, max "
          f"{took[-1]:.2f}; ERROR statuses: {len(errors)}")


async def standby(server: EmbeddedPostgres, dsn: str, seconds: float) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute("ALTER SYSTEM SET hot_standby = off")
    await asyncio.to_thread(server.stop)
    (server.datadir / "standby.signal").touch()
    await asyncio.to_thread(server.start)
    seen: list[Status] = []
    m = Monitor(dsn, MonitorOptions())
    m.add_listener(seen.append)
    task = asyncio.create_task(m.run())
    await asyncio.sleep(seconds)
    await asyncio.to_thread(server._exec, "pg_ctl", "-w", "-D", str(server.datadir), "promote")
    up = time.monotonic()
    await until(m, State.STABLE)
    took = time.monotonic() - up
    m.stop()
    await task
    states = sorted({f"{s.state.value}/{s.problem.value if s.problem else '-'}" for s in seen})
    print(f"57P03 for {seconds:g} s: states {states}; connect attempts "
          f"{m.counters.connect_failures + m.counters.connects}; promoted -> answer "
          f"{took:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--standby", type=float, default=5.0)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="traystatus-bench-restart-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "data")
    server.start()
    try:
        dsn = prepare(server)
        asyncio.run(restarts(server, dsn, args.restarts))
        asyncio.run(standby(server, dsn, args.standby))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
