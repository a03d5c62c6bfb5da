"""Every failure a person can fix gets its own Problem and a message that says the fix.

Against the real embedded server: no mocks. Connection-phase failures carry no SQLSTATE
(libpq keeps it), so these also pin the structural classification in errors.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import psycopg.sql
import pytest

from tests.core.conftest import FAST, FINISH_TASKS, START_TASK, running, with_params
from tests.fix_db import FIXTURE_SCHEMA, INSTALL_SQL, PgServer
from traystatus.core.model.state import Problem, State
from traystatus.core.pg import connect as pgconnect
from traystatus.core.pg.diagnosis import Phase, classify, tcp_look
from traystatus.core.pg.probe import diagnose, tcp_reachable
from traystatus.core.watch.monitor import Monitor
from traystatus.demo.embedded import EmbeddedPostgres, free_port


async def _connect_error(dsn: str) -> BaseException:
    try:
        conn = await pgconnect.AsyncConnection.connect(dsn)
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
async def test_the_tcp_look_is_decided_from_the_failure_alone(
    db_dsn: str, login_role: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """diagnosis.tcp_look (pure) asks probe for a look only for a connect that failed
    without a SQLSTATE, a password question or bad settings; and says where: the address
    libpq tried."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    port = str(free_port())
    closed = with_params(db_dsn, port=port, sslmode="require")
    ex = await _connect_error(closed)
    where = tcp_look(ex, closed, Phase.CONNECT)
    assert where is not None and where[0] and where[1] == port, where
    assert tcp_look(ex, closed, Phase.QUERY) is None
    assert tcp_look(TimeoutError(), closed, Phase.CONNECT) is None
    asked = with_params(db_dsn, user=login_role[0], passfile="/nonexistent/pgpass")
    assert tcp_look(await _connect_error(asked), asked, Phase.CONNECT) is None
    wrong = with_params(db_dsn, user=login_role[0], password="not-" + login_role[1])
    assert tcp_look(await _connect_error(wrong), wrong, Phase.CONNECT) is None  # 28P01
    bad = closed + " no_such_option=1"
    assert tcp_look(await _connect_error(bad), bad, Phase.CONNECT) is None


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
async def test_a_wrong_password_is_told_by_its_sqlstate_without_a_second_login(
    db_dsn: str, login_role: tuple[str, str]
) -> None:
    """28P01 from the refused login itself: no login to template1 to find out."""
    dsn = with_params(db_dsn, user=login_role[0], password="wrong-" + login_role[1])
    ex = await _connect_error(dsn)
    assert pgconnect.sqlstate_of(ex) == "28P01"
    first = await diagnose(ex, dsn, Phase.CONNECT)
    assert first.problem is Problem.AUTH_FAILED and not first.transient
    assert "28P01" not in first.full_message  # libpq's verbose format is not shown


# -- a server that cannot take a session now is transient, by SQLSTATE (issue 19 item 4) --

SERVER_BUSY = ["57P01", "57P02", "57P03", "53300", "53100", "08006", "08001", "55000"]
PERSONS = {"3D000": Problem.CONFIG, "42501": Problem.PERMISSION,
           "28P01": Problem.AUTH_FAILED, "28000": Problem.AUTH_FAILED}
DSN = "host=db.example.org port=5432 dbname=statbus user=ana"


def _refused(sqlstate: str) -> psycopg.OperationalError:
    """A refused start-up as a pgconnect connection reports it: libpq's verbose format."""
    return psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
        f"FATAL:  {sqlstate}: the server's words, in any language\n"
        "LOCATION:  ProcessStartupPacket, backend_startup.c:123")


@pytest.mark.parametrize("sqlstate", SERVER_BUSY)
def test_a_busy_server_is_transient_when_connecting(sqlstate: str) -> None:
    diag = classify(_refused(sqlstate), DSN, Phase.CONNECT)
    assert diag.transient, diag
    assert diag.problem is Problem.UNREACHABLE
    assert "administrator for access" not in diag.message and "Fix" not in diag.message
    assert "LOCATION" not in diag.full_message and f"{sqlstate}:" not in diag.full_message


