"""Server-side cost of the triggers per task lifecycle, without client or network noise.

    .venv/bin/python bench/bench_trigger_cost.py [--lifecycles 2000] [--rounds 10]
        [--compare /tmp/main-install.sql]

A procedure runs worker-like lifecycles inside the server (INSERT pending, COMMIT, UPDATE
processing, COMMIT, UPDATE completed, COMMIT: three transactions, as in bench_sql.py
section 2; a COMMIT in a procedure is a real commit and runs the deferred decision) and
times them with clock_timestamp(). Databases that differ only in their triggers run in
interleaved rounds (medians over the rounds): none, ours, another install.sql
(``--compare``), and ours with parts switched off to show where the time goes:
``ours, decision no-op`` (the deferred function returns at once) and ``ours, rows no-op``
(the row functions return at once: the cost of calling the triggers alone) and ``ours,
index only`` (no trigger on worker.tasks: the partial index alone). Shapes as in
bench_sql.py: sequential (every lifecycle crosses stable -> busy -> stable) and backlog
(10 tasks queued: busy throughout).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from traystatus.demo.embedded import EmbeddedPostgres  # noqa: E402

SQL = ROOT / "sql"
FIXTURE = SQL / "fixtures" / "statbus_schema.sql"
INSTALL = SQL / "install.sql"

PROC = """
CREATE PROCEDURE public.bench_lifecycles(n integer, depth integer, INOUT us float8)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    tid bigint;
    q bigint[] := '{}';
BEGIN
    FOR i IN 1..n LOOP
        INSERT INTO worker.tasks (command, state)
        VALUES ('derive_statistical_unit', 'pending') RETURNING id INTO tid;
        COMMIT;
        q := q || tid;
        IF cardinality(q) > depth THEN
            tid := q[1];
            q := q[2:];
            UPDATE worker.tasks SET state = 'processing', process_start_at = now(),
                   worker_pid = pg_backend_pid() WHERE id = tid;
            COMMIT;
            UPDATE worker.tasks SET state = 'completed', process_stop_at = now(),
                   completed_at = now(), process_duration_ms = 1.5 WHERE id = tid;
            COMMIT;
        END IF;
    END LOOP;
    FOREACH tid IN ARRAY q LOOP
        UPDATE worker.tasks SET state = 'completed' WHERE id = tid;
        COMMIT;
    END LOOP;
    us := extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
"""

NOOP_DECISION = """
CREATE OR REPLACE FUNCTION public.system_stability_commit_announce() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $f$ BEGIN RETURN NULL; END $f$;
"""
NO_TASK_TRIGGERS = """
DO $d$
DECLARE t text;
BEGIN
    FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = 'worker.tasks'::regclass
                                            AND tgname LIKE 'system\\_stability\\_%' LOOP
        EXECUTE format('DROP TRIGGER %I ON worker.tasks', t);
    END LOOP;
END $d$;
"""
NOOP_ROWS = """
CREATE OR REPLACE FUNCTION public.system_stability_row_in() RETURNS trigger
LANGUAGE plpgsql AS $f$ BEGIN RETURN NULL; END $f$;
CREATE OR REPLACE FUNCTION public.system_stability_row_out() RETURNS trigger
LANGUAGE plpgsql AS $f$ BEGIN RETURN NULL; END $f$;
"""


def make(server: EmbeddedPostgres, name: str, *sql: str) -> str:
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    dsn = server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(FIXTURE.read_text())
        for s in sql:
            c.execute(s)
        c.execute(PROC)
        c.execute("""
            INSERT INTO worker.tasks (command, state, created_at)
            SELECT 'derive_statistical_unit', 'completed', now() - interval '1 day'
            FROM generate_series(1, 10000)""")
        c.execute("VACUUM ANALYZE worker.tasks")
    return dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lifecycles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--compare", type=Path, default=None)
    args = parser.parse_args()
    ours = INSTALL.read_text()
    with tempfile.TemporaryDirectory(prefix="traystatus-bench-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data")
        server.start()
        try:
            dbs = {"none": make(server, "none"), "ours": make(server, "ours", ours)}
            if args.compare is not None:
                dbs["compare"] = make(server, "compare", args.compare.read_text())
            dbs["ours, decision no-op"] = make(server, "nodecision", ours, NOOP_DECISION)
            dbs["ours, rows no-op"] = make(server, "norows", ours, NOOP_ROWS)
            dbs["ours, index only"] = make(server, "indexonly", ours, NO_TASK_TRIGGERS)
            conns = {k: psycopg.connect(v, autocommit=True) for k, v in dbs.items()}
            print(f"PostgreSQL embedded (fsync off); load average {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} CPUs (shared); {args.lifecycles} lifecycles x "
                  f"{args.rounds} interleaved rounds; server-side µs per lifecycle")
            for shape, depth in (("sequential", 0), ("backlog of 10", 10)):
                for c in conns.values():  # warm-up
                    c.execute("CALL public.bench_lifecycles(200, %s, 0)", (depth,))
                    c.execute("ANALYZE worker.tasks")
                us: dict[str, list[float]] = {k: [] for k in conns}
                names = list(conns)
                for r in range(args.rounds):
                    for name in names[r % len(names):] + names[:r % len(names)]:
                        row = conns[name].execute("CALL public.bench_lifecycles(%s, %s, 0)",
                                                  (args.lifecycles, depth)).fetchone()
                        assert row is not None
                        us[name].append(float(row[0]))
                base = us["none"]
                print(f"  {shape}:")
                for name, values in us.items():
                    ratios = [b / v for b, v in zip(base, values, strict=True)]
                    print(f"    {name:<22} median {statistics.median(values):7.1f} µs "
                          f"({min(values):.1f}..{max(values):.1f}); throughput ratio to none "
                          f"{statistics.median(ratios):.3f} ({min(ratios):.2f}..{max(ratios):.2f})")
            for c in conns.values():
                c.close()
        finally:
            server.destroy()


if __name__ == "__main__":
    main()
