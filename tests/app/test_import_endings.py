"""Issue 18 item 3, through the real Controller on a real server: an import that stops for
review is not announced as finished ("0 rows imported, 24 warnings" was); its real end is,
with its rows; an import that ends while the app is not running is announced at the next
start, once; nothing that ended before the app first saw the database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from PySide6.QtWidgets import QApplication

from tests.app.conftest import Delivered, MemoryKeyring, add_job, run, wait_until
from traystatus.app.controller import Controller
from traystatus.app.notify_policy import Kind, Notice
from traystatus.core.config.profiles import ProfileStore
from traystatus.core.model.state import State


def _endings(told: Delivered) -> list[tuple[str, str]]:
    return [(n.title, n.body) for n in told if n.kind is Kind.IMPORT_ENDED]


def test_review_is_not_an_ending_and_endings_survive_a_restart(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, conn: psycopg.Connection[Any],
    login_role: tuple[str, str],
) -> None:
    role, password = login_role
    me = conn.execute('INSERT INTO auth."user" (email) VALUES (%s) RETURNING id',
                      (role,)).fetchone()[0]  # type: ignore[index]
    add_job(conn, "old_2025", "finished", imported_rows=10, user_id=me,
            description="Ancient history")
    review = add_job(conn, "es_2026", "analysing_data", total_rows=8000,
                     analysis_completed_pct=60, review=True, user_id=me,
                     description="Establishments 2026 (review)")
    later = add_job(conn, "lu_2026", "upload_completed", total_rows=50, user_id=me,
                    description="Legal units 2026")
    dsn = make_conninfo(db_dsn, user=role, password=password)

    def controller() -> Controller:
        return Controller(ProfileStore(), dsn=dsn, tray_available=lambda: True,
                          use_desktop_notifier=False)

    first = controller()
    first_told = Delivered(first.notifier)

    async def before_restart() -> None:
        first.start()
        try:
            await wait_until(lambda: first.me == me)
            assert first.adapter is not None
            monitor = first.adapter.monitor
            reads = monitor.counters.endings_reads
            conn.execute("UPDATE public.import_job SET state = 'waiting_for_review', "
                         "analysis_completed_pct = 100, warning_count = 24 WHERE id = %s",
                         (review,))
            await wait_until(lambda: first.tray.status.review is not None)
            await wait_until(lambda: monitor.counters.endings_reads > reads)
            await asyncio.sleep(0.3)
            assert _endings(first_told) == []  # waiting for review: not "finished"
            conn.execute("UPDATE public.import_job SET state = 'approved' WHERE id = %s",
                         (review,))
            conn.execute("UPDATE public.import_job SET state = 'processing_data', "
                         "import_completed_pct = 40 WHERE id = %s", (review,))
            await wait_until(lambda: first.tray.status.state == State.PROCESSING)
            conn.execute("UPDATE public.import_job SET state = 'finished', imported_rows = "
                         "8000, import_completed_pct = 100 WHERE id = %s", (review,))
            await wait_until(lambda: len(_endings(first_told)) == 1)
            assert _endings(first_told) == [("Your import 'Establishments 2026 (review)' finished",
                                        "8,000 rows imported, 24 warnings")]
        finally:
            await first.shutdown()

    run(qloop, before_restart(), timeout=120)

    # The app is not running: the queued import runs and ends.
    conn.execute("UPDATE public.import_job SET state = 'finished', imported_rows = 50 "
                 "WHERE id = %s", (later,))
    second = controller()
    second_told = Delivered(second.notifier)

    async def after_restart() -> None:
        second.start()
        try:
            await wait_until(lambda: len(_endings(second_told)) >= 1)
            await asyncio.sleep(0.5)  # the start's one read tells all that ended meanwhile
        finally:
            await second.shutdown()

    run(qloop, after_restart(), timeout=120)
    # Told once: the review job's end is not told again, nor the ancient one.
    assert _endings(second_told) == [("Your import 'Legal units 2026' finished",
                                 "50 rows imported")]


def test_only_the_shown_profile_keeps_a_ledger_of_endings(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
) -> None:
    """A watched deployment's endings get no notice of their own: its watcher keeps no
    ledger file (the file of a database is the shown profile's to own)."""
    from psycopg.conninfo import conninfo_to_dict

    from tests.app.test_deployments import two_deployments

    ctl = Controller(two_deployments(db_dsn, bare_db_dsn), tray_available=lambda: True,
                     use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.status.state is State.STABLE and [
                st.state for _, st in ctl.deployments.rows()] == [State.STABLE])
            assert ctl.adapter is not None
            await wait_until(lambda: ctl.adapter is not None
                             and ctl.adapter.monitor.counters.endings_reads >= 1)
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)
    files = sorted(p.name for p in (config_dir / "import-endings").glob("*.json"))
    prod = str(conninfo_to_dict(db_dsn)["dbname"])
    assert len(files) == 1 and files[0].startswith(prod), files


def test_the_policy_announces_only_final_states() -> None:
    """Defence in depth: whatever a source hands over, a job that is not final (a relay's
    message, a reader's bug) gets no "finished" notice."""
    from datetime import UTC, datetime

    from traystatus.app.notify_policy import NotificationPolicy, NotifyOptions
    from traystatus.core.model.jobs import EndedJob

    now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    policy = NotificationPolicy(NotifyOptions(), started_at=now)

    def end(job_id: int, state: str) -> EndedJob:
        return EndedJob(job_id, "es_2026", "Establishments 2026 (review)", state,
                        total_rows=8000, imported_rows=0, error_count=0, warning_count=24,
                        error=None, user_id=7, mine=True)

    for i, state in enumerate(("waiting_for_review", "approved", "processing_data", "")):
        assert policy.on_import_end(end(i, state), now) == []
    [notice] = policy.on_import_end(end(0, "finished"), now)  # its real end, later
    assert isinstance(notice, Notice)
    assert notice.title == "Your import 'Establishments 2026 (review)' finished"