@pytest.mark.parametrize(
    "sqlstate", [c for c in SERVER_BUSY if c != "55000"] + ["57014", "57P04", "57P05"])
def test_a_busy_server_is_transient_on_a_query(sqlstate: str) -> None:
    ex = psycopg.errors.lookup(sqlstate)("the server's words")
    diag = classify(ex, DSN, Phase.QUERY)
    assert diag.transient and diag.problem is Problem.CONNECTION_LOST, (sqlstate, diag)


@pytest.mark.parametrize(("sqlstate", "problem"), PERSONS.items())
def test_a_refused_login_is_a_persons_problem_only_by_its_sqlstate(
    sqlstate: str, problem: Problem
) -> None:
    diag = classify(_refused(sqlstate), DSN, Phase.CONNECT)
    assert diag.problem is problem and not diag.transient, diag


def test_starting_up_is_retried_soon() -> None:
    assert classify(_refused("57P03"), DSN, Phase.CONNECT).retry_soon
    assert not classify(_refused("53300"), DSN, Phase.CONNECT).retry_soon


@pytest.mark.asyncio
async def test_connect_errors_keep_their_sqlstate(db_dsn: str) -> None:
    """pgconnect found psycopg's libpq: a refused login carries its SQLSTATE, both ways of
    connecting (without it every refusal would be 'cannot tell'). psycopg's own connect
    keeps none: what pgconnect adds."""
    missing = with_params(db_dsn, dbname="no_such_db_here")
    assert pgconnect.sqlstate_of(await _connect_error(missing)) == "3D000"
    with pytest.raises(psycopg.OperationalError) as sync_refusal:
        pgconnect.Connection.connect(missing).close()
    assert pgconnect.sqlstate_of(sync_refusal.value) == "3D000"
    with pytest.raises(psycopg.OperationalError) as plain_refusal:
        psycopg.connect(missing).close()
    assert pgconnect.sqlstate_of(plain_refusal.value) is None


@pytest.mark.asyncio
async def test_real_refusals_by_sqlstate(db_dsn: str, login_role: tuple[str, str],
                                         templates: PgServer) -> None:
    """Real refusals from the server: out of connections is grey; no CONNECT privilege
    and no such database are a person's, each told by the refusal itself."""
    name = login_role[0]
    dbname = str(psycopg.conninfo.conninfo_to_dict(db_dsn)["dbname"])
    dsn = with_params(db_dsn, user=name, password=login_role[1])
    with templates.admin() as admin:
        admin.execute(psycopg.sql.SQL("ALTER ROLE {} CONNECTION LIMIT 0").format(
            psycopg.sql.Identifier(name)))
    busy = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert busy.transient and "too many connections" in busy.message, busy
    with templates.admin() as admin:
        admin.execute(psycopg.sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(
            psycopg.sql.Identifier(name)))
        admin.execute(psycopg.sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(
            psycopg.sql.Identifier(dbname)))
    closed = await diagnose(await _connect_error(dsn), dsn, Phase.CONNECT)
    assert closed.problem is Problem.PERMISSION and "CONNECT privilege" in closed.message
    missing = with_params(dsn, dbname="no_such_db_here")
    gone = await diagnose(await _connect_error(missing), missing, Phase.CONNECT)
    assert gone.problem is Problem.CONFIG, gone


