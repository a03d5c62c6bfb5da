"""``traystatus status``: exit codes and output for every state, run as a real subprocess."""

from __future__ import annotations

import json

import psycopg
from psycopg.conninfo import make_conninfo

from tests.cli.conftest import Cli, start_job
from traystatus.demo.embedded import free_port


def test_stable(cli: Cli, db_dsn: str) -> None:
    r = cli.run("status", "--dsn", db_dsn)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stable"


def test_processing(cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]) -> None:
    start_job(conn)
    r = cli.run("status", "--dsn", db_dsn)
    assert r.returncode == 1, r.stderr
    assert r.stdout.strip() == "processing"


def test_json_shape(cli: Cli, db_dsn: str) -> None:
    r = cli.run("status", "--json", "--dsn", db_dsn)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["state"] == "stable"
    assert obj["reason"] == "" and obj["problem"] is None
    assert obj["since"].startswith("20")
    assert "details" not in obj


def test_json_details(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    start_job(conn, "details_job", "analysing_data")
    r = cli.run("status", "--json", "--details", "--dsn", db_dsn)
    assert r.returncode == 1, r.stderr
    obj = json.loads(r.stdout)
    assert obj["state"] == "processing"
    jobs = obj["details"]["import_jobs"]
    assert [(j["slug"], j["phase"], j["active"]) for j in jobs] == [
        ("details_job", "analysing", True)
    ]
    assert obj["details"]["system_stable"] is False
    assert obj["details"]["headline"] == "1 import running"

    text = cli.run("status", "--details", "--dsn", db_dsn)
    assert text.returncode == 1
    assert "import details_job: Analysing 0 %" in text.stdout


def test_unreachable(cli: Cli) -> None:
    dsn = f"host=127.0.0.1 port={free_port()} dbname=x user=y connect_timeout=3"
    r = cli.run("status", "--dsn", dsn)
    assert r.returncode == 3
    assert r.stdout.startswith("disconnected: The database server at 127.0.0.1")
    assert "cannot be reached" in r.stdout
    j = json.loads(cli.run("status", "--json", "--dsn", dsn).stdout)
    assert (j["state"], j["problem"]) == ("disconnected", "unreachable")


def test_sql_missing(cli: Cli, bare_db_dsn: str) -> None:
    r = cli.run("status", "--json", "--source", "installed", "--dsn", bare_db_dsn)
    assert r.returncode == 3
    obj = json.loads(r.stdout)
    assert (obj["state"], obj["problem"]) == ("error", "sql_missing")
    assert "install-sql" in obj["reason"]


def test_sql_missing_in_auto_mode_reads_statbus_directly(cli: Cli, bare_db_dsn: str) -> None:
    r = cli.run("status", "--json", "--dsn", bare_db_dsn)
    assert r.returncode == 0, r.stdout + r.stderr
    obj = json.loads(r.stdout)
    assert (obj["state"], obj["source"]) == ("stable", "builtin")
    assert "watching StatBus directly" in obj["note"] and "docs/sql.md" in obj["note"]


def test_wrong_password(cli: Cli, analyst_dsn: str) -> None:
    r = cli.run("status", "--json", "--dsn", analyst_dsn, env={"PGPASSWORD": "Zq-not-it-42"})
    assert r.returncode == 3
    obj = json.loads(r.stdout)
    assert (obj["state"], obj["problem"]) == ("error", "auth_failed")
    assert "Zq-not-it-42" not in r.stdout + r.stderr  # the password is never echoed


def test_right_password_from_the_environment(
    cli: Cli, analyst_dsn: str, login_role: tuple[str, str]
) -> None:
    r = cli.run("status", "--dsn", analyst_dsn, env={"PGPASSWORD": login_role[1]})
    assert (r.returncode, r.stdout.strip()) == (0, "stable"), r.stderr


def test_no_password_and_no_terminal(cli: Cli, analyst_dsn: str) -> None:
    r = cli.run("status", "--dsn", analyst_dsn)
    assert r.returncode == 3
    assert "asks for a password" in r.stderr
    assert "~/.pgpass" in r.stderr and "profile add" in r.stderr


def test_no_privilege(cli: Cli, db_dsn: str, make_role) -> None:
    name, password = make_role()  # a login that is not in `authenticated`
    dsn = make_conninfo(db_dsn, user=name)
    r = cli.run("status", "--json", "--dsn", dsn, env={"PGPASSWORD": password})
    assert r.returncode == 3
    obj = json.loads(r.stdout)
    assert (obj["state"], obj["problem"]) == ("error", "permission")


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli.run("status", "--timeout", "soon").returncode == 2
    assert cli.run("frobnicate").returncode == 2
    r = cli.run("--version")
    assert r.returncode == 0 and r.stdout.startswith("traystatus ")


def test_python_dash_m(cli: Cli, db_dsn: str) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "traystatus", "status", "--dsn", db_dsn],
        env=cli.env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert (r.returncode, r.stdout.strip()) == (0, "stable"), r.stderr


def test_password_is_asked_on_a_terminal(
    cli: Cli, analyst_dsn: str, login_role: tuple[str, str]
) -> None:
    """No password anywhere, but a terminal: getpass asks on it, and the command works."""
    import os
    import select
    import subprocess
    import time

    from tests.cli.conftest import SCRIPT

    # util-linux `setsid --ctty` makes the pty the child's controlling terminal (getpass
    # reads /dev/tty), without forking this multi-threaded test process by hand.
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        ["setsid", "--ctty", str(SCRIPT), "status", "--dsn", analyst_dsn],
        stdin=secondary, stdout=secondary, stderr=secondary, env=cli.env, cwd=cli.home,
    )
    os.close(secondary)
    output = b""
    try:
        deadline = time.monotonic() + 60
        while b"Password for" not in output and time.monotonic() < deadline:
            if select.select([primary], [], [], 1)[0]:
                output += os.read(primary, 1024)
        assert b"Password for " + login_role[0].encode() in output
        os.write(primary, login_role[1].encode() + b"\n")
        while time.monotonic() < deadline:
            if not select.select([primary], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(primary, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        code = proc.wait(60)
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, output
    assert b"stable" in output
    assert login_role[1].encode() not in output  # not echoed
