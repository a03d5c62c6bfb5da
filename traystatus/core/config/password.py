"""Which password to connect with: one order for the CLI and the tray app.

The first that applies wins:

1. the conninfo's own ``password`` (a DSN that carries one);
2. whatever libpq finds itself: ``PGPASSWORD``, ``~/.pgpass`` / ``passfile``, a service
   file, or no password needed at all (trust, peer, certificates);
3. the keychain entry of the profile (only for a named profile);
4. nothing: the server asks for a password and none is known (``Source.NEEDED``). The CLI
   then prompts on a terminal; the tray app connects anyway and shows the monitor's
   NO_PASSWORD error, which tells the user to store one.

Step 2 needs a real connection attempt: only the server knows whether it wants a
password, and libpq says so through ``PQconnectionNeedsPassword`` (``pgconn.needs_password``
on the failed attempt), which is not message text. Why it matters: a keychain password
passed as a connection parameter overrides ``PGPASSWORD`` and ``~/.pgpass``, so it must be
added only when libpq's own sources are not enough.

When the attempt fails for another reason (server down, TLS, a wrong password from
``~/.pgpass``), nothing is decided (``Source.UNDECIDED``): the keychain password, if any,
still goes along so that a monitor started while the server is down can log in once it is
back; the connection itself then reports the problem.

``resolve()`` (blocking, for the CLI) and ``resolve_async()`` (the tray's asyncio loop) take
the same path through :func:`_decide`. Neither ever logs or returns a secret in text.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from traystatus.core.config import credentials
from traystatus.core.pg import connect as pgconnect

log = logging.getLogger(__name__)

PROBE_CONNECT_TIMEOUT = 10


class Source(enum.Enum):
    """Where the password to use came from."""

    DSN = "dsn"  # the conninfo has one
    LIBPQ = "libpq"  # libpq connected on its own (PGPASSWORD, .pgpass, or none needed)
    KEYCHAIN = "keychain"  # the server asked, and the keychain had one
    NEEDED = "needed"  # the server asked, and none is known: prompt or report
    UNDECIDED = "undecided"  # the probe failed otherwise; keychain password (if any) sent


@dataclass(frozen=True)
class Resolution:
    """``password`` is what to add to the connection (None: add nothing)."""

    source: Source
    password: str | None = None
    # The probe's own failure when it failed for another reason (UNDECIDED): a one-shot
    # command reports it instead of trying the same connection again.
    error: psycopg.Error | None = None
    # The probe's open connection (resolve_async(keep=True) only): the caller owns it.
    connection: psycopg.AsyncConnection[Any] | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"Resolution({self.source.value}, password={'***' if self.password else None})"


Keychain = Callable[[str], str | None]


def _probe_conninfo(conninfo: str, params: dict[str, str]) -> str:
    if "connect_timeout" in params:
        return conninfo
    return make_conninfo(conninfo, connect_timeout=str(PROBE_CONNECT_TIMEOUT))


def _params(conninfo: str) -> dict[str, str]:
    return {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}


def _needs_keychain(error: psycopg.Error | None, keychain_name: str | None) -> bool:
    return error is not None and keychain_name is not None


def _decide(error: psycopg.Error | None, keychain_name: str | None,
            stored: str | None) -> Resolution:
    """Steps 2-4 once the probe's outcome is known (``error`` None: it connected) and,
    when it failed, the keychain's answer (``stored``)."""
    if error is None:
        log.debug("libpq connected without a password from traystatus")
        return Resolution(Source.LIBPQ)
    pgconn = error.pgconn
    # needs_password: the server asked for one and libpq had none (used_password is also
    # true then: it only says the method was a password one).
    asked = pgconn is not None and pgconn.needs_password
    if not asked:
        log.debug("the password probe failed for another reason; the connection reports it")
        return Resolution(Source.UNDECIDED, stored, error)
    if stored is not None:
        log.debug("using the keychain password of profile %r", keychain_name)
        return Resolution(Source.KEYCHAIN, stored)
    return Resolution(Source.NEEDED)