@pytest.fixture
def restartable(pg_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A server of this test's own to restart (the shared one must stay up), outside
    pytest's temporary root (tests/fix_db.py, pg_dir)."""
    server = EmbeddedPostgres(pg_dir / "data")
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def _standby(server: EmbeddedPostgres) -> None:
    """Restart ``server`` as a standby without hot standby: it answers every login with
    57P03 ("not accepting connections") until promoted."""
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute("ALTER SYSTEM SET hot_standby = off")
    server.stop()
    (server.datadir / "standby.signal").touch()
    server.start()


def _promote(server: EmbeddedPostgres) -> None:
    server._exec("pg_ctl", "-w", "-t", "30", "-D", str(server.datadir), "promote")


@pytest.mark.asyncio
async def test_starting_up_is_not_blamed_on_a_person_when_the_server_is_up_a_moment_later(
    restartable: EmbeddedPostgres,
) -> None:
    """The race of the chaos soak, made deterministic: the login is refused with 57P03;
    by the time it is diagnosed the server accepts logins. Before the fix the diagnosis
    logged in to template1, succeeded, and said "may not connect to it (no CONNECT
    privilege)": red for a minute while the database was up."""
    dsn = restartable.dsn()
    await asyncio.to_thread(_standby, restartable)
    ex = await _connect_error(dsn)
    await asyncio.to_thread(_promote, restartable)
    conn = await psycopg.AsyncConnection.connect(dsn)  # the server is up now
    await conn.close()
    diag = await diagnose(ex, dsn, Phase.CONNECT)
    assert diag.transient and diag.problem is Problem.UNREACHABLE, diag
    assert "may not connect" not in diag.message


@pytest.mark.asyncio
async def test_a_monitor_in_front_of_a_starting_server_stays_grey(
    restartable: EmbeddedPostgres,
) -> None:
    """57P03 for as long as the server is not accepting: DISCONNECTED, never ERROR, and
    the answer within 2 s of the server taking logins."""
    dsn = _prepare_watched(restartable)
    await asyncio.to_thread(_standby, restartable)
    m = Monitor(dsn, replace(FAST, backoff_initial=0.5, backoff_cap=60.0))
    async with running(m) as rec:
        await rec.until(lambda: m.counters.connect_failures >= 3, what="refusals")
        assert State.ERROR not in rec.states and m.status.state is State.DISCONNECTED
        assert "not accept connections" in m.status.message
        await asyncio.to_thread(_promote, restartable)
        up = time.monotonic()
        await rec.state(State.STABLE)
        assert time.monotonic() - up < 2.0
    assert State.ERROR not in rec.states


@pytest.mark.asyncio
async def test_starting_up_answers_do_not_grow_the_backoff(
    restartable: EmbeddedPostgres,
) -> None:
    """Several "starting up" (57P03) answers, then the server goes away for a moment:
    the next retry comes after about the first delay. Before the fix each 57P03 answer
    counted as a backoff step, so the failure after five of them waited 2^5 steps (the
    soak saw clients grey for 160 s after a fast restart)."""
    dsn = _prepare_watched(restartable)
    await asyncio.to_thread(_standby, restartable)
    m = Monitor(dsn, replace(FAST, backoff_initial=0.3, backoff_cap=60.0, backoff_jitter=0.0))
    async with running(m) as rec:
        await rec.until(lambda: m.counters.connect_failures >= 6, what="refusals", within=30)
        await asyncio.to_thread(restartable.stop)
        failures = m.counters.connect_failures
        # the status of that failure, not only its count: the counter moves before the
        # failure is diagnosed (a TCP look), the status after
        await rec.until(lambda: m.status.attempt > failures, what="a plain failure")
        status = m.status
        assert status.state is State.DISCONNECTED and status.next_retry_at is not None
        wait = (status.next_retry_at - datetime.now(UTC)).total_seconds()
        assert wait <= 1.0, (wait, status)
        assert status.attempt >= 7  # the attempt people see still counts every failure
    assert State.ERROR not in rec.states


def _prepare_watched(server: EmbeddedPostgres) -> str:
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE watched")
    dsn = server.dsn("watched")
    with psycopg.connect(dsn, autocommit=True) as c:
        for f in (FIXTURE_SCHEMA, INSTALL_SQL):
            c.execute(f.read_text().encode())
    return dsn


@pytest.mark.asyncio
async def test_fast_restarts_never_blame_a_person(restartable: EmbeddedPostgres) -> None:
    """`pg_ctl restart -m fast` over and over while a Monitor with the installed SQL runs:
    grey while it is down, never ERROR, and the right answer within 2 s of it being up."""
    dsn = _prepare_watched(restartable)
    m = Monitor(dsn, replace(FAST, backoff_initial=0.3, backoff_cap=60.0))
    async with running(m) as rec:
        await rec.state(State.STABLE)
        for n in range(5):
            processing = n % 2 == 0
            await asyncio.to_thread(restartable.stop, "fast")
            with contextlib.suppress(Exception):
                await asyncio.to_thread(restartable.start)
            up = time.monotonic()
            with psycopg.connect(dsn, autocommit=True) as c:  # the truth changed meanwhile
                c.execute(START_TASK if processing else FINISH_TASKS)
            want = State.PROCESSING if processing else State.STABLE
            await rec.state(want, within=10)
            took = time.monotonic() - up
            assert took < 2.0, (n, took, rec.states)
    assert State.ERROR not in rec.states, [s for s in rec.statuses if s.state is State.ERROR]


# -- several hosts that all swallow the connection: the message says the real wait ------------

@contextlib.contextmanager
def _blackholes(n: int) -> Iterator[list[int]]:
    """``n`` ports that accept TCP (the kernel's backlog) and never answer."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            socks.append(s)
        yield [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _seconds_said(message: str) -> float:
    found = re.search(r"did not answer within (\d+) s", message)
    assert found, message
    return float(found.group(1))


@pytest.mark.asyncio
async def test_three_silent_hosts_say_the_time_really_waited() -> None:
    """libpq applies connect_timeout to each host in turn: three silent hosts with
    connect_timeout=2 took 5 s (the outer limit: twice connect_timeout and 1 s) but said
    "within 2 s"."""
    with _blackholes(3) as ports:
        dsn = ("host=127.0.0.1,127.0.0.1,127.0.0.1 "
               f"port={','.join(map(str, ports))} dbname=x user=u connect_timeout=2")
        m = Monitor(dsn, replace(FAST, connect_timeout=2.0, backoff_initial=30.0,
                                 backoff_cap=60.0))
        start = time.monotonic()
        async with running(m) as rec:
            status = await rec.state(State.DISCONNECTED, within=30)
            waited = time.monotonic() - start
    said = _seconds_said(status.message)
    assert waited >= 4.5, waited  # more than one connect_timeout: every host was tried
    assert abs(said - waited) <= 1.0, (said, waited, status.message)
    assert "3 hosts" in status.message


def test_a_timeout_of_several_hosts_without_a_measure_says_per_host() -> None:
    dsn = "host=a.example,b.example port=5432 dbname=x user=u connect_timeout=10"
    diag = classify(psycopg.errors.ConnectionTimeout("connection timeout expired"), dsn,
                    Phase.CONNECT)
    assert "within 10 s per host (2 hosts tried in turn: about 20 s in all)" in diag.message


@pytest.mark.asyncio
async def test_a_grant_revoked_while_watching_statbus_directly_names_statbus_tables(
    bare_db_dsn: str, login_role: tuple[str, str]
) -> None:
    """Built-in mode reads StatBus's tables with the analyst's login: a revoked grant is a
    missing privilege on those tables, not on "the traystatus functions" (which are not
    even installed there)."""
    dsn = with_params(bare_db_dsn, user=login_role[0], password=login_role[1])
    m = Monitor(dsn, replace(FAST, reader="builtin"))
    async with running(m) as rec:
        await rec.state(State.STABLE)
        with psycopg.connect(bare_db_dsn, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("REVOKE authenticated FROM {}").format(
                psycopg.sql.Identifier(login_role[0])))
        status = await rec.state(State.ERROR)
    assert status.problem is Problem.PERMISSION, status
    assert "traystatus functions" not in status.message
    assert "StatBus's tables" in status.message
    assert "permission denied for " in status.message  # the server names what
    assert "SELECT on public.import_job, worker.tasks" in status.message
