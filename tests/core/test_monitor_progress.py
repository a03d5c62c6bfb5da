"""Progress at a glance against a real server: Status.progress while processing, whoever
watches (no details subscriber), at a bounded cost; nothing at all while stable. And the
same aggregate on the real StatBus kit, as an analyst login."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from dataclasses import replace

import psycopg
import pytest
from psycopg.rows import TupleRow

from tests.core.conftest import FAST, aconnect, running, with_params
from traystatus.core.model.state import State
from traystatus.core.pg import sqlfiles
from traystatus.core.watch.monitor import Monitor
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
       (CASE WHEN g <= 120 THEN 'completed' WHEN g <= 124 THEN 'processing'
             ELSE 'pending' END)::worker.task_state, cp.id, 3
  FROM cp, generate_series(1, 412) AS g
"""


async def add_job(conn: psycopg.AsyncConnection[TupleRow], state: str,
                  **cols: object) -> int:
    cols.setdefault("slug", f"job_{uuid.uuid4().hex[:10]}")
    cols.setdefault("definition_id", 1)
    names = ["state", *cols]
    values = [state, *cols.values()]
    cur = await conn.execute(
        f"INSERT INTO public.import_job ({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
        values,
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


# Progress is re-read every ``progress_refresh`` when nothing notifies (10 s by default):
# the stand-in's derive pipeline below sends no notification, so its first progress comes
# from that refresh; 1 s here (the rate limit, progress_interval, stays 1 s).
REFRESH = replace(FAST, progress_refresh=1.0)


@pytest.mark.asyncio
async def test_progress_flows_while_processing_without_a_details_window(db_dsn: str) -> None:
    m = Monitor(db_dsn, REFRESH)
    w = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        assert m.status.progress is None
        job = await add_job(w, "processing_data", total_rows=1000, import_completed_pct=42.4)
        await w.execute(PIPELINE)
        await rec.until(lambda: m.status.progress is not None
                        and m.status.progress.text == "1 import (42 %), derive 120 of 412 tasks",
                        what="progress in the Status")
        assert m.details_subscribers == 0 and m.counters.details_reads == 0
        progress = m.status.progress
        assert m.status.state is State.PROCESSING
        assert progress is not None and progress.overall_pct == 42
        assert m.status.to_json()["progress"]["text"].startswith("1 import (42 %)")
        # StatBus's import_job_progress moves it on (no stability change at all).
        await w.execute("UPDATE public.import_job SET import_completed_pct = 77 WHERE id = %s",
                        (job,))
        await w.execute("SELECT pg_notify('import_job_progress', '{}')")
        await rec.until(lambda: m.status.progress is not None
                        and m.status.progress.overall_pct == 77, what="progress moved")
        await w.execute("UPDATE public.import_job SET state = 'finished' WHERE id = %s", (job,))
        await w.execute("UPDATE worker.tasks SET state = 'completed'")
        await rec.state(State.STABLE)
        assert m.status.progress is None
    await w.close()


@pytest.mark.asyncio
async def test_cost_one_read_a_second_while_processing_none_while_stable(db_dsn: str) -> None:
    """The proof of the bounded cost: a storm of StatBus's progress notifications costs at
    most one progress read per ``progress_interval`` (1 s by default, 0.25 s here) while
    processing, and zero while stable."""
    options = replace(FAST, progress_interval=0.25)
    m = Monitor(db_dsn, options)
    w = await aconnect(db_dsn)

    async def storm(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await w.execute("SELECT pg_notify('worker_status', '{\"type\":\"pipeline_progress\"}'),"
                            " pg_notify('import_job_progress', '{}')")
            await asyncio.sleep(0.01)

    async with running(m) as rec:
        await rec.state(State.STABLE)
        before = m.counters.progress_reads
        await storm(1.0)  # a progress read while stable would follow the first notification
        assert m.counters.progress_reads == before == 0, "no progress read while stable"
        await add_job(w, "processing_data", total_rows=10, import_completed_pct=1)
        await rec.state(State.PROCESSING)
        await rec.until(lambda: m.status.progress is not None, what="first progress")
        start, reads0 = time.monotonic(), m.counters.progress_reads
        await storm(1.5)  # six progress intervals
        elapsed = time.monotonic() - start
        reads = m.counters.progress_reads - reads0
        assert 2 <= reads <= elapsed / options.progress_interval + 1, (reads, elapsed)
    await w.close()


KIT = os.environ.get("STATBUS_REAL_ANALYST_DSN")


@pytest.mark.skipif(not KIT, reason="the real StatBus kit is not set up (STATBUS_REAL_*)")
def test_the_aggregate_runs_as_an_analyst_on_the_real_statbus() -> None:
    assert KIT is not None
    with psycopg.connect(KIT, autocommit=True) as conn:
        row = conn.execute(PROGRESS_SQL).fetchone()
        assert row is not None and row[0] is not None and row[1] is not None


@pytest.mark.skipif(not KIT, reason="the real StatBus kit is not set up (STATBUS_REAL_*)")
@pytest.mark.asyncio
async def test_an_analyst_monitor_on_the_real_statbus_reads_pipeline_progress() -> None:
    """A fresh copy of the real StatBus with a running derive pipeline: the analyst's
    monitor shows StatBus's own step and counts."""
    assert KIT is not None
    su = os.environ["STATBUS_REAL_DSN"]
    name = f"i12_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(su, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE statbus_template OWNER statbus_app '
                      "STRATEGY FILE_COPY")
    try:
        db = with_params(su, dbname=name)
        # Our SQL where installable; else the built-in reader (StatBus's own channels),
        # when this traystatus has one: the progress aggregate is the same in both.
        # where it does not install, the built-in reader (auto) reads the same aggregate
        with contextlib.suppress(psycopg.Error):
            await sqlfiles.apply(db, "install")
        w = await aconnect(db)
        await w.execute("SET session_replication_role = replica")  # no worker triggers
        await w.execute(PIPELINE)
        m = Monitor(with_params(KIT, dbname=name), FAST)
        try:
            async with running(m) as rec:
                await rec.until(lambda: m.status.progress is not None
                                and m.status.progress.text == "derive 120 of 412 tasks",
                                what="real StatBus progress")
                assert m.status.source in ("installed", "builtin")
        finally:
            await w.close()
    finally:
        with psycopg.connect(su, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.asyncio
async def test_my_import_ending_is_told_once_with_how_it_ended(
    db_dsn: str, login_role: tuple[str, str]
) -> None:
    """The login is mapped to its StatBus user (auth.uid(): the auth.user whose email is
    the login's name); an import job that ends is told once, ``mine`` for the login's own,
    with its rows, errors and warnings; one that ends with the spell is told too."""
    from traystatus.core.model.jobs import EndedJob

    role, password = login_role
    w = await aconnect(db_dsn)
    cur = await w.execute('INSERT INTO auth."user" (email) VALUES (%s), (%s) RETURNING id',
                          (role, "someone.else@example.org"))
    me, other = [r[0] for r in await cur.fetchall()]
    mine = await add_job(w, "processing_data", total_rows=20_000, import_completed_pct=10,
                         description="Legal units 2026", user_id=me)
    theirs = await add_job(w, "processing_data", total_rows=50, import_completed_pct=10,
                           user_id=other)
    m = Monitor(with_params(db_dsn, user=role), FAST, password=password)
    ended: list[EndedJob] = []
    m.add_import_listener(ended.append)
    async with running(m) as rec:
        await rec.until(lambda: m.status.progress is not None
                        and len(m.status.progress.running_jobs) == 2, what="both jobs")
        progress = m.status.progress
        assert progress is not None and progress.me == me
        assert [progress.mine(j) for j in progress.jobs] == [True, False]
        await w.execute("UPDATE public.import_job SET state = 'finished', imported_rows = 20000,"
                        " warning_count = 16, import_completed_pct = 100 WHERE id = %s", (mine,))
        await rec.until(lambda: len(ended) == 1, what="my job ended")
        assert (ended[0].id, ended[0].mine, ended[0].title) == (mine, True, "Legal units 2026")
        assert ended[0].text == "20,000 rows imported, 16 warnings"
        # The other one fails, and with it the system turns stable: the closing read.
        await w.execute("UPDATE public.import_job SET state = 'failed', error = %s "
                        "WHERE id = %s", ("worker crashed\ntraceback...", theirs))
        await rec.state(State.STABLE)
        await rec.until(lambda: len(ended) == 2, what="their job ended")
        assert (ended[1].id, ended[1].mine, ended[1].text) == (theirs, False, "worker crashed")
        await asyncio.sleep(1.5)
        assert len(ended) == 2  # each told once
    await w.close()
