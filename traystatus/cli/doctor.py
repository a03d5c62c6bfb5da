"""``traystatus doctor``: check each piece once and say what to do, one line per check.

Database checks (they decide the exit code: 3 when one fails): the connection, TLS (read
from the connection's own SSL state, not guessed from the settings), the SQL version
against :data:`traystatus.core.pg.sqlfiles.EXPECTED_SQL_VERSION`, and EXECUTE on the functions
the monitor calls (then one real call). Environment checks (warnings only: a CLI-only user
needs no tray): the keyring backend, and, when :mod:`traystatus.desktop.check` is
installed, the tray host and notification server it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import re
import shlex
from typing import Any

import psycopg

from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.cli.target import connect_limit, resolve_connection, resolve_target
from traystatus.core.config import credentials
from traystatus.core.config.profiles import ProfileError, ProfileStore
from traystatus.core.model.checks import CheckResult, Level
from traystatus.core.pg import connect as pgconnect
from traystatus.core.pg import diagnosis, probe, sqlfiles
from traystatus.core.watch.builtin import BUILTIN_NOTE, OLD_STATBUS_NOTE, check_builtin
from traystatus.core.watch.options import ReaderMode

log = logging.getLogger(__name__)

_GRANT = re.compile(r"GRANT EXECUTE ON FUNCTION (.+?) TO %I", re.S)
_SIGNATURE = re.compile(r"public\.\w+\([^)]*\)")


def granted_functions() -> tuple[str, ...]:
    """Every function sql/install.sql grants to StatBus's roles, with its argument types,
    read from the packaged file itself, so the check cannot drift from what install-sql
    grants (the one call site joins SQL string literals across lines: undone here)."""
    text = re.sub(r"'\s*\n\s*'", "", sqlfiles.read("install"))
    found = _GRANT.search(text)
    return tuple(_SIGNATURE.findall(found.group(1))) if found else ()
DESKTOP_TIMEOUT = 3.0
QUERY_TIMEOUT = 30.0  # all the checks' queries together, once connected


def _option(conn: psycopg.AsyncConnection[Any], keyword: str) -> str:
    """The effective value of a libpq keyword on an open connection (defaults included)."""
    for opt in conn.pgconn.info:
        if opt.keyword.decode() == keyword:
            return opt.val.decode() if opt.val is not None else ""
    return ""


def _is_local(host: str) -> bool:
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def tls_check(conn: psycopg.AsyncConnection[Any]) -> CheckResult:
    """TLS as it is on this connection: libpq's ssl_in_use, the server's pg_stat_ssl."""
    host = conn.info.host
    sslmode = _option(conn, "sslmode") or "prefer"
    if conn.pgconn.ssl_in_use:
        what = "TLS"
        try:
            cur = await conn.execute(
                "SELECT ssl, version, cipher FROM pg_catalog.pg_stat_ssl"
                " WHERE pid = pg_backend_pid()"
            )
            row = await cur.fetchone()
            if row and row[0]:
                what = " ".join(str(v) for v in row[1:] if v) or "TLS"
            elif row:
                # Encrypted to a TLS front (StatBus: Caddy layer4), plain behind it.
                what = "TLS to a proxy in front of the server"
        except psycopg.Error:  # only decoration: the line stands without it
            log.debug("pg_stat_ssl not readable", exc_info=True)
        if sslmode == "verify-full":
            return CheckResult("TLS", Level.OK, f"{what}; certificate and host name verified "
                         "(sslmode=verify-full)")
        if sslmode == "verify-ca":
            return CheckResult("TLS", Level.WARN, f"{what}; the certificate is verified but not "
                         "that it names this host (sslmode=verify-ca)",
                         "set sslmode=verify-full in the profile")
        return CheckResult("TLS", Level.WARN, f"{what}, but the server's certificate is NOT "
                     f"verified (sslmode={sslmode}): a machine in between could pose as the "
                     "server and read your password",
                     "set sslmode=verify-full and sslrootcert=<the CA file> in the profile "
                     "(see docs/tls.md)")
    if _is_local(host):
        return CheckResult("TLS", Level.OK, f"not encrypted, which is fine for a local connection "
                     f"({host or 'default socket'})")
    return CheckResult("TLS", Level.WARN, f"NOT encrypted: the password and the data cross the "
                 f"network to {host} in clear text (sslmode={sslmode})",
                 "use the deployment's TLS port with sslmode=verify-full and "
                 "sslnegotiation=direct")


def _connect_failed(diag: diagnosis.Diagnosis) -> CheckResult:
    return CheckResult("database reachable", Level.FAIL, diag.full_message)


async def database_checks(
    conninfo: str, probe_error: psycopg.Error | None = None, source: ReaderMode = "auto"
) -> list[CheckResult]:
    """The database's lines. ``probe_error``: the password probe's own failure (the same
    connection failed a moment ago): reported as it is, without a second wait."""
    if probe_error is not None:
        return [_connect_failed(await probe.diagnose(probe_error, conninfo,
                                                      diagnosis.Phase.CONNECT))]
    checks: list[CheckResult] = []
    try:
        conn = await asyncio.wait_for(
            pgconnect.AsyncConnection.connect(conninfo, autocommit=True),
            connect_limit(conninfo)
        )
    except (psycopg.Error, TimeoutError) as ex:
        diag = await probe.diagnose(ex, conninfo, diagnosis.Phase.CONNECT)
        checks.append(_connect_failed(diag))
        return checks
    async with conn:
        info = conn.info
        server = f"PostgreSQL {info.server_version // 10000}.{info.server_version % 10000}"
        where = f"{info.host}:{info.port}" if not info.host.startswith("/") else info.host
        checks.append(CheckResult("database reachable", Level.OK,
                            f"{server} at {where}, database {info.dbname!r}, user {info.user!r}"))
        checks.append(await tls_check(conn))
        checks.extend(await _source_checks(conn, source))
    return checks


async def _source_checks(conn: psycopg.AsyncConnection[Any], mode: ReaderMode) -> list[CheckResult]:
    """The SQL checks and how traystatus will read this database (the ``source`` line).

    ``installed``: our SQL must be there. ``builtin``: only StatBus's tables matter.
    ``auto``: our SQL when present and current; otherwise its absence is only a warning
    and the built-in reading decides.
    """
    if mode == "builtin":
        return [await _builtin_check(conn, "--source builtin")]
    sql = await _sql_checks(conn)
    # (whether the SQL covers a newer StatBus's enum values is advice for the administrator,
    # not a reason to read StatBus another way)
    if mode == "installed" or all(c.level is Level.OK for c in sql
                                  if c.name != "SQL covers StatBus"):
        how = "as asked (--source installed)" if mode == "installed" else "present and current"
        return [*sql, CheckResult("source", Level.INFO, f"installed: traystatus's SQL, {how}")]
    demoted = [
        CheckResult(c.name, Level.WARN, c.detail, c.fix, c.problem)
        if c.level is Level.FAIL else c
        for c in sql
    ]
    return [*demoted, await _builtin_check(conn, "auto")]


async def _builtin_check(conn: psycopg.AsyncConnection[Any], why: str) -> CheckResult:
    """Whether this login may watch StatBus directly (builtin_reader.check_builtin)."""
    found = await check_builtin(conn, f"database {conn.info.dbname!r}")
    if found.problem is not None:
        return CheckResult("source", Level.FAIL, f"builtin ({why}): {found.problem.message}",
                           problem=found.problem.problem)
    state = "stable" if found.stable else "processing"
    detail = f"builtin ({why}): {BUILTIN_NOTE} (the system is {state} now)"
    if found.old_statbus:
        return CheckResult("source", Level.WARN, f"{detail}; {OLD_STATBUS_NOTE}")
    return CheckResult("source", Level.OK, detail)


async def _sql_checks(conn: psycopg.AsyncConnection[Any]) -> list[CheckResult]:
    cur = await conn.execute(
        "SELECT p IS NOT NULL, p IS NOT NULL AND has_function_privilege(p, 'EXECUTE')"
        " FROM to_regprocedure('public.system_stability_sql_version()') AS p"
    )
    row = await cur.fetchone()
    present, may_call = (bool(row[0]), bool(row[1])) if row else (False, False)
    where = f"database {conn.info.dbname!r}"
    if not present:
        missing = sqlfiles.version_problem(None, where)
        assert missing is not None
        return [CheckResult("SQL installed", Level.FAIL, missing.fact, missing.fix,
                            missing.problem)]
    if not may_call:
        sql_line = CheckResult("SQL installed", Level.WARN,
                               "installed, but this user may not even read its version")
        return [sql_line, await _privilege_check(conn)]
    version = await sqlfiles.installed_version(conn)
    wrong = sqlfiles.version_problem(version, where)
    if wrong is None:
        sql_line = CheckResult("SQL installed", Level.OK, f"version {version}, as expected")
    else:
        sql_line = CheckResult("SQL installed", Level.FAIL, wrong.fact, wrong.fix, wrong.problem)
        return [sql_line, await _privilege_check(conn)]
    return [sql_line, await _coverage_check(conn), await _privilege_check(conn)]


async def _coverage_check(conn: psycopg.AsyncConnection[Any]) -> CheckResult:
    """Whether the installed SQL covers this StatBus as it is now: install.sql is generated
    from the enum values present at install time, and a StatBus upgrade can add one (e.g.
    worker.task_state 'interrupted') or start holding the import queue during a review."""
    try:
        async with conn.transaction():
            cur = await conn.execute("SELECT public.system_stability_sql_drift()")
            row = await cur.fetchone()
    except psycopg.Error as ex:
        diag = diagnosis.classify(ex, "", diagnosis.Phase.QUERY)
        return CheckResult("SQL covers StatBus", Level.WARN,
                           f"could not compare the installed SQL with StatBus: {diag.message}")
    drift = list(row[0]) if row and row[0] else []
    if not drift:
        return CheckResult("SQL covers StatBus", Level.OK,
                           "generated for the enum values and review hold StatBus has now")
    return CheckResult("SQL covers StatBus", Level.WARN, "; ".join(str(d) for d in drift),
                       "ask a StatBus administrator to run `traystatus install-sql` again "
                       "(after every StatBus upgrade)")


async def _privilege_check(conn: psycopg.AsyncConnection[Any]) -> CheckResult:
    missing = []
    for fn in granted_functions():
        cur = await conn.execute(
            "SELECT to_regprocedure(%s) IS NOT NULL"
            " AND has_function_privilege(to_regprocedure(%s), 'EXECUTE')",
            (fn, fn),
        )
        row = await cur.fetchone()
        if not (row and row[0]):
            missing.append(fn)
    user = conn.info.user
    if missing:
        return CheckResult("privileges", Level.FAIL,
                     f"{user!r} may not execute {', '.join(missing)}",
                     "ask an administrator to grant the role `authenticated` to this user, "
                     "or to re-run `traystatus install-sql` so the grants exist")
    try:
        cur = await conn.execute("SELECT public.is_system_stable()")
        row = await cur.fetchone()
    except psycopg.Error as ex:
        diag = diagnosis.classify(ex, "", diagnosis.Phase.QUERY)
        return CheckResult("privileges", Level.FAIL, f"calling is_system_stable() failed: "
                     f"{diag.message}")
    state = "stable" if row and row[0] else "processing"
    return CheckResult("privileges", Level.OK,
                 f"{user!r} may call the traystatus functions (the system is {state} now)")


def profile_checks() -> list[CheckResult]:
    """One warning per profile in the settings file that is not valid (others still work)."""
    try:
        store = ProfileStore()
    except ProfileError as ex:
        return [CheckResult("settings file", Level.WARN, str(ex))]
    return [
        CheckResult("profiles", Level.WARN, why,
              f"fix it in {store.path}, or `traystatus profile remove {shlex.quote(name)}`")
        for name, why in store.invalid.items()
    ]


def keychain_check() -> CheckResult:
    info = credentials.keychain_info()
    if info.secure:
        return CheckResult("keychain", Level.OK, f"passwords are kept in {info.backend_name}")
    return CheckResult("keychain", Level.WARN, f"no secure keychain: {info.reason}; passwords "
                 "will be asked for each time, never stored in plain text", credentials.ADVICE)


async def desktop_checks() -> list[CheckResult]:
    """traystatus.desktop.check's findings: tray host, notification server."""
    from traystatus.desktop import check as desktop_check  # only doctor needs it

    try:
        results = await desktop_check.check_desktop_async(probe_timeout=DESKTOP_TIMEOUT)
    except Exception as ex:  # a broken desktop must not break the database report
        log.debug("desktop checks failed", exc_info=True)
        why = f"could not be checked ({type(ex).__name__}: {ex})"
        return [CheckResult("desktop", Level.WARN, why)]
    # The keychain line is ours (same judgement, in traystatus.core.config.credentials).
    return [r for r in results if r.name != "keychain"]


