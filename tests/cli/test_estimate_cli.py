"""Issue 22 in the CLI: ``status --json`` carries the estimate of when the register will be
stable (``progress.estimate``), ``wait -v`` prints it as it changes."""

from __future__ import annotations

import json
import select

import psycopg

from tests.cli.conftest import Cli, finish_job
from tests.cli.test_wait_watch import GENEROUS, _stop
from tests.core.test_monitor_estimate import HISTORY

RUNNING = ("INSERT INTO public.import_job (slug, definition_id, state, total_rows, "
           "import_completed_pct, processing_start_at) "
           "VALUES ('job1', 1, 'processing_data', 1000, 50, now() - interval '5 min')")


def test_status_json_has_the_estimate(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    conn.execute(HISTORY)
    conn.execute(RUNNING)
    r = cli.run("status", "--json", "--dsn", db_dsn)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    est = out["progress"]["estimate"]
    assert est["known"] is True and est["low"] <= est["at"] <= est["high"]
    assert "after imports of this size this week (3 runs)" in est["how"]
    assert est["text"].startswith("stable at about ")


def test_status_json_says_unknown_without_history(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    conn.execute(RUNNING)
    out = json.loads(cli.run("status", "--json", "--dsn", db_dsn).stdout)
    est = out["progress"]["estimate"]
    assert est["known"] is False and est["at"] is None and est["how"]


def test_wait_verbose_prints_the_estimate(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    conn.execute(HISTORY)
    conn.execute(RUNNING)
    proc = cli.popen("wait", "-v", "--timeout", "120", "--dsn", db_dsn)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while not any("stable at about" in line for line in lines):
            ready, _, _ = select.select([proc.stderr], [], [], GENEROUS)
            assert ready, lines
            line = proc.stderr.readline()
            assert line, lines
            lines.append(line)
        said = next(line for line in lines if "stable at about" in line)
        assert said.startswith("traystatus wait: stable at about ")
        assert "after imports of this size this week" in said
        finish_job(conn)
        assert proc.wait(GENEROUS) == 0
    finally:
        _stop(proc)
