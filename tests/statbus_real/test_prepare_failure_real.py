"""A job whose data fails while StatBus prepares it, on a real StatBus run by its own worker:
a person must be told, right after it ended, by the details' recent jobs, by the work
summary and by the import-endings ledger (once), with both readers.

What StatBus records (admin.import_job_prepare / admin.import_job_process, the same in
every version the kit builds): prepare's exception handler sets ``state = 'failed'`` and
``error = {"prepare_error": ...}`` and returns; import_job_process then goes on in the same
transaction and moves the job to ``analysing_data`` (so ``failed`` is never committed), and
the next step sees ``error`` and moves it to ``finished``. The state-change trigger stamps
``analysis_start_at`` and ``analysis_stop_at`` on the way: the job's ended time is fresh.
``updated_at`` is never moved after the insert, and ``last_progress_update`` is not touched.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.core.conftest import FAST, running
from tests.statbus_real import statbus
from tests.statbus_real.conftest import Kit
from tests.statbus_real.test_details_agree_real import _login, _put, read_both
from tests.statbus_real.test_scenarios_real import demo_csv, install
from traystatus.app.notify_policy import Notice, NotificationPolicy, NotifyOptions
from traystatus.core.model.jobs import EndedJob
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import ReaderMode

BOOM = "traystatus test: the prepare insert fails"


def _reads_past(m: Monitor, n: int) -> Callable[[], bool]:
    """Whether ``m`` made more than ``n`` endings reads (a function, not a lambda in the
    loop: that would bind the loop's variables late)."""
    return lambda: m.counters.endings_reads > n


def _told(told: list[EndedJob]) -> Callable[[], bool]:
    return lambda: len(told) >= 1


def _fail_prepare(conn: statbus.Conn, job: int) -> None:
    """Make the prepare step's INSERT into the job's data table fail (as a bad value, a full
    disk or a lost column would): a trigger of ours on that table raises."""
    row = conn.execute("SELECT data_table_name FROM public.import_job WHERE id = %s",
                       (job,)).fetchone()
    assert row is not None and row[0]
    conn.execute("CREATE FUNCTION public.traystatus_test_boom() RETURNS trigger "
                 "LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION '" + BOOM + "'; END$$")
    conn.execute(sql.SQL("CREATE TRIGGER traystatus_test_boom BEFORE INSERT ON public.{} "
                         "FOR EACH ROW EXECUTE FUNCTION public.traystatus_test_boom()")
                 .format(sql.Identifier(row[0])))


def _long_prepare(conn: statbus.Conn) -> None:
    """A big file prepares for a long time: when StatBus stamps preparing_data_at, a trigger
    of ours (after StatBus's, by name) dates it 30 minutes back. So only the stamps written
    when the job ended can say it ended just now."""
    conn.execute("CREATE FUNCTION public.traystatus_test_long_prepare() RETURNS trigger "
                 "LANGUAGE plpgsql AS $$BEGIN NEW.preparing_data_at := "
                 "NEW.preparing_data_at - interval '30 minutes'; RETURN NEW; END$$")
    conn.execute("CREATE TRIGGER zz_traystatus_test_long_prepare BEFORE UPDATE OF state "
                 "ON public.import_job FOR EACH ROW WHEN (NEW.state = 'preparing_data' "
                 "AND OLD.state <> 'preparing_data') "
                 "EXECUTE FUNCTION public.traystatus_test_long_prepare()")



def _both_readers(login: str, tmp_path: Path) -> tuple[list[Monitor], dict[str, list[EndedJob]]]:
    """A Monitor per reader (installed, builtin), each with its own endings ledger, and the
    import endings each one tells."""
    readers: tuple[ReaderMode, ...] = ("installed", "builtin")
    ended: dict[str, list[EndedJob]] = {r: [] for r in readers}
    monitors = []
    for reader in readers:
        m = Monitor(login, replace(FAST, reader=reader, endings_dir=str(tmp_path / reader)))
        m.add_import_listener(ended[reader].append)
        monitors.append(m)
    return monitors, ended

@pytest.mark.asyncio
async def test_a_job_failing_in_prepare_is_told_right_after(
    kit: Kit, demo_template: str, new_db: Callable[..., str], tmp_path: Path,
) -> None:
    if "STATBUS_REAL_ANALYST_DSN" not in os.environ:
        pytest.skip("the kit's analyst login is not in the environment")
    dsn = new_db(demo_template)
    install(kit, dsn)
    login = _login(dsn)
    monitors, ended = _both_readers(login, tmp_path)
    with psycopg.connect(dsn, autocommit=True) as conn:
        async with running(monitors[0]) as rec0, running(monitors[1]) as rec1:
            for m, rec in zip(monitors, (rec0, rec1), strict=True):
                await rec.until(_reads_past(m, 0), what="a baseline")
            job = statbus.create_job(conn, "lu_prepare_fails")
            _fail_prepare(conn, job)
            _long_prepare(conn)
            statbus.upload(conn, "lu_prepare_fails", demo_csv(kit))
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            before = row[0]
            await asyncio.to_thread(statbus.run_worker, dsn)

            # What StatBus recorded (see the module doc).
            stamps = conn.execute(
                "SELECT state::text, error, preparing_data_at, analysis_stop_at, "
                "processing_stop_at, "
                "updated_at = created_at FROM public.import_job WHERE id = %s",
                (job,)).fetchone()
            assert stamps is not None
            state, error, preparing, analysis_stop, processing_stop, updated_never = stamps
            assert state == "finished" and BOOM in (error or ""), stamps
            assert analysis_stop is not None and analysis_stop >= before, stamps
            assert processing_stop is None and updated_never, stamps
            assert preparing < before - timedelta(minutes=29), stamps

            # The details' recent jobs and the work summary, both readers.
            both = await read_both(login, before)
            for name, details, summary in (
                ("installed", both.installed, both.installed_summary),
                ("builtin", both.builtin, both.builtin_summary),
            ):
                shown = {j.id: j for j in details.import_jobs}
                assert job in shown, f"{name}: details hide the job that just failed"
                assert shown[job].ended_at is not None and shown[job].ended_at >= before
                assert shown[job].has_errors
                listed = {j.id: j for j in summary.import_jobs}
                assert job in listed, f"{name}: the work summary leaves the job out"
                assert listed[job].has_errors and summary.import_jobs_with_errors == 1

            # The endings ledger: told once, as a job with an error.
            for m, rec, (name, told) in zip(monitors, (rec0, rec1), ended.items(),
                                            strict=True):
                await rec.until(_told(told), what=f"{name}: the ending")
                reads = m.counters.endings_reads
                await rec.until(_reads_past(m, reads + 1),
                                what=f"{name}: two more reads")
                assert [(e.id, e.state) for e in told] == [(job, "finished")], name
                assert told[0].has_errors and BOOM in (told[0].error or ""), name

                # What the person reads (the app's notice policy): that it stopped, why,
                # and that nothing went in; never "finished with errors" / "0 rows".
                policy = NotificationPolicy(started_at=before,
                                            options=NotifyOptions(imports="all"))
                [notice] = [d for d in policy.on_import_end(told[0], datetime.now(UTC))
                            if isinstance(d, Notice)]
                assert notice.title == "Import 'lu_prepare_fails' stopped with an error", name
                assert notice.body == f"{BOOM}. Nothing was imported.", name


@pytest.mark.asyncio
async def test_a_job_stopped_while_preparing_is_told_once(
    kit: Kit, demo_template: str, new_db: Callable[..., str], tmp_path: Path,
) -> None:
    """A person marks a job stuck in preparing_data for half an hour ``failed`` (StatBus
    itself never commits that). StatBus stamps nothing then, so no reader can know when it
    ended: the details and the work summary date it at preparing_data_at (the latest
    evidence) and may leave it out; the endings ledger, which follows states, tells it once."""
    dsn = new_db(demo_template)
    install(kit, dsn)
    login = _login(dsn)
    monitors, ended = _both_readers(login, tmp_path)
    with psycopg.connect(dsn, autocommit=True) as conn:
        async with running(monitors[0]) as rec0, running(monitors[1]) as rec1:
            recs = (rec0, rec1)
            for m, rec in zip(monitors, recs, strict=True):
                await rec.until(_reads_past(m, 0), what="a baseline")
            job = statbus.create_job(conn, "lu_stopped")
            statbus.upload(conn, "lu_stopped", demo_csv(kit))
            # Where StatBus's worker would have left it: preparing for half an hour.
            _put(conn, "public.import_job", job, state="preparing_data",
                 preparing_data_at=datetime.now(UTC) - timedelta(minutes=30))
            for m, rec in zip(monitors, recs, strict=True):
                reads = m.counters.endings_reads
                await rec.until(_reads_past(m, reads),
                                what="a read of the stuck job")
            with conn.transaction():
                conn.execute("CALL test.set_user_from_email(%s)", (statbus.ADMIN_EMAIL,))
                conn.execute("UPDATE public.import_job SET state = 'failed', error = %s "
                             "WHERE id = %s", ("stopped by an administrator", job))
            for m, rec, (name, told) in zip(monitors, recs, ended.items(), strict=True):
                await rec.until(_told(told), what=f"{name}: the ending")
                reads = m.counters.endings_reads
                await rec.until(_reads_past(m, reads + 1),
                                what=f"{name}: two more reads")
                assert [(e.id, e.state) for e in told] == [(job, "failed")], name
                assert told[0].text == "stopped by an administrator", name
