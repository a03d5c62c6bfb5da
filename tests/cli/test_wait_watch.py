"""``wait`` and ``watch`` as subprocesses: they follow the database, survive a restart, and
print each change once. Timing bounds are generous (shared 2-core machine); the measured
latency is printed, and bench figures live in the report, not in assertions."""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.cli.conftest import Cli, finish_job, start_job
from traystatus._paths import sql_dir
from traystatus.demo.embedded import EmbeddedPostgres, temporary_server

GENEROUS = 20.0  # seconds: an upper bound that only a hang or a lost change exceeds


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no line within {timeout} s")
    line = proc.stdout.readline()
    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    assert line, f"the process ended (exit {proc.poll()}): {err}"
    return line


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_wait_returns_soon_after_the_system_becomes_stable(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    start_job(conn)
    proc = cli.popen("wait", "--timeout", "120", "--dsn", db_dsn)
    try:
        assert proc.stderr is not None
        # It says once that it is waiting (on stderr), then blocks.
        ready, _, _ = select.select([proc.stderr], [], [], GENEROUS)
        assert ready and "processing" in proc.stderr.readline()
        assert proc.poll() is None
        finish_job(conn)
        committed = time.monotonic()
        code = proc.wait(GENEROUS)
        latency = time.monotonic() - committed
    finally:
        _stop(proc)
    print(f"wait: exit {code} {latency * 1000:.0f} ms after the commit")
    assert code == 0
    assert latency < GENEROUS


def test_wait_when_already_stable_and_timeout(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    r = cli.run("wait", "--timeout", "30", "--dsn", db_dsn)
    assert r.returncode == 0, r.stderr
    start_job(conn)
    r = cli.run("wait", "--timeout", "1", "--dsn", db_dsn)
    assert r.returncode == 1
    assert "not stable after 1 s (still processing)" in r.stderr


def test_wait_exits_3_on_an_error_that_waiting_cannot_fix(cli: Cli, bare_db_dsn: str) -> None:
    r = cli.run("wait", "--timeout", "60", "--source", "installed", "--dsn", bare_db_dsn)
    assert r.returncode == 3
    assert "install-sql" in r.stderr


def test_watch_prints_each_change_once(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    proc = cli.popen("watch", "--json", "--dsn", db_dsn)
    try:
        first = json.loads(_read_line(proc, GENEROUS))
        assert first["state"] == "stable"
        assert {"state", "since", "reason", "text", "class", "tooltip"} <= set(first)
        start_job(conn, "a")
        assert json.loads(_read_line(proc, GENEROUS))["state"] == "processing"
        # More work while already processing is no change: nothing printed for it.
        start_job(conn, "b")
        finish_job(conn, "a")
        finish_job(conn, "b")
        last = json.loads(_read_line(proc, GENEROUS))
        assert last["state"] == "stable"
        assert last["class"] == "stable" and last["text"] == "stable"
        # Nothing else is pending: no duplicate line arrives.
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 2.0)
        assert not ready, proc.stdout.readline()
    finally:
        _stop(proc)


def test_watch_text_lines(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    proc = cli.popen("watch", "--dsn", db_dsn)
    try:
        assert _read_line(proc, GENEROUS).rstrip().endswith(" stable")
        start_job(conn)
        assert _read_line(proc, GENEROUS).rstrip().endswith(" processing")
    finally:
        _stop(proc)


@pytest.fixture
def own_server() -> Iterator[EmbeddedPostgres]:
    """A server this test may stop and start (not the shared one).

    Its folder is outside pytest's tmp_path on purpose: every pytest session that starts
    (other test runs on the machine at the same time) resets /tmp/pytest-of-<user> to mode
    0700, which locks the `pgserver` system user out of a data folder below it.
    """
    server = temporary_server("traystatus-cli-test-")
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as c:
            c.execute("CREATE DATABASE statbus")
        with psycopg.connect(server.dsn("statbus"), autocommit=True) as c:
            c.execute((sql_dir() / "fixtures" / "statbus_schema.sql").read_text())
            c.execute((sql_dir() / "install.sql").read_text())
        yield server
    finally:
        server.destroy()
        shutil.rmtree(server.datadir.parent, ignore_errors=True)


def test_wait_and_watch_survive_a_server_restart(cli: Cli, own_server: EmbeddedPostgres) -> None:
    dsn = own_server.dsn("statbus")
    with psycopg.connect(dsn, autocommit=True) as c:
        start_job(c)
    waiter = cli.popen("wait", "--timeout", "200", "--dsn", dsn)
    watcher = cli.popen("watch", "--json", "--dsn", dsn)
    try:
        assert json.loads(_read_line(watcher, GENEROUS))["state"] == "processing"
        own_server.stop()
        down = json.loads(_read_line(watcher, GENEROUS))
        assert down["state"] == "disconnected" and down["reason"]
        assert waiter.poll() is None  # still waiting through the outage
        own_server.start()
        back = json.loads(_read_line(watcher, 90))
        assert back["state"] == "processing"
        with psycopg.connect(dsn, autocommit=True) as c:
            finish_job(c)
        assert json.loads(_read_line(watcher, GENEROUS))["state"] == "stable"
        assert waiter.wait(GENEROUS) == 0
    finally:
        _stop(waiter)
        _stop(watcher)


@pytest.mark.parametrize(("sig", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_watch_stops_cleanly_on_a_signal(cli: Cli, db_dsn: str, sig: str, code: int) -> None:
    import signal

    proc = cli.popen("watch", "--dsn", db_dsn)
    try:
        _read_line(proc, GENEROUS)  # connected and printing
        proc.send_signal(getattr(signal, sig))
        assert proc.wait(GENEROUS) == code
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    finally:
        _stop(proc)


def test_wait_started_while_the_server_is_down_logs_in_with_the_keychain_password(
    cli: Cli, own_server: EmbeddedPostgres
) -> None:
    """A cron job at night: `wait -p prod` starts while the database restarts. The password
    cannot be negotiated up front, so the keychain's goes along and works once it is back."""
    with psycopg.connect(own_server.dsn("statbus"), autocommit=True) as c:
        c.execute("CREATE ROLE night_owl LOGIN PASSWORD 'owl-pw-31' "
                  "IN ROLE authenticated, regular_user")
        start_job(c)
    added = cli.run("profile", "add", "prod", "--dsn", own_server.dsn("statbus", user="night_owl"),
                    "--password-stdin", input="owl-pw-31\n")
    assert added.returncode == 0, added.stderr
    own_server.stop()
    waiter = cli.popen("wait", "-p", "prod", "--timeout", "200")
    try:
        assert waiter.stderr is not None
        ready, _, _ = select.select([waiter.stderr], [], [], GENEROUS)
        assert ready and "disconnected" in waiter.stderr.readline()
        own_server.start()
        ready, _, _ = select.select([waiter.stderr], [], [], 90)
        assert ready and "processing" in waiter.stderr.readline()  # logged in: no error
        with psycopg.connect(own_server.dsn("statbus"), autocommit=True) as c:
            finish_job(c)
        assert waiter.wait(GENEROUS) == 0
    finally:
        _stop(waiter)
