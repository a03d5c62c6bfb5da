"""sql/install.sql on real StatBus databases: every supported version, every role that may
install, and those that may not; idempotent; uninstall leaves StatBus exactly as it was; a
StatBus upgrade with traystatus installed (rows in the tables) applies every migration."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from tests.sql.test_install import SNAPSHOT
from tests.statbus_real.conftest import HEAD, MIDDLE, OLDEST, VERSIONS, Kit
from traystatus._paths import sql_dir
from traystatus.core.pg.sqlfiles import EXPECTED_SQL_VERSION

INSTALL = sql_dir() / "install.sql"
UNINSTALL = sql_dir() / "uninstall.sql"
SNAPSHOT_REAL = {
    **SNAPSHOT,
    "default_acl": "SELECT defaclrole::regrole::text, defaclnamespace::regnamespace::text, "
                   "defaclobjtype::text, defaclacl::text FROM pg_default_acl ORDER BY 1, 2, 3",
    "event_triggers": "SELECT evtname, evtenabled::text FROM pg_event_trigger ORDER BY 1",
}
OURS = ("SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc AS p "
        "WHERE p.pronamespace = 'public'::regnamespace AND (p.proname LIKE 'system\\_stab%%' "
        "OR p.proname IN ('is_system_stable', 'get_analytics_tasks_in_progress', "
        "'get_system_status_details', 'system_work_mark', 'get_system_work_summary')) "
        "ORDER BY 1")


def snapshot(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(dsn, autocommit=True) as c:
        return {k: c.execute(q).fetchall() for k, q in SNAPSHOT_REAL.items()}


def psql_file(kit: Kit, dsn: str, path: object) -> tuple[int, str]:
    proc = kit.psql(dsn, "-f", str(path))
    return proc.returncode, proc.stderr


def one(dsn: str, q: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(q).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_install_idempotent_and_uninstall_exact_on_each_version(
    kit: Kit, new_db: Callable[..., str], version: str
) -> None:
    dsn = new_db(kit.template(version))
    before = snapshot(dsn)
    t0 = time.perf_counter()
    rc, err = psql_file(kit, dsn, INSTALL)
    took = time.perf_counter() - t0
    assert rc == 0 and "ERROR" not in err, err
    print(f"install on StatBus {version}: {took:.2f} s")
    installed = snapshot(dsn)
    assert installed != before
    assert installed["default_acl"] == before["default_acl"]  # restored exactly
    rc, err = psql_file(kit, dsn, INSTALL)
    assert rc == 0, err
    assert snapshot(dsn) == installed  # idempotent
    assert one(dsn, "SELECT public.system_stability_sql_version()") == EXPECTED_SQL_VERSION
    assert one(dsn, "SELECT public.system_stability_sql_drift()") == []
    # the enum values of that version, and whether its worker holds the queue for a review
    info = one(dsn, "SELECT public.system_stability_sql_info()")
    assert isinstance(info, dict)
    assert ("interrupted" in info["task_state"]) == (version != OLDEST)
    assert info["review_holds_queue"] == (version != OLDEST)
    # PUBLIC has EXECUTE on nothing of ours; StatBus's roles have it on what clients call
    with psycopg.connect(dsn, autocommit=True) as c:
        acls = c.execute(OURS).fetchall()
    assert len(acls) == 17
    for sig, acl in acls:
        assert acl is not None and not any(a.startswith("=") for a in acl.strip("{}").split(","))
        internal = ("row_", "commit_", "truncate_", "_answer(", "_next_due_at(")
        if not any(part in sig for part in internal):
            assert "authenticated=X" in acl and "notify_reader=X" in acl, (sig, acl)
    for _ in range(2):
        rc, err = psql_file(kit, dsn, UNINSTALL)
        assert rc == 0, err
        assert snapshot(dsn) == before  # exactly as it was


def test_an_analyst_and_the_notify_reader_use_it(kit: Kit, new_db: Callable[..., str]) -> None:
    dsn = new_db()
    assert psql_file(kit, dsn, INSTALL)[0] == 0
    name = dsn.split("dbname=")[1].split()[0]
    analyst = kit.dsn(name, user="analyst@statbus-real.test", password="statbus-real-analyst")
    notify = kit.dsn(name, user="statbus_notify", password="statbus-real-notify")
    for who in (analyst, notify):
        with psycopg.connect(who, autocommit=True) as c:
            assert c.execute("SELECT public.is_system_stable(), public.system_stability_review(), "
                             "public.get_system_status_details() IS NOT NULL").fetchone() == (
                True, None, True)


@pytest.fixture
def owner_role(kit: Kit) -> Iterator[tuple[str, str]]:
    """A NON-superuser that owns import_job and worker.tasks (set up per database below)."""
    name, password = f"tsr_owner_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with kit.admin() as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))
    yield name, password
    with kit.admin() as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_the_owner_of_the_tables_installs_without_superuser(
    kit: Kit, new_db: Callable[..., str], owner_role: tuple[str, str]
) -> None:
    """No superuser-only switch: a plain role that owns the two tables (and may create in
    their schemas and read the registry) passes sql_saga's event trigger."""
    dsn = new_db()
    name = dsn.split("dbname=")[1].split()[0]
    role, password = owner_role
    owner = kit.dsn(name, user=role, password=password)
    grants = [
        "ALTER TABLE public.import_job OWNER TO {r}", "ALTER TABLE worker.tasks OWNER TO {r}",
        "GRANT USAGE, CREATE ON SCHEMA worker TO {r}", "GRANT CREATE ON SCHEMA public TO {r}",
        "GRANT SELECT ON worker.command_registry TO {r}",
    ]
    with psycopg.connect(dsn, autocommit=True) as c:
        for g in grants:
            c.execute(sql.SQL(g).format(r=sql.Identifier(role)))
    before = snapshot(dsn)
    for _ in range(2):
        rc, err = psql_file(kit, owner, INSTALL)
        assert rc == 0 and "ERROR" not in err, err
    assert one(owner, "SELECT public.is_system_stable()") is True
    assert one(dsn, "SELECT count(*) FROM pg_default_acl") == 0
    rc, err = psql_file(kit, owner, UNINSTALL)
    assert rc == 0, err
    assert snapshot(dsn) == before
    with psycopg.connect(dsn, autocommit=True) as c:  # give the tables back before DROP ROLE
        c.execute("SET session_replication_role = replica")  # DROP OWNED revokes: sql_saga
        c.execute(sql.SQL("REASSIGN OWNED BY {} TO postgres").format(sql.Identifier(role)))
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("who", ["analyst", "not_statbus"])
def test_who_may_not_install_gets_one_line_and_nothing_changes(
    kit: Kit, new_db: Callable[..., str], who: str
) -> None:
    if who == "analyst":
        dsn = new_db()
        name = dsn.split("dbname=")[1].split()[0]
        target = kit.dsn(name, user="analyst@statbus-real.test", password="statbus-real-analyst")
        expect = ("traystatus: role analyst@statbus-real.test cannot install: it does not own "
                  "public.import_job (owner: postgres); run install.sql as postgres")
    else:  # the cluster's maintenance database: no StatBus in it
        dsn = target = kit.dsn("postgres")
        expect = "traystatus: database postgres is not a StatBus database (public.import_job"
    before = snapshot(dsn)
    rc, err = psql_file(kit, target, INSTALL)
    assert rc == 3
    errors = [ln for ln in err.splitlines() if "ERROR:" in ln]
    assert len(errors) == 1 and expect in errors[0], err
    assert "run install.sql as" in errors[0] or "connect to the StatBus database" in errors[0]
    assert snapshot(dsn) == before


