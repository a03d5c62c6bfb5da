"""The built-in source follows a real import on the real StatBus, traystatus's SQL NOT
installed, as the kit's analyst (made by public.user_create): upload by COPY, analysis,
processing, derive, stable, driven by StatBus's own worker.process_tasks.

The worker is stepped one task at a time; after every step the database is quiescent,
and the monitor must reach the value of is_system_stable()'s rule (RULE_NAIVE, read by the
superuser) and never show anything else at rest. The CLI's status, wait and watch follow
the same import as child processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from tests.builtin.kit import Conn, KitDb, Worker, step_worker, work_left
from tests.builtin.test_builtin_race import probe
from tests.core.conftest import FAST, running
from traystatus.core.model.state import State
from traystatus.core.watch import _builtin_sql as builtin_sql
from traystatus.core.watch._builtin_protocol import OLD_STATBUS_INTERVAL
from traystatus.core.watch.builtin import OLD_STATBUS_NOTE
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions

REPO = Path(__file__).resolve().parents[2]


def truth(c: Conn) -> bool:
    holds = probe(c).holds_queue
    row = c.execute(builtin_sql.RULE_NAIVE.encode(), {"holds": holds}).fetchone()
    assert row is not None
    return bool(row[0])


def want(stable: bool) -> State:
    return State.STABLE if stable else State.PROCESSING


@pytest.mark.asyncio
async def test_monitor_follows_a_real_import_step_by_step(kit_db: KitDb) -> None:
    await asyncio.to_thread(kit_db.setup_demo)
    m = Monitor(kit_db.analyst_dsn, replace(FAST, reader="builtin", health_interval=15.0))
    with kit_db.connect() as c:
        async with running(m) as rec:
            await rec.state(State.STABLE)
            assert m.status.source == "builtin" and "watching StatBus directly" in m.status.note
            job_id, _ = await asyncio.to_thread(kit_db.start_import)
            seen_truths = [True]
            steps = 0
            while True:
                now_true = truth(c)
                seen_truths.append(now_true)
                await rec.state(want(now_true), within=10)
                if not await asyncio.to_thread(work_left, c):
                    break
                await asyncio.to_thread(step_worker, c)
                steps += 1
                assert steps < 2000, "the worker never finished"
            job = c.execute("SELECT state FROM public.import_job WHERE id = %s",
                            (job_id,)).fetchone()
            assert job is not None and job[0] == "finished"
            await rec.state(State.STABLE)
    known = [s for s in rec.flips if s in (State.STABLE, State.PROCESSING)]
    # No flicker: one busy spell, as the truth had (progress reads repeat PROCESSING).
    assert known == [State.STABLE, State.PROCESSING, State.STABLE], rec.states
    assert seen_truths.count(False) > 10
    # Only the first read of the connection read every row; the rest used the indexes.
    assert m.counters.stability_reads < m.counters.notifications


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "traystatus", *args]


def test_cli_status_wait_watch_follow_a_real_import(kit_db: KitDb) -> None:
    kit_db.setup_demo()
    dsn_params = psycopg.conninfo.conninfo_to_dict(kit_db.analyst_dsn)
    password = str(dsn_params.pop("password"))
    dsn = psycopg.conninfo.make_conninfo("", **dsn_params)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
               TRAYSTATUS_CONFIG_DIR=str(REPO / ".pytest_cache" / "builtin-cli"))
    base = ["--source", "builtin", "--dsn", dsn]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_cli(*args), env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    stable = run("status", "--json", *base)
    assert stable.returncode == 0, stable.stdout + stable.stderr
    assert json.loads(stable.stdout)["source"] == "builtin"
    watch = subprocess.Popen(_cli("watch", "--json", *base), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    states: list[str] = []  # what watch printed, as it printed it

    def collect() -> None:
        assert watch.stdout is not None
        for line in watch.stdout:
            if line.strip():
                states.append(json.loads(line)["state"])

    def known() -> list[str]:
        return [s for s in list(states) if s in ("stable", "processing")]

    def until(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not predicate():
            assert watch.poll() is None, f"watch exited: {states}"
            assert time.monotonic() < deadline, f"{what}: not within 60 s: {states}"
            time.sleep(0.02)

    errors: list[str] = []
    readers = [threading.Thread(target=collect, daemon=True),
               threading.Thread(target=lambda: errors.extend(watch.stderr or ()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        until(lambda: known() == ["stable"], "watch connected and printed 'stable'")
        kit_db.start_import()
        busy = run("status", "--json", *base)
        assert busy.returncode == 1, busy.stdout + busy.stderr
        assert json.loads(busy.stdout)["state"] == "processing"
        waiter = subprocess.Popen(_cli("wait", "--timeout", "300", *base), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        with kit_db.connect() as c, Worker(kit_db.dsn, step_pause=0.02) as w:
            w.wait_idle(c)
        _, wait_err = waiter.communicate(None, 120)
        assert waiter.returncode == 0, wait_err
        assert time.monotonic() - started < 120
        after = run("status", *base)
        at_rest = time.monotonic()
        assert after.returncode == 0 and after.stdout.startswith("stable"), after.stdout
        until(lambda: known()[-1:] == ["stable"] and "processing" in known(),
              "watch printed 'stable' again")
        # At rest for 2 s after status said stable: watch must not flicker meanwhile.
        time.sleep(max(0.0, at_rest + 2 - time.monotonic()))
    finally:
        watch.terminate()
        watch.wait(30)
        for reader in readers:
            reader.join(10)
        for pipe in (watch.stdout, watch.stderr):
            if pipe is not None:
                pipe.close()
    assert known() == ["stable", "processing", "stable"], (states, "".join(errors))


@pytest.mark.asyncio
async def test_a_statbus_too_old_for_the_channels_is_read_on_a_timer(kit: object) -> None:
    """Before 2026-03-20 StatBus sent no worker_task_changed: the built-in source reads the
    whole rule on a timer (MonitorOptions.old_statbus_interval, 5 s by default; 1 s here)
    and says so; a task that starts with no notification at all is still seen within
    that time."""
    from tests.builtin.conftest import OLDEST_TEMPLATE
    from tests.builtin.kit import Kit

    assert MonitorOptions().old_statbus_interval == OLD_STATBUS_INTERVAL == 5.0
    assert "reading every 5 s" in OLD_STATBUS_NOTE  # what doctor says
    assert isinstance(kit, Kit)
    with kit.database(template=OLDEST_TEMPLATE) as old:
        m = Monitor(old.analyst_dsn, replace(FAST, reader="builtin", health_interval=60.0,
                                             old_statbus_interval=1.0))
        async with running(m) as rec:
            await rec.state(State.STABLE)
            assert "too old" in m.status.note and "reading every 1 s" in m.status.note
            with old.connect() as c:
                # A plain INSERT: announced on no channel at all.
                c.execute("INSERT INTO worker.tasks (command) VALUES ('derive_reports')")
                took = await rec.until(lambda: m.status.state is State.PROCESSING,
                                       within=15, what="the timed read")
                assert took < 1.0 + 3  # the interval, and slack for a busy machine
                c.execute("DELETE FROM worker.tasks WHERE command = 'derive_reports'")
                await rec.state(State.STABLE, within=15)


def test_a_login_without_the_grants_gets_one_line_naming_them(kit_db: KitDb) -> None:
    """StatBus's own listener login (notify_reader) may read import_job but not schema
    worker: the built-in source says which grant is missing, in one line, exit 3."""
    params = psycopg.conninfo.conninfo_to_dict(kit_db.dsn)
    params.update(user="statbus_notify")
    dsn = psycopg.conninfo.make_conninfo("", **params)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD="statbus-real-notify", PYTHONPATH=str(REPO),
               TRAYSTATUS_CONFIG_DIR=str(REPO / ".pytest_cache" / "builtin-cli"))
    r = subprocess.run(_cli("status", "--dsn", dsn), env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 3, r.stdout + r.stderr
    out = (r.stdout + r.stderr).strip()
    assert len(out.splitlines()) == 1, out
    assert "statbus_notify" in out and "USAGE on schema worker" in out
    assert 'GRANT authenticated TO "statbus_notify"' in out
    assert "Traceback" not in out
