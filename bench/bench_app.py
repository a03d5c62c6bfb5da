"""Benchmark of the tray app: idle memory and CPU, and CPU during notification storms.

Runs the real app (``run_app``, as ``traystatus`` with no sub-command starts it) in a
subprocess with QT_QPA_PLATFORM=offscreen against a private embedded PostgreSQL with the
StatBus stand-in and sql/install.sql, and reads the process's own counters from /proc.

1. Idle: after start-up settles, resident memory (VmRSS, and the peak VmHWM) and CPU time
   over ``--idle`` seconds (default 60). Targets: < 120 MB, < 0.5 % of one core.
2. NOTIFY storm: 10,000 notifications on ``system_stability`` (10 transactions of 1,000
   distinct payloads), ``--rounds`` times: app CPU seconds per storm and the time until the
   app is idle again. The core coalesces them into a handful of re-reads.
3. Notice storm, in this process: 10,000 notices (100 keys) through NotificationSender
   with no notification server (fallback path): CPU seconds; the queue keeps only the
   newest notice per key.

``--deployments N`` (several deployments): N databases on the server, N profiles, all
watched by one app (Settings.watched): one icon, N connections. ``--processing``: the
first deployment is busy during the idle measurement (an import job and a derive pipeline
running, so the app reads progress at most once a second), the others stable. The
targets for three deployments: < 150 MB, < 0.5 % of one core.

Prints figures (medians over rounds); exits 1 when an idle target is missed.
    .venv/bin/python bench/bench_app.py [--idle 60] [--rounds 3] [--deployments 3]
                                        [--processing]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from traystatus._paths import sql_dir  # noqa: E402
from traystatus.demo.embedded import EmbeddedPostgres  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def mem_mb(pid: int) -> tuple[float, float]:
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


def wait_idle(pid: int, quiet: float = 2.0, limit: float = 120.0) -> float:
    """Seconds until the process used < 1 % CPU over ``quiet`` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        c0 = cpu_seconds(pid)
        time.sleep(quiet)
        if cpu_seconds(pid) - c0 < 0.01 * quiet:
            return time.monotonic() - start
    return float("nan")


def notify_storm(dsn: str, n: int = 10_000, per_tx: int = 1_000) -> None:
    with psycopg.connect(dsn) as conn:
        for start in range(0, n, per_tx):
            conn.execute(
                "SELECT pg_notify('system_stability', json_build_object("
                "'stable', i %% 2 = 0, 'n', i)::text) FROM generate_series(%s::int, %s::int) AS i",
                (start, start + per_tx - 1),
            )
            conn.commit()


async def notice_storm(n: int = 10_000, keys: int = 100) -> tuple[float, int]:
    from PySide6.QtCore import QCoreApplication  # noqa: F401 - needs a Qt app for QObject

    from traystatus.app.notifications import NotificationSender
    from traystatus.app.notify_policy import Kind, Notice

    shown: list[Notice] = []
    sender = NotificationSender(fallback=shown.append, use_desktop_notifier=False)
    c0 = time.process_time()
    for i in range(n):
        sender.handle([Notice(Kind.FINISHED, f"k{i % keys}", "Processing finished", f"{i}")])
        if i % 500 == 0:
            await asyncio.sleep(0)
    await sender.drain()
    used = time.process_time() - c0
    await sender.close()
    return used, len(shown)


