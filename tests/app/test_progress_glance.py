"""Progress at a glance: with the details window closed, the tray's ring and tooltip show
how far along the work is, from Status.progress (read while processing only); the
details window, opened later, says the same numbers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS, MemoryKeyring, add_job, make_stable, run, wait_until
from traystatus.app.controller import Controller
from traystatus.app.icons import IconKind, render_pixmap
from traystatus.core.config.profiles import ProfileStore
from traystatus.core.model.state import State

PIPELINE = """
WITH r AS (INSERT INTO worker.tasks (command, state, child_mode)
           VALUES ('collect_changes', 'waiting', 'serial') RETURNING id),
ph AS (INSERT INTO worker.tasks (command, state, parent_id, depth, child_mode)
       SELECT 'derive_units_phase', 'waiting', id, 1, 'serial' FROM r RETURNING id),
cp AS (INSERT INTO worker.tasks (command, state, parent_id, depth, child_mode)
       SELECT 'derive_statistical_unit', 'waiting', id, 2, 'concurrent' FROM ph RETURNING id)
INSERT INTO worker.tasks (command, state, parent_id, depth)
SELECT 'statistical_unit_refresh_batch',
       (CASE WHEN g <= 120 THEN 'completed' ELSE 'pending' END)::worker.task_state, cp.id, 3
  FROM cp, generate_series(1, 412) AS g
"""


def test_ring_and_tooltip_show_progress_with_the_details_window_closed(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, conn: psycopg.Connection[Any],
) -> None:
    ctl = Controller(ProfileStore(), dsn=db_dsn, tray_available=lambda: True,
                     use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.tray.status.state == State.STABLE)
            job = add_job(conn, "lu_2026", "processing_data", total_rows=20_000,
                          import_completed_pct=42.7, description="Legal units 2026")
            add_job(conn, "es_2026", "analysing_data", total_rows=20_000,
                    analysis_completed_pct=41.9)
            conn.execute(PIPELINE)
            want = "2 imports (42 % overall), derive 120 of 412 tasks"
            await wait_until(lambda: want in ctl.tray.tooltip_text())
            assert ctl.details_window is None  # never opened: no details read at all
            assert ctl.adapter is not None
            assert ctl.adapter.monitor.counters.details_reads == 0
            line = ctl.tray.tooltip_text().splitlines()[1]
            assert line.startswith("Processing for ") and line.endswith(want)
            assert ctl.tray.progress == 42
            icon = ctl.tray.tray.icon().pixmap(64, 64).toImage()
            assert icon == render_pixmap(IconKind.PROCESSING, 64, progress=42).toImage()
            assert icon != render_pixmap(IconKind.PROCESSING, 64).toImage()  # a ring
            ARTIFACTS.mkdir(exist_ok=True)
            assert icon.save(str(ARTIFACTS / "tray-progress-42.png"))

            # StatBus moves the import on: the ring follows within a second or so.
            conn.execute("UPDATE public.import_job SET import_completed_pct = 90 "
                         "WHERE id = %s", (job,))
            conn.execute("SELECT pg_notify('import_job_progress', '{}')")
            await wait_until(lambda: ctl.tray.progress == 65)  # (90 + 41.9) / 2, down
            # The details window, opened now, says the same numbers as the tooltip.
            ctl.show_details()
            w = ctl.details_window
            assert w is not None
            await wait_until(lambda: w.details is not None)
            assert "2 imports (65 % overall), derive 120 of 412 tasks" in w.main.headline.text()
            assert w.main.phase_rows[0][1].format() == "120 of 412 tasks (29 %)"
            w.hide()

            conn.execute("UPDATE public.import_job SET state = 'finished'")
            make_stable(conn)
            await wait_until(lambda: ctl.tray.status.state == State.STABLE)
            assert ctl.tray.progress is None and "%" not in ctl.tray.tooltip_text()
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)
