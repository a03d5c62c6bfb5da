"""The sender really talks to a notification server: a private session bus with dunst (on
a private Xvfb, through scripts/virtual_desktop.py). Replace-in-place leaves one bubble
per key; with no server at all the notices fall back (and the log says so once)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from scripts.virtual_desktop import Desktop
from tests.app.conftest import ARTIFACTS, Delivered, run, wait_until
from traystatus.app.notifications import NotificationSender
from traystatus.app.notify_policy import (
    KEY_FINISHED,
    Action,
    Kind,
    Notice,
    Urgency,
    Withdraw,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dunst_desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    d = Desktop(tmp_path_factory.mktemp("tray-desktop"), ARTIFACTS / "app-notify")
    try:
        d.start()
        yield d
    finally:
        d.close()


def _displayed(d: Desktop) -> int:
    return int(d.run("dunstctl", "count", "displayed").strip())


def test_notices_reach_dunst_and_replace_in_place(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, dunst_desktop: Desktop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d = dunst_desktop
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", d.env["DBUS_SESSION_BUS_ADDRESS"])
    d.dunst_close_all()
    fell_back: list[Notice] = []
    sender = NotificationSender(fallback=fell_back.append)
    told = Delivered(sender)
    first = Notice(Kind.FINISHED, KEY_FINISHED, "Processing finished",
                   "1 import finished in 45 s", Urgency.NORMAL, (Action.SHOW_DETAILS,))
    second = Notice(Kind.FINISHED, KEY_FINISHED, "Processing finished",
                    "2 imports finished in 1 min 3 s", Urgency.NORMAL, (Action.SHOW_DETAILS,))
    failed = Notice(Kind.JOB_FAILED, "job-7", "Import job failed: lu_2026", "bad dates",
                    Urgency.CRITICAL, (Action.SHOW_DETAILS,), "error")

    async def scenario() -> None:
        sender.handle([first])
        await sender.drain()
        await wait_until(lambda: _displayed(d) == 1, within=30, step=0.2)  # by the server
        sender.handle([second, failed])
        await sender.drain()
        await wait_until(
            lambda: sum(n.summary == "Processing finished" for n in d.notifications()) == 2,
            within=30, step=0.2,
        )
        # The first bubble was closed and replaced; the failure is its own bubble.
        await wait_until(lambda: _displayed(d) == 2, within=30, step=0.2)
        history = d.dunst_history()
        assert any(h.get("body") == "1 import finished in 45 s" for h in history)
        calls = d.notifications()
        assert [c.summary for c in calls][-2:] == ["Processing finished",
                                                    "Import job failed: lu_2026"]
        assert "Show details" in calls[-1].actions
        d.screenshot("notifications")
        sender.handle([Withdraw("job-7")])
        await sender.drain()
        await wait_until(lambda: _displayed(d) == 1, within=30, step=0.2)
        await sender.close()

    run(qloop, scenario(), timeout=120)
    assert fell_back == []
    assert [n.title for n in told] == ["Processing finished"] * 2 + [failed.title]
    assert told.routes == ["server"] * 3  # the server took them all


def test_no_server_falls_back_and_logs_once(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    fell_back: list[Notice] = []
    sender = NotificationSender(fallback=fell_back.append)
    told = Delivered(sender)
    notices = [Notice(Kind.FINISHED, f"k{i}", f"title {i}", "body") for i in range(3)]

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="traystatus.app.notifications"):
            for n in notices:
                sender.handle([n])
                await sender.drain()
        await sender.close()

    run(qloop, scenario())
    assert fell_back == notices == told  # every notice went to the tray's balloon
    assert told.routes == ["fallback"] * 3
    warnings = [r for r in caplog.records if r.name == "traystatus.app.notifications"]
    assert len(warnings) == 1 and "tray balloons" in warnings[0].getMessage()


class ExpiringDesktop(Desktop):
    """The same private desktop, with a dunst that expires every notice after 1 s (as
    a user's dunst with a short timeout does)."""

    def _start_dunst(self) -> None:
        from scripts import virtual_desktop as vd

        conf = self.root / "dunstrc"
        conf.write_text(
            vd.DUNSTRC.format(offset=vd.TRAY_HEIGHT + 10).replace("timeout = 0", "timeout = 1")
        )
        self.spawn(["dunst", "-config", str(conf)])
        vd.wait_for(lambda: self.has_bus_name("org.freedesktop.Notifications"), "dunst")


@pytest.fixture(scope="module")
def expiring_desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    d = ExpiringDesktop(tmp_path_factory.mktemp("tray-expiring"), ARTIFACTS / "app-expire")
    try:
        d.start()
        yield d
    finally:
        d.close()


def test_a_notice_replacing_an_expired_one_is_still_shown(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, expiring_desktop: Desktop,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 18 item 4: dunst expired the first notice; replacing it (desktop-notifier's
    clear() of a notice the server closed raises KeyError) must not drop the second."""
    d = expiring_desktop
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", d.env["DBUS_SESSION_BUS_ADDRESS"])
    fell_back: list[Notice] = []
    sender = NotificationSender(fallback=fell_back.append)
    told = Delivered(sender)
    first = Notice(Kind.FINISHED, KEY_FINISHED, "Processing finished",
                   "1 import finished in 45 s", Urgency.NORMAL, (Action.SHOW_DETAILS,))
    second = Notice(Kind.FINISHED, KEY_FINISHED, "Processing finished",
                    "2 imports finished in 1 min 3 s", Urgency.NORMAL, (Action.SHOW_DETAILS,))
    review = Notice(Kind.REVIEW, "review", "Review done", "the import queue runs again",
                    Urgency.LOW)

    def in_history(body: str) -> bool:
        return any(h.get("body") == body for h in d.dunst_history())

    async def scenario() -> None:
        with caplog.at_level(logging.DEBUG, logger="traystatus.app.notifications"):
            sender.handle([first, review])
            await sender.drain()
            # Both expired on the server (dunst moved them to its history).
            await wait_until(lambda: in_history(first.body) and in_history(review.body),
                             within=30, step=0.2)
            sender.handle([second, Withdraw("review")])
            await sender.drain()
            await wait_until(lambda: in_history(second.body), within=30, step=0.2)
            await sender.close()

    run(qloop, scenario(), timeout=120)
    assert fell_back == []
    assert [n.body for n in told] == [first.body, review.body, second.body]
    bodies = [c.body for c in d.notifications()]
    assert bodies.count(second.body) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
        r.getMessage() for r in caplog.records
    ]
