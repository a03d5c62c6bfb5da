"""What watching StatBus's upgrades costs: the read of ``public.upgrade`` on the real StatBus.

    eval "$(bash tests/statbus_real/kit/build.sh --env)"
    .venv/bin/python bench/bench_upgrade_read.py [--rows 1000] [--runs 200]

A copy of the kit's newest StatBus gets ``--rows`` upgrade rows as StatBus's daemon leaves
them over years of releases (all completed or superseded, one scheduled), then, as the
kit's analyst: ``UPGRADE_TABLE_SQL`` (once per connection) and ``UPGRADE_SQL`` (per
connection and per ``upgrade_changed``), ``--runs`` times each; median and p90 of the
round trip in ms, and the same for ``SELECT 1`` (what a round trip costs at all).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from traystatus.core.model.upgrade import UPGRADE_SQL, UPGRADE_TABLE_SQL


def timed(conn: psycopg.Connection[tuple[object, ...]], query: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        conn.execute(query.encode()).fetchall()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    su, analyst = os.environ.get("STATBUS_REAL_DSN"), os.environ.get("STATBUS_REAL_ANALYST_DSN")
    if not su or not analyst:
        print("needs the real StatBus kit: eval \"$(bash tests/statbus_real/kit/build.sh --env)\"",
              file=sys.stderr)
        return 3
    name = f"bench_upgrade_{uuid.uuid4().hex[:8]}"
    template = os.environ.get("STATBUS_REAL_TEMPLATE", "statbus_template")
    with psycopg.connect(su, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template)))
    try:
        with psycopg.connect(make_conninfo(su, dbname=name), autocommit=True) as c:
            c.execute(
                "INSERT INTO public.upgrade (commit_sha, committed_at, commit_tags, summary, "
                " state, scheduled_at, started_at, completed_at, log_relative_file_path, "
                " superseded_at)"
                " SELECT md5(i::text) || left(md5((i + 1)::text), 8), now() - i * interval '1 day',"
                "  ARRAY['v' || i], 'r', CASE WHEN i %% 3 = 0 THEN 'completed' ELSE 'superseded'"
                "  END::public.upgrade_state, now() - i * interval '1 day',"
                "  now() - i * interval '1 day', CASE WHEN i %% 3 = 0 THEN now() - i * interval"
                "  '1 day' END, 'l', CASE WHEN i %% 3 <> 0 THEN now() END"
                " FROM generate_series(1, %s) AS i", (a.rows,))
            c.execute("INSERT INTO public.upgrade (commit_sha, committed_at, summary, state,"
                      " scheduled_at) VALUES (repeat('c', 40), now(), 'next', 'scheduled',"
                      " now() + interval '1 day')")
            c.execute("ANALYZE public.upgrade")
        with psycopg.connect(make_conninfo(analyst, dbname=name), autocommit=True) as c:
            for label, query in (("SELECT 1", "SELECT 1"), ("UPGRADE_TABLE_SQL", UPGRADE_TABLE_SQL),
                                 ("UPGRADE_SQL", UPGRADE_SQL)):
                timed(c, query, 10)  # warm
                ms = sorted(timed(c, query, a.runs))
                print(f"{label:18} median {statistics.median(ms):.3f} ms, "
                      f"p90 {ms[int(len(ms) * 0.9)]:.3f} ms ({a.runs} runs, "
                      f"{a.rows + 1} rows in public.upgrade)")
    finally:
        with psycopg.connect(su, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
