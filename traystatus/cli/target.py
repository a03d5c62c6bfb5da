"""Which database a command talks to, and how its password is found.

Target: ``--profile NAME`` picks a stored profile, ``--dsn`` gives a conninfo/URL; with both,
the DSN's keywords override the profile's; with neither, the default profile, else (no
profile at all) plain libpq defaults (so ``PGHOST=... traystatus status`` works). A default
that is not valid, names no profile or is not a name is an error naming it, exit 3.

Password: the order is traystatus.core.config.password's, shared with the tray app (the DSN's
own, then libpq's PGPASSWORD / ~/.pgpass / service file, then the profile's keychain
entry); when the server asks and none of those has one, the CLI adds a prompt on an
interactive terminal, else a clear error, exit 3.
"""

from __future__ import annotations

import getpass
import logging
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.core.config.password import (
    Resolution,
    Source,
    check_password,
    is_wrong_password,
    needed_text,
    wrong_password_text,
)
from traystatus.core.config.password import resolve as resolve_password
from traystatus.core.config.password import resolve_async as resolve_password_async
from traystatus.core.config.profiles import ConnectionProfile, ProfileError, ProfileStore
from traystatus.core.pg import conninfo as conncheck
from traystatus.core.watch.options import READER_MODES, ReaderMode

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds one connection attempt may take unless the DSN or profile sets connect_timeout."""


@dataclass(frozen=True)
class Target:
    """The profile to connect with and whether its name has a keychain entry to look up."""

    profile: ConnectionProfile
    stored: bool  # a named profile (stored, or named with --profile): keychain applies

    @property
    def keychain_name(self) -> str | None:
        """The keychain entry that may hold the password: none for ``--dsn`` and for a
        profile that asks each session (that keychain is never read)."""
        if not self.stored or self.profile.ask_password:
            return None
        return self.profile.name

    @property
    def label(self) -> str:
        return self.profile.name if self.stored else "--dsn"

    def source(self, given: str | None) -> ReaderMode:
        """How to read the database: ``--source``, else the profile's, else auto."""
        mode = given or self.profile.source or "auto"
        return mode if mode in READER_MODES else "auto"


def resolve_target(dsn: str | None, profile_name: str | None,
                   store: ProfileStore | None = None) -> Target:
    """Turn --dsn/--profile into a :class:`Target`; raises CliError(3) on a bad profile."""
    try:
        if dsn is not None and profile_name is None:
            _parse(dsn)
            return Target(ConnectionProfile(name="cli", dsn=dsn), stored=False)
        store = store if store is not None else ProfileStore()
        if profile_name is None and not store.configured:
            # No profile at all: libpq defaults (PG* variables, service files). Only then:
            # a default that is broken or names no profile is an error saying which
            # (ProfileStore.get), never another profile's database nor libpq's.
            return Target(ConnectionProfile(name="cli"), stored=False)
        base = store.get(profile_name)
        if dsn is not None:
            merged = make_conninfo(make_conninfo("", **base.params()), **_parse(dsn))
            base = ConnectionProfile(name=base.name, dsn=merged, source=base.source,
                                     ask_password=base.ask_password)
        return Target(base, stored=True)
    except ProfileError as ex:
        raise CliError(str(ex), ExitCode.UNUSABLE) from ex


def _parse(dsn: str) -> dict[str, str]:
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    except psycopg.ProgrammingError as ex:
        raise CliError(f"--dsn is not a valid conninfo or URL: {ex}", ExitCode.USAGE) from ex
    invalid = conncheck.problems(params)
    if invalid:
        raise CliError(f"--dsn: {'; '.join(invalid)}", ExitCode.USAGE)
    return params


def connect_timeout(conninfo: str) -> float:
    """The seconds libpq waits for one connection attempt: the DSN's or profile's
    ``connect_timeout``, else :data:`CONNECT_TIMEOUT` (0, "forever" to libpq, is not
    allowed here: every command has a deadline)."""
    try:
        value = conninfo_to_dict(conninfo).get("connect_timeout")
        seconds = float(value) if value is not None else 0.0
    except (psycopg.Error, ValueError):
        seconds = 0.0
    return seconds if seconds > 0 else CONNECT_TIMEOUT


def with_deadline(conninfo: str) -> str:
    """``conninfo`` with an explicit ``connect_timeout`` (libpq's default is to wait
    forever, e.g. for a server that accepts TCP and never answers)."""
    return make_conninfo(conninfo, connect_timeout=str(round(connect_timeout(conninfo))))


def connect_limit(conninfo: str) -> float:
    """An outer limit for one connect: libpq applies connect_timeout per host and address,
    and psycopg resolves the host name itself before libpq starts."""
    return connect_timeout(conninfo) * 2 + 1


def _where(params: dict[str, str]) -> str:
    user = params.get("user") or "(your login name)"
    host = params.get("host") or params.get("hostaddr") or "the local socket"
    return f"{user} at {host}"


