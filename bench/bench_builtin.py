"""Cost of the "StatBus built-in" reads on the real StatBus (the statbus-real kit).

    eval "$(bash tests/statbus_real/kit/build.sh --env)"
    .venv/bin/python bench/bench_builtin.py [--sizes 10000,100000,1000000] [--calls 200]

Makes its own copy of the kit's template (traystatus's SQL not installed; StatBus's own
indexes only), runs one real demo import and derive with StatBus's worker, then grows
``worker.tasks`` to each size by copying those real rows (same commands, payloads and
info, parents remapped), VACUUM ANALYZE, and times, as the kit's analyst:

- ``rule``: the everyday read (builtin_sql.RULE: pending/waiting through StatBus's
  partial indexes, processing/interrupted by id);
- ``rule_floor``: the same with the floor's column (every 5 s: builtin.TaskTracker);
- ``rule_since``: the read after lost payloads (builtin_sql.RULE_SINCE: no ids, the
  primary-key range from the floor a tracker would keep in that shape);
- ``rule_full``: the same answer by reading every row (made once per connection);
- ``naive``: is_system_stable()'s text as a plain query;
- ``statbus_rpcs``: is_importing() + is_deriving_statistical_units() + is_deriving_reports();
- ``details``, ``work_mark``, ``summary`` (a run of ~100 tasks since the mark).

Each in three shapes of the register: ``idle`` (everything completed), ``derive`` (a
derive in flight: waiting root and phase, 2,000 pending children, 4 processing), and
``root`` (only a collect_changes root processing: the case no StatBus index covers).
Times are client round trips over a Unix socket, median and p90 of interleaved calls,
plus the server's own execution time and buffers from EXPLAIN (ANALYZE, BUFFERS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.builtin.kit import Kit, KitDb, Worker  # noqa: E402
from traystatus.core.watch import _builtin_sql as builtin_sql  # noqa: E402

Conn = psycopg.Connection[tuple[Any, ...]]

RPCS = (
    "SELECT public.is_importing(), public.is_deriving_statistical_units(), "
    "public.is_deriving_reports()"
)


def grow(c: Conn, target: int) -> None:
    """Copy the real completed rows (ids 3..) until worker.tasks holds ``target`` rows."""
    while True:
        row = c.execute("SELECT count(*), max(id) FROM worker.tasks").fetchone()
        assert row is not None
        count, top = int(row[0]), int(row[1])
        if count >= target:
            return
        # One copy of the template rows per round, parents remapped into the copy.
        c.execute(
            """
            INSERT INTO worker.tasks (id, command, priority, created_at, state,
                process_start_at, process_stop_at, completed_at, process_duration_ms,
                completion_duration_ms, error, scheduled_at, worker_pid, payload, parent_id,
                child_mode, depth, info)
            OVERRIDING SYSTEM VALUE
            SELECT s.id + k * %(span)s + %(top)s, s.command, s.priority, s.created_at, s.state,
                s.process_start_at, s.process_stop_at, s.completed_at, s.process_duration_ms,
                s.completion_duration_ms, s.error, s.scheduled_at, s.worker_pid, s.payload,
                s.parent_id + k * %(span)s + %(top)s, s.child_mode, s.depth, s.info
            FROM bench_template AS s,
                 generate_series(0, least(%(rounds)s, 2000) - 1) AS k
            ORDER BY k, s.id
            """,
            {
                "span": SPAN,
                "top": top,
                "rounds": max(1, (target - count + TEMPLATE_ROWS - 1) // TEMPLATE_ROWS),
            },
        )
        c.execute("SELECT setval('worker.tasks_id_seq', (SELECT max(id) FROM worker.tasks))")


SPAN = 0
TEMPLATE_ROWS = 0


def shape(c: Conn, name: str) -> list[int]:
    """Put the register in shape ``name``; return the ids a tracker would hold."""
    c.execute("DELETE FROM worker.tasks WHERE payload ? 'bench_shape'")
    if name == "idle":
        return []
    root = c.execute(
        "INSERT INTO worker.tasks (command, state, payload, child_mode) "
        "VALUES ('collect_changes', %s, '{\"bench_shape\": 1}', 'serial') RETURNING id",
        ("processing" if name == "root" else "waiting",),
    ).fetchone()
    assert root is not None
    if name == "root":
        return [int(root[0])]
    phase = c.execute(
        "INSERT INTO worker.tasks (command, state, payload, parent_id, depth, child_mode) "
        "VALUES ('derive_units_phase', 'waiting', '{\"bench_shape\": 1}', %s, 1, 'concurrent') "
        "RETURNING id",
        (root[0],),
    ).fetchone()
    assert phase is not None
    c.execute(
        "INSERT INTO worker.tasks (command, state, payload, parent_id, depth) "
        "SELECT 'statistical_unit_refresh_batch', "
        "       CASE WHEN g <= 4 THEN 'processing' ELSE 'pending' END::worker.task_state, "
        "       jsonb_build_object('bench_shape', 1, 'batch', g), %s, 2 "
        "FROM generate_series(1, 2004) AS g",
        (phase[0],),
    )
    ids = c.execute(
        "SELECT array_agg(id) FROM worker.tasks WHERE payload ? 'bench_shape' "
        "AND state = 'processing'"
    ).fetchone()
    assert ids is not None
    return [int(i) for i in ids[0]]


def timed(c: Conn, query: str, params: dict[str, Any] | None, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        c.execute(query.encode(), params).fetchall()
        out.append((time.perf_counter() - t) * 1000)
    return out


def explain(c: Conn, query: str, params: dict[str, Any] | None) -> tuple[float, str]:
    row = c.execute(
        b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query.encode(), params
    ).fetchone()
    assert row is not None
    plan = row[0][0]
    nodes: list[str] = []

    def walk(p: dict[str, Any]) -> None:
        label = p["Node Type"]
        if "Index Name" in p:
            label += f" {p['Index Name']}"
        elif "Relation Name" in p:
            label += f" {p['Relation Name']}"
        if label.startswith(("Seq Scan", "Index", "Bitmap")):
            nodes.append(f"{label} rows={p.get('Actual Rows')}x{p.get('Actual Loops')}")
        for child in p.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    buffers = plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
    return float(plan["Execution Time"]), f"buffers={buffers}; " + "; ".join(nodes)


async def live(db: KitDb, imports: int, idle_seconds: float, details: bool) -> None:
    """Re-reads per second of one built-in monitor (the kit's analyst, default options)
    during real imports + derive at the worker's full speed, then its idle cost."""
    import asyncio

    from traystatus.core.model.state import State
    from traystatus.core.watch.monitor import Monitor
    from traystatus.core.watch.options import MonitorOptions

    m = Monitor(db.analyst_dsn, MonitorOptions(reader="builtin"))
    seen: list[State] = []
    stable = asyncio.Event()

    def on_status(st: Any) -> None:
        seen.append(st.state)
        if st.state is State.STABLE:
            stable.set()
        else:
            stable.clear()

    m.add_listener(on_status)
    task = asyncio.create_task(m.run())
    await stable.wait()
    if details:
        m.subscribe_details()
    base = dict(vars(m.counters))
    samples: list[tuple[float, int, int, int]] = []  # time, stability, details, queries
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            c = m.counters
            samples.append((time.monotonic(), c.stability_reads, c.details_reads,
                            c.queries))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    t0 = time.monotonic()
    for _ in range(imports):
        await asyncio.to_thread(db.start_import)
    with db.connect() as c, Worker(db.dsn) as w:
        await asyncio.to_thread(w.wait_idle, c, 600)
    await stable.wait()
    busy = time.monotonic() - t0
    await asyncio.sleep(1.0)
    done.set()
    await sampler
    counts = m.counters
    reads = counts.stability_reads - base["stability_reads"]
    dreads = counts.details_reads - base["details_reads"]
    notes = counts.notifications - base["notifications"]
    preads = counts.progress_reads - base["progress_reads"]
    queries = counts.queries - base["queries"]
    # The worst 1-second window.
    worst = worst_d = worst_q = 0
    for i, (t, r, d, q) in enumerate(samples):
        for t2, r2, d2, q2 in samples[i:]:
            if t2 - t > 1.0:
                break
            worst, worst_d = max(worst, r2 - r), max(worst_d, d2 - d)
            worst_q = max(worst_q, q2 - q)
    print(f"{imports} imports + derive: {busy:.1f} s busy, {notes} notifications, "
          f"{reads} stability re-reads ({reads / busy:.2f}/s average, worst 1-s window "
          f"{worst}), details {'on' if details else 'off'}: {dreads} details reads "
          f"({dreads / busy:.2f}/s, worst 1-s window {worst_d}); {preads} progress reads; "
          f"all statements {queries} ({queries / busy:.2f}/s, worst 1-s window {worst_q}); "
          f"states {[st.value for st in seen]}")
    # Idle: what one monitor costs when nothing happens.
    before = dict(vars(m.counters))
    cpu0 = time.process_time()
    t1 = time.monotonic()
    await asyncio.sleep(idle_seconds)
    idle = time.monotonic() - t1
    cpu = time.process_time() - cpu0
    q = m.counters.queries - before["queries"]
    print(f"idle {idle:.0f} s: {q} queries ({q / idle * 60:.1f} a minute: health reads), "
          f"client CPU {cpu * 1000 / idle:.2f} ms per second "
          f"({cpu / idle * 100:.3f} % of a core, this process)")
    m.stop()
    await task


def main() -> None:
    global SPAN, TEMPLATE_ROWS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--slow-calls", type=int, default=9, help="calls of full scans")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--live", type=int, default=0, metavar="N",
                        help="instead: re-reads per second of one monitor during N real "
                        "imports + derive, then its idle cost")
    parser.add_argument("--idle", type=float, default=60.0, help="--live: idle seconds")
    parser.add_argument("--details", action="store_true", help="--live: details subscribed")
    args = parser.parse_args()
    kit = Kit.from_env()
    if kit is None:
        sys.exit("bench_builtin: the statbus-real kit is not set up (STATBUS_REAL_DSN etc.)")
    if args.live:
        import asyncio

        print(f"load average {os.getloadavg()}", flush=True)
        with kit.database("ts_bench_live") as live_db:
            live_db.setup_demo()
            asyncio.run(live(live_db, args.live, args.idle, args.details))
        print(f"load average {os.getloadavg()}")
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average {os.getloadavg()}; sizes {sizes}", flush=True)
    ctx = kit.database("ts_bench_builtin")
    db: KitDb = ctx.__enter__()
    try:
        db.setup_demo()
        db.start_import()
        with db.connect() as c, Worker(db.dsn) as w:
            w.wait_idle(c)
        with db.connect() as c:
            c.execute(
                "CREATE UNLOGGED TABLE bench_template AS SELECT * FROM worker.tasks "
                "WHERE state IN ('completed', 'failed') ORDER BY id"
            )
            row = c.execute("SELECT count(*), max(id) FROM bench_template").fetchone()
            assert row is not None
            TEMPLATE_ROWS, SPAN = int(row[0]), int(row[1])
            print(f"template: {TEMPLATE_ROWS} real task rows from one import + derive")
        results: list[dict[str, Any]] = []
        for size in sizes:
            with db.connect() as c:
                t = time.monotonic()
                grow(c, size)
                c.execute("VACUUM ANALYZE worker.tasks")
                row = c.execute(
                    "SELECT count(*), pg_size_pretty(pg_total_relation_size('worker.tasks')) "
                    "FROM worker.tasks"
                ).fetchone()
                assert row is not None
                print(f"\n== worker.tasks: {row[0]:,} rows, {row[1]} "
                      f"(grown in {time.monotonic() - t:.0f} s)", flush=True)
            for shape_name in ("idle", "derive", "root"):
                with db.connect() as c:
                    ids = shape(c, shape_name)
                    c.execute("ANALYZE worker.tasks")
                    mark_row = c.execute("SELECT max(id) - 120 FROM worker.tasks").fetchone()
                    assert mark_row is not None
                with psycopg.connect(db.analyst_dsn, autocommit=True) as a:
                    p_ids = {"ids": ids, "holds": True}
                    # The floor a tracker would keep here (TaskTracker.floor): the lowest
                    # tracked, pending or waiting id, else the newest id + 1.
                    full_row = a.execute(builtin_sql.RULE_FULL.encode(), p_ids).fetchone()
                    assert full_row is not None
                    newest = int(full_row[3] or 0)
                    low = min(int(full_row[5] or newest + 1), newest + 1)
                    p_since = {"ids": [], "low": low, "holds": True}
                    queries: dict[str, tuple[str, dict[str, Any] | None, int]] = {
                        "rule": (builtin_sql.RULE, p_ids, args.calls),
                        "rule_floor": (builtin_sql.RULE_FLOOR, p_ids, args.calls),
                        "rule_since": (builtin_sql.RULE_SINCE, p_since, args.calls),
                        "rule_full": (builtin_sql.RULE_FULL, p_ids, args.slow_calls),
                        "naive": (builtin_sql.RULE_NAIVE, p_ids, args.slow_calls),
                        "statbus_rpcs": (RPCS, None, args.slow_calls),
                        "details": (builtin_sql.DETAILS, p_ids, max(9, args.calls // 10)),
                        "work_mark": (builtin_sql.WORK_MARK, p_ids, max(9, args.calls // 10)),
                        "summary": (builtin_sql.WORK_SUMMARY,
                                    {"mark": mark_row[0], "since": "2000-01-01"},
                                    max(9, args.calls // 10)),
                    }
                    answers = {}
                    for name in ("rule", "rule_floor", "rule_since", "rule_full", "naive"):
                        q, p, _ = queries[name]
                        r = a.execute(q.encode(), p).fetchone()
                        assert r is not None
                        answers[name] = r[0]
                    assert len(set(answers.values())) == 1, answers
                    samples: dict[str, list[float]] = {k: [] for k in queries}
                    # Interleave: every query once per round, so load hits all alike.
                    rounds = max(n for *_, n in queries.values())
                    for i in range(rounds):
                        for name, (q, p, n) in queries.items():
                            if i < n:
                                samples[name] += timed(a, q, p, 1)
                    for name, (q, p, _) in queries.items():
                        ms, plan = explain(a, q, p)
                        xs = samples[name]
                        res = {
                            "rows": size, "shape": shape_name, "query": name,
                            "median_ms": statistics.median(xs),
                            "p90_ms": sorted(xs)[int(0.9 * (len(xs) - 1))],
                            "server_ms": ms, "plan": plan, "stable": answers["rule"],
                        }
                        results.append(res)
                        print(f"{size:>9,} {shape_name:<6} {name:<12} median "
                              f"{res['median_ms']:8.3f} ms  p90 {res['p90_ms']:8.3f}  "
                              f"server {ms:8.3f}  | {plan[:150]}", flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        print(f"\nload average {os.getloadavg()}")
    finally:
        if args.keep:
            print(f"kept database {db.name}")
        else:
            ctx.__exit__(None, None, None)


if __name__ == "__main__":
    main()
