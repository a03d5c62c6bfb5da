"""My imports: the analyst's own import jobs (user_id = the StatBus user behind the login)
get their own notification when they end, whose "Show details" opens the details window
on that job; Settings choose mine only or all; the details window marks and filters them."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS, Delivered, MemoryKeyring, add_job, run, wait_until
from traystatus.app import palette
from traystatus.app.controller import Controller
from traystatus.app.notify_policy import Kind, Notice, NotificationPolicy, NotifyOptions, Urgency
from traystatus.core.config.profiles import ProfileStore
from traystatus.core.model.jobs import EndedJob

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def ended(job_id: int, mine: bool, state: str = "finished", **kw: Any) -> EndedJob:
    base: dict[str, Any] = dict(
        id=job_id, slug=f"lu_{job_id}", description="Legal units 2026", state=state,
        total_rows=20_000, imported_rows=20_000, error_count=0, warning_count=16,
        error=None, user_id=7 if mine else 8, mine=mine)
    base.update(kw)
    return EndedJob(**base)


def test_the_words_of_my_import_notices_and_the_setting() -> None:
    policy = NotificationPolicy(NotifyOptions(), started_at=NOW)
    [n] = policy.on_import_end(ended(1, True), NOW)
    assert isinstance(n, Notice)
    assert (n.title, n.body) == ("Your import 'Legal units 2026' finished",
                                 "20,000 rows imported, 16 warnings")
    assert n.kind is Kind.IMPORT_ENDED and n.job_id == 1 and n.urgency is Urgency.NORMAL
    assert policy.on_import_end(ended(1, True), NOW) == []  # once per job
    assert policy.on_import_end(ended(2, False), NOW) == []  # not mine: "mine" by default
    [f] = policy.on_import_end(ended(3, True, "failed", error="bad date\nmore"), NOW)
    assert isinstance(f, Notice)
    assert (f.title, f.body, f.urgency) == (
        "Your import 'Legal units 2026' failed", "bad date", Urgency.CRITICAL)
    every = NotificationPolicy(replace(NotifyOptions(), imports="all"), started_at=NOW)
    [o] = every.on_import_end(ended(4, False), NOW)
    assert isinstance(o, Notice)
    assert o.title == "Import 'Legal units 2026' finished"


def test_my_import_notice_opens_the_details_window_on_that_job(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, conn: psycopg.Connection[Any],
    login_role: tuple[str, str],
) -> None:
    role, password = login_role
    me = conn.execute('INSERT INTO auth."user" (email) VALUES (%s) RETURNING id',
                      (role,)).fetchone()[0]  # type: ignore[index]
    other = conn.execute("INSERT INTO auth.\"user\" (email) VALUES ('b@example.org') "
                         "RETURNING id").fetchone()[0]  # type: ignore[index]
    mine = add_job(conn, "lu_2026", "processing_data", total_rows=20_000,
                   import_completed_pct=50, description="Legal units 2026", user_id=me)
    add_job(conn, "es_2026", "processing_data", total_rows=100, import_completed_pct=5,
            user_id=other)
    store = ProfileStore()
    ctl = Controller(store, dsn=make_conninfo(db_dsn, user=role, password=password),
                     tray_available=lambda: True, use_desktop_notifier=False)
    told = Delivered(ctl.notifier)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.me == me)
            conn.execute("UPDATE public.import_job SET state = 'finished', imported_rows = "
                         "20000, warning_count = 16, import_completed_pct = 100 WHERE id = %s",
                         (mine,))
            title = "Your import 'Legal units 2026' finished"
            await wait_until(lambda: any(n.title == title for n in told))
            notice = next(n for n in told if n.title == title)
            assert notice.body == "20,000 rows imported, 16 warnings"
            assert notice.job_id == mine
            assert not any("es_2026" in n.title for n in told)  # not mine

            ctl.notifier.jobRequested.emit(mine)  # the notice's "Show details"
            w = ctl.details_window
            assert w is not None and w.isVisible()
            await wait_until(lambda: w.details is not None and any(
                r.job_id == mine and r.isVisible() for r in w.main.rows))
            row = next(r for r in w.main.rows if r.job_id == mine)
            assert row.styleSheet() == palette.focus_css("jobRow")  # framed
            assert row.slug.text().endswith("★ yours")
            others = [r for r in w.main.rows if r.isVisible() and r.job_id != mine]
            assert others and not any("yours" in r.slug.text() for r in others)
            w.resize(640, 520)
            # Not QApplication.processEvents(): inside a coroutine on the qasync loop it
            # runs other tasks' steps re-entrantly ("Cannot enter into task"), which left
            # the monitor's task broken and Quit waiting for it (a 120 s hang, now and then).
            await asyncio.sleep(0.05)
            ARTIFACTS.mkdir(exist_ok=True)
            assert w.grab().save(str(ARTIFACTS / "details-my-import.png"))
            w.main.only_mine.setChecked(True)
            assert [r.job_id for r in w.main.rows if r.isVisible()] == [mine]
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)