async def run_checks(args: argparse.Namespace) -> list[CheckResult]:
    target = resolve_target(args.dsn, args.profile)
    source = f"profile {target.label}" if target.stored else "--dsn / libpq defaults"
    checks = [CheckResult("connection", Level.INFO, f"{source}: {target.profile.describe()}")]
    if target.profile.relay is not None:
        # A traystatus server, not a database: its own checks, the token from the keychain.
        from traystatus.core.relay.client import server_checks

        token = await asyncio.to_thread(credentials.get_password, target.profile.name)
        checks.extend(await server_checks(target.profile.relay, token))
        checks.append(keychain_check())
        checks.extend(await desktop_checks())
        return checks
    try:
        conninfo, probe_error = await asyncio.to_thread(resolve_connection, target)
    except CliError as ex:
        checks.append(CheckResult("database reachable", Level.FAIL, str(ex)))
    else:
        try:
            checks.extend(await asyncio.wait_for(
                database_checks(conninfo, probe_error,
                                target.source(getattr(args, "source", None))),
                connect_limit(conninfo) + QUERY_TIMEOUT,
            ))
        except TimeoutError:
            checks.append(CheckResult(
                "database", Level.FAIL,
                f"connected, but the server did not answer the checks within "
                f"{QUERY_TIMEOUT:g} s (a lock or an overloaded server)",
                "try again later, or ask the administrator what holds the server",
            ))
    checks.extend(profile_checks())
    checks.append(keychain_check())
    checks.extend(await desktop_checks())
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = asyncio.run(run_checks(args))
    if args.json:
        print(json.dumps([c.to_json() for c in checks], indent=2))
    else:
        for c in checks:
            print(c.line(), flush=True)
    failed = any(c.level is Level.FAIL for c in checks)
    return int(ExitCode.UNUSABLE if failed else ExitCode.OK)