def resolve_conninfo(
    target: Target,
    *,
    interactive: bool | None = None,
    stdin: TextIO | None = None,
) -> str:
    """The conninfo to connect with, password included when one had to be found.

    Never logs the result: it may hold the password.
    """
    return resolve_connection(target, interactive=interactive, stdin=stdin)[0]


def resolve_connection(
    target: Target,
    *,
    interactive: bool | None = None,
    stdin: TextIO | None = None,
) -> tuple[str, psycopg.Error | None]:
    """The conninfo (with a connect_timeout, and the password when one had to be found),
    and the error of the password probe when it failed for another reason (unreachable,
    no answer, no such database...): a one-shot command reports that at once instead of
    waiting for the same failure a second time."""
    conninfo = prepare_conninfo(target)
    found = resolve_password(conninfo, target.keychain_name)
    return _finish(target, conninfo, found, interactive, stdin)


async def resolve_connection_async(
    target: Target, conninfo: str, probe_conninfo: str
) -> tuple[str, psycopg.Error | None, psycopg.AsyncConnection[Any] | None]:
    """:func:`resolve_connection` for a one-shot command, in its event loop: the password
    probe connects with ``probe_conninfo`` (the source's own conninfo, so the connection
    is the one the source would open) and, when libpq needed nothing from traystatus,
    that connection is returned open for the source to use: one connection per command.
    ``conninfo``: what to add a password to otherwise (from :func:`prepare_conninfo`)."""
    found = await resolve_password_async(
        probe_conninfo, target.keychain_name, keep=True
    )
    if found.connection is not None:
        return conninfo, None, found.connection
    return (*_finish(target, conninfo, found, None, None), None)


def prepare_conninfo(target: Target) -> str:
    """The target's conninfo with an explicit connect_timeout (no password added)."""
    try:
        conninfo = with_deadline(target.profile.to_conninfo())
        target.profile.params()
    except psycopg.ProgrammingError as ex:
        raise CliError(f"the connection settings are not valid: {ex}", ExitCode.USAGE) from ex
    return conninfo


def _finish(
    target: Target,
    conninfo: str,
    found: Resolution,
    interactive: bool | None,
    stdin: TextIO | None,
) -> tuple[str, psycopg.Error | None]:
    if found.source is not Source.NEEDED:
        if found.password is None:
            return conninfo, found.error  # in the DSN, or libpq finds it (or none needed)
        return make_conninfo(conninfo, password=found.password), found.error

    if interactive is None:
        stream = stdin if stdin is not None else sys.stdin
        interactive = stream.isatty()
    where = _where(target.profile.params())
    if target.profile.ask_password:
        return _ask_each_time(target, conninfo, interactive), None
    if interactive:
        try:
            password = getpass.getpass(f"Password for {where}: ")
        except (EOFError, KeyboardInterrupt):
            raise CliError("no password given", ExitCode.UNUSABLE) from None
        return make_conninfo(conninfo, password=password), None

    hint = (
        f"store it with `traystatus profile add {target.profile.name} ...`"
        if target.stored
        else "save a profile with `traystatus profile add NAME --dsn ...` (the password "
        "goes to the keychain)"
    )
    raise CliError(
        f"the server asks for a password for {where} and none is known "
        f"(no password in the DSN, PGPASSWORD or ~/.pgpass, nothing in the keychain for "
        f"{target.label}) and there is no terminal to ask on: {hint}, or add it to ~/.pgpass",
        ExitCode.UNUSABLE,
    )


ASK_ATTEMPTS = 3


def _ask_each_time(target: Target, conninfo: str, interactive: bool) -> str:
    """A profile with ``ask_password``: ask on the terminal, check the password (a wrong
    one is said in StatBus's words and asked again, up to :data:`ASK_ATTEMPTS` times) and
    keep it in memory only. Without a terminal: one line, exit 3."""
    params = target.profile.params()
    user = params.get("user")
    if not interactive:
        raise CliError(
            f"profile {target.profile.name!r} asks for the password each session "
            f"({needed_text(user)}) and there is no terminal to ask on: run it in a "
            "terminal, or give the password in PGPASSWORD or ~/.pgpass",
            ExitCode.UNUSABLE,
        )
    prompt = f"Password for {_where(params)} (your StatBus web password; not stored): "
    for attempt in range(1, ASK_ATTEMPTS + 1):
        try:
            password = getpass.getpass(prompt)
        except (EOFError, KeyboardInterrupt):
            raise CliError("no password given", ExitCode.UNUSABLE) from None
        error = check_password(conninfo, password)
        if error is None or not is_wrong_password(error):
            # Logged in, or failed otherwise (down, TLS): the command reports that itself.
            return make_conninfo(conninfo, password=password)
        if attempt < ASK_ATTEMPTS:
            print(f"traystatus: {wrong_password_text(user)}; try again", file=sys.stderr)
    raise CliError(f"{wrong_password_text(user)} ({ASK_ATTEMPTS} attempts)",
                   ExitCode.UNUSABLE)
