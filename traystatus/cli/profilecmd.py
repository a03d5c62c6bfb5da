"""``traystatus profile add|list|rename|remove|set-default``: the profiles file and the
keychain.

The settings file gets the connection keywords, the keychain gets the password, and
nothing gets half-written: when a password is given but no secure keychain exists, the
command changes nothing and says what to do (a keychain, or ~/.pgpass with --no-password).
A name that is taken is refused (``add --replace`` replaces on purpose): a profile and its
keychain entry are never overwritten by accident.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import json
import shlex
import sys

from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.core.config import credentials
from traystatus.core.config.profiles import (
    ConnectionProfile,
    ProfileError,
    ProfileStore,
    check_profile_name,
    taken_message,
)


def _store() -> ProfileStore:
    try:
        return ProfileStore()
    except ProfileError as ex:
        raise CliError(str(ex), ExitCode.UNUSABLE) from ex


def cmd_profile_help(args: argparse.Namespace) -> int:
    print(
        "usage: traystatus profile {add,list,rename,remove,set-default} ...  "
        "(see `traystatus profile --help`)",
        file=sys.stderr,
    )
    return int(ExitCode.USAGE)


def _options(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--option {pair!r}: write it as KEY=VALUE", ExitCode.USAGE)
        out[key.strip()] = value
    return out


def _read_password(args: argparse.Namespace, name: str) -> str | None:
    if args.no_password or getattr(args, "ask_password", False):
        return None
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("--password-stdin: stdin had no password (an empty first line); "
                           "nothing was changed", ExitCode.USAGE)
        return line
    if sys.stdin.isatty():
        entered = getpass.getpass(
            f"Password for profile {name!r} (empty: none, libpq's ~/.pgpass or PGPASSWORD): "
        )
        return entered or None
    return None


def _refuse_taken(store: ProfileStore, name: str, renaming: str | None = None,
                  replace_hint: bool = False) -> None:
    if store.taken(name):
        hint = " (or `traystatus profile add --replace` to replace it)" if replace_hint else ""
        raise CliError(taken_message(name, renaming) + hint, ExitCode.USAGE)


def cmd_add(args: argparse.Namespace) -> int:
    store = _store()
    replace = bool(getattr(args, "replace", False))
    if not replace:
        _refuse_taken(store, args.name, replace_hint=True)  # before asking for a password
    ask = bool(getattr(args, "ask_password", False))
    fields = {
        k: getattr(args, k)
        for k in ("host", "port", "dbname", "user", "sslmode", "sslrootcert", "sslnegotiation",
                  "sslsni")
    }
    try:
        profile = ConnectionProfile(
            name=args.name, dsn=getattr(args, "dsn", None), options=_options(args.option),
            relay=getattr(args, "relay", None), source=getattr(args, "source", None),
            ask_password=ask, **fields,
        )
    except ProfileError as ex:
        raise CliError(str(ex), ExitCode.USAGE) from ex
    profile, secrets = profile.without_secrets()
    password = secrets.pop("password", None)
    if secrets:
        raise CliError(
            f"profile {args.name!r}: {', '.join(sorted(secrets))} cannot be stored; leave "
            "it out (libpq can prompt or read it from its own files)",
            ExitCode.USAGE,
        )
    if password is not None and args.no_password:
        raise CliError(
            f"profile {args.name!r}: the DSN holds a password, but --no-password says to "
            "store none: remove password=... from the DSN (and put it in ~/.pgpass), or "
            "leave out --no-password to keep it in the keychain. Nothing was changed.",
            ExitCode.USAGE,
        )
    if password is not None and ask:
        raise CliError(
            f"profile {args.name!r}: the DSN holds a password, but --ask-password says to "
            "ask for it each session and store it nowhere: remove password=... from the DSN. "
            "Nothing was changed.",
            ExitCode.USAGE,
        )
    typed = _read_password(args, args.name)
    if typed is not None:
        password = typed

    previous: str | None = None
    if password is not None:
        # The keychain first: if it cannot take the password, nothing is changed at all.
        try:  # to put it back if the file cannot be written
            previous = credentials.peek_password(args.name)
        except credentials.NoSecureKeychain:
            previous = None  # storing fails just below, and says why
        try:
            credentials.store_password(args.name, password)
        except credentials.NoSecureKeychain as ex:
            raise CliError(
                f"{ex}. Profile {args.name!r} was not saved; to use ~/.pgpass instead, "
                "add it with --no-password.",
                ExitCode.UNUSABLE,
            ) from ex
    try:
        if replace:
            store.put(profile, make_default=args.default)
        else:  # the name is checked again under the file's lock: another program may race
            store.add(profile, make_default=args.default)
    except ProfileError as ex:
        if password is not None:  # undo the keychain half: nothing changed
            if previous is None:
                credentials.delete_password(args.name)
            else:
                with contextlib.suppress(credentials.NoSecureKeychain):
                    credentials.store_password(args.name, previous)
        raise CliError(f"{ex}. Profile {args.name!r} was not saved.",
                       ExitCode.UNUSABLE) from ex
    if ask and replace:
        # An entry left from before would never be read; remove it: nothing is kept.
        credentials.delete_password(args.name)
    secret = "token" if profile.relay else "password"
    where = f"{secret} in the keychain" if password is not None else f"no {secret} stored"
    if ask:
        where = "password asked for each session, never stored"
    default = " (default)" if store.default_name == args.name else ""
    print(f"saved profile {args.name!r}{default}: {profile.describe()}; {where}")
    print(f"settings file: {store.path}")
    print(f"check it with: traystatus doctor -p {shlex.quote(args.name)}")
    return int(ExitCode.OK)


def cmd_list(args: argparse.Namespace) -> int:
    store = _store()
    rows: list[dict[str, object]] = []
    unreadable = ""
    for profile in store:
        stored: bool | None = False if profile.ask_password else None
        if not unreadable and not profile.ask_password:
            try:
                stored = credentials.peek_password(profile.name) is not None
            except credentials.BrokenKeychain as ex:
                unreadable = str(ex)
        rows.append(
            {
                "name": profile.name,
                "default": profile.name == store.default_name,
                "connection": profile.describe(),
                "password_in_keychain": stored,  # None: the keychain could not be read
                **({"ask_password": True} if profile.ask_password else {}),
            }
        )
    if unreadable:
        print(f"traystatus: {unreadable}", file=sys.stderr)
    for name, why in store.invalid.items():
        rows.append({"name": name, "default": name == store.default_name, "connection": None,
                     "password_in_keychain": None, "error": why})
    # A default that names no profile (or is not a name) marks no row: say it.
    default = store.default_name
    dangling = store.configured and (default is None or not store.taken(default))
    default_problem = store.default_problem() if dangling else None
    if args.json:
        print(json.dumps({"config_file": str(store.path), "profiles": rows,
                          "default_problem": default_problem}, indent=2))
        return int(ExitCode.OK)
    if default_problem is not None:
        print(f"traystatus: {default_problem}", file=sys.stderr)
    if not rows:
        print(f"no profiles in {store.path}; add one with `traystatus profile add NAME ...`")
        return int(ExitCode.OK)
    width = max(len(str(r["name"])) for r in rows)
    for r in rows:
        mark = "*" if r["default"] else " "
        if r.get("error") is not None:
            print(f"{mark} {r['name']:<{width}}  NOT VALID: {r['error']} (fix it in "
                  f"{store.path}, or `traystatus profile remove {shlex.quote(str(r['name']))}`)")
            continue
        pw = {True: "keychain", False: "no password stored",
              None: "keychain not readable"}[r["password_in_keychain"]]  # type: ignore[index]
        if r.get("ask_password"):
            pw = "password asked each session"
        print(f"{mark} {r['name']:<{width}}  {r['connection']}  [{pw}]")
    return int(ExitCode.OK)


def cmd_remove(args: argparse.Namespace) -> int:
    """Both halves or neither: the keychain entry first (kept in memory), then the file;
    if the file cannot be written, the entry is put back."""
    store = _store()
    name = args.name
    if name not in store and name not in store.invalid:
        try:
            store.get(name)  # the error names the profiles there are
        except ProfileError as ex:
            raise CliError(str(ex), ExitCode.UNUSABLE) from ex
    try:
        old = credentials.peek_password(name)
        removed = credentials.delete_password_or_raise(name)
    except credentials.NoSecureKeychain as ex:
        raise CliError(
            f"profile {name!r} was NOT removed (neither from {store.path} nor from the "
            f"keychain): {ex}. Fix the keychain and run it again.",
            ExitCode.UNUSABLE,
        ) from ex
    was_default = store.default_name == name
    try:
        store.remove(name)
    except ProfileError as ex:
        restored = ""
        if removed and old is not None:
            try:
                credentials.store_password(name, old)
                restored = "; its keychain entry was put back, so nothing changed"
            except credentials.NoSecureKeychain as ex2:
                restored = (f"; its keychain entry was removed and could not be put back "
                            f"({ex2}): store it again with `traystatus profile add --replace`")
        raise CliError(f"profile {name!r} was NOT removed: {ex}{restored}",
                       ExitCode.UNUSABLE) from ex
    extra = " and its keychain entry" if removed else " (it had no keychain entry)"
    print(f"removed profile {name!r}{extra}")
    if was_default and store.default_name is not None:
        print(f"the default profile is now {store.default_name!r} "
              "(change it with `traystatus profile set-default NAME`)")
    return int(ExitCode.OK)


def cmd_rename(args: argparse.Namespace) -> int:
    """Rename OLD to NEW: the keychain entry is copied to NEW, the file changed in one
    write, then OLD's entry deleted. A taken NEW is refused; a failure undoes what was
    done, so both halves move together or not at all."""
    store = _store()
    old, new = args.old, args.new
    try:
        check_profile_name(new)
    except ProfileError as ex:
        raise CliError(str(ex), ExitCode.USAGE) from ex
    try:
        profile = dataclasses.replace(store.get(old), name=new)
    except ProfileError as ex:
        raise CliError(f"{ex}; nothing was renamed", ExitCode.UNUSABLE) from ex
    if new == old:
        print(f"profile {old!r} already has that name; nothing to do")
        return int(ExitCode.OK)
    _refuse_taken(store, new, renaming=old)
    try:
        password = credentials.peek_password(old)
        previous = credentials.peek_password(new)  # an entry no profile uses (left over)
        if password is not None:
            credentials.store_password(new, password)
        elif previous is not None:
            credentials.delete_password_or_raise(new)  # never inherit a stray password
    except credentials.NoSecureKeychain as ex:
        raise CliError(f"profile {old!r} was NOT renamed: {ex}", ExitCode.UNUSABLE) from ex
    try:
        store.rename(old, profile)
    except ProfileError as ex:
        with contextlib.suppress(credentials.NoSecureKeychain):
            if previous is not None:
                credentials.store_password(new, previous)
            elif password is not None:
                credentials.delete_password_or_raise(new)
        code = ExitCode.USAGE if store.taken(new) else ExitCode.UNUSABLE
        raise CliError(f"profile {old!r} was NOT renamed: {ex}", code) from ex
    moved = " and its keychain entry" if password is not None else ""
    if password is not None:
        try:
            credentials.delete_password_or_raise(old)
        except credentials.NoSecureKeychain as ex:
            moved += (f" (its old keychain entry {old!r} could not be deleted: {ex}; "
                      "delete it in your keychain app)")
    print(f"renamed profile {old!r} to {new!r}{moved}")
    return int(ExitCode.OK)


def cmd_set_default(args: argparse.Namespace) -> int:
    store = _store()
    try:
        store.set_default(args.name)
    except ProfileError as ex:
        raise CliError(str(ex), ExitCode.UNUSABLE) from ex
    print(f"default profile: {args.name!r}")
    return int(ExitCode.OK)
