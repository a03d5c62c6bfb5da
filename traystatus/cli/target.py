"""Which database a command talks to, and how its password is found.

Target: ``--profile NAME`` picks a stored profile, ``--dsn`` gives a conninfo/URL; with both,
the DSN's keywords override the profile's; with neither, the default profile, else plain
libpq defaults (so ``PGHOST=... traystatus status`` works).

Password, in this order (the first that applies wins):

1. the DSN's own ``password``;
2. whatever libpq finds itself: ``PGPASSWORD``, ``~/.pgpass`` / ``passfile``, a service
   file, or no password needed at all (trust, peer, certificates);
3. the keychain entry of the profile;
4. on an interactive terminal, a prompt;
5. otherwise a clear error, exit 3.

Step 2 is tried with a real connection attempt: only the server knows whether it wants a
password, and libpq says so through ``PQconnectionNeedsPassword`` (``pgconn.needs_password``
on the failed attempt), which is not message text. When the attempt fails for any other
reason the conninfo is returned as is: the command then reports that problem itself.
"""

from __future__ import annotations

import getpass
import logging
import sys
from dataclasses import dataclass
from typing import TextIO

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.core import credentials
from traystatus.core.profiles import ConnectionProfile, ProfileError, ProfileStore

log = logging.getLogger(__name__)

PREFLIGHT_CONNECT_TIMEOUT = "10"


@dataclass(frozen=True)
class Target:
    """The profile to connect with and whether its name has a keychain entry to look up."""

    profile: ConnectionProfile
    stored: bool  # a named profile (stored, or named with --profile): keychain applies

    @property
    def label(self) -> str:
        return self.profile.name if self.stored else "--dsn"


def resolve_target(dsn: str | None, profile_name: str | None,
                   store: ProfileStore | None = None) -> Target:
    """Turn --dsn/--profile into a :class:`Target`; raises CliError(3) on a bad profile."""
    try:
        if dsn is not None and profile_name is None:
            _parse(dsn)
            return Target(ConnectionProfile(name="cli", dsn=dsn), stored=False)
        store = store if store is not None else ProfileStore()
        if profile_name is None and store.default_name is None:
            # No profile at all: libpq defaults (PG* variables, service files).
            return Target(ConnectionProfile(name="cli"), stored=False)
        base = store.get(profile_name)
        if dsn is not None:
            merged = make_conninfo(make_conninfo("", **base.params()), **_parse(dsn))
            base = ConnectionProfile(name=base.name, dsn=merged)
        return Target(base, stored=True)
    except ProfileError as ex:
        raise CliError(str(ex), ExitCode.UNUSABLE) from ex


def _parse(dsn: str) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    except psycopg.ProgrammingError as ex:
        raise CliError(f"--dsn is not a valid conninfo or URL: {ex}", ExitCode.USAGE) from ex


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
    try:
        conninfo = target.profile.to_conninfo()
        params = target.profile.params()
    except psycopg.ProgrammingError as ex:
        raise CliError(f"the connection settings are not valid: {ex}", ExitCode.USAGE) from ex
    if params.get("password"):
        return conninfo
    probe = conninfo
    if "connect_timeout" not in params:
        probe = make_conninfo(conninfo, connect_timeout=PREFLIGHT_CONNECT_TIMEOUT)
    try:
        with psycopg.connect(probe, autocommit=True):
            log.debug("libpq connected without a password from traystatus")
            return conninfo
    except psycopg.OperationalError as ex:
        pgconn = ex.pgconn
        # needs_password: the server asked for one and libpq had none (used_password is
        # also true then: it only says the method was a password one).
        undecided = pgconn is None or not pgconn.needs_password
    stored = credentials.get_password(target.profile.name) if target.stored else None
    if undecided:
        # Unreachable, TLS, or a wrong password from ~/.pgpass: the command reports it. The
        # keychain password still goes along, so that `wait`/`watch` started while the
        # server is down can log in once it is back.
        log.debug("pre-flight connection failed; the command will report why")
        return conninfo if stored is None else make_conninfo(conninfo, password=stored)
    if stored is not None:
        log.debug("using the keychain password of profile %r", target.profile.name)
        return make_conninfo(conninfo, password=stored)

    if interactive is None:
        stream = stdin if stdin is not None else sys.stdin
        interactive = stream.isatty()
    where = _where(params)
    if interactive:
        try:
            password = getpass.getpass(f"Password for {where}: ")
        except (EOFError, KeyboardInterrupt):
            raise CliError("no password given", ExitCode.UNUSABLE) from None
        return make_conninfo(conninfo, password=password)

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