def test_install_time_on_head(kit: Kit, new_db: Callable[..., str]) -> None:
    """The figure for the docs: median of three installs on a fresh copy each."""
    times = []
    for _ in range(3):
        dsn = new_db()
        t0 = time.perf_counter()
        assert psql_file(kit, dsn, INSTALL)[0] == 0
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"install on real StatBus HEAD: median {times[1]:.3f} s of {times}")
    assert times[1] < 10


def _migrate(kit: Kit, dsn: str, after: str) -> list[str]:
    """Apply StatBus's migrations newer than ``after``, as its migration runner (and the kit's
    build.sh) does: each file through psql ON_ERROR_STOP as the superuser, from the StatBus
    tree, then its row in db.migration. Returns the files applied."""
    applied = []
    for f in sorted((kit.src / "migrations").glob("*.up.*sql")):
        version = f.name.split("_", 1)[0]
        if not version.isdigit() or int(version) <= int(after):
            continue
        record = (
            "SELECT format(CASE WHEN EXISTS (SELECT FROM information_schema.columns "
            "WHERE table_schema = 'db' AND table_name = 'migration' AND column_name = "
            "'content_hash') THEN 'INSERT INTO db.migration (version, filename, description, "
            "duration_ms, content_hash) VALUES (%s, %L, %L, 0, %L)' ELSE 'INSERT INTO "
            "db.migration (version, filename, description, duration_ms) VALUES (%s, %L, %L, 0)'"
            f" END, {version}, '{f.name}', 'test', 'test') \\gexec\n")
        proc = kit.psql(dsn, cwd=kit.src, stdin=f.read_text() + "\n" + record)
        assert proc.returncode == 0, f"migration {f.name} failed with traystatus installed:" \
                                     f" {proc.stderr[-1500:]}"
        applied.append(f.name)
    return applied


