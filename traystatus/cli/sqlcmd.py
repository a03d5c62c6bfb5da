"""``traystatus install-sql`` / ``uninstall-sql``: apply the packaged SQL, show the versions.

The work is :func:`traystatus.core.sqlfiles.apply` (one transaction per file, idempotent);
this module only finds the password, prints "version before -> after" and turns failures
into a message with the fix (typically: connect as a StatBus administrator).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

import psycopg

from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.cli.target import connect_limit, resolve_connection, resolve_target
from traystatus.core import errors, sqlfiles


def _version(v: int | None) -> str:
    return "not installed" if v is None else str(v)


def _run(args: argparse.Namespace, which: sqlfiles.SqlFile) -> int:
    target = resolve_target(args.dsn, args.profile)
    conninfo, probe_error = resolve_connection(target)
    if probe_error is not None:  # the same connection just failed: say why, at once
        raise CliError(_explain(probe_error, conninfo, which), ExitCode.UNUSABLE)
    try:
        before, after = asyncio.run(_apply(conninfo, which))
    except (psycopg.Error, TimeoutError) as ex:
        raise CliError(_explain(ex, conninfo, which), ExitCode.UNUSABLE) from ex
    expected = sqlfiles.EXPECTED_SQL_VERSION
    if args.json:
        print(json.dumps({"action": which, "version_before": before, "version_after": after,
                          "expected_version": expected}))
    else:
        verb = "installed" if which == "install" else "uninstalled"
        print(f"traystatus SQL {verb}: version {_version(before)} -> {_version(after)}"
              + (f" (this traystatus expects {expected})" if which == "install" else ""))
    if which == "install" and after != expected:
        raise CliError(
            f"after install-sql the database reports SQL version {_version(after)}, but this "
            f"traystatus expects {expected}: the packaged sql/install.sql and the app disagree; "
            "reinstall traystatus",
            ExitCode.UNUSABLE,
        )
    return int(ExitCode.OK)


async def _apply(conninfo: str, which: sqlfiles.SqlFile) -> tuple[int | None, int | None]:
    """sqlfiles.apply with a deadline on connecting (libpq's connect_timeout, and an outer
    limit); the SQL itself may wait for StatBus's table locks as long as it needs."""
    connected = asyncio.Event()
    task = asyncio.create_task(sqlfiles.apply(conninfo, which, on_connect=connected.set))
    waiter = asyncio.create_task(connected.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=connect_limit(conninfo),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not task.done() and not connected.is_set():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
            await task
        raise TimeoutError(f"no connection within {connect_limit(conninfo):g} s")
    return await task


def _explain(ex: psycopg.Error | TimeoutError, conninfo: str, which: str) -> str:
    """The fact, the state (nothing changed: one transaction) and the fix."""
    if not isinstance(ex, psycopg.Error) or not ex.sqlstate:  # failed while connecting
        diag = asyncio.run(errors.diagnose(ex, conninfo, errors.Phase.CONNECT))
        return f"{which}-sql could not connect: {diag.full_message}"
    said = ex.diag.message_primary or str(ex)
    head = f"{which}-sql failed and changed nothing (it runs as one transaction): {said}"
    if ex.sqlstate == "42501":  # insufficient_privilege, "must be owner of ..."
        return (
            f"{head}. Run it as a StatBus administrator: the owner of public.import_job and "
            "worker.tasks, or a superuser."
        )
    if ex.sqlstate in ("42P01", "3F000", "42704"):  # undefined table / schema / object
        return (
            f"{head}. This database lacks StatBus's tables (public.import_job, worker.tasks): "
            "check that --dsn/--profile names the StatBus database."
        )
    return f"{head} [SQLSTATE {ex.sqlstate}]."


def cmd_install(args: argparse.Namespace) -> int:
    return _run(args, "install")


def cmd_uninstall(args: argparse.Namespace) -> int:
    return _run(args, "uninstall")
