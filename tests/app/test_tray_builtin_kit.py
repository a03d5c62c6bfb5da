"""The tray follows a real import on the real StatBus with traystatus's SQL NOT installed:
icon, details (from plain reads) and the "processing finished" summary, through the real
Monitor in built-in mode, as the kit's analyst; StatBus's own worker does the work."""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtWidgets import QApplication

from tests.app.conftest import run, wait_until
from tests.builtin.conftest import kit, kit_db  # noqa: F401  (the real StatBus fixtures)
from tests.builtin.kit import KitDb, Worker
from traystatus.app.adapter import MonitorAdapter
from traystatus.app.icons import IconCache, IconKind, render_pixmap
from traystatus.app.tray import TrayIcon
from traystatus.core.model.details import Details, WorkSummary
from traystatus.core.model.state import State
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions

FAST = MonitorOptions(health_interval=5, health_timeout=5, connect_timeout=5,
                      backoff_initial=0.2, backoff_cap=1, error_retry=1, details_interval=0.5)


def test_tray_details_and_summary_follow_a_real_import(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, kit_db: KitDb  # noqa: F811
) -> None:
    kit_db.setup_demo()
    monitor = Monitor(kit_db.analyst_dsn, FAST)  # auto: nothing installed -> built-in
    adapter = MonitorAdapter(monitor)
    tray = TrayIcon(IconCache())
    adapter.statusChanged.connect(tray.set_status)
    states: list[State] = []
    statuses: list[Any] = []

    def record(s: Any) -> None:
        states.append(s.state)
        statuses.append(s)

    adapter.statusChanged.connect(record)
    details: list[Details] = []
    adapter.detailsChanged.connect(details.append)
    summaries: list[WorkSummary] = []
    adapter.workFinished.connect(summaries.append)

    async def scenario() -> None:
        adapter.start()
        await wait_until(lambda: tray.status.state == State.STABLE)
        assert tray.status.source == "builtin"
        adapter.want_details(True)
        await wait_until(lambda: bool(details))
        await asyncio.to_thread(kit_db.start_import)
        await wait_until(lambda: tray.status.state == State.PROCESSING)
        icon = tray.tray.icon().pixmap(32, 32).toImage()
        assert icon == render_pixmap(IconKind.PROCESSING, 32).toImage()
        with kit_db.connect() as c, Worker(kit_db.dsn, step_pause=0.05) as w:
            await asyncio.to_thread(w.wait_idle, c, 300)
        await wait_until(lambda: tray.status.state == State.STABLE)
        await wait_until(lambda: bool(summaries), within=15)
        adapter.want_details(False)
        await adapter.stop()

    run(qloop, scenario(), timeout=240)
    known = [s for s in states if s in (State.STABLE, State.PROCESSING)]
    changes = [s for i, s in enumerate(known) if i == 0 or s != known[i - 1]]
    assert changes == [State.STABLE, State.PROCESSING, State.STABLE], statuses
    busy: Any = [d for d in details if d.active_jobs or d.analytics.active_total]
    assert busy, "no details snapshot showed the import or the derive"
    assert any(j.slug.startswith("import_") for d in busy for j in d.import_jobs)
    summary = summaries[-1]
    assert summary.import_jobs_finished == 1, summary
    assert summary.analytics_tasks_completed > 10, summary
    assert "1 import" in summary.text and "analytics tasks" in summary.text
