"""The notification server goes away while the app runs (dunst killed, the session's
notification daemon restarted): the next notice must not vanish with it. desktop-notifier's
send raises then; the notice goes to the fallback (here the real status window, as in the
app without a tray) and is recorded as delivered by that route."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from scripts.virtual_desktop import wait_for
from tests.app.conftest import Delivered, run
from tests.fix_desktop import Session, session  # noqa: F401 (the fixture)
from traystatus.app.notifications import NotificationSender
from traystatus.app.notify_policy import KEY_FINISHED, Action, Kind, Notice, Urgency
from traystatus.app.statuswindow import StatusWindow

pytestmark = pytest.mark.e2e


def _dunst(s: Session) -> subprocess.Popen[bytes]:
    """The dunst this test started (the session's own process)."""
    return next(p for p in s.procs if isinstance(p.args, list) and p.args[0] == "dunst")


def test_a_notice_after_the_server_went_away_shows_in_the_window(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, qtbot: QtBot,
    session: Session, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    session.start_bus()
    session.start_xvfb()
    session.start_dunst()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.env["DBUS_SESSION_BUS_ADDRESS"])
    window = StatusWindow()
    qtbot.addWidget(window)

    def to_window(notice: Notice) -> str:
        window.add_notice(notice)
        return "window"

    sender = NotificationSender(fallback=to_window, withdraw_fallback=window.withdraw_notice)
    told = Delivered(sender)
    finished = Notice(Kind.FINISHED, KEY_FINISHED, "Processing finished",
                      "1 import finished in 45 s", Urgency.NORMAL, (Action.SHOW_DETAILS,))
    failed = Notice(Kind.IMPORT_ENDED, "job-7", "Your import 'Legal units 2026' failed",
                    "bad dates in row 7", Urgency.CRITICAL, (Action.SHOW_DETAILS,), "error",
                    job_id=7)

    async def scenario() -> None:
        try:
            sender.handle([finished])
            await sender.drain()
            assert told.routes == ["server"]  # dunst took the first
            dunst = _dunst(session)
            dunst.terminate()
            dunst.wait(10)
            wait_for(lambda: not session._has_name("org.freedesktop.Notifications"),
                     "dunst to leave the bus")
            sender.handle([failed])
            await sender.drain()
        finally:
            await sender.close()

    run(qloop, scenario(), timeout=60)
    assert list(told) == [finished, failed]
    assert told.routes == ["server", "window"]
    assert window.notice_texts()[0].startswith(failed.title + "\n")
    assert "bad dates in row 7" in window.notice_texts()[0]


def test_a_notice_to_a_hung_server_shows_in_the_window_in_time(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, qtbot: QtBot,
    session: Session, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    """dunst stops answering (stopped, swapping, stuck): the send waits for a reply that
    does not come. After ``send_timeout`` the notice goes to the window instead of waiting
    for the bus's own reply timeout (25 s) or forever."""
    session.start_bus()
    session.start_xvfb()
    session.start_dunst()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.env["DBUS_SESSION_BUS_ADDRESS"])
    window = StatusWindow()
    qtbot.addWidget(window)

    def to_window(notice: Notice) -> str:
        window.add_notice(notice)
        return "window"

    sender = NotificationSender(fallback=to_window)
    sender.send_timeout = 1.0
    told = Delivered(sender)
    first = Notice(Kind.REVIEW, "review", "Waiting for review", "es_2026", Urgency.LOW)
    failed = Notice(Kind.IMPORT_ENDED, "job-8", "Your import 'Enterprises' failed",
                    "no such region: 99", Urgency.CRITICAL, (Action.SHOW_DETAILS,))
    dunst = _dunst(session)

    async def scenario() -> None:
        try:
            sender.handle([first])
            await sender.drain()
            dunst.send_signal(signal.SIGSTOP)
            sender.handle([failed])
            await asyncio.wait_for(sender.drain(), 8)  # well before the bus's 25 s
        finally:
            dunst.send_signal(signal.SIGCONT)
            await sender.close()

    run(qloop, scenario(), timeout=60)
    assert told.routes == ["server", "window"]
    assert window.notice_texts()[0].startswith(failed.title + "\n")
