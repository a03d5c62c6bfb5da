"""What happened today, on a real StatBus (issue 21 part 4): an import StatBus's worker
finished (with the rows StatBus imported, "your" for the uploader's login), a review that
held the queue until approved, and StatBus's derive runs, read by the monitor only while
details are wanted. With our SQL installed and without (the built-in reader)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.core.conftest import FAST, running
from tests.statbus_real import statbus
from tests.statbus_real.conftest import VERSIONS, Kit
from tests.statbus_real.test_scenarios_real import demo_csv, install
from traystatus.core.model.review import REVIEW_WAIT_SQL
from traystatus.core.model.state import utcnow
from traystatus.core.model.today import DAY_SQL, Day, SeenLog, day_start, day_view
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import ReaderMode

ANALYST = "analyst@statbus-real.test"


def _analyst(dsn: str) -> str:
    params = conninfo_to_dict(os.environ["STATBUS_REAL_ANALYST_DSN"])
    params["dbname"] = conninfo_to_dict(dsn)["dbname"]
    return make_conninfo("", **params)


@pytest.mark.parametrize("reader", ["installed", "builtin"])
@pytest.mark.asyncio
async def test_real_day_lists_imports_reviews_and_derive_runs(
    kit: Kit, demo_template: str, new_db: Callable[..., str], reader: ReaderMode,
) -> None:
    if "STATBUS_REAL_ANALYST_DSN" not in os.environ:
        pytest.skip("the kit's analyst login is not in the environment")
    dsn = new_db(demo_template)
    if reader == "installed":
        install(kit, dsn)
    conn = psycopg.connect(dsn, autocommit=True)
    try:
        job = statbus.create_job(conn, "lu_today", review=True, email=ANALYST)
        statbus.upload(conn, "lu_today", demo_csv(kit))
        await asyncio.to_thread(statbus.run_worker, dsn)
        statbus.set_state(conn, job, "approved")
        await asyncio.to_thread(statbus.run_worker, dsn)
        assert statbus.job_state(conn, job) == "finished"
        row = conn.execute("SELECT imported_rows FROM public.import_job WHERE id = %s",
                           (job,)).fetchone()
        assert row is not None and row[0] > 0
        runs = conn.execute("SELECT count(*) FROM worker.tasks WHERE command = "
                            "'collect_changes' AND depth = 0 AND state = 'completed'"
                            ).fetchone()
        assert runs is not None and runs[0] >= 1

        days: list[Day] = []
        m = Monitor(_analyst(dsn), replace(FAST, reader=reader))
        m.add_day_listener(days.append)
        async with running(m) as rec:
            await rec.until(lambda: m.counters.stability_reads >= 2, what="two reads")
            assert days == [] and m.counters.day_reads == 0  # nobody looks: not read
            m.subscribe_details()
            await rec.until(lambda: bool(days), what="the day")
            m.unsubscribe_details()
        day = days[0]
        assert day.row is not None
        lines = [e.text for e in day_view(day, SeenLog(), utcnow()).entries]
        assert f"Your import lu_today finished: {row[0]:,} rows" in lines
        assert any(t.startswith("Review of lu_today: held the imports ") for t in lines)
        assert any(t.startswith("Derive ") for t in lines), lines
    finally:
        conn.close()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.asyncio
async def test_the_day_and_the_review_wait_read_on_every_supported_statbus(
    kit: Kit, new_db: Callable[..., str], version: str,
) -> None:
    """The oldest StatBus has no worker.tasks.depth, process_start_at (processed_at) or
    import_job.error_count: both reads still answer (never "not readable here")."""
    dsn = new_db(kit.template(version))
    with psycopg.connect(dsn) as c:
        assert c.execute(REVIEW_WAIT_SQL).fetchall() == []
        row = c.execute(DAY_SQL, {"since": day_start(utcnow())}).fetchone()
        assert row is not None and isinstance(row[0], list) and isinstance(row[1], list)
    # (installed here; the built-in reader's details on every version:
    # test_builtin_versions_real.py)
    install(kit, dsn)
    days: list[Day] = []
    m = Monitor(dsn, replace(FAST, reader="installed"))
    m.add_day_listener(days.append)
    m.subscribe_details()
    async with running(m) as rec:
        await rec.until(lambda: bool(days), what="the day")
    assert days[0].row is not None
