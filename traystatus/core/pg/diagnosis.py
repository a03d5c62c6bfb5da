"""Diagnosis: psycopg errors (and anything else) turned into a ``Problem`` and a message.

Pure: the words a person reads, decided from the exception alone. The one look at the
network that a diagnosis may take (is the server's port open?) is in ``probe``; whether it
is needed, and where to look, is decided here (:func:`tcp_look`).

Two kinds of failure reach the monitor. Errors of the environment (server down, wrong
password, SQL not installed, no privilege, TLS) are told to a person with the fix; they
become a ``Diagnosis``. Anything else is a bug in traystatus (``Problem.INTERNAL``), logged
with its traceback.

How the kind is found, without reading message text:

* Errors raised by a query carry the server's SQLSTATE: 42883 undefined function means the
  SQL is missing, 42501 no privilege, class 08 and 57P0x a lost connection, and so on.
* Errors raised while connecting carry it only through pgconnect: libpq keeps the
  SQLSTATE of a refused start-up to itself, and pgconnect's connections ask libpq to write
  it into the message (``pgconnect.sqlstate_of``). 57P03 starting up / shutting down /
  recovering, 53300 no free connection, 57P01/57P02 and class 08 are a server that will
  be back (grey, retried soon); 3D000 no such database, 42501 no CONNECT privilege, 28P01
  wrong password or unknown user and 28000 no pg_hba.conf entry are a person's problem.
* Without a SQLSTATE (libpq's own failures), the structured fields of the failed
  ``PGconn`` that psycopg attaches (``ex.pgconn``): ``needs_password`` (the server asked
  for a password and none was given), ``used_password`` (a password went to the server
  and the login still failed), and for TLS the conninfo: when ``sslmode`` asks for TLS or
  ``sslnegotiation=direct``, no password was sent, and a plain TCP connection to the same
  address succeeds, the TLS handshake is what failed.

A diagnosis rests only on the failure it explains: no second login is made to find out
more (a login a moment later may find a restarted server and blame a person for it).

The server's own words are kept as ``detail`` and appended to the message (people need
them), but nothing branches on them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict

from traystatus.core.model.state import Problem
from traystatus.core.pg import connect as pgconnect
from traystatus.core.pg import conninfo as conncheck


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
    retry_soon: bool = False  # the server said it will accept in a moment: no long backoff

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


def detail_of(ex: BaseException) -> str:
    if isinstance(ex, psycopg.Error) and ex.diag.message_primary:
        return ex.diag.message_primary
    pgconn = getattr(ex, "pgconn", None)
    if pgconn is not None:
        try:
            raw = pgconn.error_message
        except Exception:  # a finished PGconn may refuse; the exception text will do
            raw = b""
        if raw:
            return " ".join(pgconnect.plain(bytes(raw).decode("utf-8", "replace")).split())
    return " ".join(pgconnect.plain(str(ex)).split())


def classify(
    ex: BaseException, conninfo: str = "", phase: Phase = Phase.QUERY, source: str = "installed"
) -> Diagnosis:
    """Turn an exception into a Diagnosis, by class and SQLSTATE only.

    ``source``: what the failed query read: ``installed`` (traystatus's functions) or
    ``builtin`` (StatBus's own tables, with the analyst's login); only the fix differs.
    For connection failures that may be TLS, this cannot know whether the server was
    reachable; ``probe.diagnose`` adds that (it probes TCP) and should be used for connects.
    """
    target = Target.from_conninfo(conninfo)
    detail = detail_of(ex)
    if phase is Phase.CONNECT:
        invalid = invalid_setting(conninfo)
        if invalid:
            return Diagnosis(
                Problem.CONFIG,
                f"The connection settings are not valid: {invalid}. Nothing was tried. Fix "
                "it in the DSN or profile (`traystatus profile add` again, or edit "
                "profiles.toml).",
                detail,
            )
    sqlstate = pgconnect.sqlstate_of(ex) if isinstance(ex, psycopg.Error) else None
    if sqlstate and phase is Phase.CONNECT and isinstance(ex, psycopg.OperationalError):
        by_state = _connect_by_sqlstate(sqlstate, target, detail)
        if by_state is not None:
            return by_state
    if sqlstate:
        by_state = _by_sqlstate(sqlstate, target, detail, source)
        if by_state is not None:
            return by_state
    if isinstance(ex, psycopg.ProgrammingError) and phase is Phase.CONNECT:
        return Diagnosis(
            Problem.CONFIG,
            f"The connection settings are not valid: {_first_line(ex)}. "
            "Nothing was tried. Fix the DSN or profile (see `traystatus doctor`).",
            detail,
        )
    if isinstance(ex, (TimeoutError, pgerrors.ConnectionTimeout)):  # asyncio's too
        return _timed_out(ex, target, conninfo, detail)
    if isinstance(ex, psycopg.OperationalError):
        if phase is Phase.QUERY:
            return Diagnosis(
                Problem.CONNECTION_LOST,
                f"The connection to {target.where} was lost. If it keeps failing, check "
                "the network and that the server runs.",
                detail,
            )
        return classify_connect(ex, target, detail, reachable=None)
    if isinstance(ex, OSError):
        return _unreachable(target, detail)
    return Diagnosis(
        Problem.INTERNAL,
        f"traystatus hit an unexpected error ({type(ex).__name__}: {_first_line(ex)}). "
        "Please report this with the log file.",
        detail,
    )


def invalid_setting(conninfo: str) -> str:
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return ""  # not parsable: classify() reports it as such
    return conncheck.first_problem(params)


def tcp_look(ex: BaseException, conninfo: str, phase: Phase) -> tuple[str, str] | None:
    """Where ``probe`` should look (host, port) before :func:`classify_connect` can judge
    ``ex``, or None: no look needed (:func:`classify` says all). Only a connect that failed
    without a SQLSTATE, without a password question and with settings libpq accepted needs
    one: it tells "TLS failed" (the server answers TCP) from "nothing listens there"."""
    pgconn = getattr(ex, "pgconn", None)
    if (
        phase is not Phase.CONNECT
        or not isinstance(ex, psycopg.OperationalError)
        or isinstance(ex, pgerrors.ConnectionTimeout)
        or pgconnect.sqlstate_of(ex) is not None
        or pgconn is None
        or pgconn.needs_password
        or pgconn.used_password
        or invalid_setting(conninfo)
    ):
        return None
    target = Target.from_conninfo(conninfo)
    host = _decode(pgconn.hostaddr) or _decode(pgconn.host) or target.host
    return host, _decode(pgconn.port) or target.port or "5432"


def _decode(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def classify_connect(
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
    if reachable:
        # The server answered and the login did not finish, and no SQLSTATE says why (a
        # crash mid-start-up, or a libpq without verbose errors): nothing to tell a person.
        return Diagnosis(
            Problem.UNREACHABLE,
            f"The database server at {target.where} answered but did not let "
            f"{target.who} in, without saying why in a way traystatus can read. If it "
            "keeps happening, see the server's words here and ask its administrator.",
            detail,
        )
    return _unreachable(target, detail)


def _unreachable(target: Target, detail: str) -> Diagnosis:
    return Diagnosis(Problem.UNREACHABLE, f"The database server at {target.where} cannot be "
                     "reached. Check the host name, the port, the network or VPN, and that "
                     "the server runs.", detail)


def _timed_out(ex: BaseException, target: Target, conninfo: str, detail: str) -> Diagnosis:
    """No answer while connecting: say how long was really waited. libpq applies
    connect_timeout to each host (and each address of a name) in turn."""
    hosts = pgconnect.host_count(conninfo)
    if isinstance(ex, pgconnect.ConnectTimedOut):
        waited = f" within {ex.waited:.0f} s"
        if ex.hosts > 1:
            waited += f" ({ex.hosts} hosts tried in turn"
            waited += f", connect_timeout {ex.per_host:g} s each)" if ex.per_host else ")"
    elif target.connect_timeout and hosts > 1:
        per_host = pgconnect.per_host_timeout(conninfo)
        waited = (f" within {target.connect_timeout} s per host ({hosts} hosts tried in "
                  f"turn: about {per_host * hosts:g} s in all)")
    elif target.connect_timeout:
        waited = f" within {target.connect_timeout} s"
    else:
        waited = " in time"
    where = target.where
    if hosts > 1:
        where = f"{where} (every host)"
    return Diagnosis(
        Problem.UNREACHABLE,
        f"The database server at {where} did not answer{waited} while connecting "
        "(connect_timeout). Check that the host and port are a PostgreSQL server (not a "
        "proxy or firewall that swallows the connection), the network or VPN.",
        detail)


# SQLSTATEs of a server that cannot take a session now but will (starting, shutting down,
# recovering, out of connections or resources): grey and retried, never a person's problem.
SERVER_BUSY = {
    "57P01": "was shut down by its administrator (a restart, most likely)",
    "57P02": "crashed and is restarting",
    "57P03": "is starting up, shutting down or recovering, and does not accept "
             "connections yet",
    "53300": "has no free connection slot (too many connections)",
    "55000": "does not accept connections to this database now (closed by an administrator, "
             "for maintenance for instance)",
}
TRANSIENT_CLASSES = ("08", "53", "57")  # connection exception, resources, operator action
RETRY_SOON = frozenset({"57P03"})  # the server says it will accept in a moment


def transient_sqlstate(sqlstate: str) -> bool:
    """True for the SQLSTATEs of a server that is there but cannot serve now."""
    return sqlstate in SERVER_BUSY or sqlstate[:2] in TRANSIENT_CLASSES


def _connect_by_sqlstate(sqlstate: str, target: Target, detail: str) -> Diagnosis | None:
    """A refused login, by the SQLSTATE the server sent with the refusal."""
    if transient_sqlstate(sqlstate):
        what = SERVER_BUSY.get(sqlstate, "could not start a session now")
        return Diagnosis(
            Problem.UNREACHABLE,
            f"The database server at {target.where} {what}. If it lasts, ask its "
            "administrator.",
            detail,
            retry_soon=sqlstate in RETRY_SOON,
        )
    if sqlstate == "3D000":
        return Diagnosis(
            Problem.CONFIG,
            f"The database {target.dbname or target.user!r} does not exist on "
            f"{target.where}. Fix the database name (dbname) in the DSN or profile.",
            detail,
        )
    if sqlstate == "42501":
        return Diagnosis(
            Problem.PERMISSION,
            f"{target.who} may not connect to the database in {target.where} (no CONNECT "
            "privilege). Ask a StatBus administrator for access, or fix the database name "
            "(dbname).",
            detail,
        )
    if sqlstate == "28P01":
        return Diagnosis(
            Problem.AUTH_FAILED,
            f"The server at {target.where} refused the login of {target.who}: the password "
            "is wrong or the user does not exist (the server does not say which). Fix the "
            "password (your StatBus web password) or the user name in the profile.",
            detail,
        )
    if sqlstate[:2] == "28":
        return Diagnosis(
            Problem.AUTH_FAILED,
            f"The server at {target.where} does not let {target.who} log in (no such user, "
            "or pg_hba.conf has no entry for this user, database and address). Fix the user "
            "name in the profile, or ask a StatBus administrator for access.",
            detail,
        )
    return None


def _by_sqlstate(
    sqlstate: str, target: Target, detail: str, source: str = "installed"
) -> Diagnosis | None:
    cls = sqlstate[:2]
    builtin = source == "builtin"
    if sqlstate in ("42883", "3F000", "42P01") and builtin:
        return Diagnosis(
            Problem.SQL_MISSING,
            f"{target.where} lacks a table or function that traystatus reads in StatBus "
            f"({detail or 'undefined object'}): it may not be a StatBus database, or a "
            "newer StatBus changed it. Check the database name; see docs/statbus-compat.md.",
            detail,
        )
    if sqlstate in ("42883", "3F000", "42P01"):
        return Diagnosis(
            Problem.SQL_MISSING,
            f"The traystatus SQL is not installed in {target.where} (the function "
            "public.is_system_stable() does not exist). Ask a StatBus administrator to run "
            "`traystatus install-sql` on that database.",
            detail,
        )
    if sqlstate == "42501" and builtin:
        # The server names the object ("permission denied for table tasks"); shown as said.
        denied = f" ({detail})" if detail else ""
        grantee = '"' + target.user.replace('"', '""') + '"' if target.user else "<login>"
        return Diagnosis(
            Problem.PERMISSION,
            f"{target.who} may no longer read StatBus's tables in {target.where}"
            f"{denied}. Watching StatBus directly needs USAGE on schema worker and SELECT "
            "on public.import_job, worker.tasks and worker.command_registry, which StatBus "
            "grants to the role authenticated: ask an administrator to run GRANT "
            f"authenticated TO {grantee}, or to install traystatus's SQL (docs/sql.md).",
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
    if cls in TRANSIENT_CLASSES:
        # 57P01 admin shutdown / terminated backend, 57P02 crash, 57P03 starting up,
        # 57014 statement timeout / cancel; 53300 too many connections: all pass.
        return Diagnosis(
            Problem.CONNECTION_LOST,
            f"The connection to {target.where} was closed by the server. If it keeps "
            "happening, ask the administrator whether the server restarts.",
            detail,
        )
    return None
