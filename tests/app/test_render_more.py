"""Renders what a person sees in the other states: the menu, the no-tray window, the
details window while disconnected. PNGs in test-artifacts/ (the menu also in docs/images/)."""

from __future__ import annotations

from datetime import timedelta

from PySide6.QtWidgets import QApplication, QLabel, QWidget

from tests.app.conftest import ARTIFACTS, publish_doc_image
from tests.app.sample_data import NOW
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache
from traystatus.app.statuswindow import StatusWindow
from traystatus.app.tray import TrayIcon
from traystatus.core.model.state import Problem, State, Status

DOWN = Status(
    State.DISCONNECTED,
    since=NOW - timedelta(minutes=2),
    problem=Problem.CONNECTION_LOST,
    message="The connection to statbus.example.org:3015 was lost. Reconnecting on its own; "
    "if it keeps failing, check the network and that the server runs.",
    attempt=4,
    next_retry_at=NOW + timedelta(seconds=8),
)


def test_render_menu_window_and_disconnected_details(qapp: QApplication) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tray = TrayIcon(IconCache(), clock=lambda: NOW)
    tray.set_profiles(["production", "test"], "production")
    menu = tray.tray.contextMenu()
    menu.adjustSize()
    assert menu.grab().save(str(ARTIFACTS / "tray-menu.png"))
    publish_doc_image(ARTIFACTS / "tray-menu.png", "tray-menu.png")

    window = StatusWindow(clock=lambda: NOW)
    window.set_status(DOWN)
    window.show()
    qapp.processEvents()
    assert "Retrying in 8 s." in window.text.text()
    assert window.grab().save(str(ARTIFACTS / "no-tray-window.png"))
    window.hide()

    details = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    details.set_status(DOWN)
    details.resize(560, 170)
    details.show()
    qapp.processEvents()
    assert details.main.reconnect.isVisible()
    assert details.main.headline.text().startswith("Disconnected since ")
    assert details.main.subline.text().endswith("Retrying in 8 s.")
    listing = details.main.findChild(QWidget, "listing")
    assert listing is not None and not listing.isVisible()  # nothing under the headline
    assert details.grab().save(str(ARTIFACTS / "details-disconnected.png"))
    details.close()


def test_details_window_says_who_the_queue_waits_for(qapp: QApplication) -> None:
    from tests.app.sample_data import _iso, job
    from traystatus.core.model.details import Details
    from traystatus.core.model.state import ReviewBlock

    jobs = [
        job(3, "lu_nov", "waiting_for_review", "review", 100.0, None, 812, active=False,
            needs_person=True),
        {**job(4, "lu_redo", "upload_completed", "queued"), "held_by_review": True},
        # Mid-import when the review began: its last speed is known, but it does not move.
        {**job(5, "lu_half", "processing_data", "processing", 40.0, 120.0, 1000, 400),
         "held_by_review": True},
    ]
    d = Details.from_json({
        "system_stable": True, "generated_at": _iso(NOW), "sql_version": 2,
        "import_jobs": jobs, "import_jobs_total": 3,
        "analytics": {"active_total": 0, "by_command": [], "tasks": [], "tasks_shown": 0}})
    assert d.active_jobs == ()  # held, not running
    w = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    w.set_status(Status(State.STABLE, since=NOW, review=ReviewBlock(((3, "lu_nov"),), 1)))
    w.set_details(d)
    assert w.main.subline.text() == "Waiting for review: lu_nov; 1 import queued behind it."
    labels = [lbl.text() for lbl in w.findChildren(QLabel)]
    assert "Held: waiting for the review of lu_nov" in labels
    # A held job has no ETA and no speed: it waits for a person, not for its rows (its
    # last speed is not now's); its rows stay.
    half = next(r for r in w.main.rows if r.job_id == 5)
    assert half.rows.text() == "400 of 1,000 rows imported", half.rows.text()
    # The review resolved: the same job moves again, and has an ETA (600 rows at 120/s).
    moving = Details.from_json({**d.to_json(), "import_jobs": [
        {**jobs[2], "held_by_review": False}]})
    w.set_status(Status(State.PROCESSING, since=NOW))
    w.set_details(moving)
    half = next(r for r in w.main.rows if r.job_id == 5)
    text = half.rows.text()
    assert text.startswith("400 of 1,000 rows imported · 120 rows/s · ETA ") and text.endswith(
        "(5 s)"), text
    w.close()