def resolve(conninfo: str, keychain_name: str | None = None,
            keychain: Keychain | None = None) -> Resolution:
    """The password to use for ``conninfo`` (blocking). ``keychain_name``: the profile
    whose keychain entry may be used (None for a bare DSN)."""
    error: psycopg.Error | None = None
    try:
        params = _params(conninfo)
    except psycopg.Error as ex:  # not a valid conninfo: connecting will say so
        error = ex
    else:
        if params.get("password"):
            return Resolution(Source.DSN)
        try:
            with pgconnect.Connection.connect(_probe_conninfo(conninfo, params),
                                              autocommit=True):
                pass
        except psycopg.Error as ex:
            error = ex
    stored = None
    if _needs_keychain(error, keychain_name):
        assert keychain_name is not None
        lookup = keychain if keychain is not None else credentials.get_password
        stored = lookup(keychain_name)
    return _decide(error, keychain_name, stored)


async def resolve_async(conninfo: str, keychain_name: str | None = None,
                        keychain: Keychain | None = None, *,
                        keep: bool = False) -> Resolution:
    """The same as :func:`resolve`, for an asyncio loop (the tray app's). The keychain is
    asked in its own thread with a deadline (credentials.get_password_async): an unlock
    prompt or a hanging Secret Service never stops the loop. A ``keychain`` callable given
    by the caller is called inline: it must not block.

    ``keep``: when the probe connects (``Source.LIBPQ``), the open connection (autocommit)
    is handed to the caller in ``Resolution.connection`` instead of being closed: a
    one-shot command then uses it and opens no second connection. The caller owns it."""
    error: psycopg.Error | None = None
    try:
        params = _params(conninfo)
    except psycopg.Error as ex:
        error = ex
    else:
        if params.get("password"):
            return Resolution(Source.DSN)
        try:
            conn = await pgconnect.AsyncConnection.connect(
                _probe_conninfo(conninfo, params), autocommit=True
            )
        except psycopg.Error as ex:
            error = ex
        else:
            if keep:
                return Resolution(Source.LIBPQ, connection=conn)
            await conn.close()
    stored = None
    if _needs_keychain(error, keychain_name):
        assert keychain_name is not None
        stored = (keychain(keychain_name) if keychain is not None
                  else await credentials.get_password_async(keychain_name))
    return _decide(error, keychain_name, stored)


# -- asked each session (a profile's ``ask_password``) --------------------------------------
# StatBus's operators enter their password per session, and an analyst's database login is
# their StatBus web login: the password is asked for, checked, kept in memory and never
# written (no keychain, no file, no log).

WRONG_PASSWORD_SQLSTATE = "28P01"  # invalid_password


class PasswordNeeded(Exception):
    """The server wants a password that must be asked for (none yet, or the one typed was
    wrong: ``wrong``); the message is the line to show, in StatBus's words."""

    def __init__(self, text: str, wrong: bool = False) -> None:
        super().__init__(text)
        self.wrong = wrong


def wrong_password_text(user: str | None) -> str:
    """StatBus's wording for a refused password (the web login's password)."""
    return f"wrong password for {user or 'this login'}: your StatBus web password"


def needed_text(user: str | None) -> str:
    return f"password needed for {user or 'this login'}: your StatBus web password"


def is_wrong_password(error: BaseException | None) -> bool:
    """The server refused the password itself (not a missing role, pg_hba or TLS)."""
    return (isinstance(error, psycopg.Error)
            and pgconnect.sqlstate_of(error) == WRONG_PASSWORD_SQLSTATE)


def _with_password(conninfo: str, password: str) -> str:
    params = _params(conninfo)
    return make_conninfo(_probe_conninfo(conninfo, params), password=password)


def check_password(conninfo: str, password: str) -> psycopg.Error | None:
    """Try ``password`` once (blocking); the error, or None when it logged in."""
    try:
        with pgconnect.Connection.connect(_with_password(conninfo, password),
                                          autocommit=True):
            return None
    except psycopg.Error as ex:
        return ex


async def check_password_async(conninfo: str, password: str) -> psycopg.Error | None:
    """:func:`check_password` for an asyncio loop."""
    try:
        conn = await pgconnect.AsyncConnection.connect(_with_password(conninfo, password),
                                                       autocommit=True)
    except psycopg.Error as ex:
        return ex
    await conn.close()
    return None
