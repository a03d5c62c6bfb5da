"""Which imports ended, on a real StatBus driven through its own code paths (issue 18 item
3): a job with review stops in waiting_for_review (not an ending); approved, StatBus's
worker finishes it (one ending, with the rows StatBus imported); a job rejected while the
watcher was stopped is told at its next start, once. With our SQL installed and without
(the built-in reader): the same endings."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.core.conftest import FAST, running
from tests.statbus_real import statbus
from tests.statbus_real.conftest import Kit
from tests.statbus_real.test_scenarios_real import demo_csv, install
from traystatus.core.model.jobs import EndedJob
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import ReaderMode


def _analyst(dsn: str) -> str:
    """The kit's analyst login, on this test's copy of StatBus."""
    params = conninfo_to_dict(os.environ["STATBUS_REAL_ANALYST_DSN"])
    params["dbname"] = conninfo_to_dict(dsn)["dbname"]
    return make_conninfo("", **params)


@pytest.mark.parametrize("reader", ["installed", "builtin"])
@pytest.mark.asyncio
async def test_real_job_states_end_an_import_once(
    kit: Kit, demo_template: str, new_db: Callable[..., str], tmp_path: Path, reader: ReaderMode,
) -> None:
    dsn = new_db(demo_template)
    if reader == "installed":
        install(kit, dsn)
    options = replace(FAST, reader=reader, endings_dir=str(tmp_path))
    ended: list[EndedJob] = []

    def monitor() -> Monitor:
        m = Monitor(_analyst(dsn), options)
        m.add_import_listener(ended.append)
        return m

    conn = psycopg.connect(dsn, autocommit=True)
    try:
        m = monitor()
        async with running(m) as rec:
            await rec.until(lambda: m.counters.endings_reads >= 1, what="the baseline")
            job = statbus.create_job(conn, "lu_reviewed", review=True)
            statbus.upload(conn, "lu_reviewed", demo_csv(kit))
            await asyncio.to_thread(statbus.run_worker, dsn)
            assert statbus.job_state(conn, job) == "waiting_for_review"
            await rec.until(lambda: m.status.review is not None, what="the review block")
            reads = m.counters.endings_reads
            await rec.until(lambda: m.counters.endings_reads > reads + 1, what="two reads")
            assert ended == []  # stopped for review: not an ending

            statbus.set_state(conn, job, "approved")  # the app's UPDATE
            await asyncio.to_thread(statbus.run_worker, dsn)
            assert statbus.job_state(conn, job) == "finished"
            await rec.until(lambda: len(ended) == 1, what="the ending")
            row = conn.execute("SELECT imported_rows FROM public.import_job WHERE id = %s",
                               (job,)).fetchone()
            assert row is not None and row[0] > 0
            assert (ended[0].id, ended[0].state, ended[0].imported_rows) == (
                job, "finished", row[0])
            assert ended[0].text.startswith(f"{row[0]:,} rows imported")

        # Stopped: another job stops for review and is rejected meanwhile.
        second = statbus.create_job(conn, "lu_rejected", review=True)
        statbus.upload(conn, "lu_rejected", demo_csv(kit))
        await asyncio.to_thread(statbus.run_worker, dsn)
        statbus.set_state(conn, second, "rejected")
        m = monitor()
        async with running(m) as rec:
            await rec.until(lambda: len(ended) == 2, what="the rejection")
            reads = m.counters.endings_reads
            await rec.until(lambda: m.counters.endings_reads > reads + 1, what="two reads")
        assert [(e.id, e.state) for e in ended] == [(job, "finished"), (second, "rejected")]
        assert ended[1].text == "Rejected in review: nothing was imported."
    finally:
        conn.close()
