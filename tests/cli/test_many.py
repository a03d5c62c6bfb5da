"""Several deployments from the command line: ``status --all`` (one line per profile, an
array with --json, the worst exit code) and ``wait`` with several ``--profile``s (until
all of them are stable at once). Two real databases: one busy, one stable (the second
without traystatus's SQL: read through StatBus's own channels)."""

from __future__ import annotations

import json
import select
import time

import psycopg

from tests.cli.conftest import Cli, finish_job, start_job

GENEROUS = 30.0


def add(cli: Cli, name: str, dsn: str) -> None:
    r = cli.run("profile", "add", name, "--dsn", dsn, "--no-password")
    assert r.returncode == 0, r.stderr


def test_status_all_one_line_each_and_the_worst_exit_code(
    cli: Cli, db_dsn: str, bare_db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    add(cli, "prod", db_dsn)
    add(cli, "test", bare_db_dsn)
    r = cli.run("status", "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["prod: stable", "test: stable"]

    start_job(conn)
    r = cli.run("status", "--all", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    objs = json.loads(r.stdout)
    assert [(o["profile"], o["state"]) for o in objs] == [("prod", "processing"),
                                                          ("test", "stable")]
    assert objs[0]["source"] == "installed" and objs[1]["source"] == "builtin"

    # A deployment that does not answer is the worst: exit 3, and the others still report.
    add(cli, "gone", "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2")
    started = time.monotonic()
    r = cli.run("status", "--all")
    assert r.returncode == 3, r.stdout + r.stderr
    lines = {line.split(":")[0]: line for line in r.stdout.splitlines()}
    assert set(lines) == {"gone", "prod", "test"}
    assert lines["gone"].startswith("gone: disconnected"), lines["gone"]
    assert (lines["prod"], lines["test"]) == ("prod: processing", "test: stable")
    assert time.monotonic() - started < GENEROUS  # all at once, not one after another

    bad = cli.run("status", "--all", "--profile", "prod")
    assert bad.returncode == 2 and "--all" in bad.stderr and "Traceback" not in bad.stderr


def test_wait_for_several_profiles_returns_when_all_are_stable(
    cli: Cli, db_dsn: str, bare_db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    add(cli, "prod", db_dsn)
    add(cli, "test", bare_db_dsn)
    r = cli.run("wait", "--timeout", "20", "--profile", "prod", "--profile", "test")
    assert r.returncode == 0, r.stderr

    start_job(conn)
    r = cli.run("wait", "--timeout", "1", "-p", "prod", "-p", "test")
    assert r.returncode == 1
    assert "not all stable after 1 s (still: prod processing)" in r.stderr

    proc = cli.popen("wait", "--timeout", "120", "-p", "test", "-p", "prod")
    try:
        assert proc.stderr is not None
        seen = ""
        end = time.monotonic() + GENEROUS
        while "prod: processing" not in seen and time.monotonic() < end:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += proc.stderr.readline()
        assert "prod: processing" in seen, seen
        assert proc.poll() is None  # test is stable, prod is not: still waiting
        finish_job(conn)
        assert proc.wait(GENEROUS) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)


def test_wait_with_several_profiles_exits_3_naming_the_unusable_one(
    cli: Cli, db_dsn: str, bare_db_dsn: str
) -> None:
    add(cli, "prod", db_dsn)
    add(cli, "nosql", bare_db_dsn)
    r = cli.run("wait", "--timeout", "60", "--source", "installed", "-p", "prod", "-p", "nosql")
    assert r.returncode == 3, r.stderr
    assert "nosql:" in r.stderr and "install-sql" in r.stderr
