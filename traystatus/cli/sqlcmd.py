"""``traystatus install-sql`` / ``uninstall-sql``: apply the packaged SQL, show the versions.

The work is :func:`traystatus.core.pg.sqlfiles.apply` (one transaction per file, idempotent);
this module only finds the password, prints "version before -> after" and turns failures
into a message with the fix (typically: connect as a StatBus administrator).

Stopping: Ctrl-C (130), SIGTERM (143) and SIGHUP (129) cancel the running statement on the
server and exit with nothing changed. A SIGKILLed install never commits either: sqlfiles
sends the COMMIT only from a living client, and the session's bounds make its backend stop
(docs/sql.md, "Installing").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import psycopg

from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.cli.target import connect_limit, resolve_connection, resolve_target
from traystatus.core.pg import diagnosis, probe, sqlfiles

T = TypeVar("T")


def _version(v: int | None) -> str:
    return "not installed" if v is None else str(v)


def _run(args: argparse.Namespace, which: sqlfiles.SqlFile) -> int:
    if which == "install" and getattr(args, "print_sql", False):
        print(sqlfiles.read("install"), end="")
        return int(ExitCode.OK)
    target = resolve_target(args.dsn, args.profile)
    conninfo, probe_error = resolve_connection(target)
    if probe_error is not None:  # the same connection just failed: say why, at once
        raise CliError(_explain(probe_error, conninfo, which), ExitCode.UNUSABLE)
    if which == "install" and getattr(args, "check", False):
        return _check(args, conninfo)
    lock_timeout = _lock_timeout(args)
    applying = sqlfiles.Applying()
    try:
        before, after = asyncio.run(_apply(conninfo, which, lock_timeout, applying))
    except _Stopped as ex:
        raise CliError(_stopped(ex.signum, which, applying), ex.code) from None
    except (psycopg.Error, TimeoutError) as ex:
        raise CliError(_explain(ex, conninfo, which, lock_timeout), ExitCode.UNUSABLE) from ex
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


def _check(args: argparse.Namespace, conninfo: str) -> int:
    """install-sql --check: the whole install in a transaction, rolled back."""
    try:
        before, would, info = asyncio.run(_stoppable(_deadline(
            conninfo, lambda on_connect: sqlfiles.check(
                conninfo, on_connect=on_connect, lock_timeout=_lock_timeout(args)))))
    except _Stopped as ex:
        raise CliError(_stopped(ex.signum, "install", sqlfiles.Applying()), ex.code) from None
    except (psycopg.Error, TimeoutError) as ex:
        problems = _problems(ex, conninfo, _lock_timeout(args))
        if args.json:
            print(json.dumps({"action": "check", "ok": False, "version_before": None,
                              "problems": problems}))
        raise CliError("\n".join(problems), ExitCode.UNUSABLE) from ex
    if args.json:
        print(json.dumps({"action": "check", "ok": True, "version_before": before,
                          "would_install": would, "generated_for": info}))
    else:
        print(f"install-sql --check: would install version {would} "
              f"(installed now: {_version(before)}); nothing was changed")
    return int(ExitCode.OK)


def _problems(ex: psycopg.Error | TimeoutError, conninfo: str, lock_timeout: float) -> list[str]:
    """Each problem the check met, with what to do (install.sql's preflight lists every
    privilege it lacks in its DETAIL, one per line)."""
    first = _explain(ex, conninfo, "install", lock_timeout).replace(
        "install-sql failed and changed nothing (it runs as one transaction)",
        "install-sql --check: the install would fail").replace(
        "install-sql failed and changed nothing", "install-sql --check: the install would fail")
    more = []
    if isinstance(ex, psycopg.Error) and ex.diag.message_detail:
        more = [ln.strip() for ln in ex.diag.message_detail.splitlines() if ln.strip()]
    return [first, *[f"also: {m}" for m in more if m not in first]]


async def _deadline(
    conninfo: str, work: Callable[[Callable[[], None]], Coroutine[Any, Any, T]]
) -> T:
    """``work(on_connect)`` with a deadline on connecting only."""
    connected = asyncio.Event()
    task = asyncio.create_task(work(connected.set))
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


async def _apply(conninfo: str, which: sqlfiles.SqlFile, lock_timeout: float,
                 applying: sqlfiles.Applying) -> tuple[int | None, int | None]:
    """sqlfiles.apply with a deadline on connecting (libpq's connect_timeout, and an outer
    limit); the SQL waits for each of StatBus's table locks at most ``lock_timeout`` s."""
    return await _stoppable(_deadline(conninfo, lambda on_connect: sqlfiles.apply(
        conninfo, which, on_connect=on_connect, lock_timeout=lock_timeout, applying=applying)))


class _Stopped(Exception):
    """SIGTERM or SIGHUP arrived: the work was cancelled (its statement cancelled on the
    server, as Ctrl-C does)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.code = ExitCode.HANGUP if signum == signal.SIGHUP else ExitCode.TERMINATED


async def _stoppable(work: Coroutine[Any, Any, T]) -> T:
    """``work``, cancelled by SIGTERM or SIGHUP as asyncio.run cancels it on Ctrl-C:
    psycopg then cancels the running statement on the server before the connection
    closes, so nothing waits on in the server after this process ends."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    got: list[int] = []

    def on_signal(signum: int) -> None:
        if not got:
            got.append(signum)
            task.cancel()

    handled = []
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
    try:
        return await task
    except asyncio.CancelledError:
        if got:
            raise _Stopped(got[0]) from None
        raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _stopped(signum: int, which: str, applying: sqlfiles.Applying) -> str:
    name = signal.Signals(signum).name
    if applying.committing:
        return (f"{which}-sql was stopped by {name} while it committed: it may have "
                "finished. `traystatus doctor` shows the installed version.")
    return f"{which}-sql was stopped by {name} and cancelled: nothing changed."


def _lock_timeout(args: argparse.Namespace) -> float:
    value = getattr(args, "lock_timeout", None)
    return sqlfiles.DEFAULT_LOCK_TIMEOUT if value is None else float(value)


def _explain(ex: psycopg.Error | TimeoutError, conninfo: str, which: str,
             lock_timeout: float = sqlfiles.DEFAULT_LOCK_TIMEOUT) -> str:
    """The fact, the state (nothing changed: one transaction) and the fix."""
    if not isinstance(ex, psycopg.Error) or not ex.sqlstate:  # failed while connecting
        diag = asyncio.run(probe.diagnose(ex, conninfo, diagnosis.Phase.CONNECT))
        return f"{which}-sql could not connect: {diag.full_message}"
    said = ex.diag.message_primary or str(ex)
    head = f"{which}-sql failed and changed nothing (it runs as one transaction): {said}"
    if said.startswith("traystatus: "):  # install.sql's own preflight: it says what to do
        return f"{which}-sql failed and changed nothing: {said.removeprefix('traystatus: ')}"
    if ex.sqlstate == "55P03":  # lock_not_available: lock_timeout ran out
        return (f"{which}-sql waited {lock_timeout:g} s for a lock on StatBus's tables "
                "(public.import_job, worker.tasks) and changed nothing: StatBus's worker is "
                "busy with them. Try again when StatBus is idle, or wait longer with "
                "--lock-timeout 120 (0: as long as it takes).")
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
