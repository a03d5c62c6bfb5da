"""No tray and no notification server: a notice is not lost, the status window (the stand-in
for the tray) lists it, with its time and its buttons, and asks for attention. Before, the
fallback (the tray's balloon) returned at once without a tray: "Import job failed" was
dropped and nobody was told."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from tests.app.conftest import (
    ARTIFACTS,
    Delivered,
    MemoryKeyring,
    add_job,
    publish_doc_image,
    run,
    wait_until,
)
from traystatus.app.controller import Controller
from traystatus.app.notify_policy import (
    KEY_FINISHED,
    Action,
    Kind,
    Notice,
    Urgency,
)
from traystatus.app.statuswindow import NOTICES_KEPT, StatusWindow
from traystatus.core.config.profiles import ProfileStore
from traystatus.core.model.state import State

FIXED = datetime(2026, 3, 28, 9, 41, tzinfo=UTC)


def test_a_failed_import_without_tray_or_server_shows_in_the_window(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, qtbot: QtBot, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, conn: psycopg.Connection[Any],
    login_role: tuple[str, str],
) -> None:
    role, password = login_role
    me = conn.execute('INSERT INTO auth."user" (email) VALUES (%s) RETURNING id',
                      (role,)).fetchone()[0]  # type: ignore[index]
    job = add_job(conn, "lu_2026", "processing_data", total_rows=50, user_id=me,
                  description="Legal units 2026")
    # No tray (offscreen has none, and the check says so) and no server (no desktop-notifier).
    ctl = Controller(ProfileStore(), dsn=make_conninfo(db_dsn, user=role, password=password),
                     tray_available=lambda: False, use_desktop_notifier=False)
    told = Delivered(ctl.notifier)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.me == me and ctl.window.isVisible())
            await wait_until(lambda: ctl.window.status.state == State.PROCESSING)
            conn.execute("UPDATE public.import_job SET state = 'failed', error = "
                         "'bad dates in row 7' WHERE id = %s", (job,))
            await wait_until(lambda: any(n.key == f"job-{job}" for n in told))
            await ctl.notifier.drain()
            failed = next(n for n in told if n.key == f"job-{job}")
            assert failed.title == "Your import 'Legal units 2026' failed"
            assert told.routes[told.index(failed)] == "window"
            assert set(told.routes) == {"window"}  # none went nowhere
            # The window says it, in words a person reads, with its button.
            texts = ctl.window.notice_texts()
            first = next(t for t in texts if t.startswith(failed.title))
            assert "bad dates in row 7" in first
            buttons = ctl.window.notice_buttons()[texts.index(first)]
            assert [b.text() for b in buttons] == ["Show details"]
            # The button does what the bubble's does: the details window, on that job.
            qtbot.mouseClick(buttons[0], Qt.MouseButton.LeftButton)
            await wait_until(lambda: ctl.details_window is not None
                             and ctl.details_window.isVisible())
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def _notice(key: str, title: str, body: str, urgency: Urgency = Urgency.NORMAL,
            actions: tuple[Action, ...] = (Action.SHOW_DETAILS,)) -> Notice:
    return Notice(Kind.FINISHED, key, title, body, urgency, actions)


def test_the_list_keeps_the_latest_replaces_by_key_and_drops_withdrawn(
    qtbot: QtBot,
) -> None:
    w = StatusWindow(lambda: FIXED)
    qtbot.addWidget(w)
    assert w.notice_texts() == [] and w.notices_box.isHidden()
    w.add_notice(_notice(KEY_FINISHED, "Processing finished", "1 import finished in 45 s"))
    w.add_notice(_notice("review", "Waiting for review", "es_2026"))
    w.add_notice(_notice(KEY_FINISHED, "Processing finished", "2 imports finished in 1 min"))
    texts = w.notice_texts()
    # Newest first; the newer "finished" replaced the older (one per kind, as bubbles).
    assert [t.split("\n")[:2] for t in texts] == [
        ["Processing finished", w.notices[0].at.astimezone().strftime("%H:%M")],
        ["Waiting for review", w.notices[1].at.astimezone().strftime("%H:%M")],
    ]
    assert "2 imports finished in 1 min" in texts[0] and "45 s" not in "".join(texts)
    w.withdraw_notice("review")
    assert len(w.notice_texts()) == 1
    for i in range(NOTICES_KEPT + 3):
        w.add_notice(_notice(f"job-{i}", f"Import job failed: j{i}", "bad", Urgency.CRITICAL))
    titles = [t.split("\n")[0] for t in w.notice_texts()]
    assert titles == [f"Import job failed: j{i}" for i in
                      range(NOTICES_KEPT + 2, 2, -1)]
    got: list[tuple[Notice, Action]] = []
    w.noticeActionRequested.connect(lambda n, a: got.append((n, a)))
    qtbot.mouseClick(w.notice_buttons()[1][0], Qt.MouseButton.LeftButton)
    assert got == [(w.notices[1].notice, Action.SHOW_DETAILS)]


def test_render_the_window_with_two_notices(qtbot: QtBot) -> None:
    w = StatusWindow(lambda: FIXED)
    qtbot.addWidget(w)
    from traystatus.core.model.state import Status

    w.set_status(Status(State.STABLE, since=FIXED))
    w.add_notice(_notice(KEY_FINISHED, "Processing finished",
                         "3 imports finished in 4 min 12 s"))
    w.add_notice(_notice("job-7", "Import job failed: lu_2026",
                         "Legal units 2026\n3 errors\nbad dates in row 7", Urgency.CRITICAL))
    w.show()
    qtbot.waitExposed(w)
    # Laid out: every wrapped line of the notices has its height (not clipped).
    labels = w.notices_box.findChildren(QLabel)
    qtbot.waitUntil(lambda: all(
        lb.height() >= (lb.heightForWidth(lb.width()) if lb.wordWrap() else 1)
        for lb in labels))
    png = ARTIFACTS / "status-window-notices.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    assert w.grab().save(str(png))
    publish_doc_image(png, "status-window-notices.png")
    assert len(w.notice_texts()) == 2
