"""The details window: subscribed only while visible (counted in the database), the content
and progress values of real jobs, and a rendering with realistic data."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import psycopg
from PySide6.QtWidgets import QApplication

from tests.app.conftest import (
    ARTIFACTS,
    add_job,
    make_processing,
    publish_doc_image,
    run,
    wait_until,
)
from tests.app.sample_data import NOW, realistic, realistic_progress
from tests.fix_db import count_details_calls, details_call_count
from traystatus.app import texts
from traystatus.app.adapter import MonitorAdapter
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache
from traystatus.core.model.state import State, Status
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions

FAST = MonitorOptions(health_interval=1, health_timeout=2, details_interval=0.5)
# Health checks every 0.25 s, details every 0.1 s while the window is open: ``n`` health
# checks span at least ``n - 1`` quarter seconds, more than ``2 * (n - 1)`` details intervals.
QUICK = MonitorOptions(health_interval=0.25, health_timeout=2, details_interval=0.1)


def details_calls(conn: psycopg.Connection[Any]) -> int:
    return details_call_count(conn)


async def health_checks_pass(monitor: Any, n: int) -> None:
    """Wait until the monitor has made ``n`` more health checks (``health_interval``):
    it is running and reading, on its one connection, so a read sent before has ended."""
    target = monitor.counters.health_checks + n
    await wait_until(lambda: monitor.counters.health_checks >= target, within=30)


def test_details_read_only_while_the_window_is_visible(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, db_dsn: str,
    conn: psycopg.Connection[Any],
) -> None:
    adapter = MonitorAdapter(Monitor(db_dsn, QUICK))
    window = DetailsWindow(adapter, IconCache())
    # What the controller does (the window connects nothing itself).
    adapter.statusChanged.connect(window.set_status)
    adapter.detailsChanged.connect(window.set_details)
    count_details_calls(conn)
    add_job(conn, "lu_2026_q3", "processing_data", description="Legal units 2026 Q3",
            total_rows=10_000, imported_rows=4_250, import_completed_pct=42.5,
            import_rows_per_sec=812.3, warning_count=3)
    add_job(conn, "lu_review", "waiting_for_review", analysis_completed_pct=100,
            total_rows=812)

    async def scenario() -> None:
        # Analytics work makes the system busy (an import behind a job waiting for review
        # does not: StatBus holds the queue, docs/sql.md).
        make_processing(conn, 5)
        adapter.start()
        await wait_until(lambda: adapter.status.state == State.PROCESSING)
        monitor: Any = adapter.monitor
        await health_checks_pass(monitor, 3)  # health checks and NOTIFYs pass; window closed
        assert details_calls(conn) == 0
        assert monitor.details_subscribers == 0
        assert monitor.counters.details_reads == 0

        window.show()
        assert monitor.details_subscribers == 1  # open: the source reads details
        await wait_until(
            lambda: window.details is not None and len(window.details.import_jobs) == 2
        )
        await wait_until(lambda: details_calls(conn) >= 1, within=30, step=0.05)
        row = window.main.rows[0]
        assert row.title.text() == "Legal units 2026 Q3"
        assert row.bar.value() == 425 and row.bar.maximum() == 1000
        # one rounding: down, as the tooltip; held: it stands still, greyed, where it stopped
        assert row.bar.format() == "Held · Importing 42 %" and not row.bar.isEnabled()
        # Held behind lu_review (StatBus holds its queue): no speed, no ETA, it waits for a
        # person.
        assert row.state.text() == "Held: waiting for the review of lu_review"
        assert row.rows.text() == "4,250 of 10,000 rows imported"
        assert row.problems.text() == "3 warnings"
        review = window.main.rows[1]
        assert "Needs a person" in review.state.text()
        assert window.main.review_note.isVisible()
        # Status.progress, as the tray, with the hold: not an import in progress
        headline = window.main.headline.text()
        assert "1 import held by a review" in headline and "%" not in headline, headline
        # The tray's tooltip and ring, without the details: the Status's own review block
        # (read from the database) tells the hold.
        status = adapter.status
        assert status.review is not None and status.review.queued_behind == 1
        tooltip = texts.headline(status, status.since)
        assert "1 import held by a review" in tooltip and "%" not in tooltip, tooltip
        assert texts.progress_pct(status) is None
        assert window.main.analytics_line.text().startswith("5 tasks to go")

        window.close()
        assert monitor.details_subscribers == 0  # closed: it stops
        await health_checks_pass(monitor, 1)  # a read in flight has ended
        before = details_calls(conn)
        reads = monitor.counters.details_reads
        assert before >= 1 and before == reads  # the database counts what the monitor does
        conn.execute("UPDATE public.import_job SET imported_rows = 5000, "
                     "import_completed_pct = 50 WHERE slug = 'lu_2026_q3'")
        make_processing(conn, 2)
        # changes and NOTIFYs over more than seven details intervals (0.1 s): a subscribed
        # monitor reads
        await health_checks_pass(monitor, 4)
        assert details_calls(conn) == before
        assert monitor.counters.details_reads == reads
        await adapter.stop()

    run(qloop, scenario(), timeout=180)


def test_adapter_throttles_detail_repaints(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, db_dsn: str
) -> None:
    adapter = MonitorAdapter(Monitor(db_dsn), details_interval_ms=300)
    got: list[object] = []
    adapter.detailsChanged.connect(got.append)
    adapter.want_details(True)

    async def scenario() -> None:
        for i in range(200):  # a burst of snapshots from the core
            adapter._on_details(i)
        await asyncio.sleep(0.8)
        assert got[0] == 0 and got[-1] == 199  # the first at once, the latest at the end
        assert len(got) <= 3
        adapter.want_details(False)
        adapter._on_details("late")  # after the window closed: dropped
        await asyncio.sleep(0.5)
        assert "late" not in got

    run(qloop, scenario())
    adapter.monitor.unsubscribe_details()  # no-op guard: refcount already 0


def test_render_details_window(qapp: QApplication) -> None:
    window = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    window.set_status(Status(State.PROCESSING, since=NOW - timedelta(minutes=3),
                             progress=realistic_progress()))
    window.set_details(realistic())
    window.main.toggle_tasks.setChecked(True)
    window.resize(680, 1180)
    window.show()
    qapp.processEvents()
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "details-processing.png"
    assert window.grab().save(str(out))
    # The headline and the rows say what the data says.
    # Status.progress: the tray's tooltip says the same, with the same rounding.
    assert window.main.headline.text() == (
        "Processing for 3 min: 2 imports (16 % overall), 1 import queued, derive 120 of 412 tasks")
    label, bar = window.main.phase_rows[0]
    assert window.main.pipeline_box.isVisible()
    assert label.text() == "Statistical units · step: derive statistical unit"
    assert bar.format() == "120 of 412 tasks (29 %)"
    assert window.main.phase_rows[1][0].text() == "Reports: queued"
    assert [r.title.text() for r in window.main.rows if r.isVisible()][:2] == [
        "Legal units, 2026 Q3 (Statistics Norway upload)",
        "Establishments for legal units, 2026 Q3",
    ]
    assert window.main.tasks.rowCount() == 50
    assert window.main.tasks_note.text() == "Showing 50 of 412 tasks (running ones first)."

    stable = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    stable.set_status(Status(State.STABLE, since=NOW - timedelta(minutes=10)))
    stable.resize(520, 160)
    stable.show()
    qapp.processEvents()
    assert stable.main.headline.text().startswith("All data processing complete, stable since ")
    assert stable.grab().save(str(ARTIFACTS / "details-stable.png"))
    publish_doc_image(out, "details.png")
    window.close()
    stable.close()


def test_two_hundred_jobs_reuse_rows(qapp: QApplication) -> None:
    from tests.app.sample_data import job, realistic_json
    from traystatus.core.model.details import Details

    window = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    window.set_status(Status(State.PROCESSING, since=NOW))
    data = realistic_json()
    data["import_jobs"] = [job(i, f"job_{i}", "processing_data", "processing", i % 100, 500.0)
                           for i in range(1, 201)]
    data["import_jobs_total"] = 200
    window.set_details(Details.from_json(data))
    rows = list(window.main.rows)
    assert len(rows) == 200
    data["import_jobs"] = data["import_jobs"][:20]
    window.set_details(Details.from_json(data))
    assert window.main.rows == rows  # the same widgets, reused
    assert sum(1 for r in rows if not r.isHidden()) == 20
    window.close()


def test_ended_jobs_show_the_rows_imported_not_the_total(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, db_dsn: str,
    conn: psycopg.Connection[Any],
) -> None:
    """A job that finished with errors imported fewer rows than it had: the window says
    "9,983 of 10,000 rows imported", never "10,000 rows" (read as: all went in)."""
    adapter = MonitorAdapter(Monitor(db_dsn, FAST))
    window = DetailsWindow(adapter, IconCache())
    # What the controller does (the window connects nothing itself).
    adapter.statusChanged.connect(window.set_status)
    adapter.detailsChanged.connect(window.set_details)
    add_job(conn, "with_errors", "finished", description="With errors",
            total_rows=10_000, imported_rows=9_983, error_count=17)
    add_job(conn, "all_in", "finished", description="All in",
            total_rows=500, imported_rows=500)
    add_job(conn, "broke", "failed", description="Broke", total_rows=2_000,
            imported_rows=0, error="worker crashed")

    async def scenario() -> None:
        adapter.start()
        window.show()
        try:
            await wait_until(
                lambda: window.details is not None and len(window.details.import_jobs) == 3
            )
            by_title = {r.title.text(): r for r in window.main.rows if r.isVisible()}
            assert by_title["With errors"].rows.text() == "9,983 of 10,000 rows imported"
            assert by_title["With errors"].problems.text() == "17 errors"
            assert by_title["All in"].rows.text() == "500 rows imported"
            assert by_title["Broke"].rows.text() == "0 of 2,000 rows imported"
        finally:
            window.close()
            await adapter.stop()

    run(qloop, scenario(), timeout=120)
