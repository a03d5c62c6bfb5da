"""The Monitor against a real server: flips, listeners, details on demand, work summary."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import psycopg
import pytest

from tests.core.conftest import FAST, FINISH_TASKS, START_TASK, aconnect, running, with_params
from tests.fix_db import count_details_calls, details_call_count
from traystatus.core.model.state import State, Status
from traystatus.core.watch.monitor import Monitor


@pytest.mark.asyncio
async def test_reports_each_flip_with_the_time_it_began(db_dsn: str) -> None:
    m = Monitor(db_dsn, FAST)
    writer = await aconnect(db_dsn)
    async with running(m) as rec:
        first = await rec.state(State.STABLE)
        await writer.execute(START_TASK)
        busy = await rec.state(State.PROCESSING)
        assert busy.since > first.since
        assert busy.problem is None and busy.message == ""
        await writer.execute(FINISH_TASKS)
        await rec.state(State.STABLE)
    await writer.close()
    # While processing, a progress read may add a Status with the same state (and since).
    assert rec.flips == [State.STABLE, State.PROCESSING, State.STABLE]
    assert len({s.since for s in rec.statuses if s.state is State.PROCESSING}) == 1
    assert m.counters.connects == 1 and m.counters.reconnects == 0


@pytest.mark.asyncio
async def test_works_as_a_statbus_analyst_login(db_dsn: str, login_role: tuple[str, str]) -> None:
    """A regular StatBus user (authenticated, password) is all the monitor needs."""
    dsn = with_params(db_dsn, user=login_role[0])
    m = Monitor(dsn, FAST, password=login_role[1])
    writer = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        async with m.details():
            await rec.until(lambda: bool(rec.details), what="details as an analyst")
        await writer.execute(START_TASK)
        await rec.state(State.PROCESSING)
    await writer.close()


@pytest.mark.asyncio
async def test_a_raising_listener_is_logged_not_fatal(
    db_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    m = Monitor(db_dsn, FAST)

    def broken(_: Status) -> None:
        raise RuntimeError("listener bug")

    m.add_listener(broken)
    writer = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        await writer.execute(START_TASK)
        await rec.state(State.PROCESSING)
    await writer.close()
    assert m.counters.callback_errors >= 2
    assert "listener bug" in caplog.text


@pytest.mark.asyncio
async def test_stop_before_run_returns_at_once(db_dsn: str) -> None:
    m = Monitor(db_dsn, FAST)
    m.stop()
    await asyncio.wait_for(m.run(), 10)
    assert m.counters.connects == 0


@pytest.mark.asyncio
async def test_reconnect_now_reads_again(db_dsn: str) -> None:
    m = Monitor(db_dsn, FAST)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        m.reconnect_now()
        await rec.until(lambda: m.counters.reconnects == 1, what="a reconnect")
        await rec.state(State.STABLE)
    assert rec.states == [State.STABLE, State.CONNECTING, State.STABLE]


def _details_calls(dsn: str) -> int:
    """How often the server ran get_system_status_details() in this database, exactly."""
    with psycopg.connect(dsn, autocommit=True) as c:
        return details_call_count(c)


# Health checks every 0.25 s, details every 0.1 s while subscribed (FAST: 1 s and 0.5 s):
# ``n`` health checks span at least ``n - 1`` quarter seconds, over two details intervals
# each.
QUICK = dataclasses.replace(FAST, health_interval=0.25, details_interval=0.1)


@pytest.mark.asyncio
async def test_details_are_read_only_while_subscribed(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        count_details_calls(c)
    m = Monitor(db_dsn, QUICK)
    writer = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        checks = m.counters.health_checks  # two health checks run; details must not
        await rec.until(lambda: m.counters.health_checks >= checks + 2, what="health checks")
        assert m.counters.details_reads == 0 and rec.details == []

        async with m.details():
            await rec.until(lambda: len(rec.details) >= 1, what="first details")
            assert rec.details[-1].system_stable
            await writer.execute(START_TASK)
            await rec.until(
                lambda: rec.details[-1].analytics.active_total == 1, what="details of the task"
            )
            # refcount: a second subscriber leaving keeps details flowing
            m.subscribe_details()
            m.unsubscribe_details()
            assert m.details_subscribers == 1
            await writer.execute(
                "UPDATE public.import_job SET imported_rows = imported_rows WHERE false"
            )
            await writer.execute(FINISH_TASKS)
            await rec.until(lambda: rec.details[-1].system_stable, what="details stable again")
        assert m.details_subscribers == 0
        reads = m.counters.details_reads
        assert reads >= 3
        await writer.execute(START_TASK)  # processing: details would refresh if subscribed
        await rec.state(State.PROCESSING)
        checks = m.counters.health_checks
        await rec.until(lambda: m.counters.health_checks >= checks + 2, what="health checks")
        await writer.execute(FINISH_TASKS)
        await rec.state(State.STABLE)
        assert m.counters.details_reads == reads
    await writer.close()
    # The server agrees, call for call.
    assert _details_calls(db_dsn) == m.counters.details_reads


@pytest.mark.asyncio
async def test_work_summary_at_processing_to_stable(db_dsn: str) -> None:
    writer = await aconnect(db_dsn)
    await writer.execute(START_TASK)
    await writer.execute(FINISH_TASKS)  # done before the monitor starts: not counted
    m = Monitor(db_dsn, FAST)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        await writer.execute(START_TASK)
        await writer.execute(
            "INSERT INTO worker.tasks (command, state) "
            "SELECT 'derive_statistical_unit', 'pending' FROM generate_series(1, 5)"
        )
        await rec.state(State.PROCESSING)
        await asyncio.sleep(0.3)
        await writer.execute(
            "UPDATE worker.tasks SET state = 'completed' "
            "WHERE command IN ('collect_changes', 'derive_statistical_unit')"
        )
        await rec.until(lambda: len(rec.summaries) == 1, what="a work summary")
    await writer.close()
    s = rec.summaries[0]
    assert s.analytics_tasks_completed == 6
    assert s.analytics_tasks_failed == 0
    assert s.duration_seconds >= 0.3
    assert s.text.startswith("6 analytics tasks finished in ")


@pytest.mark.asyncio
async def test_a_future_task_becoming_due_is_read_at_its_due_moment(db_dsn: str) -> None:
    """No write announces the moment a scheduled task becomes due. The database says when
    (system_stability_next_due(), read with every answer), and the monitor re-reads right
    after it: well before any health read (60 s here)."""
    m = Monitor(db_dsn, dataclasses.replace(FAST, health_interval=60.0))
    writer = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        cur = await writer.execute(
            "INSERT INTO worker.tasks (command, state, scheduled_at) "
            "VALUES ('derive_statistical_unit', 'pending', now() + interval '1.5 seconds') "
            "RETURNING extract(epoch FROM scheduled_at)::float8"
        )
        row = await cur.fetchone()
        assert row is not None
        due_at = float(row[0])
        await asyncio.sleep(0.5)
        assert m.status.state is State.STABLE  # not due yet
        notes = m.counters.notifications
        await rec.state(State.PROCESSING)
        late = time.time() - due_at
        assert m.counters.notifications == notes  # nothing was sent at the due moment
        assert m.counters.health_checks == 0
        assert late < 1.0, f"seen {late:.3f} s after the task fell due"
    await writer.close()


@pytest.mark.asyncio
async def test_details_refresh_periodically_while_processing_only(db_dsn: str) -> None:
    """Analytics progress sends no notification of ours: details are re-read on a timer,
    but only while the system is processing."""
    options = dataclasses.replace(FAST, details_interval=0.25)
    m = Monitor(db_dsn, options)
    writer = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        async with m.details():
            await rec.until(lambda: len(rec.details) >= 1, what="first details")
            await asyncio.sleep(3 * options.details_interval)
            idle_reads = m.counters.details_reads
            assert idle_reads <= 2  # stable: no timer
            await writer.execute(START_TASK)
            await rec.state(State.PROCESSING)
            start = m.counters.details_reads
            notes = m.counters.notifications
            # Two more reads within four intervals, on the timer alone: no notification.
            await rec.until(lambda: m.counters.details_reads - start >= 2,
                            within=4 * options.details_interval, what="two timed details reads")
            assert m.counters.notifications == notes
    await writer.close()


@pytest.mark.asyncio
async def test_summary_survives_a_reconnect_in_the_middle(db_dsn: str) -> None:
    m = Monitor(db_dsn, FAST)
    writer = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        await writer.execute(START_TASK)
        await rec.state(State.PROCESSING)
        m.reconnect_now()
        await rec.until(lambda: m.counters.reconnects == 1, what="reconnect")
        await rec.state(State.PROCESSING)
        await writer.execute(FINISH_TASKS)
        await rec.until(lambda: len(rec.summaries) == 1, what="summary after the reconnect")
    await writer.close()
    assert rec.summaries[0].analytics_tasks_completed == 1


@pytest.mark.asyncio
async def test_cancelling_run_closes_the_connection(
    db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    m = Monitor(db_dsn, FAST)
    rec_task = asyncio.create_task(m.run())

    def backends() -> int:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'traystatus' "
            "AND datname = current_database()"
        ).fetchone()
        assert row is not None
        return int(str(row[0]))

    for _ in range(1000):
        if m.status.state is State.STABLE:
            break
        await asyncio.sleep(0.01)
    assert backends() == 1
    rec_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rec_task
    for _ in range(500):
        if backends() == 0:
            break
        await asyncio.sleep(0.02)
    assert backends() == 0
