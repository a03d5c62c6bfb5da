"""Losing the connection in every way we know, and ending on the truth afterwards."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from tests.core.conftest import FAST, FINISH_TASKS, START_TASK, aconnect, running
from tests.fix_db import FIXTURE_SCHEMA, INSTALL_SQL
from tests.fix_proxy import Proxy
from traystatus.core.model.state import Problem, State
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions
from traystatus.demo.embedded import EmbeddedPostgres


def _prepare(server: EmbeddedPostgres) -> str:
    """A StatBus stand-in with traystatus's SQL on ``server``; its superuser DSN."""
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE watched")
    dsn = server.dsn("watched")
    with psycopg.connect(dsn, autocommit=True) as c:
        for f in (FIXTURE_SCHEMA, INSTALL_SQL):
            c.execute(f.read_text().encode())
    return dsn


def _target(dsn: str) -> tuple[str, int]:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    return str(params["host"]), int(str(params["port"]))


@pytest.mark.asyncio
async def test_server_stopped_and_started(own_server: EmbeddedPostgres) -> None:
    dsn = _prepare(own_server)
    m = Monitor(dsn, FAST)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        await asyncio.to_thread(own_server.stop)
        s = await rec.state(State.DISCONNECTED)
        assert s.problem in (Problem.CONNECTION_LOST, Problem.UNREACHABLE)
        await rec.until(lambda: m.status.attempt >= 2, what="retries while the server is down")
        await asyncio.to_thread(own_server.start)
        await rec.state(State.STABLE)
    assert m.counters.reconnects == 1
    assert m.status.attempt == 0


@pytest.mark.asyncio
async def test_terminated_listener_reconnects_and_listens_again(db_dsn: str) -> None:
    m = Monitor(db_dsn, FAST)
    admin = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'traystatus' AND datname = current_database()"
        )
        s = await rec.state(State.DISCONNECTED)
        assert s.problem is Problem.CONNECTION_LOST
        await rec.state(State.STABLE)
        await admin.execute(START_TASK)  # the new connection listens
        await rec.state(State.PROCESSING)
    await admin.close()
    assert m.counters.reconnects == 1


@pytest.mark.asyncio
async def test_silent_network_loss_is_found_within_interval_plus_timeout(
    db_dsn: str, proxy_factory: type[Proxy]
) -> None:
    proxy = proxy_factory(*_target(db_dsn)).start()
    opts = MonitorOptions(
        health_interval=2.0,
        health_timeout=1.0,
        connect_timeout=2.0,
        backoff_initial=0.2,
        backoff_cap=1.0,
    )
    m = Monitor(proxy.dsn(db_dsn), opts)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        await asyncio.sleep(0.5)
        proxy.blackhole()  # no FIN, no RST: silence
        start = time.monotonic()
        s = await rec.state(State.DISCONNECTED)
        took = time.monotonic() - start
        assert s.problem is Problem.STALE
        assert "stopped answering" in s.message
        # bound: interval + timeout; slack for a busy shared machine
        assert took <= opts.health_interval + opts.health_timeout + 3.0, took
        # reconnect attempts through the silent network time out instead of hanging
        await rec.until(lambda: m.counters.connect_failures >= 1, what="a timed-out connect")
        assert m.status.state is State.DISCONNECTED
        assert m.status.problem is Problem.UNREACHABLE
    assert m.counters.stale == 1


@pytest.mark.asyncio
async def test_change_made_while_disconnected_is_seen_after_reconnect(
    db_dsn: str, proxy_factory: type[Proxy]
) -> None:
    """No notification can carry it (nobody listened): only the re-read shows it."""
    proxy = proxy_factory(*_target(db_dsn)).start()
    m = Monitor(proxy.dsn(db_dsn), FAST)
    writer = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        proxy.blackhole()
        await rec.state(State.DISCONNECTED)
        await writer.execute(START_TASK)
        notified = m.counters.notifications
        proxy.restore()
        await rec.state(State.PROCESSING)
        assert m.counters.notifications == notified
        # and the other way round, with the connection cut this time
        proxy.cut()
        await rec.until(lambda: m.counters.reconnects >= 2, what="second reconnect")
        await writer.execute(FINISH_TASKS)
        await rec.state(State.STABLE)
    await writer.close()


@pytest.mark.asyncio
async def test_cut_connection_is_connection_lost(db_dsn: str, proxy_factory: type[Proxy]) -> None:
    proxy = proxy_factory(*_target(db_dsn)).start()
    m = Monitor(proxy.dsn(db_dsn), FAST)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        proxy.cut()
        s = await rec.state(State.DISCONNECTED)
        assert s.problem is Problem.CONNECTION_LOST
        await rec.state(State.STABLE)
    assert m.counters.reconnects == 1


@pytest.mark.asyncio
async def test_stop_while_connecting_through_silence_returns_promptly(
    db_dsn: str, proxy_factory: type[Proxy]
) -> None:
    proxy = proxy_factory(*_target(db_dsn)).start()
    proxy.blackhole()
    m = Monitor(proxy.dsn(db_dsn), MonitorOptions(connect_timeout=60.0))
    task = asyncio.create_task(m.run())
    await asyncio.sleep(0.5)
    assert m.status.state is State.CONNECTING
    start = time.monotonic()
    m.stop()
    await asyncio.wait_for(task, 30)
    assert time.monotonic() - start < 10  # not the 60 s connect timeout
    assert m.counters.connects == 0


@pytest.mark.asyncio
async def test_reconnect_now_cuts_the_retry_wait_short(
    db_dsn: str, proxy_factory: type[Proxy]
) -> None:
    proxy = proxy_factory(*_target(db_dsn)).start()
    proxy.blackhole()
    opts = MonitorOptions(connect_timeout=1.0, backoff_initial=30.0, backoff_cap=60.0)
    m = Monitor(proxy.dsn(db_dsn), opts)
    async with running(m) as rec:
        s = await rec.state(State.DISCONNECTED)  # the first connect timed out
        assert s.next_retry_at is not None
        proxy.restore()
        m.reconnect_now()  # no 30 s wait
        took = await rec.until(lambda: m.status.state is State.STABLE, what="stable")
        assert took < 20