def test_statbus_upgrade_with_traystatus_installed(kit: Kit, new_db: Callable[..., str]) -> None:
    """Installed on the oldest supported StatBus with busy and finished rows in both tables,
    then every later migration (to HEAD) applies; drift is reported until install.sql is run
    again, which picks up 'interrupted' and the review hold."""
    dsn = new_db(kit.template(OLDEST))
    assert psql_file(kit, dsn, INSTALL)[0] == 0
    with psycopg.connect(dsn, autocommit=True) as c:
        for state, error in (("pending", None), ("processing", None), ("waiting", None),
                             ("completed", None), ("failed", "boom")):
            c.execute("INSERT INTO worker.tasks (command, state, payload, error) "
                      "VALUES ('derive_statistical_unit', %s, "
                      "'{\"command\": \"derive_statistical_unit\"}', %s)", (state, error))
        assert c.execute("SELECT public.is_system_stable()").fetchone() == (False,)
    applied = _migrate(kit, dsn, "20260227102355")
    assert len(applied) > 100
    drift = one(dsn, "SELECT public.system_stability_sql_drift()")
    assert isinstance(drift, list) and len(drift) == 2, drift
    assert any("'interrupted'" in d for d in drift) and any("review" in d for d in drift)
    doctor = subprocess.run([sys.executable, "-m", "traystatus", "doctor", "--dsn", dsn],
                            capture_output=True, text=True, timeout=120, check=False)
    line = next(ln for ln in doctor.stdout.splitlines() if "SQL covers StatBus" in ln)
    assert line.startswith("warn") and "'interrupted'" in line and "install-sql" in line, line
    assert psql_file(kit, dsn, INSTALL)[0] == 0
    assert one(dsn, "SELECT public.system_stability_sql_drift()") == []
    # the answer matches the worker's own test on the upgraded schema; interrupted now counts
    truth = ("SELECT NOT EXISTS (SELECT FROM worker.tasks AS t JOIN worker.command_registry "
             "AS cr USING (command) WHERE cr.queue = 'analytics' AND t.state::text IN "
             "('pending', 'processing', 'waiting', 'interrupted') AND (t.scheduled_at IS NULL "
             "OR t.scheduled_at <= now()))")
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute(f"SELECT public.is_system_stable() = ({truth})").fetchone() == (True,)
        c.execute("UPDATE worker.tasks SET state = 'completed' "
                  "WHERE state::text IN ('pending', 'processing', 'waiting')")
        assert c.execute("SELECT public.is_system_stable()").fetchone() == (True,)
        c.execute("UPDATE worker.tasks SET state = 'interrupted' "
                  "WHERE id = (SELECT min(id) FROM worker.tasks "
                  "            WHERE command = 'derive_statistical_unit')")
        assert c.execute("SELECT public.is_system_stable()").fetchone() == (False,)
    assert MIDDLE and HEAD  # the other versions are covered by the install test


def test_install_sql_check_and_print_on_the_real_statbus(
    kit: Kit, new_db: Callable[..., str]
) -> None:
    """--check runs the whole install and rolls it back: nothing is left on the real schema,
    after a success or a failure midway (a view where our table goes)."""
    dsn = new_db()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "traystatus", *args], capture_output=True,
                              text=True, timeout=120, check=False)

    before = snapshot(dsn)
    ok = cli("install-sql", "--check", "--dsn", dsn)
    assert ok.returncode == 0, ok.stderr
    assert f"would install version {EXPECTED_SQL_VERSION}" in ok.stdout
    assert snapshot(dsn) == before
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE VIEW public.system_stability_commit_hook AS SELECT 1 AS x")
    before = snapshot(dsn)
    bad = cli("install-sql", "--check", "--dsn", dsn)
    assert bad.returncode == 3 and "the install would fail" in bad.stderr, bad.stderr
    assert snapshot(dsn) == before
    printed = cli("install-sql", "--print")
    assert printed.stdout == INSTALL.read_text(encoding="utf-8")
