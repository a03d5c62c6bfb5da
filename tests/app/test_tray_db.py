"""The tray icon and tooltip follow the real database through the real Monitor."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import psycopg
from PySide6.QtWidgets import QApplication

from tests.app.conftest import make_processing, make_stable, run, ticking, wait_until
from traystatus.app.adapter import MonitorAdapter
from traystatus.app.icons import IconCache, IconKind, render_pixmap
from traystatus.app.tray import TrayIcon
from traystatus.core.model.state import Problem, State
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions

FAST = MonitorOptions(health_interval=2, health_timeout=2, connect_timeout=3,
                      backoff_initial=0.2, backoff_cap=1, error_retry=1)


def _icon_image(tray: TrayIcon) -> Any:
    return tray.tray.icon().pixmap(32, 32).toImage()


def test_icon_and_tooltip_follow_the_database(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, db_dsn: str,
    conn: psycopg.Connection[Any],
) -> None:
    adapter = MonitorAdapter(Monitor(db_dsn, FAST))
    tray = TrayIcon(IconCache())
    adapter.statusChanged.connect(tray.set_status)
    assert "Connecting" in tray.tooltip_text()

    async def scenario() -> None:
        adapter.start()
        await wait_until(lambda: tray.status.state == State.STABLE)
        assert tray.tooltip_text().splitlines()[1].startswith("Stable since ")
        assert _icon_image(tray) == render_pixmap(IconKind.STABLE, 32).toImage()
        assert not ticking(tray)  # a stable icon costs no timer

        make_processing(conn, 3)
        await wait_until(lambda: tray.status.state == State.PROCESSING)
        assert tray.tooltip_text().splitlines()[1].startswith("Processing for ")
        assert _icon_image(tray) == render_pixmap(IconKind.PROCESSING, 32).toImage()
        assert ticking(tray)

        make_stable(conn)
        await wait_until(lambda: tray.status.state == State.STABLE)
        assert _icon_image(tray) == render_pixmap(IconKind.STABLE, 32).toImage()
        await adapter.stop()

    run(qloop, scenario())


def test_missing_sql_shows_error_with_the_fix(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, bare_db_dsn: str
) -> None:
    # Installed mode: in auto mode (the default) such a database is watched directly.
    adapter = MonitorAdapter(Monitor(bare_db_dsn, replace(FAST, reader="installed")))
    tray = TrayIcon(IconCache())
    adapter.statusChanged.connect(tray.set_status)

    async def scenario() -> None:
        adapter.start()
        await wait_until(lambda: tray.status.state == State.ERROR)
        assert tray.status.problem == Problem.SQL_MISSING
        lines = tray.tooltip_text().splitlines()
        assert lines[1] == "Cannot watch the database"
        assert "install-sql" in lines[2]
        assert _icon_image(tray) == render_pixmap(IconKind.ERROR, 32).toImage()
        await adapter.stop()

    run(qloop, scenario())


def test_disconnected_tooltip_counts_down_to_the_retry(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, tmp_path: Any
) -> None:
    from traystatus.demo.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    try:
        opts = MonitorOptions(health_interval=1, health_timeout=1, connect_timeout=2,
                              backoff_initial=5, backoff_cap=5, error_retry=5)
        # The stand-in is not installed here: connect to a server that then goes away.
        adapter = MonitorAdapter(Monitor(server.dsn(), opts))
        tray = TrayIcon(IconCache())
        adapter.statusChanged.connect(tray.set_status)

        async def scenario() -> None:
            adapter.start()
            await wait_until(lambda: tray.status.state != State.CONNECTING)
            server.stop("immediate")
            await wait_until(lambda: tray.status.state == State.DISCONNECTED, within=60)
            await wait_until(lambda: "Retrying in" in tray.tooltip_text(), within=30)
            assert ticking(tray)
            assert _icon_image(tray) == render_pixmap(IconKind.DISCONNECTED, 32).toImage()
            await adapter.stop()

        run(qloop, scenario(), timeout=120)
    finally:
        server.destroy()
