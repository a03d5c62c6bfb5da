"""The monitor's decisions without a database: a fake clock drives ReadSchedule and
StabilityTracker, the way the monitor's loop does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from traystatus.core.model.state import Problem, State, Status, carry_since
from traystatus.core.watch._schedule import Channel, ReadSchedule
from traystatus.core.watch._stability import StabilityTracker

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def schedule() -> ReadSchedule:
    s = ReadSchedule(health_interval=15.0, details_interval=3.0, window=0.2)
    s.start(now=100.0)
    return s


def read_stable(s: ReadSchedule, now: float, changed: bool = False) -> None:
    s.stable_reading(now)
    s.stable_read(now, changed)


def test_health_read_is_due_only_after_the_interval() -> None:
    s = schedule()
    assert not s.stable_due(114.9)
    assert s.deadline(processing=False) == 115.0
    assert s.stable_due(115.0) and s.is_health_check(115.0)
    read_stable(s, 115.0)
    assert not s.stable_due(116.0) and s.deadline(processing=False) == 130.0


def test_a_lone_notification_is_read_at_once_and_is_not_a_health_check() -> None:
    s = schedule()
    s.notified(Channel.STABILITY, 110.0)
    assert s.stable_due(110.0) and not s.is_health_check(110.0)
    read_stable(s, 110.0)
    assert not s.stable_due(110.0)
    # The read resets the health clock.
    assert s.deadline(processing=False) == 125.0


def test_a_burst_costs_one_read_at_the_end_of_the_window_after_the_last_note() -> None:
    s = schedule()
    s.notified(Channel.STABILITY, 110.0)
    read_stable(s, 110.0, changed=False)
    reads = 0
    for i in range(1, 100):  # 99 notifications inside 0.099 s: nothing new
        s.notified(Channel.STABILITY, 110.0 + i / 1000)
        if s.stable_due(110.0 + i / 1000):
            reads += 1
    assert reads == 0
    assert s.deadline(processing=False) == 110.2
    assert not s.stable_due(110.19) and s.stable_due(110.2)
    read_stable(s, 110.2)
    assert not s.stable_due(110.3)


def test_after_a_change_the_next_notification_is_read_at_once() -> None:
    s = schedule()
    s.notified(Channel.STABILITY, 110.0)
    read_stable(s, 110.0, changed=True)
    s.notified(Channel.STABILITY, 110.05)
    assert s.stable_due(110.05)


def test_details_only_while_on_and_periodic_only_while_processing() -> None:
    s = schedule()
    s.notified(Channel.DETAILS, 101.0)
    assert not s.details_due(101.0, processing=True)
    s.details_started()
    assert s.details_due(101.0, processing=False)  # read at once when switched on
    s.details_reading(101.0)
    s.details_read(101.0)
    assert not s.details_due(103.9, processing=True)
    assert s.details_due(104.0, processing=True)
    assert not s.details_due(104.0, processing=False)
    assert s.deadline(processing=True) == 104.0
    assert s.deadline(processing=False) == 115.0
    # A stability notification also asks for details; a progress one only for details.
    s.details_reading(104.0)
    s.details_read(104.0)
    s.notified(Channel.DETAILS, 105.0)
    assert s.details_due(105.0, processing=False) and not s.stable_due(105.0)
    s.details_stopped()
    assert not s.details_due(200.0, processing=True)


def test_ignored_channels_change_nothing() -> None:
    s = schedule()
    s.details_started()
    s.details_reading(100.0)
    s.notified(Channel.IGNORED, 110.0)
    assert not s.stable_due(110.0) and not s.details_due(110.0, processing=False)


def test_a_run_seen_from_its_start_owes_a_summary_with_its_duration() -> None:
    t = StabilityTracker()
    assert t.observe(True, 41, T0, 0.0, want_summary=True).owed is None
    seen = t.observe(False, None, T0 + timedelta(seconds=5), 5.0, want_summary=True)
    assert seen.changed and seen.owed is None
    assert t.observe(False, None, T0, 60.0, want_summary=True).owed is None  # still busy
    done = t.observe(True, 97, T0 + timedelta(seconds=245), 245.0, want_summary=True)
    assert done.owed is not None
    assert (done.owed.mark, done.owed.since, done.owed.duration) == (
        41,
        T0 + timedelta(seconds=5),
        240.0,
    )
    # Owed once: the next stable answer owes nothing.
    assert t.observe(True, 97, T0, 250.0, want_summary=True).owed is None


def test_a_monitor_that_starts_while_processing_owes_no_summary() -> None:
    t = StabilityTracker()
    t.observe(False, None, T0, 0.0, want_summary=True)
    assert t.observe(True, 5, T0, 10.0, want_summary=True).owed is None


def test_without_a_mark_or_a_listener_nothing_is_owed_and_the_run_is_forgotten() -> None:
    t = StabilityTracker()
    t.observe(True, None, T0, 0.0, want_summary=False)  # mark not read: nobody listened
    t.observe(False, None, T0, 1.0, want_summary=True)
    assert t.observe(True, 9, T0, 2.0, want_summary=True).owed is None
    # A run that ended while nobody listened is not summarised later.
    t.observe(False, None, T0, 3.0, want_summary=False)
    t.observe(True, 10, T0, 4.0, want_summary=False)
    t.observe(False, None, T0, 5.0, want_summary=True)
    late = t.observe(True, 11, T0, 6.0, want_summary=True)
    assert late.owed is not None and late.owed.mark == 10


def test_the_answer_survives_a_reconnect() -> None:
    """The tracker is kept across connections: a run that began before a drop still gets
    its summary when it ends after the reconnect."""
    t = StabilityTracker()
    t.observe(True, 3, T0, 0.0, want_summary=True)
    t.observe(False, None, T0, 1.0, want_summary=True)
    # ... connection lost, reconnected: the first read of the new session ...
    first = t.observe(True, 8, T0, 30.0, want_summary=True)
    assert first.previous is False and first.owed is not None and first.owed.mark == 3


def test_since_stays_while_the_state_stays() -> None:
    down = Status(State.DISCONNECTED, since=T0, problem=Problem.UNREACHABLE, attempt=1)
    again = Status(State.DISCONNECTED, since=T0 + timedelta(seconds=9), problem=Problem.STALE)
    assert carry_since(down, again).since == T0
    assert carry_since(down, again).problem is Problem.STALE
    up = Status(State.STABLE, since=T0 + timedelta(seconds=20))
    assert carry_since(down, up).since == up.since
