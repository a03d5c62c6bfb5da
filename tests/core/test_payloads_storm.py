"""Garbage on the channel and storms of notifications: never a crash, always the truth."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.conftest import FAST, FINISH_TASKS, START_TASK, aconnect, running
from traystatus.core.model.state import State
from traystatus.core.watch.monitor import Monitor

Writer = psycopg.Connection[tuple[object, ...]]


class ThreadedMonitor:
    """A monitor running in its own thread and loop, for synchronous (hypothesis) tests."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            self.loop.run_until_complete(self.monitor.run())
        except BaseException as ex:  # the test asserts there was none
            self.error = ex
        finally:
            self.loop.close()

    def __enter__(self) -> ThreadedMonitor:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.monitor.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "Monitor.run() did not return after stop()"


def _wait(predicate: Callable[[], object], what: str, within: float = 30.0) -> None:
    import time

    end = time.monotonic() + within
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached in {within} s")
        time.sleep(0.01)


@pytest.fixture
def threaded(
    db_dsn: str,
) -> Iterator[tuple[ThreadedMonitor, psycopg.Connection[tuple[object, ...]]]]:
    m = Monitor(db_dsn, FAST)
    with ThreadedMonitor(m) as tm, psycopg.connect(db_dsn, autocommit=True) as writer:
        _wait(lambda: m.status.state is State.STABLE, "first state")
        yield tm, writer
    assert tm.error is None


# What pg_notify accepts: text without NUL, under 8000 bytes.
_text = st.characters(codec="utf-8", exclude_characters="\x00")
payloads = st.one_of(
    st.text(alphabet=_text, max_size=300),
    st.text(alphabet='x{}[]"stable:true,', min_size=7000, max_size=7990),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True)
        | st.text(alphabet=_text, max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(alphabet=_text, max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    ).map(json.dumps),
    st.sampled_from(
        [
            '{"stable": true}',
            '{"stable": false}',
            '{"stable": "false"}',
            '{"stable": 0}',
            "[" * 5000,
            '{"stable": true',
            "null",
            '{"stable": null}',
        ]
    ),
).filter(lambda p: len(p.encode("utf-8")) < 8000)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(payloads, min_size=1, max_size=5), busy=st.booleans())
def test_malformed_payloads_never_crash_and_the_state_stays_true(
    threaded: tuple[ThreadedMonitor, psycopg.Connection[tuple[object, ...]]],
    batch: list[str],
    busy: bool,
) -> None:
    tm, writer = threaded
    m = tm.monitor
    # The real state, possibly contradicting every payload sent below.
    writer.execute(START_TASK if busy else FINISH_TASKS)
    seen = m.counters.notifications
    with writer.transaction():
        for p in batch:
            writer.execute("SELECT pg_notify('system_stability', %s)", (p,))
    # PostgreSQL folds identical notifications of one transaction into one.
    _wait(lambda: m.counters.notifications >= seen + len(set(batch)), "payloads delivered")
    want = State.PROCESSING if busy else State.STABLE
    _wait(lambda: m.status.state is want, f"state {want} after garbage")
    assert tm.thread.is_alive() and tm.error is None


def test_malformed_payloads_are_counted_and_not_trusted(
    threaded: tuple[ThreadedMonitor, psycopg.Connection[tuple[object, ...]]],
) -> None:
    """The largest payload PostgreSQL allows (7999 bytes) and a wrong type are counted;
    the state stays what the database says."""
    tm, writer = threaded
    before = tm.monitor.counters.malformed_payloads
    writer.execute("SELECT pg_notify('system_stability', repeat('x', 7999))")
    writer.execute("SELECT pg_notify('system_stability', '{\"stable\": 1}')")
    writer.execute("SELECT pg_notify('system_stability', '{\"stable\": true}')")
    _wait(lambda: tm.monitor.counters.malformed_payloads == before + 2, "two counted")
    assert tm.monitor.status.state is State.STABLE


@pytest.mark.asyncio
async def test_a_storm_of_10000_notifications_costs_a_handful_of_reads(db_dsn: str) -> None:
    m = Monitor(db_dsn, FAST)
    writer = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        reads_before = m.counters.stability_reads
        # 10,000 notifications in 20 commits, contradicting payloads; the last commit
        # leaves the system busy.
        for i in range(20):
            async with writer.transaction():
                await writer.execute(
                    "SELECT pg_notify('system_stability', "
                    "                 json_build_object('stable', g % 2 = 0)::text || g::text) "
                    "FROM generate_series(1, 500) AS g"
                )
                if i == 19:
                    await writer.execute(START_TASK)
        await rec.until(
            lambda: m.counters.notifications >= 10_001, what="all notifications delivered"
        )
        await rec.state(State.PROCESSING)
        await asyncio.sleep(FAST.coalesce_window * 3)  # let any owed read happen
        reads = m.counters.stability_reads - reads_before
    await writer.close()
    assert m.status.state is State.PROCESSING
    assert 1 <= reads <= 20, reads
