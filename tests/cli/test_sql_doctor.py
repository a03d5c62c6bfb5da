"""``install-sql`` / ``uninstall-sql`` (versions before and after) and ``doctor`` lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.cli.conftest import Cli
from traystatus.core.pg.sqlfiles import EXPECTED_SQL_VERSION


def _has_sql(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT to_regprocedure('public.is_system_stable()') IS NOT NULL").fetchone()
        assert row is not None
        return bool(row[0])


def test_install_then_uninstall(cli: Cli, bare_db_dsn: str) -> None:
    assert cli.run("status", "--source", "installed", "--dsn", bare_db_dsn).returncode == 3

    r = cli.run("install-sql", "--dsn", bare_db_dsn)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(
        f"traystatus SQL installed: version not installed -> {EXPECTED_SQL_VERSION}")
    assert _has_sql(bare_db_dsn)
    assert cli.run("status", "--dsn", bare_db_dsn).returncode == 0

    again = cli.run("install-sql", "--json", "--dsn", bare_db_dsn)  # idempotent
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {
        "action": "install", "version_before": EXPECTED_SQL_VERSION,
        "version_after": EXPECTED_SQL_VERSION, "expected_version": EXPECTED_SQL_VERSION,
    }

    r = cli.run("uninstall-sql", "--dsn", bare_db_dsn)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(
        f"traystatus SQL uninstalled: version {EXPECTED_SQL_VERSION} -> not installed")
    assert not _has_sql(bare_db_dsn)


def test_install_as_an_analyst_changes_nothing(
    cli: Cli, bare_db_dsn: str, login_role: tuple[str, str]
) -> None:
    dsn = make_conninfo(bare_db_dsn, user=login_role[0])
    r = cli.run("install-sql", "--dsn", dsn, env={"PGPASSWORD": login_role[1]})
    assert r.returncode == 3
    assert "changed nothing" in r.stderr and "does not own public.import_job" in r.stderr
    assert "run install.sql as postgres or a superuser" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not _has_sql(bare_db_dsn)


def test_install_on_a_database_without_statbus(cli: Cli, bare_db_dsn: str) -> None:
    with psycopg.connect(bare_db_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA worker CASCADE")
    r = cli.run("install-sql", "--dsn", bare_db_dsn)
    assert r.returncode == 3
    assert "is not a StatBus database (worker.tasks" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def _lines(stdout: str) -> dict[str, str]:
    """check name -> level, from the text report."""
    out = {}
    for line in stdout.splitlines():
        level, _, rest = line.partition(" ")
        out[rest.strip().split(":")[0]] = level
    return out


def test_doctor_all_good(cli: Cli, db_dsn: str) -> None:
    r = cli.run("doctor", "--dsn", db_dsn)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = _lines(r.stdout)
    assert lines["database reachable"] == "ok"
    assert lines["TLS"] == "ok"  # local, unencrypted is fine
    assert lines["SQL installed"] == "ok"
    assert lines["privileges"] == "ok"
    assert lines["keychain"] == "ok"  # the test keychain is a real, non-plaintext backend
    # The desktop checks are hooked in: no session bus here, so warnings only.
    assert lines["tray host"] == "warn" and lines["notification server"] == "warn"
    assert f"version {EXPECTED_SQL_VERSION}, as expected" in r.stdout


def test_doctor_sql_missing_and_json(cli: Cli, bare_db_dsn: str) -> None:
    r = cli.run("doctor", "--json", "--source", "installed", "--dsn", bare_db_dsn)
    assert r.returncode == 3
    checks = {c["check"]: c for c in json.loads(r.stdout)}
    assert checks["SQL installed"]["level"] == "fail"
    assert "install-sql" in checks["SQL installed"]["fix"]
    assert checks["database reachable"]["level"] == "ok"
    # auto (the default): missing SQL is a warning, StatBus is read directly.
    r = cli.run("doctor", "--json", "--dsn", bare_db_dsn)
    assert r.returncode == 0, r.stdout
    checks = {c["check"]: c for c in json.loads(r.stdout)}
    assert checks["SQL installed"]["level"] == "warn"
    assert checks["source"]["level"] == "ok"
    assert "watching StatBus directly" in checks["source"]["detail"]


def test_doctor_no_privilege(cli: Cli, db_dsn: str, make_role) -> None:
    name, password = make_role()
    r = cli.run("doctor", "--source", "installed", "--dsn", make_conninfo(db_dsn, user=name),
                env={"PGPASSWORD": password})
    assert r.returncode == 3
    lines = _lines(r.stdout)
    assert lines["privileges"] == "FAIL"
    assert "grant the role `authenticated`" in r.stdout
    # auto: the built-in reading is tried next, and it names the missing grant too.
    r = cli.run("doctor", "--dsn", make_conninfo(db_dsn, user=name),
                env={"PGPASSWORD": password})
    assert r.returncode == 3
    lines = _lines(r.stdout)
    assert (lines["privileges"], lines["source"]) == ("warn", "FAIL")
    assert "USAGE on schema worker" in r.stdout and 'GRANT authenticated TO "' in r.stdout


def test_doctor_analyst_ok(cli: Cli, analyst_dsn: str, login_role: tuple[str, str]) -> None:
    r = cli.run("doctor", "--dsn", analyst_dsn, env={"PGPASSWORD": login_role[1]})
    assert r.returncode == 0, r.stdout
    assert _lines(r.stdout)["privileges"] == "ok"


def test_doctor_wrong_password_and_no_keychain(cli: Cli, analyst_dsn: str) -> None:
    r = cli.run("doctor", "--dsn", analyst_dsn,
                env={"PGPASSWORD": "Zq-not-it-42",
                     "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert r.returncode == 3
    lines = _lines(r.stdout)
    assert lines["database reachable"] == "FAIL"
    assert lines["keychain"] == "warn"
    assert "refused the login" in r.stdout
    assert "Zq-not-it-42" not in r.stdout + r.stderr


def test_outdated_sql(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    conn.execute(
        "CREATE OR REPLACE FUNCTION public.system_stability_sql_version() RETURNS integer"
        " LANGUAGE sql IMMUTABLE AS $$ SELECT 0 $$"
    )
    status = json.loads(cli.run("status", "--json", "--source", "installed", "--dsn",
                                db_dsn).stdout)
    assert (status["state"], status["problem"]) == ("error", "sql_outdated")
    r = cli.run("doctor", "--source", "installed", "--dsn", db_dsn)
    assert r.returncode == 3
    assert ("FAIL  SQL installed: The traystatus SQL in database "
            f"'{conninfo_to_dict(db_dsn)['dbname']}' is version 0; this traystatus expects "
            f"version {EXPECTED_SQL_VERSION}. To fix: Ask a StatBus administrator to run "
            "`traystatus install-sql` again.") in r.stdout
    # In auto mode (the default) outdated SQL is a warning: traystatus reads StatBus directly.
    auto = json.loads(cli.run("status", "--json", "--dsn", db_dsn).stdout)
    assert (auto["state"], auto["source"]) == ("stable", "builtin")
    assert "version 0" in auto["note"] and "reads StatBus directly" in auto["note"]
    r = cli.run("doctor", "--dsn", db_dsn)
    assert r.returncode == 0, r.stdout
    assert "warn  SQL installed: The traystatus SQL in database " in r.stdout
    assert "ok    source: builtin (auto): watching StatBus directly" in r.stdout
    # install-sql is the fix, and it says so with both versions.
    fixed = cli.run("install-sql", "--dsn", db_dsn)
    assert fixed.returncode == 0 and f"version 0 -> {EXPECTED_SQL_VERSION}" in fixed.stdout


def test_doctor_tls_levels(pg_server, tmp_path_factory) -> None:
    """Through the TLS front (tests/packaging/test_tls.py): verified is ok, TLS
    without verification is a warning that says how to verify, and the line says the TLS
    ends at a proxy (the server behind it sees a plain connection, as in StatBus)."""
    from tests.packaging.test_tls import TlsFront, make_certs

    certs = tmp_path_factory.mktemp("certs")
    make_certs(certs)
    params = {k: str(v) for k, v in conninfo_to_dict(pg_server.admin_dsn).items()}
    front = TlsFront(certs, (params["host"], int(params["port"])))
    front.start()
    try:
        base = {"host": "localhost", "hostaddr": "127.0.0.1", "port": str(front.port),
                "dbname": "postgres", "user": "postgres", "sslnegotiation": "direct"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        home = tmp_path_factory.mktemp("home")
        env.update(HOME=str(home), TRAYSTATUS_CONFIG_DIR=str(home / "cfg"))

        def tls_line(**kw: str) -> dict[str, str]:
            r = subprocess.run(
                [sys.executable, "-m", "traystatus", "doctor", "--json",
                 "--dsn", make_conninfo("", **{**base, **kw})],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )
            checks = {c["check"]: c for c in json.loads(r.stdout)}
            return checks["TLS"]

        ok = tls_line(sslmode="verify-full", sslrootcert=str(certs / "ca.crt"))
        assert ok["level"] == "ok", ok
        assert "proxy" in ok["detail"] and "verified" in ok["detail"]
        weak = tls_line(sslmode="require")
        assert weak["level"] == "warn", weak
        assert "NOT verified" in weak["detail"] and "verify-full" in weak["fix"]
    finally:
        front.stop()
