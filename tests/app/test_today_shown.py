"""The details window's "Today" section (issue 21 part 4): rendered to
test-artifacts/details-today.png (looked at); shown only while the window reads."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS
from tests.app.sample_data import NOW
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.model.today import Day, SeenLog, day_start, day_view
from traystatus.core.model.upgrade import Upgrade, UpgradePhase


def _day() -> tuple[Day, SeenLog]:
    since = day_start(NOW)

    def t(minutes_ago: float) -> str:
        return (NOW - timedelta(minutes=minutes_ago)).isoformat()

    jobs = [
        {"id": 11, "slug": "lu_2026", "description": "Legal units 2026", "state": "finished",
         "rows": 24_812, "errors": 0, "mine": True, "review": True, "review_at": t(200),
         "approved_at": t(160), "ended": t(150)},
        {"id": 12, "slug": "es_2026", "state": "finished", "rows": 3_020, "errors": 4,
         "mine": False, "ended": t(95)},
        {"id": 13, "slug": "lu_fix", "state": "failed", "mine": False, "ended": t(40)},
    ]
    runs = [{"id": 900, "state": "completed", "start": t(148), "end": t(120)},
            {"id": 950, "state": "completed", "start": t(93), "end": t(80)}]
    log = SeenLog()
    log.observe(Status(State.DISCONNECTED, problem=Problem.UNREACHABLE),
                NOW - timedelta(minutes=70))
    log.observe(Status(State.STABLE), NOW - timedelta(minutes=58))
    up = Upgrade(UpgradePhase.COMPLETED, 3, "v2026.12.0", started_at=NOW - timedelta(
        minutes=30), ended_at=NOW - timedelta(minutes=22))
    log.observe(Status(State.STABLE, upgrade=up), NOW - timedelta(minutes=20))
    return Day(NOW, since, (jobs, runs)), log


def test_details_window_shows_the_day(qapp: QApplication) -> None:
    day, log = _day()
    view = day_view(day, log, NOW)
    w = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    w.set_status(Status(State.STABLE, since=NOW - timedelta(minutes=20)))
    wanted: list[bool] = []
    w.main.set_want(wanted.append, False)  # a source to read from, as the controller gives
    w.resize(620, 380)
    w.show()  # open: reading
    w.set_day(view)  # as it arrives: after the window opened
    lines = w.main.today_lines
    for _ in range(50):  # until the layout has given the lines their height (a few rounds)
        qapp.processEvents()
        if lines.height() >= lines.heightForWidth(lines.width()):
            break
    assert lines.height() >= lines.heightForWidth(lines.width())  # the picture is whole
    assert wanted == [True]
    assert w.main.today_box.isVisible()
    text = w.main.today_lines.text()
    assert "Your import Legal units 2026 finished: 24,812 rows" in text
    assert "Review of Legal units 2026: held the imports 40 min (approved)" in text
    assert "No connection" in text and "(12 min lost)" in text
    assert "StatBus upgraded" in text and "Import lu_fix failed" in text
    # newest first
    assert text.index("Import lu_fix failed") < text.index("Your import Legal units")
    ARTIFACTS.mkdir(exist_ok=True)
    assert w.grab().save(str(ARTIFACTS / "details-today.png"))
    w.hide()
    assert wanted == [True, False]
    assert not w.main.today_box.isVisible()  # not read while closed: not shown
    w.show()
    assert not w.main.today_box.isVisible()  # shown again: not until read again
    w.close()


def test_through_a_relay_it_says_so(qapp: QApplication) -> None:
    w = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    w.main.set_want(lambda on: None, False)
    w.show()
    w.set_day(day_view(None, SeenLog(), NOW, relay=True))
    qapp.processEvents()
    assert "not available through a relay" in w.main.today_note.text()
    assert w.main.today_lines.text() == "Nothing yet today."
    w.close()


def test_the_day_is_read_only_while_the_window_is_open(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, db_dsn: str, conn: object,
) -> None:
    """On the stand-in StatBus: an ended import today reaches the window's Today section
    through the adapter; closed, no more day reads."""
    from typing import Any

    from tests.app.conftest import add_job, run, wait_until
    from traystatus.app.adapter import MonitorAdapter
    from traystatus.core.watch.monitor import Monitor
    from traystatus.core.watch.options import MonitorOptions

    c: Any = conn
    add_job(c, "lu_done", "finished", total_rows=120, imported_rows=120)
    c.execute("UPDATE public.import_job SET processing_stop_at = now(), "
              "processing_start_at = now() - interval '2 min' WHERE slug = 'lu_done'")
    adapter = MonitorAdapter(Monitor(db_dsn, MonitorOptions(
        health_interval=1, health_timeout=2, details_interval=0.5)))
    window = DetailsWindow(adapter, IconCache())
    adapter.statusChanged.connect(window.set_status)
    adapter.detailsChanged.connect(window.set_details)
    adapter.dayChanged.connect(window.set_day)

    async def scenario() -> None:
        adapter.start()
        monitor: Any = adapter.monitor
        await wait_until(lambda: monitor.counters.stability_reads >= 2)
        assert monitor.counters.day_reads == 0  # closed: never read
        window.show()
        await wait_until(lambda: window.main.today_box.isVisible(), within=30)
        assert "Import lu_done finished: 120 rows" in window.main.today_lines.text()
        assert monitor.counters.day_reads == 1
        window.close()
        assert not window.main.today_box.isVisible()
        reads = monitor.counters.day_reads
        await asyncio.sleep(2)
        assert monitor.counters.day_reads == reads
        await adapter.stop()

    run(qloop, scenario(), timeout=120)


def test_each_deployment_has_its_own_day(qapp: QApplication) -> None:
    wanted: list[bool] = []
    w = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    w.set_deployments("production", [("test", wanted.append, Status(State.STABLE))])
    w.show()
    qapp.processEvents()
    assert wanted == [True]  # the window reads the other deployment's details (and day)
    day, log = _day()
    w.set_deployment_day("test", day_view(day, log, NOW))
    test = w.section("test")
    assert test.today_box.isVisible() and "Legal units 2026" in test.today_lines.text()
    assert not w.main.today_box.isVisible()  # production's day has not been read
    w.close()
    assert wanted == [True, False] and not test.today_box.isVisible()
