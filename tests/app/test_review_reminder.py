"""A review that waits (issue 21 part 3): the reminder's timing and words, with a fake clock
(pure: no Qt, no database). Every interval at most one reminder, only to a login that may
approve (or cannot tell: through a relay), one after a sleep that skipped several."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from traystatus.app.notify_policy import KEY_REVIEW, Kind, Notice, NotificationPolicy, NotifyOptions
from traystatus.app.texts import tooltip
from traystatus.core.config.profiles import Settings
from traystatus.core.model.review import ReviewReminder, enrich
from traystatus.core.model.state import ReviewBlock, State, Status

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
H = 3600.0


def at(sec: float) -> datetime:
    return T0 + timedelta(seconds=sec)


def block(may: bool | None = True, since: datetime | None = T0) -> ReviewBlock:
    return ReviewBlock(((7, "lu_2026"),), 3, since=since, may_approve=may)


def reminders(p: NotificationPolicy, start: float, end: float, step: float = 60.0
              ) -> list[tuple[float, Notice]]:
    """Tick the policy from ``start`` to ``end`` seconds; the review notices it gave."""
    out = []
    t = start
    while t <= end:
        for d in p.tick(at(t)):
            if isinstance(d, Notice) and d.kind is Kind.REVIEW:
                out.append((t, d))
        t += step
    return out


def test_reminded_once_per_interval_with_the_waiting_time() -> None:
    p = NotificationPolicy(NotifyOptions(review_remind=timedelta(hours=2)), started_at=T0)
    first = p.on_status(Status(State.STABLE, review=block()), at(60))
    assert [n.title for n in first if isinstance(n, Notice)] == [
        "Waiting for review for 1 min: lu_2026; 3 imports queued behind it"]
    got = reminders(p, 120, 5 * H)
    # told at 60 s; reminded each 2 h after that word, never twice in an interval
    assert [t for t, _ in got] == [60 + 2 * H, 60 + 4 * H]
    _, n = got[0]
    assert n.key == KEY_REVIEW
    assert n.title == "Waiting for review for 2 h 1 min: lu_2026; 3 imports queued behind it"
    assert "You can approve or reject it" in n.body


def test_a_login_that_may_not_approve_gets_no_reminder_but_is_told_who_can() -> None:
    p = NotificationPolicy(NotifyOptions(review_remind=timedelta(hours=2)), started_at=T0)
    first = p.on_status(Status(State.STABLE, review=block(may=False)), at(0))
    assert isinstance(first[0], Notice)
    assert "An administrator or the user who uploaded it can approve" in first[0].body
    assert reminders(p, 60, 10 * H) == []


def test_a_sleep_that_skipped_several_intervals_gives_one_reminder() -> None:
    p = NotificationPolicy(NotifyOptions(review_remind=timedelta(hours=1)), started_at=T0)
    p.on_status(Status(State.STABLE, review=block()), at(0))
    assert [t for t, _ in reminders(p, 10 * H, 10 * H + 50 * 60)] == [10 * H]


def test_through_a_relay_the_reminder_says_who_can_and_since_is_the_apps_own() -> None:
    p = NotificationPolicy(NotifyOptions(review_remind=timedelta(minutes=30)), started_at=T0)
    p.on_status(Status(State.STABLE, review=block(may=None, since=None)), at(0))
    (t, n), = reminders(p, 60, 45 * 60)
    assert t == 30 * 60
    assert n.title.startswith("Waiting for review for at least 30 min: lu_2026")
    assert "an administrator or the user who uploaded it" in n.body


def test_never_when_switched_off_and_starting_over_for_another_job() -> None:
    off = NotificationPolicy(NotifyOptions(review_remind=timedelta(0)), started_at=T0)
    off.on_status(Status(State.STABLE, review=block()), at(0))
    assert reminders(off, 60, 10 * H, 600) == []
    r = ReviewReminder(timedelta(hours=1))
    r.observe(block(), at(0))
    assert r.due(block(), at(H))
    r.told(at(H))
    assert not r.due(block(), at(H + 59 * 60))
    other = ReviewBlock(((8, "lu_2027"),), 0, since=at(H + 10), may_approve=True)
    r.observe(other, at(H + 20))  # another job: its own interval from its own start
    assert not r.due(other, at(2 * H))
    assert r.due(other, at(2 * H + 10))


def test_settings_give_the_interval() -> None:
    assert NotifyOptions.from_settings(Settings()).review_remind == timedelta(hours=2)
    s = Settings.from_table({"review_remind_s": -5})
    assert s.review_remind_s == 0.0  # below the minimum: the minimum (never)
    assert NotifyOptions.from_settings(Settings(review_remind_s=600)).review_remind == (
        timedelta(minutes=10))


def test_tooltip_says_how_long_and_who_can() -> None:
    text = tooltip(Status(State.STABLE, review=block(may=False)), at(2 * H + 5 * 60))
    assert "Waiting for review for 2 h 5 min: lu_2026; 3 imports queued behind it" in text
    assert "An administrator or the user who uploaded it can approve or reject it." in text


def test_enrich_takes_the_earliest_stamp_and_all_jobs_rights() -> None:
    two = ReviewBlock(((7, "a"), (9, "b")), 0)
    rows = [(7, at(100), True), (9, at(50), False), (11, at(0), True)]
    got = enrich(two, rows)
    assert (got.since, got.may_approve) == (at(50), False)
    assert enrich(two, [(7, None, True), (9, at(5), True)]).since is None  # one unknown
    assert enrich(two, []) == two


def test_since_crosses_a_relay_and_the_servers_may_approve_does_not() -> None:
    from traystatus.core.relay._messages import parse_status

    sent = {**Status(State.STABLE, since=T0, review=block(may=True, since=at(-H))).to_json(),
            "stable": True}
    got = parse_status(sent, where="wss://x", now=at(0))
    assert got.review is not None
    assert (got.review.since, got.review.may_approve) == (at(-H), None)
    future = {**Status(State.STABLE, since=T0, review=block(since=at(H))).to_json(),
              "stable": True}
    got = parse_status(future, where="wss://x", now=at(0))
    assert got.review is not None and got.review.since is None


def test_details_window_shows_the_waiting_time_and_who_can(qapp: object) -> None:
    """Rendered to test-artifacts/details-review-wait.png (looked at)."""
    from PySide6.QtWidgets import QApplication

    from tests.app.conftest import ARTIFACTS
    from tests.app.sample_data import NOW, _iso, job
    from traystatus.app.details import DetailsWindow
    from traystatus.app.icons import IconCache
    from traystatus.core.model.details import Details

    jobs = [
        job(3, "lu_2026", "waiting_for_review", "review", 100.0, None, 812, active=False,
            needs_person=True),
        {**job(4, "lu_redo", "upload_completed", "queued"), "held_by_review": True},
    ]
    d = Details.from_json({
        "system_stable": True, "generated_at": _iso(NOW), "sql_version": 2,
        "import_jobs": jobs, "import_jobs_total": 2,
        "analytics": {"active_total": 0, "by_command": [], "tasks": [], "tasks_shown": 0}})
    w = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    review = ReviewBlock(((3, "lu_2026"),), 1, since=NOW - timedelta(hours=2, minutes=5),
                         may_approve=False)
    w.set_status(Status(State.STABLE, since=NOW, review=review))
    w.set_details(d)
    assert w.main.subline.text() == (
        "Waiting for review for 2 h 5 min: lu_2026; 1 import queued behind it.\n"
        "An administrator or the user who uploaded it can approve or reject it.")
    w.resize(620, 330)
    w.show()
    assert isinstance(qapp, QApplication)
    qapp.processEvents()
    ARTIFACTS.mkdir(exist_ok=True)
    assert w.grab().save(str(ARTIFACTS / "details-review-wait.png"))
    w.close()
