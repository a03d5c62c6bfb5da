"""A review that waits, on a real StatBus (issue 21 part 3): its "since" is StatBus's own
stamp (``analysis_stop_at``, set by StatBus's trigger as the job entered
waiting_for_review), and "may this login approve" is StatBus's own rule - checked here
against the real thing: the login's own UPDATE of the job (rolled back) succeeds exactly
when the monitor says it may approve. The uploader may; an administrator may; another
regular user may not. With our SQL installed and without (the built-in reader)."""

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
from tests.statbus_real.conftest import Kit
from tests.statbus_real.test_scenarios_real import demo_csv, install
from traystatus.core.model.state import ReviewBlock
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import ReaderMode

ANALYST = "analyst@statbus-real.test"  # a regular_user in the kit


def _login(dsn: str, env: str) -> str:
    """The kit's login from ``env``, on this test's copy of StatBus."""
    params = conninfo_to_dict(os.environ[env])
    params["dbname"] = conninfo_to_dict(dsn)["dbname"]
    return make_conninfo("", **params)


def _may_update(login: str, job: int) -> bool:
    """StatBus's answer itself: does this login's approving UPDATE touch the row?"""
    with psycopg.connect(login) as c:  # a transaction, rolled back on leaving
        cur = c.execute("UPDATE public.import_job SET state = 'approved' WHERE id = %s",
                        (job,))
        ok = cur.rowcount == 1
        c.rollback()
    return ok


async def _block(login: str, reader: ReaderMode) -> ReviewBlock:
    m = Monitor(login, replace(FAST, reader=reader))
    async with running(m) as rec:
        await rec.until(lambda: m.status.review is not None, what="the review block")
    assert m.status.review is not None
    return m.status.review


@pytest.mark.parametrize("reader", ["installed", "builtin"])
@pytest.mark.asyncio
async def test_real_review_since_and_who_may_approve(
    kit: Kit, demo_template: str, new_db: Callable[..., str], reader: ReaderMode,
) -> None:
    if "STATBUS_REAL_ANALYST_DSN" not in os.environ:
        pytest.skip("the kit's analyst and admin logins are not in the environment")
    dsn = new_db(demo_template)
    if reader == "installed":
        install(kit, dsn)
    analyst = _login(dsn, "STATBUS_REAL_ANALYST_DSN")
    admin = _login(dsn, "STATBUS_REAL_ADMIN_DSN")
    conn = psycopg.connect(dsn, autocommit=True)
    try:
        # The analyst's own job stops for review: the uploader may approve it.
        own = statbus.create_job(conn, "lu_own", review=True, email=ANALYST)
        statbus.upload(conn, "lu_own", demo_csv(kit))
        await asyncio.to_thread(statbus.run_worker, dsn)
        assert statbus.job_state(conn, own) == "waiting_for_review"
        row = conn.execute("SELECT analysis_stop_at FROM public.import_job WHERE id = %s",
                           (own,)).fetchone()
        assert row is not None and row[0] is not None
        block = await _block(analyst, reader)
        assert block.job_ids == [own]
        assert block.since == row[0]  # StatBus's stamp, not the time the app saw it
        assert block.may_approve is True
        assert _may_update(analyst, own) is True
        statbus.set_state(conn, own, "rejected")

        # Someone else's job (the test administrator's): this regular user may not; an
        # administrator may.
        other = statbus.create_job(conn, "lu_other", review=True)
        statbus.upload(conn, "lu_other", demo_csv(kit))
        await asyncio.to_thread(statbus.run_worker, dsn)
        assert statbus.job_state(conn, other) == "waiting_for_review"
        block = await _block(analyst, reader)
        assert block.job_ids == [other]
        assert block.may_approve is False
        assert _may_update(analyst, other) is False
        assert "administrator or the user who uploaded it" in block_text(block)
        assert (await _block(admin, reader)).may_approve is True
        assert _may_update(admin, other) is True
    finally:
        conn.close()


def block_text(block: ReviewBlock) -> str:
    from traystatus.core.model.review import who_approves
    return who_approves(block).lower()
