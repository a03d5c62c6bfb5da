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

The order is one pure rule, :func:`next_step`: given what is known so far (``Known``), what
to try next (``Probe``, ``AskKeychain``) or the answer (``Resolution``). ``resolve()``
(blocking, for the CLI) and ``resolve_async()`` (the tray's asyncio loop) only do the I/O
it asks for. Neither ever logs or returns a secret in text.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
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


class Probed(enum.Enum):
    """How the probe (a connection with libpq's own sources only) went."""

    CONNECTED = "connected"  # libpq logged in on its own (or no password was needed)
    ASKED = "asked"  # the server asked for a password and libpq had none
    FAILED = "failed"  # anything else: down, TLS, a wrong ~/.pgpass password, a bad conninfo


def probed(error: psycopg.Error | None) -> Probed:
    """The probe's outcome from its error (None: it connected). ``needs_password``: the
    server asked for one and libpq had none (``used_password`` is also true then: it only
    says the method was a password one)."""
    if error is None:
        return Probed.CONNECTED
    pgconn = error.pgconn
    return Probed.ASKED if pgconn is not None and pgconn.needs_password else Probed.FAILED


@dataclass(frozen=True)
class Known:
    """What the drivers have learnt so far."""

    probe: Probed | None = None  # None: not probed yet
    error: psycopg.Error | None = None  # the probe's failure
    asked_keychain: bool = False
    stored: str | None = None  # the keychain's answer

    def __repr__(self) -> str:  # never show the secret
        return (f"Known({self.probe}, error={self.error!r}, asked_keychain="
                f"{self.asked_keychain}, stored={'***' if self.stored else self.stored!r})")


@dataclass(frozen=True)
class Probe:
    """Next: connect with ``conninfo`` (libpq's own sources only, a connect timeout)."""

    conninfo: str


@dataclass(frozen=True)
class AskKeychain:
    """Next: the keychain entry of profile ``name``."""

    name: str


Step = Probe | AskKeychain | Resolution


def _probe_conninfo(conninfo: str, params: dict[str, str]) -> str:
    if "connect_timeout" in params:
        return conninfo
    return make_conninfo(conninfo, connect_timeout=str(PROBE_CONNECT_TIMEOUT))


def _params(conninfo: str) -> dict[str, str]:
    return {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}


def next_step(conninfo: str, keychain_name: str | None, known: Known = Known()) -> Step:
    """The order, pure: what to try next for ``conninfo``, or the answer. ``keychain_name``:
    the profile whose keychain entry may be used (None for a bare DSN)."""
    try:
        params = _params(conninfo)
    except psycopg.Error as ex:  # not a valid conninfo: connecting will say so
        known = replace(known, probe=Probed.FAILED, error=ex)
    else:
        if params.get("password"):
            return Resolution(Source.DSN)
        if known.probe is None:
            return Probe(_probe_conninfo(conninfo, params))
    if known.probe is Probed.CONNECTED:
        return Resolution(Source.LIBPQ)
    if keychain_name is not None and not known.asked_keychain:
        return AskKeychain(keychain_name)
    if known.probe is Probed.FAILED:
        return Resolution(Source.UNDECIDED, known.stored, known.error)
    if known.stored is not None:
        return Resolution(Source.KEYCHAIN, known.stored)
    return Resolution(Source.NEEDED)


def _told(found: Resolution, keychain_name: str | None) -> Resolution:
    if found.source is Source.LIBPQ:
        log.debug("libpq connected without a password from traystatus")
    elif found.source is Source.UNDECIDED:
        log.debug("the password probe failed for another reason; the connection reports it")
    elif found.source is Source.KEYCHAIN:
        log.debug("using the keychain password of profile %r", keychain_name)
    return found


def resolve(conninfo: str, keychain_name: str | None = None,
            keychain: Keychain | None = None) -> Resolution:
    """The password to use for ``conninfo`` (blocking): :func:`next_step`'s I/O. ``keychain``
    replaces the keychain lookup (credentials.get_password)."""
    known = Known()
    while not isinstance(step := next_step(conninfo, keychain_name, known), Resolution):
        if isinstance(step, Probe):
            error: psycopg.Error | None = None
            try:
                with pgconnect.Connection.connect(step.conninfo, autocommit=True):
                    pass
            except psycopg.Error as ex:
                error = ex
            known = replace(known, probe=probed(error), error=error)
        else:
            lookup = keychain if keychain is not None else credentials.get_password
            known = replace(known, asked_keychain=True, stored=lookup(step.name))
    return _told(step, keychain_name)


async def resolve_async(conninfo: str, keychain_name: str | None = None,
                        keychain: Keychain | None = None, *,
                        keep: bool = False) -> Resolution:
    """:func:`resolve` for an asyncio loop (the tray app's). The keychain is asked in its
    own thread with a deadline (credentials.get_password_async): an unlock prompt or a
    hanging Secret Service never stops the loop. A ``keychain`` callable given by the
    caller is called inline: it must not block.

    ``keep``: when the probe connects (``Source.LIBPQ``), the open connection (autocommit)
    is handed to the caller in ``Resolution.connection`` instead of being closed: a
    one-shot command then uses it and opens no second connection. The caller owns it."""
    known = Known()
    kept: psycopg.AsyncConnection[Any] | None = None
    while not isinstance(step := next_step(conninfo, keychain_name, known), Resolution):
        if isinstance(step, Probe):
            try:
                conn = await pgconnect.AsyncConnection.connect(step.conninfo, autocommit=True)
            except psycopg.Error as ex:
                known = replace(known, probe=probed(ex), error=ex)
                continue
            known = replace(known, probe=Probed.CONNECTED)
            if keep:
                kept = conn
            else:
                await conn.close()
        else:
            stored = (keychain(step.name) if keychain is not None
                      else await credentials.get_password_async(step.name))
            known = replace(known, asked_keychain=True, stored=stored)
    if kept is not None:  # the rule answers LIBPQ once the probe connected
        step = replace(step, connection=kept)
    return _told(step, keychain_name)


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
