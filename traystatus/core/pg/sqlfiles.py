"""The packaged SQL: read it, apply it, and compare the installed version with ours.

The files are the ones in ``sql/`` (``traystatus._paths.sql_dir()`` finds them in a
checkout or inside the wheel). Each holds its own BEGIN/COMMIT, so they run on an
autocommit connection exactly as ``psql -f`` would run them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import errors as pgerrors

from traystatus._paths import sql_dir
from traystatus.core.model.state import Problem
from traystatus.core.pg import connect as pgconnect
from traystatus.core.pg.diagnosis import Diagnosis

EXPECTED_SQL_VERSION = 2
"""The ``system_stability_sql_version()`` this traystatus was written for."""

SqlFile = Literal["install", "uninstall"]


@dataclass(frozen=True)
class VersionProblem:
    """Why an installed SQL version is not the one expected: the kind, the fact, the fix."""

    problem: Problem
    fact: str
    fix: str

    @property
    def message(self) -> str:
        return f"{self.fact}. {self.fix}"

    def diagnosis(self) -> Diagnosis:
        return Diagnosis(self.problem, self.message)


def version_problem(version: object, where: str) -> VersionProblem | None:
    """What an installed SQL version means for this traystatus: None when it is the one
    expected, else SQL_MISSING / SQL_OUTDATED / SQL_NEWER with the fix. ``where`` names
    the database for the message ("mydb on db.example.org:5432").

    The one version rule: the monitor, ``doctor`` and the Settings' Test connection all
    use it, so they say the same thing.
    """
    if version == EXPECTED_SQL_VERSION:
        return None
    if version is None:
        return VersionProblem(
            Problem.SQL_MISSING,
            f"The traystatus SQL is not installed in {where}",
            "Ask a StatBus administrator to run `traystatus install-sql` on that database.",
        )
    fact = (
        f"The traystatus SQL in {where} is version {version}; this traystatus expects "
        f"version {EXPECTED_SQL_VERSION}"
    )
    if isinstance(version, int) and version > EXPECTED_SQL_VERSION:
        return VersionProblem(
            Problem.SQL_NEWER, fact, "Update traystatus to a version that knows this SQL."
        )
    return VersionProblem(
        Problem.SQL_OUTDATED,
        fact,
        "Ask a StatBus administrator to run `traystatus install-sql` again.",
    )


def read(name: SqlFile) -> str:
    """The text of ``sql/<name>.sql``."""
    if name not in ("install", "uninstall"):
        raise ValueError(f"unknown SQL file {name!r}: use 'install' or 'uninstall'")
    return (sql_dir() / f"{name}.sql").read_text(encoding="utf-8")


async def installed_version(conn: psycopg.AsyncConnection[Any]) -> int | None:
    """The installed SQL version, or None when traystatus's SQL is not installed.

    Runs inside a transaction block (a savepoint when one is already open), so a missing
    function does not leave the caller's transaction aborted.
    """
    try:
        async with conn.transaction():
            cur = await conn.execute("SELECT public.system_stability_sql_version()")
            row = await cur.fetchone()
    except (pgerrors.UndefinedFunction, pgerrors.InvalidSchemaName):
        return None
    if row is None or row[0] is None:
        return None
    return int(row[0])


DEFAULT_LOCK_TIMEOUT = 10.0
"""Seconds the install waits for each of StatBus's table locks (0: as long as it takes)."""


@dataclass
class Applying:
    """Where an ``apply`` is, for a caller that must say what a cancel left behind:
    ``committing`` is set just before the COMMIT is sent (only then can a cancel leave the
    SQL installed)."""

    committing: bool = False


