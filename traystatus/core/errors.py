"""Errors: psycopg errors (and anything else) turned into a ``Problem`` and a message.

Two kinds of failure reach the monitor. Errors of the environment (server down, wrong
password, SQL not installed, no privilege, TLS) are told to a person with the fix; they
become a ``Diagnosis``. Anything else is a bug in traystatus (``Problem.INTERNAL``), logged
with its traceback.

How the kind is found, without reading message text:

* Errors raised by a query carry the server's SQLSTATE: 42883 undefined function means the
  SQL is missing, 42501 no privilege, class 08 and 57P0x a lost connection, and so on.
* Errors raised while connecting do NOT: libpq keeps the server's SQLSTATE of a failed
  start-up to itself (``PQconnectPoll`` only offers the text), so psycopg's
  ``OperationalError`` has ``sqlstate = None``. For those we use the structured fields of
  the failed ``PGconn`` that psycopg attaches (``ex.pgconn``): ``needs_password`` (the
  server asked for a password and none was given), ``used_password`` (a password went to
  the server and the login still failed: wrong password, unknown user or no such
  database; libpq cannot tell us which), and for TLS the conninfo: when ``sslmode`` asks
  for TLS (require, verify-ca, verify-full) or ``sslnegotiation=direct``, no password was
  sent, and a plain TCP connection to the same address succeeds, the server was reachable
  and the TLS handshake is what failed. The TCP probe is what separates "TLS failed" from
  "nothing listens there": both look the same in ``PGconn``.

A login refused after the password was sent (or a server that answered without asking
for one) is told apart by a second login to ``template1`` with the same credentials: if it
works, ``pg_database`` says whether the database is missing or only closed to this user;
if the password is refused there too, it is the password or the user. The verdict is
remembered per conninfo, so a retrying monitor does not double the failed logins.

The server's own words are kept as ``detail`` and appended to the message (people need
them), but nothing branches on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import hashlib
import socket
import time
from dataclasses import dataclass

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from traystatus.core import conncheck
from traystatus.core.state import Problem


class Phase(enum.Enum):
    """Where an error happened: while connecting, or on an open connection."""

    CONNECT = "connect"
    QUERY = "query"


# Problems that fix themselves when the network or the server comes back: retried with a
# fast backoff. The others need a person; the monitor retries them slowly (ERROR state).
TRANSIENT = frozenset({Problem.UNREACHABLE, Problem.CONNECTION_LOST, Problem.STALE})

TLS_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})


@dataclass(frozen=True)
class Diagnosis:
    """What went wrong, for code (``problem``) and for a person (``message``)."""

    problem: Problem
    message: str
    detail: str = ""  # the server's or libpq's own words, shown, never parsed

    @property
    def transient(self) -> bool:
        return self.problem in TRANSIENT

    @property
    def full_message(self) -> str:
        """The message plus libpq's or the server's own words, unless they add nothing."""
        if not self.detail or self.detail in self.message:
            return self.message
        return f"{self.message} (details: {self.detail})"


@dataclass(frozen=True)
class Target:
    """Who connects where, for messages: taken from the conninfo, never the password."""

    host: str = ""
    port: str = ""
    dbname: str = ""
    user: str = ""
    sslmode: str = ""
    sslnegotiation: str = ""
    connect_timeout: str = ""

    @classmethod
    def from_conninfo(cls, conninfo: str) -> Target:
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.Error:
            return cls()

        def get(key: str) -> str:
            value = params.get(key)
            return "" if value is None else str(value)

        return cls(
            host=get("host") or get("hostaddr"),
            port=get("port"),
            dbname=get("dbname"),
            user=get("user"),
            sslmode=get("sslmode"),
            sslnegotiation=get("sslnegotiation"),
            connect_timeout=get("connect_timeout"),
        )

    @property
    def wants_tls(self) -> bool:
        return self.sslmode in TLS_SSLMODES or self.sslnegotiation == "direct"

    @property
    def where(self) -> str:
        host = self.host or "the default host"
        port = f":{self.port}" if self.port else ""
        db = f", database {self.dbname!r}" if self.dbname else ""
        return f"{host}{port}{db}"

    @property
    def who(self) -> str:
        return repr(self.user) if self.user else "the default user"


def _first_line(ex: BaseException) -> str:
    text = str(ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


def _detail(ex: BaseException) -> str:
    if isinstance(ex, psycopg.Error) and ex.diag.message_primary:
        return ex.diag.message_primary
    pgconn = getattr(ex, "pgconn", None)
    if pgconn is not None:
        try:
            raw = pgconn.error_message
        except Exception:  # a finished PGconn may refuse; the exception text will do
            raw = b""
        if raw:
            return " ".join(bytes(raw).decode("utf-8", "replace").split())
    return " ".join(str(ex).split())


def classify(ex: BaseException, conninfo: str = "", phase: Phase = Phase.QUERY) -> Diagnosis:
    """Turn an exception into a Diagnosis, by class and SQLSTATE only.

    For connection failures that may be TLS, this cannot know whether the server was
    reachable; ``diagnose`` adds that (it probes TCP) and should be used for connects.
    """
    target = Target.from_conninfo(conninfo)
    detail = _detail(ex)
    if phase is Phase.CONNECT:
        invalid = _invalid_setting(conninfo)
        if invalid:
            return Diagnosis(
                Problem.CONFIG,
                f"The connection settings are not valid: {invalid}. Nothing was tried. Fix "
                "it in the DSN or profile (`traystatus profile add` again, or edit "
                "profiles.toml).",
                detail,
            )
    sqlstate = getattr(ex, "sqlstate", None)
    if isinstance(ex, psycopg.Error) and sqlstate:
        by_state = _by_sqlstate(sqlstate, target, detail)
        if by_state is not None:
            return by_state
    if isinstance(ex, psycopg.ProgrammingError) and phase is Phase.CONNECT:
        return Diagnosis(
            Problem.CONFIG,
            f"The connection settings are not valid: {_first_line(ex)}. "
            "Nothing was tried. Fix the DSN or profile (see `traystatus doctor`).",
            detail,
        )
    if isinstance(ex, (TimeoutError, asyncio.TimeoutError, pgerrors.ConnectionTimeout)):
        return _unreachable(target, detail, timed_out=True)
    if isinstance(ex, psycopg.OperationalError):
        if phase is Phase.QUERY:
            return Diagnosis(
                Problem.CONNECTION_LOST,
                f"The connection to {target.where} was lost. If it keeps failing, check "
                "the network and that the server runs.",
                detail,
            )
        return _classify_connect(ex, target, detail, reachable=None)
    if isinstance(ex, OSError):
        return _unreachable(target, detail)
    return Diagnosis(
        Problem.INTERNAL,
        f"traystatus hit an unexpected error ({type(ex).__name__}: {_first_line(ex)}). "
        "Please report this with the log file.",
        detail,
    )


async def diagnose(
    ex: BaseException, conninfo: str = "", phase: Phase = Phase.CONNECT, probe_timeout: float = 3.0
) -> Diagnosis:
    """``classify``, plus a TCP probe when a TLS connection failed before authentication.

    The probe opens and closes a plain TCP connection to the same host and port; it sends
    nothing, so no password or user name travels in clear text.
    """
    target = Target.from_conninfo(conninfo)
    pgconn = getattr(ex, "pgconn", None)
    if (
        phase is Phase.CONNECT
        and isinstance(ex, psycopg.OperationalError)
        and not isinstance(ex, pgerrors.ConnectionTimeout)
        and not getattr(ex, "sqlstate", None)
        and pgconn is not None
        and not pgconn.needs_password
        and not _invalid_setting(conninfo)
    ):
        reachable: bool | None = None
        if not pgconn.used_password:
            host = _decode(pgconn.hostaddr) or _decode(pgconn.host) or target.host
            port = _decode(pgconn.port) or target.port or "5432"
            reachable = port.isdigit() and await tcp_reachable(host, int(port), probe_timeout)
        if pgconn.used_password or (reachable and not target.wants_tls):
            # The server answered and refused: which database, or which login?
            key = hashlib.sha256(conninfo.encode()).hexdigest()
            now = time.monotonic()
            remembered = _WRONG_LOGINS.get(key)
            if remembered is not None and now - remembered[0] < WRONG_LOGIN_MEMORY:
                found: Diagnosis | None = remembered[1]  # do not try the same login again
            else:
                found = await _login_probe(conninfo, target, _db_name(pgconn, target),
                                           _detail(ex), probe_timeout)
                if found is not None and found.problem is Problem.AUTH_FAILED:
                    if len(_WRONG_LOGINS) >= 64:
                        _WRONG_LOGINS.clear()
                    _WRONG_LOGINS[key] = (now, found)
            if found is not None:
                return dataclasses.replace(found, detail=_detail(ex))
        if reachable is not None:
            return _classify_connect(ex, target, _detail(ex), reachable=reachable)
    return classify(ex, conninfo, phase)


def _invalid_setting(conninfo: str) -> str:
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return ""  # not parsable: classify() reports it as such
    return conncheck.first_problem(params)


def _db_name(pgconn: object, target: Target) -> str:
    try:
        raw = pgconn.db  # type: ignore[attr-defined]
    except Exception:  # a failed PGconn may refuse; the conninfo will do
        raw = b""
    return _decode(raw) or target.dbname or target.user


# A refused login's verdict per conninfo (hashed: it holds the password), for 10 minutes:
# a monitor that retries a wrong password every minute must not double the failed logins
# the server sees. Only that verdict: a missing database costs no failed login to probe.
WRONG_LOGIN_MEMORY = 600.0
_WRONG_LOGINS: dict[str, tuple[float, Diagnosis]] = {}
login_probes = 0  # how many second logins were tried (for tests and logs)

PROBE_DATABASE = "template1"  # exists on every PostgreSQL server and accepts connections


async def _login_probe(
    conninfo: str, target: Target, dbname: str, detail: str, seconds: float
) -> Diagnosis | None:
    """A failed login, told apart: no such database, no access to it, or the login itself.

    libpq keeps the SQLSTATE of a failed start-up to itself, and the server's text is
    translated, so instead the same login is tried once more on ``template1``. If that
    works, the login is right and the database is the problem, and ``pg_database`` says
    whether it exists. If the password is refused there too, it is the password or the
    user. Anything else (pg_hba.conf refusing template1) decides nothing: None.
    """
    global login_probes
    if not dbname or dbname == PROBE_DATABASE:
        return None
    login_probes += 1
    timeout = str(max(1, min(int(seconds), int(target.connect_timeout or seconds))))
    probe = make_conninfo(conninfo, dbname=PROBE_DATABASE, connect_timeout=timeout)
    try:
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(probe, autocommit=True), seconds * 2 + 1
        )
    except (psycopg.Error, TimeoutError, OSError) as ex:
        pgconn = getattr(ex, "pgconn", None)
        if pgconn is not None and pgconn.used_password and not getattr(ex, "sqlstate", None):
            return Diagnosis(
                Problem.AUTH_FAILED,
                f"The server at {target.where} refused the login of {target.who}: the "
                "password is wrong or the user does not exist (the server does not say "
                "which). Fix the password (your StatBus web password) or the user name in "
                "the profile.",
                detail,
            )
        return None
    try:
        async with conn:
            cur = await conn.execute(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (dbname,)
            )
            exists = await cur.fetchone() is not None
    except (psycopg.Error, OSError):
        return None
    where = f"{target.host or 'the default host'}" + (f":{target.port}" if target.port else "")
    if exists:
        return Diagnosis(
            Problem.PERMISSION,
            f"The database {dbname!r} on {where} exists, but {target.who} may not connect to "
            "it (no CONNECT privilege, or pg_hba.conf). Ask a StatBus administrator for "
            "access, or fix the database name (dbname).",
            detail,
        )
    return Diagnosis(
        Problem.CONFIG,
        f"The database {dbname!r} does not exist on {where} (the user and password work). "
        "Fix the database name (dbname) in the DSN or profile.",
        detail,
    )


def _decode(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


async def tcp_reachable(host: str, port: int, seconds: float) -> bool:
    """True when something accepts TCP connections at host:port (or a Unix socket dir)."""
    try:
        if host.startswith("/"):
            path = f"{host}/.s.PGSQL.{port}"
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), seconds)
        else:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), seconds)
    except (OSError, TimeoutError, socket.gaierror):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _classify_connect(
    ex: psycopg.OperationalError, target: Target, detail: str, reachable: bool | None
) -> Diagnosis:
    pgconn = getattr(ex, "pgconn", None)
    if pgconn is None:
        # psycopg resolves host names itself and raises before libpq has a PGconn.
        return _unreachable(target, detail)
    if pgconn.needs_password:
        return Diagnosis(
            Problem.NO_PASSWORD,
            f"The server at {target.where} asks for a password for {target.who} and none "
            "was given. Store it with `traystatus profile add` (keychain) or in ~/.pgpass.",
            detail,
        )
    if pgconn.used_password:
        return Diagnosis(
            Problem.AUTH_FAILED,
            f"The server at {target.where} refused the login of {target.who}: wrong password, "
            "unknown user or no such database. Fix the password (your StatBus web "
            "password) or the user/database in the profile.",
            detail,
        )
    if target.wants_tls and reachable:
        mode = target.sslmode or "prefer"
        return Diagnosis(
            Problem.TLS,
            f"The server at {target.where} answers, but the TLS connection failed "
            f"(sslmode={mode}"
            + (", sslnegotiation=direct" if target.sslnegotiation == "direct" else "")
            + "). Check the port (TLS and plain ports differ), sslrootcert and the host name "
            "in the certificate; see docs/tls.md.",
            detail,
        )
    return _unreachable(target, detail)


def _unreachable(target: Target, detail: str, timed_out: bool = False) -> Diagnosis:
    if timed_out:
        limit = f" within {target.connect_timeout} s" if target.connect_timeout else " in time"
        how = f"did not answer{limit} while connecting (connect_timeout)"
        check = ("Check that the host and port are a PostgreSQL server (not a proxy or "
                 "firewall that swallows the connection), the network or VPN")
    else:
        how = "cannot be reached"
        check = "Check the host name, the port, the network or VPN, and that the server runs"
    return Diagnosis(Problem.UNREACHABLE, f"The database server at {target.where} {how}. "
                     f"{check}.", detail)


def _by_sqlstate(sqlstate: str, target: Target, detail: str) -> Diagnosis | None:
    cls = sqlstate[:2]
    if sqlstate in ("42883", "3F000", "42P01"):
        return Diagnosis(
            Problem.SQL_MISSING,
            f"The traystatus SQL is not installed in {target.where} (the function "
            "public.is_system_stable() does not exist). Ask a StatBus administrator to run "
            "`traystatus install-sql` on that database.",
            detail,
        )
    if sqlstate == "42501":
        return Diagnosis(
            Problem.PERMISSION,
            f"{target.who} may not call the traystatus functions in {target.where} "
            "(permission denied). Ask an administrator to grant the role `authenticated` "
            "to this user, or to re-run `traystatus install-sql` so the grants exist.",
            detail,
        )
    if cls == "28":
        return Diagnosis(
            Problem.AUTH_FAILED,
            f"The server at {target.where} refused the login of {target.who}. "
            "Fix the password or the user name in the profile.",
            detail,
        )
    if sqlstate == "3D000":
        return Diagnosis(
            Problem.CONFIG,
            f"The database {target.dbname!r} does not exist on {target.where}. "
            "Fix the database name in the profile.",
            detail,
        )
    if cls in ("08", "57") or sqlstate == "53300":
        # 57P01 admin shutdown / terminated backend, 57P02 crash, 57P03 starting up,
        # 57014 statement timeout / cancel; 53300 too many connections: all pass.
        return Diagnosis(
            Problem.CONNECTION_LOST,
            f"The connection to {target.where} was closed by the server. If it keeps "
            "happening, ask the administrator whether the server restarts.",
            detail,
        )
    return None
