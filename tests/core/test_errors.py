"""Every failure a person can fix gets its own Problem and a message that says the fix.

Against the real embedded server: no mocks. Connection-phase failures carry no SQLSTATE
(libpq keeps it), so these also pin the structural classification in errors.py.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.core.conftest import with_params
from tests.fix_db import PgServer
from traystatus.core.errors import (
    Phase,
    classify,
    diagnose,
    tcp_reachable,
)
from traystatus.core.state import Problem
from traystatus.demo.embedded import free_port


async def _connect_error(dsn: str) -> BaseException:
    try:
        conn = await psycopg.AsyncConnection.connect(dsn)
    except Exception as ex:
        return ex
    await conn.close()
    raise AssertionError(f"connecting to {dsn} worked")


@pytest.mark.asyncio
async def test_wrong_password_is_auth_failed(db_dsn: str, login_role: tuple[str, str]) -> None:
    dsn = with_params(db_dsn, user=login_role[0], password="not-" + login_role[1])
    diag = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert diag.problem is Problem.AUTH_FAILED
    assert not diag.transient
    assert login_role[0] in diag.message and "password" in diag.message
    assert login_role[1] not in diag.message  # never echo a secret


@pytest.mark.asyncio
async def test_missing_password_is_no_password(
    db_dsn: str, login_role: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    dsn = with_params(db_dsn, user=login_role[0], passfile="/nonexistent/pgpass")
    diag = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert diag.problem is Problem.NO_PASSWORD
    assert "keychain" in diag.message or "pgpass" in diag.message


@pytest.mark.asyncio
async def test_unknown_host_is_unreachable(db_dsn: str) -> None:
    dsn = with_params(db_dsn, host="no-such-host.invalid", connect_timeout="3")
    diag = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert diag.problem is Problem.UNREACHABLE
    assert diag.transient
    assert "no-such-host.invalid" in diag.message


@pytest.mark.asyncio
async def test_closed_port_is_unreachable_even_when_tls_is_required(db_dsn: str) -> None:
    port = str(free_port())
    for extra in ({}, {"sslmode": "require"}):
        dsn = with_params(db_dsn, port=port, **extra)
        diag = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
        assert diag.problem is Problem.UNREACHABLE, extra


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "tls",
    [
        {"sslmode": "require"},
        {"sslmode": "verify-full", "sslrootcert": "system"},
        {"sslmode": "require", "sslnegotiation": "direct"},
    ],
)
async def test_tls_required_against_a_server_without_tls_is_tls(
    db_dsn: str, login_role: tuple[str, str], tls: dict[str, str]
) -> None:
    """The embedded server has no TLS: the server answers, the handshake fails."""
    dsn = with_params(db_dsn, user=login_role[0], password=login_role[1], **tls)
    ex = await _connect_error(dsn)
    assert isinstance(ex, psycopg.OperationalError) and ex.sqlstate is None
    diag = await diagnose(ex, dsn, Phase.CONNECT)
    assert diag.problem is Problem.TLS
    assert not diag.transient
    assert f"sslmode={tls['sslmode']}" in diag.message


@pytest.mark.asyncio
async def test_bad_conninfo_is_config(db_dsn: str) -> None:
    dsn = db_dsn + " no_such_option=1"
    diag = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert diag.problem is Problem.CONFIG


def test_missing_function_is_sql_missing(bare_db_dsn: str) -> None:
    with (
        psycopg.connect(bare_db_dsn, autocommit=True) as conn,
        pytest.raises(psycopg.Error) as info,
    ):
        conn.execute("SELECT public.is_system_stable()")
    diag = classify(info.value, bare_db_dsn, Phase.QUERY)
    assert diag.problem is Problem.SQL_MISSING
    assert "install-sql" in diag.message


def test_no_execute_privilege_is_permission(db_dsn: str, plain_role: tuple[str, str]) -> None:
    dsn = with_params(db_dsn, user=plain_role[0], password=plain_role[1])
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT public.is_system_stable()")
    diag = classify(info.value, dsn, Phase.QUERY)
    assert diag.problem is Problem.PERMISSION
    assert plain_role[0] in diag.message and "authenticated" in diag.message


def test_terminated_backend_is_connection_lost(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as victim, psycopg.connect(db_dsn) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError) as info:
            victim.execute("SELECT 1")
    diag = classify(info.value, db_dsn, Phase.QUERY)
    assert diag.problem is Problem.CONNECTION_LOST and diag.transient


def test_bugs_are_internal() -> None:
    assert classify(KeyError("x")).problem is Problem.INTERNAL


@pytest.mark.asyncio
async def test_tcp_probe(templates: PgServer) -> None:
    params = psycopg.conninfo.conninfo_to_dict(templates.admin_dsn)
    assert await tcp_reachable(str(params["host"]), int(str(params["port"])), 3)
    assert not await tcp_reachable("127.0.0.1", free_port(), 3)


@pytest.mark.asyncio
async def test_no_such_database_without_a_password_is_config_not_unreachable(
    db_dsn: str,
) -> None:
    """A login that needs no password (trust) to a database that does not exist: the
    server answered, so it is not "cannot be reached"."""
    dsn = with_params(db_dsn, dbname="no_such_db_here")
    diag = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert diag.problem is Problem.CONFIG, diag
    assert "The database 'no_such_db_here' does not exist" in diag.message


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "named"),
    [({"port": "99999"}, "port='99999'"), ({"port": "-1"}, "port='-1'"),
     ({"sslmode": "bogus"}, "sslmode='bogus'"), ({"sslnegotiation": "x"}, "sslnegotiation='x'")],
)
async def test_an_invalid_setting_is_config_naming_it(
    db_dsn: str, params: dict[str, str], named: str
) -> None:
    dsn = with_params(db_dsn, **params)
    diag = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert diag.problem is Problem.CONFIG
    assert f"{named} is not valid" in diag.message
    assert "cannot be reached" not in diag.message


@pytest.mark.asyncio
async def test_messages_promise_no_retry(db_dsn: str) -> None:
    """One-shot commands print these too: the retry, if any, is the caller's to tell
    (the tray adds "Retrying in N s." from next_retry_at)."""
    dsn = with_params(db_dsn, port=str(free_port()))
    diag = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert "Retrying" not in diag.full_message and "on its own" not in diag.full_message


@pytest.mark.asyncio
async def test_a_wrong_password_is_probed_once_per_conninfo(
    db_dsn: str, login_role: tuple[str, str]
) -> None:
    """A monitor retrying a wrong password must not double the failed logins: the verdict
    of the second login (to template1) is remembered for that conninfo."""
    from traystatus.core import errors

    dsn = with_params(db_dsn, user=login_role[0], password="wrong-" + login_role[1])
    before = errors.login_probes
    first = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    second = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert first == second and first.problem is Problem.AUTH_FAILED
    assert errors.login_probes == before + 1
    assert all("wrong-" not in key for key in errors._WRONG_LOGINS)  # hashed
