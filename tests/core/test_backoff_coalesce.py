"""The two pure timing rules: backoff delays and burst coalescing."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traystatus.core.watch._coalesce import Coalescer
from traystatus.core.watch.backoff import Backoff


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    b = Backoff(1.0, 60.0, jitter=0.0)
    delays = [b.next_delay() for _ in range(10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert b.attempt == 10
    b.reset()
    assert b.attempt == 0
    assert b.next_delay() == 1


def test_backoff_jitter_spreads_clients_but_stays_near_the_base() -> None:
    delays = {Backoff(1.0, 60.0, rng=random.Random(seed)).next_delay() for seed in range(50)}
    assert len(delays) > 40  # clients do not retry in lock step
    assert all(0.8 <= d <= 1.2 for d in delays)


def test_backoff_survives_thousands_of_failures() -> None:
    b = Backoff(1.0, 60.0, jitter=0.2)
    for _ in range(5000):
        d = b.next_delay()
    assert 48 <= d <= 60


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 60)
    with pytest.raises(ValueError):
        Backoff(10, 5)


def test_first_notification_reads_at_once_then_one_read_per_window() -> None:
    c = Coalescer(0.2)
    assert c.notify(10.0) is True  # quiet before: read now
    c.mark_read(10.0)
    assert c.notify(10.05) is False  # inside the window: wait
    assert c.notify(10.10) is False
    assert c.deadline() == pytest.approx(10.2)
    assert not c.due(10.19)
    assert c.due(10.2)
    c.mark_read(10.2)
    assert c.deadline() is None
    assert c.notify(10.5) is True  # quiet again


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=500))
def test_coalescing_bounds_reads_and_ends_after_the_last_notification(gaps: list[float]) -> None:
    """Simulate: N notifications over T seconds cost <= 1 + T/window + 1 reads, and a read
    starts at or after the last notification (so the client ends on the truth)."""
    window = 0.2
    c = Coalescer(window)
    now = 0.0
    reads: list[float] = []
    arrivals = []
    for gap in gaps:
        now += gap
        while c.due(now):  # the loop wakes at the deadline
            deadline = c.deadline()
            assert deadline is not None
            reads.append(deadline)
            c.mark_read(deadline)
        arrivals.append(now)
        if c.notify(now):
            reads.append(now)
            c.mark_read(now)
    if c.pending:
        deadline = c.deadline()
        assert deadline is not None
        reads.append(deadline)
        c.mark_read(deadline)
    span = arrivals[-1] - arrivals[0]
    assert len(reads) <= 2 + span / window + 1e-9
    assert reads[-1] >= arrivals[-1]
    assert reads == sorted(reads)


def test_after_a_read_that_found_a_change_the_next_notification_is_read_at_once() -> None:
    """Real flips in quick succession are each shown without waiting for the window."""
    c = Coalescer(0.2)
    assert c.notify(1.0)
    c.mark_read(1.0)
    c.result(True)  # it changed: stable -> processing
    assert c.notify(1.01) is True  # the next one may be the flip back
    c.mark_read(1.01)
    c.result(False)  # noise: nothing changed
    assert c.notify(1.02) is False  # now bursts are coalesced again
    assert c.deadline() == pytest.approx(1.21)