async def bound_session(conn: psycopg.AsyncConnection[Any], lock_timeout: float) -> None:
    """Session settings that keep an install from outliving its client or blocking
    StatBus for long: ``lock_timeout`` (each lock waited for at most that long: StatBus's
    worker queues behind a waiting lock request), ``client_connection_check_interval`` (a
    backend whose client died stops even while it waits for a lock; PostgreSQL 14+, on
    platforms that have it), ``idle_in_transaction_session_timeout`` (a client that
    vanished without closing its socket). A setting the server lacks is skipped."""
    settings = {
        "lock_timeout": f"{max(0, round(lock_timeout * 1000))}ms",
        "client_connection_check_interval": "1s",
        "idle_in_transaction_session_timeout": "60s",
    }
    for name, value in settings.items():
        try:
            await conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
        except psycopg.Error:
            continue  # an older server or another platform: the other bounds still hold


async def apply(
    conninfo: str, which: SqlFile, on_connect: Callable[[], None] | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT, applying: Applying | None = None,
    **connect_kwargs: Any,
) -> tuple[int | None, int | None]:
    """Run ``sql/<which>.sql`` on the database; return the version before and after.

    Errors propagate as psycopg errors (classify them with ``errors.classify``): a
    failed install rolls back as a whole because the file is one transaction.
    ``on_connect`` is called once connected (a caller's connect deadline ends there).

    The file's COMMIT is not sent with the file: the server runs the whole text and then
    waits, in the transaction, for this client to send COMMIT. A client killed while the
    text waits for StatBus's locks (SIGKILL included) therefore never commits: its backend
    rolls back when it finds the client gone. ``lock_timeout`` bounds each lock wait
    (55P03 lock_not_available when it runs out; 0 waits as long as it takes).
    """
    text = without_commit(read(which))
    state = applying if applying is not None else Applying()
    async with await pgconnect.AsyncConnection.connect(
        conninfo, autocommit=True, **connect_kwargs
    ) as conn:
        if on_connect is not None:
            on_connect()
        await bound_session(conn, lock_timeout)
        before = await installed_version(conn)
        try:
            await conn.execute(text.encode("utf-8"))
        except BaseException:
            if not conn.closed and not conn.broken:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("ROLLBACK")
            raise
        state.committing = True
        # A cancel now would leave it unknown whether the COMMIT happened: let it finish,
        # then stop (the caller says the SQL may be installed).
        commit = asyncio.ensure_future(conn.execute("COMMIT"))
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            with contextlib.suppress(psycopg.Error):
                await commit
            raise
        after = await installed_version(conn)
    return before, after


def without_commit(text: str) -> str:
    """``install.sql`` minus its final COMMIT: the whole install, left open.

    The file is one transaction (``BEGIN;`` first, ``COMMIT;`` last, none in between); a
    file of another shape is refused rather than run half-committed.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    statements = [ln for ln in lines if ln and not ln.startswith("--")]
    if (not statements or statements[0] != "BEGIN;" or statements[-1] != "COMMIT;"
            or statements.count("COMMIT;") != 1):
        raise ValueError("install.sql is not one BEGIN ... COMMIT transaction")
    head, _, tail = text.rpartition("COMMIT;")
    return head + tail


async def check(
    conninfo: str, on_connect: Callable[[], None] | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT, **connect_kwargs: Any,
) -> tuple[int | None, int | None, Any]:
    """Run the whole install inside a transaction and roll it back.

    Returns (version before, version the install would leave, the vocabulary it would be
    generated for: ``system_stability_sql_info()``). A failure anywhere propagates as the
    psycopg error, after the rollback. Nothing is ever committed: the COMMIT is taken out
    of the text, and the connection ends with ROLLBACK whatever happens. Locks are waited
    for at most ``lock_timeout`` s (the install takes short SHARE locks on import_job and
    worker.tasks).
    """
    text = without_commit(read("install"))
    async with await pgconnect.AsyncConnection.connect(
        conninfo, autocommit=True, **connect_kwargs
    ) as conn:
        if on_connect is not None:
            on_connect()
        await bound_session(conn, lock_timeout)
        before = await installed_version(conn)
        try:
            await conn.execute(text.encode("utf-8"))
            cur = await conn.execute(
                "SELECT public.system_stability_sql_version(), "
                "public.system_stability_sql_info()")
            row = await cur.fetchone()
        finally:
            await conn.execute("ROLLBACK")
    assert row is not None
    return before, row[0], row[1]
