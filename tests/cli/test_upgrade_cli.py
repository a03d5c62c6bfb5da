"""The CLI while StatBus upgrades: ``status`` exits 1 with ``upgrading``, ``wait`` never
returns 0 while the upgrade runs and returns 0 once StatBus's row says it completed."""

from __future__ import annotations

import select
import subprocess

import psycopg

from tests.cli.conftest import SCRIPT, Cli
from tests.core.test_monitor_upgrade import UPGRADE_TABLE


def _run(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(statement.encode())


def test_status_and_wait_while_statbus_upgrades(cli: Cli, db_dsn: str) -> None:
    _run(db_dsn, UPGRADE_TABLE)
    _run(db_dsn, "INSERT INTO public.upgrade (commit_sha, commit_tags, summary, state, "
         "scheduled_at, started_at) VALUES (repeat('d', 40), ARRAY['v2026.12.2'], 'x', "
         "'in_progress', now(), now())")
    st = cli.run("status", "--dsn", db_dsn)
    assert st.returncode == 1, st.stderr
    assert st.stdout.startswith("upgrading: StatBus is being upgraded since "), st.stdout
    w = cli.run("wait", "--dsn", db_dsn, "--timeout", "2")
    assert w.returncode == 1, w.stderr
    assert "not stable after 2 s (still upgrading)" in w.stderr
    # a wait that is running when the upgrade completes returns 0 then, not before
    proc = subprocess.Popen([str(SCRIPT), "wait", "--dsn", db_dsn, "--timeout", "60"],
                            env=cli.env, cwd=cli.home, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # Until wait says what it sees (its first line, flushed): it is waiting, upgrading.
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 60)
        assert ready, "wait said nothing within 60 s"
        first = proc.stderr.readline()
        assert proc.poll() is None, first
        assert "upgrading: StatBus is being upgraded since" in first, first
        _run(db_dsn, "UPDATE public.upgrade SET state = 'completed', completed_at = now()")
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, first + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    st = cli.run("status", "--dsn", db_dsn)
    assert st.returncode == 0 and st.stdout.startswith("stable: StatBus was upgraded at ")
