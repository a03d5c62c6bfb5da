"""The tray's menu and tooltip as a person meets them (offscreen, no database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from PySide6.QtWidgets import QApplication, QMenu

from tests.app.conftest import menu_texts
from traystatus.app.icons import IconCache
from traystatus.app.texts import tooltip
from traystatus.app.tray import TrayIcon
from traystatus.core.model.progress import Progress
from traystatus.core.model.state import Problem, State, Status

NOW = datetime(2026, 11, 28, 14, 5, 30, tzinfo=UTC)


def test_menu_starts_with_show_details_and_offers_profiles(qapp: QApplication) -> None:
    tray = TrayIcon(IconCache())
    texts = menu_texts(tray)
    assert texts[0] == "Show details"
    assert texts[1:3] == ["Reconnect now", "Pause notifications for 1 hour"]
    assert "Settings…" in texts and texts[-1] == "Quit"
    assert "Profile" not in texts  # only one (or no) profile
    old = tray.tray.contextMenu()
    tray.set_profiles(["production", "test"], "test")
    assert tray.tray.contextMenu() is not old  # rebuilt
    profile = next(a for a in tray.tray.contextMenu().actions() if a.text() == "Profile").menu()
    assert isinstance(profile, QMenu)
    assert [(a.text(), a.isChecked()) for a in profile.actions()] == [
        ("production", False), ("test", True)]
    picked: list[str] = []
    tray.profileSelected.connect(picked.append)
    profile.actions()[0].trigger()
    assert picked == ["production"]


def test_clicks_and_menu_items_become_signals(qapp: QApplication) -> None:
    tray = TrayIcon(IconCache())
    seen: list[str] = []
    tray.showDetailsRequested.connect(lambda: seen.append("details"))
    tray.pauseRequested.connect(lambda on: seen.append(f"pause {on}"))
    tray.quitRequested.connect(lambda: seen.append("quit"))
    from PySide6.QtWidgets import QSystemTrayIcon

    tray.tray.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    tray.tray.activated.emit(QSystemTrayIcon.ActivationReason.DoubleClick)
    tray.tray.activated.emit(QSystemTrayIcon.ActivationReason.Context)  # the menu, not details
    by_text = {a.text(): a for a in tray.tray.contextMenu().actions()}
    by_text["Pause notifications for 1 hour"].trigger()
    tray.set_paused(NOW + timedelta(hours=1))
    resume = [a for a in tray.tray.contextMenu().actions()
              if a.text().startswith("Resume notifications")]
    assert len(resume) == 1
    resume[0].trigger()
    by_text = {a.text(): a for a in tray.tray.contextMenu().actions()}
    by_text["Quit"].trigger()
    assert seen == ["details", "details", "pause True", "pause False", "quit"]


def test_tooltips_for_each_state() -> None:
    since = datetime(2026, 11, 28, 14, 2, tzinfo=UTC)
    hhmm = since.astimezone().strftime("%H:%M")
    assert tooltip(Status(State.STABLE, since=since), NOW).splitlines()[1] == (
        f"Stable since {hhmm}")
    proc = Status(State.PROCESSING, since=NOW - timedelta(minutes=3, seconds=20))
    assert tooltip(proc, NOW).splitlines()[1] == "Processing for 3 min"
    busy = Progress.from_json({
        "jobs": [{"id": 1, "state": "processing_data", "total_rows": 10, "import_pct": 42.9},
                 {"id": 2, "state": "analysing_data", "total_rows": 10, "analysis_pct": 42.0}],
        "phases": [{"phase": "derive_units_phase", "state": "waiting",
                    "step": "derive_statistical_unit", "total": 412, "completed": 120}]})
    assert tooltip(replace(proc, progress=busy), NOW).splitlines()[1] == (
        "Processing for 3 min: 2 imports (42 % overall), derive 120 of 412 tasks")
    down = Status(State.DISCONNECTED, since=since, problem=Problem.CONNECTION_LOST,
                  message="The connection to db:5432 was lost.",
                  next_retry_at=NOW + timedelta(seconds=7.2))
    assert tooltip(down, NOW).splitlines()[1:] == [
        f"Disconnected since {hhmm}", "The connection to db:5432 was lost. Retrying in 8 s."]
    stale = Status(State.DISCONNECTED, since=since, problem=Problem.STALE)
    assert tooltip(stale, NOW).splitlines()[1] == f"Connection stale since {hhmm}"
    assert tooltip(Status(State.CONNECTING), NOW, profile="prod").splitlines() == [
        "StatBus status (prod)", "Connecting to the database…"]
