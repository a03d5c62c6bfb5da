"""Qt objects end their life in the GUI thread, never in whatever thread the cyclic GC
happens to run in. A qasync loop closed with call_later timers still registered (every
finished ``wait_for`` leaves one), freed later by the GC in a worker thread, made Qt print
"QObject::~QObject: Timers cannot be stopped from another thread" into an unrelated test
(seen failing tests/packaging/test_tls.py, whose TLS proxy runs Python threads)."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any

import qasync
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from tests.app.conftest import MemoryKeyring, free_qt_garbage, wait_until
from traystatus.app.controller import Controller
from traystatus.app.main import close_loop
from traystatus.core.config.profiles import ProfileStore
from traystatus.core.model.state import State

WARNING = "Timers cannot be stopped from another thread"


def collect_in_another_thread() -> None:
    """What a later test's worker thread does when an allocation triggers the GC."""
    gc.disable()  # so the main thread does not collect first
    try:
        t = threading.Thread(target=gc.collect, name="some-worker")
        t.start()
        t.join(60)
    finally:
        gc.enable()


def qt_messages(qtlog: Any) -> list[str]:  # pytest-qt's capture: its class is private
    return [r.message for r in qtlog.records]


def test_a_closed_app_loop_leaves_no_timer_for_another_thread(
    qapp: QApplication, qtlog: QtBot
) -> None:
    gc.collect()
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        # A finished wait_for: its cancelled timeout is still a live Qt timer.
        loop.run_until_complete(asyncio.wait_for(asyncio.sleep(0.01), 60))
    finally:
        close_loop(loop)
        asyncio.set_event_loop(None)
    del loop
    collect_in_another_thread()
    assert not [m for m in qt_messages(qtlog) if WARNING in m]


def test_the_controller_and_its_loop_leave_nothing_for_another_thread(
    qapp: QApplication, qtlog: QtBot,
    memory_keyring: MemoryKeyring, config_dir: Path, db_dsn: str,
) -> None:
    """The app's own objects (monitor adapter, timers, settings dialog with its test
    connection) through a whole start - stable - shutdown, then the loop closed as run_app
    closes it: a GC in another thread afterwards finds no Qt object with a timer."""
    qapp.setQuitOnLastWindowClosed(False)
    gc.collect()
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)

    async def scenario() -> None:
        ctl = Controller(ProfileStore(), dsn=db_dsn, tray_available=lambda: False,
                         use_desktop_notifier=False)
        ctl.start()
        try:
            await wait_until(lambda: ctl.window.status.state == State.STABLE)
            ctl.show_settings()
            assert ctl.settings_dialog is not None
            await asyncio.wait_for(ctl.settings_dialog.run_check(), 60)
            ctl.show_details()
            await asyncio.sleep(0.5)
        finally:
            await ctl.shutdown()

    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 120))
    finally:
        close_loop(loop)
        asyncio.set_event_loop(None)
    del loop
    free_qt_garbage()
    collect_in_another_thread()
    assert not [m for m in qt_messages(qtlog) if WARNING in m]
