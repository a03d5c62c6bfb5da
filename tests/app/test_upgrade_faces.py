"""StatBus's software upgrade in every face: the tray's words, icon and notices, the
details window, the CLI's line, JSON and exit code. PNGs in test-artifacts/."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS, publish_doc_image
from tests.app.sample_data import NOW
from traystatus.app import texts
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache, IconKind, accessible_name, kind_for
from traystatus.app.notify_policy import KEY_UPGRADE, Kind, Notice, NotificationPolicy, Urgency
from traystatus.app.tray import TrayIcon
from traystatus.cli import watching
from traystatus.core.model.exitcodes import ExitCode
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.model.upgrade import Upgrade, UpgradePhase, clock

AT = NOW + timedelta(hours=2)
SCHEDULED = Upgrade(UpgradePhase.SCHEDULED, 7, "v2026.12.0", scheduled_at=AT)
RUNNING = replace(SCHEDULED, phase=UpgradePhase.RUNNING, started_at=NOW)
DONE = replace(RUNNING, phase=UpgradePhase.COMPLETED, ended_at=NOW + timedelta(minutes=14))
ROLLED = replace(RUNNING, phase=UpgradePhase.ROLLED_BACK, ended_at=NOW + timedelta(minutes=9),
                 error="MIGRATION_FAILED: ./sb migrate up")
FAILED = replace(RUNNING, phase=UpgradePhase.FAILED, error="Insufficient disk space")
DOWN = Status(State.UPGRADING, since=NOW, problem=Problem.CONNECTION_LOST,
              message="The connection to db:5432 was lost.", attempt=3,
              next_retry_at=NOW + timedelta(seconds=8), upgrade=RUNNING)


def test_the_tray_s_words_for_each_phase() -> None:
    hm = texts.local_hhmm
    scheduled = Status(State.STABLE, since=NOW, upgrade=SCHEDULED)
    assert texts.tooltip(scheduled, NOW).splitlines()[1:] == [
        f"Stable since {hm(NOW)}",
        f"StatBus will be upgraded at {hm(AT)}: data unavailable for a while"]
    up = Status(State.UPGRADING, since=NOW, upgrade=RUNNING)
    assert texts.headline(up, NOW) == f"StatBus is being upgraded since {hm(NOW)}"
    assert texts.detail_line(up, NOW) == texts.UPGRADE_UP
    # the database down for the backup: no "connection lost", the retry still said
    lines = texts.tooltip(DOWN, NOW).splitlines()
    assert lines[1] == f"StatBus is being upgraded since {hm(NOW)}"
    assert lines[2] == texts.UPGRADE_DOWN + " Retrying in 8 s."
    assert not any("lost" in line for line in lines) and texts.needs_ticking(DOWN)
    assert ROLLED.ended_at is not None and DONE.ended_at is not None
    assert texts.tooltip(Status(State.STABLE, upgrade=ROLLED), NOW).splitlines()[-1] == (
        f"The StatBus upgrade failed and was rolled back at {hm(ROLLED.ended_at)}: "
        "MIGRATION_FAILED: ./sb migrate up")
    assert texts.tooltip(Status(State.PROCESSING, upgrade=DONE), NOW).splitlines()[-1] == (
        f"StatBus was upgraded at {hm(DONE.ended_at)} to v2026.12.0")
    assert FAILED.text() == "The StatBus upgrade failed: Insufficient disk space"
    # another day: the day is said
    assert clock(NOW + timedelta(days=3), NOW).count(" ") == 3


def test_its_own_icon_and_words_for_a_screen_reader() -> None:
    assert kind_for(DOWN) is IconKind.UPGRADING
    assert kind_for(Status(State.UPGRADING, upgrade=RUNNING)) is IconKind.UPGRADING
    assert kind_for(Status(State.STABLE, upgrade=SCHEDULED)) is IconKind.STABLE
    assert accessible_name(DOWN) == (
        "StatBus is being upgraded, data unavailable for a while")


def _notices(decisions: Sequence[object]) -> list[Notice]:
    return [d for d in decisions if isinstance(d, Notice)]


def test_notices_ahead_while_and_after_once_each() -> None:
    p = NotificationPolicy(started_at=NOW - timedelta(hours=1))
    assert p.on_status(Status(State.STABLE), NOW) == []
    first = _notices(p.on_status(Status(State.STABLE, upgrade=SCHEDULED), NOW))
    assert [(n.kind, n.key, n.title) for n in first] == [
        (Kind.UPGRADE, KEY_UPGRADE, SCHEDULED.text(NOW))]
    assert "data unavailable for a while" in first[0].title
    assert p.on_status(Status(State.STABLE, upgrade=SCHEDULED), NOW) == []  # once
    running = _notices(p.on_status(Status(State.UPGRADING, upgrade=RUNNING), NOW))
    assert running[0].title.startswith("StatBus is being upgraded since ")
    assert running[0].icon == "upgrading"
    # the database goes down for the backup: neither "connection lost" nor anything else
    t = NOW
    assert p.on_status(DOWN, t) == []
    for _ in range(600):
        t += timedelta(seconds=1)
        assert p.tick(t) == []
    done = _notices(p.on_status(Status(State.PROCESSING, upgrade=DONE), t))
    assert [n.title for n in done] == [DONE.text(t)] and done[0].urgency is Urgency.NORMAL
    # a second one, rolled back: critical, says so and why
    p.on_status(Status(State.UPGRADING, upgrade=replace(RUNNING, id=8)), t)
    bad = _notices(p.on_status(Status(State.STABLE, upgrade=replace(ROLLED, id=8)), t))
    assert bad[0].title == "The StatBus upgrade failed and was rolled back"
    assert "MIGRATION_FAILED" in bad[0].body and bad[0].urgency is Urgency.CRITICAL
    # an ended upgrade this app never saw coming: the tooltip says it, no notice
    fresh = NotificationPolicy(started_at=NOW)
    assert _notices(fresh.on_status(Status(State.STABLE, upgrade=DONE), NOW)) == []


def test_a_schedule_told_hours_ahead_is_told_again_15_min_before() -> None:
    p = NotificationPolicy(started_at=NOW - timedelta(hours=1))
    p.on_status(Status(State.STABLE), NOW)
    assert len(_notices(p.on_status(Status(State.STABLE, upgrade=SCHEDULED), NOW))) == 1
    t, reminders = NOW, []
    while t < AT + timedelta(minutes=5):
        t += timedelta(seconds=30)
        reminders += _notices(p.tick(t))
    assert len(reminders) == 1 and reminders[0].key == KEY_UPGRADE
    assert reminders[0].body.startswith("In 15 min.")
    # one first seen 10 min before its time: its first notice is the only one
    q = NotificationPolicy(started_at=NOW - timedelta(hours=1))
    soon = replace(SCHEDULED, id=9, scheduled_at=NOW + timedelta(minutes=10))
    assert len(_notices(q.on_status(Status(State.STABLE, upgrade=soon), NOW))) == 1
    assert all(_notices(q.tick(NOW + timedelta(seconds=s))) == [] for s in range(0, 900, 30))


def test_the_cli_says_it_and_never_exits_0_while_it_runs() -> None:
    up = Status(State.UPGRADING, since=NOW, upgrade=RUNNING)
    assert watching.exit_code(up) is ExitCode.PROCESSING
    assert watching.exit_code(DOWN) is ExitCode.PROCESSING
    assert watching.status_line(up) == f"upgrading: {RUNNING.text()}"
    assert watching.status_line(Status(State.STABLE, upgrade=SCHEDULED)).startswith(
        "stable: StatBus will be upgraded at ")
    obj = json.loads(json.dumps(watching.status_object(DOWN)))
    assert obj["state"] == "upgrading" and obj["class"] == "upgrading"
    assert obj["problem"] == "connection_lost"
    assert obj["upgrade"] == {
        "phase": "running", "id": 7, "name": "v2026.12.0",
        "scheduled_at": AT.isoformat(), "started_at": NOW.isoformat(), "ended_at": None,
        "error": "", "text": RUNNING.text()}


def test_render_the_tray_and_details_while_upgrading(qapp: QApplication) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tray = TrayIcon(IconCache(), clock=lambda: NOW)
    tray.set_status(DOWN)
    assert tray.tooltip_text().splitlines()[1].startswith("StatBus is being upgraded since")
    assert tray.current_icon().pixmap(64).toImage().save(str(ARTIFACTS / "tray-upgrading.png"))
    details = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    details.set_status(DOWN)
    details.resize(560, 170)
    details.show()
    qapp.processEvents()
    assert details.main.headline.text().startswith("StatBus is being upgraded since ")
    assert details.main.subline.text() == texts.UPGRADE_DOWN + " Retrying in 8 s."
    assert details.grab().save(str(ARTIFACTS / "details-upgrading.png"))
    publish_doc_image(ARTIFACTS / "details-upgrading.png", "details-upgrading.png")
    details.set_status(Status(State.STABLE, since=NOW, upgrade=SCHEDULED))
    qapp.processEvents()
    assert details.main.subline.text().startswith("StatBus will be upgraded at ")
    assert details.grab().save(str(ARTIFACTS / "details-upgrade-scheduled.png"))
    publish_doc_image(ARTIFACTS / "details-upgrade-scheduled.png",
                      "details-upgrade-scheduled.png")
    details.close()
