"""install-sql stopped while a real StatBus holds its locks: it never installs later.

The same as tests/cli/test_install_signals.py, on a copy of the real StatBus (HEAD and the
oldest supported): the lock is held on public.import_job by the test, the installer gets
SIGTERM or SIGKILL while it waits, and afterwards no installer backend remains and nothing
is installed when the lock goes (issue 19 item 8).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.statbus_real.conftest import HEAD, OLDEST, Kit

SCRIPT = Path(sys.executable).parent / "traystatus"
INSTALLED = "SELECT to_regprocedure('public.system_stability_sql_version()') IS NOT NULL"


def _others(dsn: str, mine: int) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(
            "SELECT pid, wait_event_type FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND pid NOT IN (pg_backend_pid(), %s)", (mine,)).fetchall()


@pytest.mark.parametrize("version", [HEAD, OLDEST])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_install_never_commits_on_a_real_statbus(
    kit: Kit, version: str, signum: int, tmp_path: Path
) -> None:
    dsn = kit.dsn(kit.copy(kit.template(version)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(HOME=str(tmp_path), TRAYSTATUS_CONFIG_DIR=str(tmp_path / "config"))
    lock = psycopg.connect(dsn)
    try:
        lock.execute("LOCK TABLE public.import_job IN ACCESS EXCLUSIVE MODE")
        holder = lock.info.backend_pid
        proc = subprocess.Popen([str(SCRIPT), "install-sql", "--dsn", dsn, "--lock-timeout", "0"],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not any(w == "Lock" for _, w in _others(dsn, holder)):
            assert time.monotonic() < deadline, "the installer never waited for the lock"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        expected = 143 if signum == signal.SIGTERM else -signal.SIGKILL
        assert proc.returncode == expected, err
        start = time.monotonic()
        while _others(dsn, holder):
            assert time.monotonic() - start < 5, "an installer backend is still there"
            time.sleep(0.05)
    finally:
        lock.rollback()
        lock.close()
    time.sleep(0.5)
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute(INSTALLED).fetchone() == (False,)
