"""install-sql stopped while it waits for StatBus's locks: it never installs later.

Against a real server, with the lock held by the test (issue 19 item 8): SIGTERM and SIGHUP
cancel the statement on the server (exit 143 / 129, "nothing changed"); SIGKILL cannot be
handled, so the session itself must not outlive the client: the COMMIT is sent only by a
living client, and client_connection_check_interval ends a backend whose client is gone
even while it waits for a lock. A lock that stays taken is waited for at most
--lock-timeout seconds.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import psycopg
import pytest

from tests.cli.conftest import Cli

INSTALLED = "SELECT to_regprocedure('public.system_stability_sql_version()') IS NOT NULL"


def _others(dsn: str, mine: int) -> list[tuple[object, ...]]:
    """The other client backends on this database: (pid, wait_event_type, state)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(
            "SELECT pid, wait_event_type, state FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND pid NOT IN (pg_backend_pid(), %s)", (mine,)).fetchall()


def _until(what: str, check: Callable[[], object], within: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            raise AssertionError(f"{what} not within {within} s")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129),
     (signal.SIGKILL, -signal.SIGKILL)],
    ids=["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"],
)
def test_a_signal_while_waiting_for_locks_installs_nothing(
    cli: Cli, bare_db_dsn: str, signum: int, code: int
) -> None:
    lock = psycopg.connect(bare_db_dsn)
    try:
        lock.execute("LOCK TABLE public.import_job IN ACCESS EXCLUSIVE MODE")
        holder = lock.info.backend_pid
        # --lock-timeout 0: wait as long as it takes, so only the signal can end it.
        proc = cli.popen("install-sql", "--dsn", bare_db_dsn, "--lock-timeout", "0")
        _until("the installer waiting for the lock",
               lambda: any(w == "Lock" for _, w, _ in _others(bare_db_dsn, holder)), 30)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == code, err
        if signum in (signal.SIGTERM, signal.SIGHUP):
            name = signal.Signals(signum).name
            assert f"install-sql was stopped by {name} and cancelled: nothing changed" in err
            assert "Traceback" not in err
        took = _until("no installer backend left",
                      lambda: not _others(bare_db_dsn, holder), 10)
        assert took < 5, took
    finally:
        lock.rollback()
        lock.close()
    time.sleep(0.5)
    with psycopg.connect(bare_db_dsn, autocommit=True) as c:
        assert c.execute(INSTALLED).fetchone() == (False,)


def test_a_lock_that_stays_taken_is_waited_for_at_most_lock_timeout(
    cli: Cli, bare_db_dsn: str
) -> None:
    with psycopg.connect(bare_db_dsn) as lock:
        lock.execute("LOCK TABLE worker.tasks IN ACCESS EXCLUSIVE MODE")
        start = time.monotonic()
        r = cli.run("install-sql", "--dsn", bare_db_dsn, "--lock-timeout", "1", timeout=60)
        took = time.monotonic() - start
        lock.rollback()
    assert r.returncode == 3, r.stderr
    assert took < 10, took
    assert "waited 1 s for a lock on StatBus's tables" in r.stderr
    assert "changed nothing" in r.stderr and "--lock-timeout" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    with psycopg.connect(bare_db_dsn, autocommit=True) as c:
        assert c.execute(INSTALLED).fetchone() == (False,)
    r = cli.run("install-sql", "--dsn", bare_db_dsn)  # the lock is gone: it installs
    assert r.returncode == 0, r.stderr


def test_a_bad_lock_timeout_is_a_usage_error(cli: Cli) -> None:
    r = cli.run("install-sql", "--dsn", "host=127.0.0.1 port=1", "--lock-timeout", "soon")
    assert r.returncode == 2 and "not a number of seconds" in r.stderr
