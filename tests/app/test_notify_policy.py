"""The notification decisions, driven with a fake clock (no Qt, no D-Bus)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from traystatus.app.notify_policy import (
    KEY_CONNECTION,
    KEY_FINISHED,
    Action,
    Kind,
    Notice,
    NotificationPolicy,
    NotifyOptions,
    Urgency,
    Withdraw,
    fibonacci_hit,
)
from traystatus.core.model.details import WorkSummary
from traystatus.core.model.jobs import EndedJob
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.words.wording import format_duration

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def s(sec: float) -> datetime:
    return T0 + timedelta(seconds=sec)


def st(state: State, **kw: Any) -> Status:
    return Status(state, **kw)


def run(
    start: float,
    end: float,
    imports_finished: int = 0,
    imports_failed: int = 0,
    analytics_completed: int = 0,
    jobs: tuple[EndedJob, ...] = (),
) -> WorkSummary:
    """A work summary as the monitor hands it over: the run from ``start`` to ``end`` s."""
    return WorkSummary(
        since=s(start),
        until=s(end),
        import_jobs_finished=imports_finished,
        import_jobs_failed=imports_failed,
        import_jobs_with_errors=0,
        import_jobs=jobs,
        analytics_tasks_completed=analytics_completed,
        analytics_tasks_failed=0,
        duration_seconds=end - start,
    )


def ended(
    id: int,
    slug: str,
    description: str | None,
    state: str,
    error: str | None = None,
    error_count: int = 0,
    warning_count: int = 0,
) -> EndedJob:
    """An ended import job (the core's EndedJob), with the arguments in a handy order."""
    return EndedJob(id, slug, description, state, error_count=error_count,
                    warning_count=warning_count, error=error)


def notices(ds: Sequence[object]) -> list[Notice]:
    return [d for d in ds if isinstance(d, Notice)]


def ticking(p: NotificationPolicy, start: float, end: float) -> list[object]:
    out: list[object] = []
    t = start
    while t <= end:
        out += p.tick(s(t))
        t += 1
    return out


def started(p: NotificationPolicy | None = None, at: float = -600) -> NotificationPolicy:
    """A policy whose app started long ago and that has ticked since (no start grace)."""
    p = p or NotificationPolicy(NotifyOptions(), started_at=s(at))
    p.on_status(st(State.STABLE, since=s(at)), s(at))
    ticking(p, at, -1)
    return p


def test_summary_text_reads_like_a_person_wrote_it() -> None:
    r = run(0, 252, imports_finished=2, analytics_completed=1412)
    assert r.text == "2 imports and 1,412 analytics tasks finished in 4 min 12 s"
    assert run(0, 45, imports_finished=1).text == "1 import finished in 45 s"
    r = run(0, 3900, imports_finished=1, imports_failed=1, analytics_completed=1)
    assert r.text == (
        "2 imports and 1 analytics task finished in 1 h 5 min (1 import failed)"
    )
    assert format_duration(timedelta(minutes=4).total_seconds()) == "4 min"


def test_fibonacci_rate_limit() -> None:
    assert [n for n in range(1, 30) if fibonacci_hit(n)] == [1, 2, 3, 5, 8, 13, 21]


def test_finished_after_long_processing_with_show_details() -> None:
    p = started()
    out = notices(p.on_summary(run(0, 252, imports_finished=2, analytics_completed=1412), s(252)))
    assert len(out) == 1
    n = out[0]
    assert (n.kind, n.key, n.title) == (Kind.FINISHED, KEY_FINISHED, "Processing finished")
    assert n.body == "2 imports and 1,412 analytics tasks finished in 4 min 12 s"
    assert n.actions == (Action.SHOW_DETAILS,)


def test_short_processing_is_not_news() -> None:
    p = started()
    assert p.on_summary(run(0, 29, analytics_completed=5), s(29)) == []


def test_flapping_gives_one_notice_replaced_in_place() -> None:
    p = started()
    first = notices(p.on_summary(run(0, 60, analytics_completed=100), s(60)))
    assert len(first) == 1
    # Ten quick flips within the burst window: every one updates the same key.
    keys = set()
    t = 60.0
    for _ in range(10):
        out = notices(p.on_summary(run(t + 2, t + 4, analytics_completed=10), s(t + 4)))
        keys |= {n.key for n in out}
        t += 4
    assert keys == {KEY_FINISHED}
    # The last one adds them all up.
    assert out[-1].body.startswith("200 analytics tasks finished in")
    # Later, a short flip outside the window is ignored again.
    assert p.on_summary(run(t + 500, t + 505, analytics_completed=1), s(t + 505)) == []


def test_failed_job_gets_its_own_critical_notice_once() -> None:
    p = started()
    failed = ended(7, "lu_2026", "Legal units 2026", "failed", "bad dates\nline 2", 50, 0)
    ok = ended(8, "es_2026", None, "finished")
    errs = ended(9, "es_errs", None, "finished", None, 3, 1)
    out = notices(p.on_summary(run(0, 40, imports_finished=2, imports_failed=1,
                                   jobs=(failed, ok, errs)), s(40)))
    by_key = {n.key: n for n in out}
    assert set(by_key) == {"job-7", "job-9", KEY_FINISHED}
    n = by_key["job-7"]
    assert n.title == "Import job failed: lu_2026"
    assert n.urgency is Urgency.CRITICAL and n.kind is Kind.JOB_FAILED
    assert "Legal units 2026" in n.body and "50 errors" in n.body and "bad dates" in n.body
    assert by_key["job-9"].title == "Import job finished with errors: es_errs"
    again = p.on_summary(run(100, 400, imports_failed=1, jobs=(failed,)), s(400))
    assert "job-7" not in {n.key for n in notices(again)}


def test_connection_lost_only_after_grace_then_reconnected_replaces_it() -> None:
    p = started()
    down = st(State.DISCONNECTED, problem=Problem.CONNECTION_LOST, message="Lost it.")
    assert p.on_status(down, s(0)) == []
    assert ticking(p, 1, 59) == []
    out = notices(ticking(p, 60, 61))
    assert len(out) == 1
    assert out[0].key == KEY_CONNECTION and out[0].title == "Connection to the database lost"
    assert Action.RECONNECT in out[0].actions
    assert ticking(p, 62, 300) == []  # once
    back = notices(p.on_status(st(State.STABLE), s(301)))
    assert [(n.key, n.title) for n in back] == [(KEY_CONNECTION, "Reconnected")]


def test_short_outage_says_nothing_at_all() -> None:
    p = started()
    p.on_status(st(State.DISCONNECTED), s(0))
    ticking(p, 1, 30)
    assert p.on_status(st(State.STABLE), s(31)) == []


def test_longer_grace_right_after_start_and_after_wake() -> None:
    p = NotificationPolicy(NotifyOptions(), started_at=s(0))
    p.on_status(st(State.DISCONNECTED), s(1))
    assert ticking(p, 1, 150) == []  # 60 s grace would have fired
    assert len(notices(ticking(p, 151, 200))) == 1
    # Wake: a tick gap of 10 minutes; the loss after waking gets the long grace again.
    q = started()
    q.tick(s(0))
    q.on_status(st(State.DISCONNECTED), s(600))
    assert q.tick(s(600)) == []  # the gap itself is noticed here
    assert ticking(q, 601, 700) == []
    assert len(notices(ticking(q, 701, 800))) == 1


def test_repeated_failures_are_rate_limited() -> None:
    p = started()
    announced = []
    t = 0.0
    for episode in range(1, 14):
        p.on_status(st(State.DISCONNECTED), s(t))
        out = notices(ticking(p, t + 1, t + 70))
        if any(n.title.startswith("Connection") for n in out):
            announced.append(episode)
        p.on_status(st(State.STABLE), s(t + 71))
        ticking(p, t + 71, t + 99)  # keep ticking: a gap would look like a sleep
        t += 100
    assert announced == [1, 2, 3, 5, 8, 13]


def test_error_is_announced_at_once_and_once_per_problem() -> None:
    p = started()
    err = st(State.ERROR, problem=Problem.AUTH_FAILED, message="Wrong password.")
    out = notices(p.on_status(err, s(0)))
    assert len(out) == 1 and out[0].urgency is Urgency.CRITICAL and out[0].kind is Kind.ERROR
    assert "Wrong password." in out[0].body
    assert notices(p.on_status(err, s(60))) == []
    assert notices(ticking(p, 61, 200)) == []


def test_pause_silences_everything_and_ends_by_itself() -> None:
    p = started()
    p.pause(s(3600))
    assert p.on_summary(run(0, 100, analytics_completed=5), s(100)) == []
    p.on_status(st(State.DISCONNECTED), s(200))
    assert notices(ticking(p, 201, 400)) == []
    # Back while paused: no "Reconnected" toast, but the stale "lost" notice is withdrawn.
    assert p.on_status(st(State.STABLE), s(401)) == []  # nothing was announced
    ticking(p, 402, 3601)
    assert not p.paused(s(3601))
    assert len(notices(p.on_summary(run(3700, 3800, analytics_completed=5), s(3800)))) == 1


def test_paused_reconnect_withdraws_the_obsolete_lost_notice() -> None:
    p = started()
    p.on_status(st(State.DISCONNECTED), s(0))
    assert len(notices(ticking(p, 1, 61))) == 1
    p.pause(s(3600))
    assert p.on_status(st(State.STABLE), s(70)) == [Withdraw(KEY_CONNECTION)]


def test_each_kind_can_be_switched_off() -> None:
    p = started(NotificationPolicy(NotifyOptions(finished=False, connection=False),
                                   started_at=s(-600)))
    assert p.on_summary(run(0, 100, analytics_completed=5), s(100)) == []
    p.on_status(st(State.DISCONNECTED), s(200))
    assert notices(ticking(p, 201, 400)) == []
    failed = ended(1, "x", None, "failed", "boom")
    assert len(notices(p.on_summary(run(500, 501, jobs=(failed,)), s(501)))) == 1


def test_min_processing_and_grace_come_from_settings() -> None:
    from traystatus.core.config.profiles import Settings

    assert NotifyOptions.from_settings(Settings()).grace == timedelta(seconds=60)
    opts = NotifyOptions.from_settings(Settings(notify_min_processing_s=120))
    assert opts.min_processing == timedelta(seconds=120)
    p = started(NotificationPolicy(opts, started_at=s(-600)))
    assert notices(p.on_summary(run(0, 90, analytics_completed=5), s(90))) == []
    n = notices(p.on_summary(run(1000, 1130, analytics_completed=5), s(1130)))
    assert [x.key for x in n] == [KEY_FINISHED]
    # 0 s: every finish is announced, however short.
    p0 = started(NotificationPolicy(NotifyOptions.from_settings(
        Settings(notify_min_processing_s=0)), started_at=s(-600)))
    assert [x.key for x in notices(p0.on_summary(run(0, 2), s(2)))] == [KEY_FINISHED]


# -- a review holds the import queue ---------------------------------------------------------
def test_a_review_is_announced_once_per_job_and_when_it_clears() -> None:
    from traystatus.app.notify_policy import KEY_REVIEW
    from traystatus.core.model.state import ReviewBlock

    p = NotificationPolicy(started_at=T0)
    p.on_status(st(State.STABLE), s(0))
    one = ReviewBlock(((7, "lu_2026"),), queued_behind=2)
    got = p.on_status(st(State.STABLE, review=one), s(1))
    assert len(got) == 1 and isinstance(got[0], Notice)
    assert (got[0].kind, got[0].key, got[0].icon) == (Kind.REVIEW, KEY_REVIEW, "review")
    assert got[0].title == "Waiting for review: lu_2026; 2 imports queued behind it"
    assert "holds 2 imports" in got[0].body
    # the same job again (more queued behind, a processing spell): not repeated
    assert p.on_status(st(State.STABLE, review=ReviewBlock(((7, "lu_2026"),), 3)), s(2)) == []
    assert p.on_status(st(State.PROCESSING, review=one), s(3)) == []
    # a second job starts waiting: announced
    two = ReviewBlock(((7, "lu_2026"), (9, "es_2026")), 3)
    assert [n.title for n in p.on_status(st(State.STABLE, review=two), s(4))
            if isinstance(n, Notice)] == [two.text]
    # the block clears: said once
    done = p.on_status(st(State.PROCESSING), s(5))
    assert len(done) == 1 and isinstance(done[0], Notice) and done[0].title == "Review done"
    assert p.on_status(st(State.STABLE), s(6)) == []


def test_a_rejected_job_is_reported() -> None:
    p = NotificationPolicy(started_at=T0)
    job = EndedJob(7, "lu_2026", None, "rejected", ended_at=s(1))
    summary = WorkSummary(s(0), s(40), 0, 0, 0, (job,), 0, 0, 40.0, import_jobs_rejected=1)
    titles = [n.title for n in p.on_summary(summary, s(40)) if isinstance(n, Notice)]
    assert "Import job rejected at review: lu_2026" in titles
    assert "1 import rejected at review" in summary.text


def test_an_import_an_error_stopped_is_told_with_its_cause() -> None:
    """StatBus ends a job whose prepare failed in ``finished`` with its error and 0 rows:
    the notice says it stopped, why, and that nothing was imported."""
    p = NotificationPolicy(started_at=T0)
    stopped = EndedJob(3, "lu_bad", "Legal units", "finished", imported_rows=0,
                       total_rows=500, error='{"prepare_error": "value too long"}', mine=True)
    [n] = notices(p.on_import_end(stopped, s(1)))
    assert (n.title, n.body) == ("Your import 'Legal units' stopped with an error",
                                 "value too long. Nothing was imported.")
    assert n.urgency is Urgency.CRITICAL
    partial = EndedJob(4, "lu_part", None, "finished", imported_rows=450, error_count=2,
                       error="deadlock detected", mine=True)
    [n] = notices(p.on_import_end(partial, s(2)))
    assert (n.title, n.body) == ("Your import 'lu_part' finished with errors",
                                 "450 rows imported, 2 errors: deadlock detected")