def details_repaint_ms(rounds: int = 20) -> tuple[float, float]:
    """Median ms to apply a snapshot of 200 jobs + 412 tasks to the details window:
    the first time (rows created) and after (rows reused, progress changed)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from tests.app.sample_data import NOW, job, realistic_json
    from traystatus.app.details import DetailsWindow
    from traystatus.app.icons import IconCache
    from traystatus.core.model.details import Details
    from traystatus.core.model.state import State, Status

    app = QApplication.instance() or QApplication([])

    def snapshot(shift: int) -> Details:
        data = realistic_json()
        data["import_jobs"] = [
            job(i, f"job_{i}", "processing_data", "processing", (i + shift) % 100, 500.0)
            for i in range(1, 201)
        ]
        data["import_jobs_total"] = 200
        return Details.from_json(data)

    first, later = [], []
    for _ in range(3):
        w = DetailsWindow(None, IconCache(), clock=lambda: NOW)
        w.set_status(Status(State.PROCESSING, since=NOW))
        w.show()
        t0 = time.perf_counter()
        w.set_details(snapshot(0))
        app.processEvents()
        first.append((time.perf_counter() - t0) * 1000)
        for r in range(rounds):
            snap = snapshot(r + 1)
            t0 = time.perf_counter()
            w.set_details(snap)
            app.processEvents()
            later.append((time.perf_counter() - t0) * 1000)
        w.close()
        w.deleteLater()
    return statistics.median(first), statistics.median(later)


def in_process(rounds: int) -> int:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    assert app is not None
    results = [asyncio.run(notice_storm()) for _ in range(rounds)]
    print(f"10,000-notice storm (100 keys, fallback path) x{rounds}: CPU median "
          f"{statistics.median(r[0] for r in results) * 1000:.0f} ms, notices shown "
          f"{results[0][1]} (newest per key wins while queued)")
    first, later = details_repaint_ms()
    print(f"details window, 200 jobs + 412 tasks: first snapshot {first:.0f} ms, "
          f"next snapshots median {later:.0f} ms (rows reused)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--deployments", type=int, default=1)
    ap.add_argument("--processing", action="store_true")
    ap.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper
    if args.in_process:
        return in_process(args.rounds)

    base = Path(tempfile.mkdtemp(prefix="bench-app-"))
    server = EmbeddedPostgres(base / "data")
    server.start()
    app: subprocess.Popen[bytes] | None = None
    try:
        n = max(1, args.deployments)
        names = ["statbus"] + [f"statbus{i}" for i in range(2, n + 1)]
        with psycopg.connect(server.dsn(), autocommit=True) as c:
            for name in names:
                c.execute(f"CREATE DATABASE {name}")
        for name in names:
            with psycopg.connect(server.dsn(name), autocommit=True) as c:
                c.execute((sql_dir() / "fixtures" / "statbus_schema.sql").read_text())
                c.execute((sql_dir() / "install.sql").read_text())
        dsn = server.dsn("statbus")
        profile_arg = "None"
        if n > 1:
            os.environ["TRAYSTATUS_CONFIG_DIR"] = str(base / "config")
            from dataclasses import replace as _replace

            from traystatus.core.config.profiles import ConnectionProfile, ProfileStore

            store = ProfileStore()
            for i, name in enumerate(names):
                store.put(ConnectionProfile(name=f"d{i + 1}", dsn=server.dsn(name)),
                          make_default=i == 0)
            store.save_settings(_replace(store.settings,
                                         watched=tuple(f"d{i + 1}" for i in range(n))))
            profile_arg = "'d1'"
        if args.processing:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("INSERT INTO public.import_job (slug, state, definition_id, "
                          "total_rows, import_completed_pct) "
                          "VALUES ('bench', 'processing_data', 1, 1000, 10)")
                c.execute(PIPELINE)
        env = dict(
            os.environ,
            QT_QPA_PLATFORM="offscreen",
            PYTHONPATH=str(REPO),
            TRAYSTATUS_CONFIG_DIR=str(base / "config"),
            TRAYSTATUS_LOG_DIR=str(base / "logs"),
        )
        code = (
            "import sys, argparse; from traystatus.app.main import run_app; "
            "d = sys.argv[1] or None; "
            f"sys.exit(run_app(argparse.Namespace(dsn=d, profile={profile_arg}, "
            "replace=True, verbose=0)))"
        )
        t0 = time.monotonic()
        app = subprocess.Popen([sys.executable, "-c", code, dsn if n == 1 else ""], env=env,
                               cwd=str(REPO), stderr=subprocess.DEVNULL)
        settle = wait_idle(app.pid)
        with psycopg.connect(server.dsn(), autocommit=True) as c:
            row = c.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE application_name = 'traystatus'").fetchone()
        print(f"start-up until idle: {time.monotonic() - t0:.1f} s (settled {settle:.1f} s); "
              f"the app holds {row[0] if row else '?'} database connection(s)")

        c0, w0 = cpu_seconds(app.pid), time.monotonic()
        time.sleep(args.idle)
        cpu = cpu_seconds(app.pid) - c0
        wall = time.monotonic() - w0
        rss, hwm = mem_mb(app.pid)
        idle_pct = 100 * cpu / wall
        limit_mb = 120 if n == 1 else 150
        what = f"{n} deployments" + (", the first processing" if args.processing else "")
        print(f"{what}, idle over {wall:.0f} s: CPU {cpu:.2f} s = {idle_pct:.3f} % of one "
              f"core (target < 0.5 %); RSS {rss:.1f} MB, peak {hwm:.1f} MB "
              f"(target < {limit_mb} MB)")

        storm_cpu, storm_settle = [], []
        for _ in range(args.rounds):
            c0 = cpu_seconds(app.pid)
            t0 = time.monotonic()
            notify_storm(dsn)
            settle = wait_idle(app.pid, quiet=1.0)
            storm_cpu.append(cpu_seconds(app.pid) - c0)
            storm_settle.append(time.monotonic() - t0)
        rss2, hwm2 = mem_mb(app.pid)
        each = ", ".join(f"{c:.2f}" for c in storm_cpu)
        print(f"10,000-NOTIFY storm x{args.rounds}: app CPU median "
              f"{statistics.median(storm_cpu):.2f} s (all {each})"
              f", idle again after median {statistics.median(storm_settle):.1f} s "
              f"(includes a quiet period of 1 s); RSS after {rss2:.1f} MB, peak {hwm2:.1f} MB")

        # The in-process parts run in a fresh interpreter with its own QApplication.
        out = subprocess.run(
            [sys.executable, __file__, "--in-process", "--rounds", str(args.rounds)],
            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), capture_output=True,
            text=True, timeout=600, check=False,
        )
        print(out.stdout.strip(), flush=True)
        ok = idle_pct < 0.5 and rss < limit_mb
        return 0 if ok else 1
    finally:
        if app is not None and app.poll() is None:
            app.terminate()
            try:
                app.wait(30)
            except subprocess.TimeoutExpired:
                app.kill()
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
