"""Each thing a person must fix: its own state, Problem and message, and the monitor
keeps retrying slowly so the fix is picked up without a restart."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest

from tests.core.conftest import FAST, running, with_params
from traystatus.core.model.state import Problem, State
from traystatus.core.pg import sqlfiles
from traystatus.core.watch.monitor import Monitor
from traystatus.demo.embedded import free_port


@pytest.mark.asyncio
async def test_wrong_password(db_dsn: str, login_role: tuple[str, str]) -> None:
    m = Monitor(with_params(db_dsn, user=login_role[0]), FAST, password="wrong")
    async with running(m) as rec:
        s = await rec.state(State.ERROR)
        assert s.problem is Problem.AUTH_FAILED
        assert login_role[0] in s.message and "password" in s.message
        assert s.next_retry_at is not None and s.attempt == 1
        await rec.until(lambda: m.status.attempt >= 2, what="a slow retry")
        assert m.status.since == s.since  # same trouble, same "since"
    assert m.counters.connects == 0


@pytest.mark.asyncio
async def test_unknown_host_is_disconnected_with_attempts(db_dsn: str) -> None:
    m = Monitor(with_params(db_dsn, host="no-such-host.invalid"), FAST)
    async with running(m) as rec:
        s = await rec.state(State.DISCONNECTED)
        assert s.problem is Problem.UNREACHABLE
        assert "no-such-host.invalid" in s.message
        await rec.until(lambda: m.status.attempt >= 3, what="backoff retries")
        assert m.status.next_retry_at is not None
        assert m.status.next_retry_at > m.status.since


@pytest.mark.asyncio
async def test_tls_failure(db_dsn: str, login_role: tuple[str, str]) -> None:
    dsn = with_params(db_dsn, user=login_role[0], sslmode="require")
    m = Monitor(dsn, FAST, password=login_role[1])
    async with running(m) as rec:
        s = await rec.state(State.ERROR)
    assert s.problem is Problem.TLS
    assert "sslmode=require" in s.message


@pytest.mark.asyncio
async def test_sql_missing_then_installed_is_picked_up(bare_db_dsn: str) -> None:
    # Installed mode: in auto mode a database without our SQL is read directly instead.
    m = Monitor(bare_db_dsn, replace(FAST, reader="installed"))
    async with running(m) as rec:
        s = await rec.state(State.ERROR)
        assert s.problem is Problem.SQL_MISSING
        assert "install-sql" in s.message
        before, after = await sqlfiles.apply(bare_db_dsn, "install")
        assert (before, after) == (None, sqlfiles.EXPECTED_SQL_VERSION)
        await rec.state(State.STABLE)  # the slow retry finds the fix


@pytest.mark.asyncio
async def test_sql_outdated_names_both_versions(
    db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    conn.execute(
        "CREATE OR REPLACE FUNCTION public.system_stability_sql_version() RETURNS integer "
        "LANGUAGE sql IMMUTABLE AS $$ SELECT 0 $$"
    )
    m = Monitor(db_dsn, replace(FAST, reader="installed"))  # auto would read StatBus directly
    async with running(m) as rec:
        s = await rec.state(State.ERROR)
        assert s.problem is Problem.SQL_OUTDATED
        assert "version 0" in s.message and f"version {sqlfiles.EXPECTED_SQL_VERSION}" in s.message
        conn.execute(
            "CREATE OR REPLACE FUNCTION public.system_stability_sql_version() RETURNS integer "
            "LANGUAGE sql IMMUTABLE AS $$ SELECT 99 $$"
        )
        await rec.until(lambda: m.status.problem is Problem.SQL_NEWER, what="SQL newer")
        assert "Update traystatus" in m.status.message


@pytest.mark.asyncio
async def test_no_execute_privilege(db_dsn: str, plain_role: tuple[str, str]) -> None:
    m = Monitor(with_params(db_dsn, user=plain_role[0]), FAST, password=plain_role[1])
    async with running(m) as rec:
        s = await rec.state(State.ERROR)
    assert s.problem is Problem.PERMISSION
    assert plain_role[0] in s.message


@pytest.mark.asyncio
async def test_bad_conninfo_is_config_not_an_exception() -> None:
    m = Monitor("host=127.0.0.1 this is not a conninfo", FAST)
    async with running(m) as rec:
        s = await rec.state(State.ERROR)
    assert s.problem is Problem.CONFIG


@pytest.mark.asyncio
async def test_nothing_listening(db_dsn: str) -> None:
    m = Monitor(with_params(db_dsn, port=str(free_port())), FAST)
    async with running(m) as rec:
        s = await rec.state(State.DISCONNECTED)
    assert s.problem is Problem.UNREACHABLE


@pytest.mark.asyncio
async def test_no_connection_is_held_while_waiting_to_retry(
    db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    conn.execute(
        "CREATE OR REPLACE FUNCTION public.system_stability_sql_version() RETURNS integer "
        "LANGUAGE sql IMMUTABLE AS $$ SELECT 0 $$"
    )
    m = Monitor(db_dsn, replace(FAST, error_retry=30.0, reader="installed"))
    async with running(m) as rec:
        await rec.state(State.ERROR)

        def backends() -> int:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'traystatus' "
                "AND datname = current_database()"
            ).fetchone()
            assert row is not None
            return int(str(row[0]))

        await rec.until(lambda: backends() == 0, within=10, what="connection closed")
