"""Which database a command talks to, and how its password is found.

Target: ``--profile NAME`` picks a stored profile, ``--dsn`` gives a conninfo/URL; with both,
the DSN's keywords override the profile's; with neither, the default profile, else plain
libpq defaults (so ``PGHOST=... traystatus status`` works).

Password: the order is traystatus.core.password's, shared with the tray app (the DSN's
own, then libpq's PGPASSWORD / ~/.pgpass / service file, then the profile's keychain
entry); when the server asks and none of those has one, the CLI adds a prompt on an
interactive terminal, else a clear error, exit 3.
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
from traystatus.core.password import Source
from traystatus.core.password import resolve as resolve_password
from traystatus.core.profiles import ConnectionProfile, ProfileError, ProfileStore

log = logging.getLogger(__name__)


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
    found = resolve_password(conninfo, target.profile.name if target.stored else None)
    if found.source is not Source.NEEDED:
        if found.password is None:
            return conninfo  # in the DSN, or libpq finds it (or none is needed)
        return make_conninfo(conninfo, password=found.password)

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
