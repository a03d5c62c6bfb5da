"""Connection profiles and app settings, kept in one TOML file without secrets.

A :class:`ConnectionProfile` names a database the way libpq does: either a DSN/conninfo
string, or the separate fields (host, port, dbname, user and the TLS options StatBus uses),
or both (fields then override the DSN). Anything left unset is left out of the conninfo, so
libpq fills it as usual: ``PG*`` environment variables, ``service=`` entries of
``pg_service.conf`` and the password in ``~/.pgpass`` keep working.

:class:`ProfileStore` keeps several named profiles, the name of the default one and the
tray's :class:`Settings` in ``profiles.toml`` inside the platform's user config folder
(``TRAYSTATUS_CONFIG_DIR`` overrides it, for tests and portable setups). The password is
never written there: :mod:`traystatus.core.config.credentials` puts it in the OS keychain. A profile
that carries a password is refused when saved, so a slip cannot leak it to disk.

The file is read with :mod:`tomllib`; writing uses the small emitter below (the standard
library has no TOML writer, and the values are flat strings, numbers and booleans).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import math
import os
import re
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from traystatus.core.pg import conninfo as conncheck
from traystatus.core.words.redact import SECRET_KEYS, redact_conninfo

APP_NAME = "traystatus"
CONFIG_ENV = "TRAYSTATUS_CONFIG_DIR"
CONFIG_FILE = "profiles.toml"

log = logging.getLogger(__name__)

# The profile fields that map one to one on libpq keywords, in the order they are written.
RELAY_URL_SCHEMES = ("ws", "wss", "http", "https")
SOURCE_MODES = ("installed", "builtin", "auto")  # = core.readers.READER_MODES

_LIBPQ_FIELDS = (
    "host",
    "port",
    "dbname",
    "user",
    "sslmode",
    "sslrootcert",
    "sslnegotiation",
    "sslsni",
)
# libpq keywords that hold secrets: never stored, never shown.
_NAME_RE = re.compile(r"^[\w.@+-][\w .@+-]{0,63}$")


class ProfileError(ValueError):
    """A profile or the settings file is unusable; the message says what to change."""


def config_dir() -> Path:
    """The folder that holds ``profiles.toml``; ProfileError when there is none to find."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override)
    try:
        return platformdirs.user_config_path(APP_NAME, appauthor=False)
    except (RuntimeError, KeyError, OSError) as ex:  # no HOME and no password-file entry
        raise ProfileError(
            f"cannot find your config folder ({ex}): set HOME, or set {CONFIG_ENV} to a "
            "folder for traystatus's settings; commands given --dsn work without one"
        ) from ex


def _file_problem(path: Path, ex: OSError, doing: str) -> ProfileError:
    """One line for an OS error on the settings file or its folder: what and what to do."""
    if isinstance(ex, IsADirectoryError):
        why = f"{path} is a folder, not a file: move it away"
    elif isinstance(ex, NotADirectoryError):
        why = (f"a part of {path.parent} is a file, not a folder: point {CONFIG_ENV} at a "
               "folder, or move that file away")
    elif isinstance(ex, PermissionError):
        why = (f"permission denied: make {path if doing == 'read' else path.parent} "
               f"{'readable' if doing == 'read' else 'writable'} by you, or set "
               f"{CONFIG_ENV} to a folder of your own")
    else:
        why = f"{ex.strerror or ex}: check {path.parent}, or set {CONFIG_ENV} to another folder"
    return ProfileError(f"cannot {doing} the settings file {path}: {why}")


def check_profile_name(name: str) -> str:
    """Return ``name`` if it can name a profile (and a keychain entry), else raise."""
    if not _NAME_RE.match(name) or name != name.strip():
        raise ProfileError(
            f"invalid profile name {name!r}: use 1 to 64 letters, digits, spaces or . @ + - _ "
            "(no leading or trailing space)"
        )
    return name


@dataclass(frozen=True)
class ConnectionProfile:
    """Where one StatBus database is and how to reach it (no password).

    ``options`` holds any further libpq keywords (``service``, ``connect_timeout``,
    ``application_name``, ``sslcert``...). ``source``: how to read the database,
    ``installed`` (traystatus's SQL), ``builtin`` (StatBus's own channels) or ``auto``
    (None means auto). ``port`` is kept as text, as libpq does, so a
    multi-host ``"3015,3015"`` stays possible.
    """

    name: str = "default"
    dsn: str | None = None
    host: str | None = None
    port: str | None = None
    dbname: str | None = None
    user: str | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslnegotiation: str | None = None
    sslsni: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    # A traystatus server (``traystatus serve``) instead of a database: ws://, wss://,
    # http:// or https://. Its token is the profile's keychain entry (where a database
    # profile keeps its password). Exclusive with every libpq setting.
    relay: str | None = None
    source: str | None = None  # installed | builtin | auto (None: auto); not a libpq keyword
    # Ask for the password each session and keep it in memory only (StatBus: operators
    # enter their web password per session). A flag, not a secret: the keychain is then
    # neither read nor written for this profile.
    ask_password: bool = False

    def __post_init__(self) -> None:
        check_profile_name(self.name)
        if self.ask_password and self.relay is not None:
            raise ProfileError(
                f"profile {self.name!r}: ask_password is for a database login; a traystatus "
                "server's token is kept in the keychain"
            )
        if self.source is not None and self.source not in SOURCE_MODES:
            raise ProfileError(
                f"profile {self.name!r}: source {self.source!r} is not one of "
                f"{', '.join(SOURCE_MODES)}"
            )
        if self.relay is not None:
            _check_relay(self.name, self.relay)
            if self.dsn or self.options or any(getattr(self, k) for k in _LIBPQ_FIELDS):
                raise ProfileError(
                    f"profile {self.name!r} names a traystatus server (relay) and database "
                    "settings; a profile reads one or the other"
                )
        if self.dsn is not None:
            try:
                conninfo_to_dict(self.dsn)
            except Exception as ex:  # psycopg raises ProgrammingError for a bad conninfo
                raise ProfileError(f"profile {self.name!r}: the DSN is not valid: {ex}") from ex
        invalid = conncheck.problems(self.params())
        if invalid:
            raise ProfileError(f"profile {self.name!r}: {'; '.join(invalid)}")

    def params(self) -> dict[str, str]:
        """The libpq keywords this profile sets (the DSN's, then the fields over them)."""
        out: dict[str, str] = {}
        if self.dsn:
            out.update({k: str(v) for k, v in conninfo_to_dict(self.dsn).items() if v is not None})
        for key in _LIBPQ_FIELDS:
            value = getattr(self, key)
            if value is not None and value != "":
                out[key] = str(value)
        out.update({k: str(v) for k, v in self.options.items()})
        return out

    def to_conninfo(self, **extra: str) -> str:
        """A libpq conninfo string; unset keywords are left to libpq's own defaults.

        ``fallback_application_name`` lets a DBA see traystatus in ``pg_stat_activity``
        without overriding ``application_name`` or ``PGAPPNAME`` if the user set one.
        """
        if self.relay is not None:
            return relay_target(self.relay)  # what open_source takes for a server
        params = self.params()
        params.setdefault("fallback_application_name", APP_NAME)
        params.update(extra)
        return make_conninfo("", **params)

    @property
    def has_secret(self) -> bool:
        return any(k in SECRET_KEYS for k in self.params())

    def without_secrets(self) -> tuple[ConnectionProfile, dict[str, str]]:
        """This profile with any password taken out, and the secrets that were in it.

        The DSN is rewritten as key=value pairs when it held a secret (a URL's password is
        otherwise hard to cut out safely).
        """
        secrets: dict[str, str] = {}
        dsn = self.dsn
        if dsn:
            parsed = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
            found = {k: parsed.pop(k) for k in list(parsed) if k in SECRET_KEYS}
            if found:
                secrets.update(found)
                dsn = make_conninfo("", **parsed) or None
        options = dict(self.options)
        for k in list(options):
            if k in SECRET_KEYS:
                secrets[k] = options.pop(k)
        return dataclasses.replace(self, dsn=dsn, options=options), secrets

    def describe(self) -> str:
        """A one-line description for lists and logs: never contains a secret."""
        if self.relay is not None:
            parts = urlsplit(self.relay)
            host = parts.netloc.rsplit("@", 1)[-1]  # never a user:password@ part
            return f"traystatus server {parts.scheme}://{host}{parts.path}"
        return redact_conninfo(make_conninfo("", **self.params())) or "(libpq defaults)"

    def to_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {}
        if self.relay:
            table["relay"] = self.relay
        if self.dsn:
            table["dsn"] = self.dsn
        for key in _LIBPQ_FIELDS:
            value = getattr(self, key)
            if value is not None:
                table[key] = value
        if self.options:
            table["options"] = dict(self.options)
        if self.source is not None:
            table["source"] = self.source
        if self.ask_password:
            table["ask_password"] = True
        return table

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> ConnectionProfile:
        known = {"dsn", "options", "relay", "source", "ask_password", *_LIBPQ_FIELDS}
        unknown = set(table) - known
        if unknown:
            raise ProfileError(
                f"profile {name!r} has unknown keys {sorted(unknown)}; put extra libpq "
                f"keywords under [profiles.{_key(name)}.options]"
            )
        options = table.get("options", {})
        if not isinstance(options, Mapping):
            raise ProfileError(f"profile {name!r}: 'options' must be a table of libpq keywords")
        kwargs: dict[str, Any] = {}
        for key in ("dsn", "relay", *_LIBPQ_FIELDS):
            value = table.get(key)
            if value is None:
                continue
            # TOML gives numbers for `port = 3015`; anything else must be text.
            if isinstance(value, bool) or not isinstance(value, str | int) or (
                isinstance(value, int) and key != "port"
            ):
                raise ProfileError(
                    f"profile {name!r}: {key} = {value!r} is not valid: write it as text in "
                    f'quotes ({key} = "...")'
                )
            kwargs[key] = str(value)
        for key, value in options.items():
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ProfileError(
                    f"profile {name!r}: options.{key} = {value!r} is not valid: write it as "
                    "text in quotes"
                )
        source = table.get("source")
        if source is not None and not isinstance(source, str):
            raise ProfileError(
                f"profile {name!r}: source = {source!r} is not valid: write one of "
                f"{', '.join(SOURCE_MODES)} in quotes"
            )
        ask = table.get("ask_password", False)
        if not isinstance(ask, bool):
            raise ProfileError(
                f"profile {name!r}: ask_password = {ask!r} is not valid: write true or false"
            )
        return cls(
            name=name,
            options={str(k): str(v) for k, v in options.items()},
            source=source,
            ask_password=ask,
            **kwargs,
        )


def _check_relay(name: str, url: str) -> None:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in RELAY_URL_SCHEMES or not parts.hostname:
        raise ProfileError(
            f"profile {name!r}: relay {url!r} is not a traystatus server URL; give "
            "ws://HOST:8765, wss://HOST or https://HOST"
        )


def relay_target(url: str) -> str:
    """A relay URL as ``open_source`` recognises it: http(s) becomes ws(s)."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    return {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower()) + sep + rest



# -- app settings ---------------------------------------------------------------------------

ICON_STYLES = ("auto", "color", "mono-light", "mono-dark")


# The smallest value each number of seconds may have. The monitor refuses intervals <= 0
# (MonitorOptions raises ValueError), so those two start at 1 s.
SECONDS_MIN = {
    "disconnect_grace_s": 0.0,
    "notify_min_processing_s": 0.0,
    "health_interval_s": 1.0,
    "health_timeout_s": 1.0,
    "review_remind_s": 0.0,
}
IMPORT_NOTICES = ("mine", "all")
# Settings older versions stored but never used; a file that still has them loads (they
# are dropped, with one info line) and loses them on the next save.
RETIRED_SETTINGS = frozenset({
    "notify_processing_started", "notify_import_finished", "only_my_imports",
    "flap_damping_s", "quiet_hours_start", "quiet_hours_end",
})
# The largest: beyond these a setting makes no sense for a tray app (and Qt's timers stop
# at 2**31 ms, about 24.8 days: far above every one of these). A larger number in the file
# is clamped to it with a warning.
SECONDS_MAX = {
    "disconnect_grace_s": 3600.0,
    "notify_min_processing_s": 3600.0,
    "health_interval_s": 3600.0,
    "health_timeout_s": 300.0,
    "review_remind_s": 7 * 86400.0,
}


@dataclass
class Settings:
    """What the tray app lets a person change. Defaults are what a new user gets.

    Every field is read by the tray app (app/notify_policy.py, app/controller.py).
    Notification toggles are per event: ``notify_stable`` "Processing finished" (with the
    summary of finished imports), ``notify_import_failed``, ``notify_disconnected``,
    ``notify_error``. ``disconnect_grace_s``: how long a lost connection may last before
    anyone is told (longer right after start and after wake from sleep).
    ``notify_min_processing_s``: "Processing finished" only after processing lasted at least
    this long (a short flip is not news).
    ``import_notices``: which ended import jobs get a notice of their own: ``mine`` (the
    StatBus user behind the login's) or ``all``.
    ``review_remind_s``: while an import job waits for review (StatBus holds the other
    imports), remind a login that may approve it this often (0: never).
    ``watched``: more profiles the tray app watches besides the one it shows in detail
    (several deployments: one icon with the worst state, a line per deployment); names
    that are not (or no longer) profiles are skipped.
    """

    notify_stable: bool = True
    notify_import_failed: bool = True
    notify_disconnected: bool = True
    notify_error: bool = True
    disconnect_grace_s: float = 60.0
    notify_min_processing_s: float = 30.0
    health_interval_s: float = 15.0
    health_timeout_s: float = 5.0
    icon_style: str = "auto"
    watched: tuple[str, ...] = ()
    import_notices: str = "mine"
    review_remind_s: float = 7200.0

    def validate(self) -> Settings:
        """Strict: raise ProfileError naming the first bad value (the dialog shows it)."""
        if self.import_notices not in IMPORT_NOTICES:
            raise ProfileError(
                f"settings: import_notices {self.import_notices!r} is not one of "
                f"{', '.join(IMPORT_NOTICES)}"
            )
        if self.icon_style not in ICON_STYLES:
            raise ProfileError(
                f"settings: icon_style {self.icon_style!r} is not one of {', '.join(ICON_STYLES)}"
            )
        for name, low in SECONDS_MIN.items():
            value = getattr(self, name)
            high = SECONDS_MAX.get(name, math.inf)
            if not math.isfinite(value) or not low <= value <= high:
                raise ProfileError(
                    f"settings: {name} must be a number of seconds from {low:g} to {high:g}"
                )
        return self

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str = "settings") -> Settings:
        """Lenient: the settings as read from the file, never raising.

        A hand-edited file must not keep the tray app from starting (at login nobody sees
        an error), so a value of the wrong type or out of range is replaced - a number
        below its minimum by the minimum, anything else by the default - and a warning
        names the line and what was used instead.
        """
        kwargs: dict[str, Any] = {}
        retired = sorted(RETIRED_SETTINGS.intersection(table))
        if retired:
            log.info("%s: %s no longer used; dropped at the next save", where, ", ".join(retired))
        for f in dataclasses.fields(cls):
            if f.name not in table:
                continue  # a newer app may add keys; an older file simply lacks them
            value = kwargs[f.name] = table[f.name]
            default = f.default
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                if ok:
                    try:
                        value = kwargs[f.name] = float(value)
                    except OverflowError:  # an integer too large for a float
                        value = kwargs[f.name] = math.inf if value > 0 else -math.inf
                    low = SECONDS_MIN.get(f.name, 0.0)
                    high = SECONDS_MAX.get(f.name, math.inf)
                    if value < low:
                        kwargs[f.name] = low
                        ok = False
                    elif value > high:
                        kwargs[f.name] = high
                        ok = False
                    elif not math.isfinite(value):
                        ok = False
            elif f.name == "icon_style":
                ok = value in ICON_STYLES
            elif f.name == "import_notices":
                ok = value in IMPORT_NOTICES
            elif f.name == "watched":
                ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
                if ok:
                    kwargs[f.name] = tuple(dict.fromkeys(value))
            else:
                ok = isinstance(value, str)
            if not ok:
                if kwargs[f.name] is value:
                    kwargs[f.name] = default
                log.warning(
                    "%s: %s = %r is not valid; using %r instead (fix or delete that line)",
                    where, f.name, table[f.name], kwargs[f.name],
                )
        return cls(**kwargs).validate()

    def to_table(self) -> dict[str, Any]:
        table = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        table["watched"] = list(self.watched)
        return table


# -- the store --------------------------------------------------------------------------------


class ProfileStore:
    """Named profiles, the default's name and the settings, in one file shared by the tray
    app and the CLI.

    Every change is one transaction (:meth:`_change`): take the lock file next to
    ``profiles.toml`` (``fcntl.flock``; ``msvcrt`` on Windows), re-read the file, apply the
    change to what another process may have written meanwhile, write a temporary file,
    ``fsync`` it, rename it over the old one and ``fsync`` the folder. So a profile added
    with ``traystatus profile add`` while the tray app runs survives the app's next Save,
    and a crash never leaves a torn or empty file. Reading needs no lock (the rename is
    atomic).

    A name is never silently reused: :meth:`add` and :meth:`rename` refuse a name that is
    taken (a valid or an invalid profile), :meth:`put` replaces on purpose.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else config_dir() / CONFIG_FILE
        self._profiles: dict[str, ConnectionProfile] = {}
        # Profiles the file has but that are not valid: name -> (what is wrong, raw table).
        # They are reported when used, listed, kept on save and can be removed.
        self._invalid: dict[str, tuple[str, dict[str, Any] | None]] = {}
        self._order: list[str] = []  # every profile name, valid or not, in file order
        # The file's `default =` value as found (None: no such line). Not always a str:
        # `default = 5` is kept, reported when the default is used, and written back.
        self._default: object = None
        self._depth = 0  # nesting of _change (the lock is taken once per process)
        self.settings = Settings()
        self.load()

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # -- reading
    def load(self) -> None:
        """(Re)read the file; a missing file means no profiles and default settings.

        A profile that is not valid does not stop the others: it is kept aside
        (:attr:`invalid`) and its problem reported when it is used.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._profiles, self._default, self.settings = {}, None, Settings()
            self._invalid, self._order = {}, []
            return
        except OSError as ex:
            raise _file_problem(self.path, ex, "read") from ex
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as ex:
            raise ProfileError(
                f"{self.path} is not valid TOML ({ex}); fix it or move it away to start afresh"
            ) from ex
        profiles_table = data.get("profiles", {})
        if not isinstance(profiles_table, dict):
            raise ProfileError(f"{self.path}: [profiles] must be a table")
        profiles: dict[str, ConnectionProfile] = {}
        invalid: dict[str, tuple[str, dict[str, Any] | None]] = {}
        for name, table in profiles_table.items():
            if not isinstance(table, dict):
                invalid[name] = (f"profile {name!r} must be a table ([profiles.{_key(name)}])",
                                 None)
                continue
            try:
                profiles[name] = ConnectionProfile.from_table(name, table)
            except ProfileError as ex:
                invalid[name] = (str(ex), table)
        for why, _ in invalid.values():
            # Not a warning on every start: it is reported where it matters (when used,
            # in `profile list` and in `doctor`), and the other profiles work.
            log.debug("%s: %s", self.path, why)
        settings_table = data.get("settings", {})
        if not isinstance(settings_table, dict):
            raise ProfileError(f"{self.path}: [settings] must be a table")
        self._profiles = profiles
        self._invalid = invalid
        self._order = list(profiles_table)
        # Kept as written, even when it names no profile or is not text: the default is
        # what the user meant, and using it says what is wrong (never another database).
        self._default = data.get("default")
        self.settings = Settings.from_table(settings_table, f"{self.path} [settings]")

    def __iter__(self) -> Iterator[ConnectionProfile]:
        return iter(self._profiles.values())

    def __len__(self) -> int:
        return len(self._profiles)

    def __contains__(self, name: object) -> bool:
        return name in self._profiles

    def names(self) -> list[str]:
        return list(self._profiles)

    def all_names(self) -> list[str]:
        """Every profile's name in file order, the invalid ones too."""
        return list(self._order)

    def taken(self, name: str) -> bool:
        """Whether a profile, valid or not, has this name."""
        return name in self._profiles or name in self._invalid

    @property
    def invalid(self) -> dict[str, str]:
        """The profiles in the file that are not valid: name -> what is wrong."""
        return {name: why for name, (why, _) in self._invalid.items()}

    @property
    def configured(self) -> bool:
        """Whether the file names any profile or a default: then a command without
        ``--profile`` means that default, and never libpq's defaults."""
        return bool(self._order) or self._default is not None

    @property
    def default_name(self) -> str | None:
        """The default profile's name as the file means it: its ``default``, else the first
        profile in the file (valid or not). It may name no profile (a typo, a removed one);
        None when there is no profile at all or ``default`` is not text. :meth:`get` with
        no name says what is wrong then: silently using another profile would watch
        another database."""
        if isinstance(self._default, str):
            return self._default
        if self._default is not None:
            return None
        return self._order[0] if self._order else None

    def _known(self) -> str:
        return ", ".join(repr(n) for n in self._order) or "none"

    def default_problem(self) -> str | None:
        """Why the default profile cannot be used, in one line; None when it can."""
        try:
            self.get()
        except ProfileError as ex:
            return str(ex)
        return None

    def get(self, name: str | None = None) -> ConnectionProfile:
        """The profile ``name`` (the default one when None); raises ProfileError if absent."""
        if name is None and self._default is not None and not isinstance(self._default, str):
            raise ProfileError(
                f"the default profile is not valid: default = {_value_or_repr(self._default)} "
                f"in {self.path} is not a profile name; write default = \"NAME\" with one of "
                f"the profiles ({self._known()}), or run `traystatus profile set-default NAME`"
            )
        wanted = name if name is not None else self.default_name
        if wanted is None:
            raise ProfileError(
                f"no connection profile is set up ({self.path} has none): add one with "
                "`traystatus profile add NAME --dsn ...` or pass --dsn"
            )
        if wanted in self._invalid:
            raise ProfileError(
                f"{'the default profile: ' if name is None else ''}{self._invalid[wanted][0]} "
                f"(in {self.path}); fix it there, add it again with `traystatus profile add "
                f"--replace {wanted} ...`, or remove it with `traystatus profile remove {wanted}`"
            )
        try:
            return self._profiles[wanted]
        except KeyError:
            if name is None:
                raise ProfileError(
                    f"the default profile {wanted!r} (default = {_value(wanted)} in "
                    f"{self.path}) does not exist (profiles: {self._known()}); choose one "
                    "with `traystatus profile set-default NAME`, or add it"
                ) from None
            raise ProfileError(
                f"no profile named {wanted!r} (profiles: {self._known()}); see "
                "`traystatus profile list`"
            ) from None

    # -- writing: each public method is one locked read-change-write transaction
    @contextlib.contextmanager
    def _change(self) -> Iterator[None]:
        """Lock, re-read, let the caller change this store, write. Nested calls join the
        outer transaction. On an error nothing is written and the file is re-read."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with _FileLock(self.lock_path):
            self._depth = 1
            try:
                self.load()
                try:
                    yield
                except BaseException:
                    with contextlib.suppress(ProfileError):
                        self.load()
                    raise
                self._write()
            finally:
                self._depth = 0

    def _refuse_secret(self, profile: ConnectionProfile) -> None:
        if profile.has_secret:
            raise ProfileError(
                f"profile {profile.name!r} contains a password; passwords go to the keychain, "
                "never to the settings file: store it with `traystatus profile add` instead"
            )

    def _set(self, profile: ConnectionProfile) -> None:
        if profile.name not in self._order:
            self._order.append(profile.name)
        self._profiles[profile.name] = profile
        self._invalid.pop(profile.name, None)

    def put(self, profile: ConnectionProfile, *, make_default: bool = False) -> None:
        """Add or replace ``profile`` and save. A profile holding a password is refused.
        The first profile becomes the default; a later one only with ``make_default``."""
        self._refuse_secret(profile)
        with self._change():
            first = not self._order and self._default is None
            self._set(profile)
            if make_default or first:
                self._default = profile.name

    def add(self, profile: ConnectionProfile, *, make_default: bool = False) -> None:
        """Add a new profile; ProfileError when its name is taken (nothing is replaced)."""
        self._refuse_secret(profile)
        with self._change():
            if self.taken(profile.name):
                raise ProfileError(taken_message(profile.name))
            self.put(profile, make_default=make_default)

    def replace(self, profile: ConnectionProfile,
                expected: ConnectionProfile | None = None) -> None:
        """Change the existing profile of that name. With ``expected`` (what the editor
        showed), refuse when another program changed it meanwhile."""
        self._refuse_secret(profile)
        with self._change():
            if not self.taken(profile.name):
                raise ProfileError(
                    f"profile {profile.name!r} no longer exists (another program removed it); "
                    "nothing was saved"
                )
            if expected is not None and self._profiles.get(profile.name) != expected:
                raise ProfileError(
                    f"profile {profile.name!r} was changed by another program since it was "
                    "shown here; nothing was saved: look at it again and redo your change"
                )
            self.put(profile)

    def rename(self, old: str, profile: ConnectionProfile,
               expected: ConnectionProfile | None = None) -> None:
        """Rename ``old`` to ``profile.name`` (with ``profile``'s settings) in one write:
        the place in the file, the default and the watched list follow. Refused when the
        new name is taken: a rename never replaces another profile."""
        self._refuse_secret(profile)
        new = profile.name
        with self._change():
            self.get(old)  # a clear error when it is gone or not valid
            if expected is not None and self._profiles.get(old) != expected:
                raise ProfileError(
                    f"profile {old!r} was changed by another program since it was shown "
                    "here; nothing was saved: look at it again and redo your change"
                )
            if new == old:
                self.put(profile)
                return
            if self.taken(new):
                raise ProfileError(taken_message(new, renaming=old))
            self._order[self._order.index(old)] = new
            self._profiles = {
                (new if n == old else n): (profile if n == old else p)
                for n, p in self._profiles.items()
            }
            if self._default == old:
                self._default = new
            watched = self.settings.watched
            if old in watched:
                self.settings = dataclasses.replace(
                    self.settings,
                    watched=tuple(dict.fromkeys(new if n == old else n for n in watched)),
                )

    def remove(self, name: str) -> None:
        """Remove ``name`` (an invalid one too) and save; ProfileError if it is not there.
        When it was the default, the first profile left becomes the default (explicitly:
        :attr:`default_name` says which, so the caller can tell the user)."""
        with self._change():
            if not self.taken(name):
                self.get(name)  # raises a clear error for an unknown name
            self._profiles.pop(name, None)
            self._invalid.pop(name, None)
            self._order.remove(name)
            if self._default == name:
                self._default = self._order[0] if self._order else None

    def set_default(self, name: str) -> None:
        with self._change():
            self.get(name)
            self._default = name

    def save_settings(self, settings: Settings) -> None:
        settings = settings.validate()
        with self._change():
            self.settings = settings

    def _write(self) -> None:
        text = self.dumps()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".profiles-", suffix=".toml",
                                       dir=self.path.parent)
        except OSError as ex:
            raise _file_problem(self.path, ex, "write") from ex
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name points at it
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException as ex:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(ex, OSError):
                raise _file_problem(self.path, ex, "write") from ex
            raise
        _fsync_dir(self.path.parent)

    def dumps(self) -> str:
        lines = [
            "# traystatus connection profiles and settings.",
            "# Passwords are never stored here: they live in the OS keychain (or ~/.pgpass).",
            "",
        ]
        if self._default is not None:
            lines += [f"default = {_value_or_repr(self._default)}", ""]
        elif self.default_name is not None:
            lines += [f"default = {_value(self.default_name)}", ""]
        lines.append("[settings]")
        lines += [f"{_key(k)} = {_value(v)}" for k, v in self.settings.to_table().items()]
        for name in self._order:
            profile = self._profiles.get(name)
            if profile is not None:
                table = profile.to_table()
                options = table.pop("options", None)
                lines += ["", f"[profiles.{_key(profile.name)}]"]
                lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
                if options:
                    lines += ["", f"[profiles.{_key(profile.name)}.options]"]
                    lines += [f"{_key(k)} = {_value(v)}" for k, v in options.items()]
                continue
            why, raw = self._invalid[name]
            # Written back as found, so editing another profile does not lose it.
            lines += ["", f"# not valid: {' '.join(why.split())}"]
            if raw is None:
                lines.append(f"# (profiles.{_key(name)} was not a table; it was dropped)")
                continue
            lines.append(f"[profiles.{_key(name)}]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in raw.items()
                      if not isinstance(v, dict)]
            for k, v in raw.items():
                if isinstance(v, dict):
                    lines += ["", f"[profiles.{_key(name)}.{_key(k)}]"]
                    lines += [f"{_key(k2)} = {_value(v2)}" for k2, v2 in v.items()]
        return "\n".join(lines) + "\n"


def taken_message(name: str, renaming: str | None = None) -> str:
    """One line for a name that is already a profile's."""
    doing = f"cannot rename {renaming!r} to {name!r}" if renaming else f"cannot add {name!r}"
    return (f"{doing}: a profile named {name!r} already exists; choose another name, or "
            f"remove {name!r} first (`traystatus profile remove {name}`); nothing was changed")


LOCK_TIMEOUT = 5.0
"""Seconds to wait for another process's change of the profiles file (a change takes
milliseconds; longer means a stuck process, and the user is told instead of a hang)."""


class _FileLock:
    """An exclusive lock on ``path`` (created 0600), across processes; released on exit
    and by the OS when the process dies, so a crash never leaves it held."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as ex:
            raise _file_problem(self.path, ex, "write") from ex
        deadline = time.monotonic() + LOCK_TIMEOUT
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                os.close(fd)
                raise ProfileError(
                    f"another traystatus process has held the lock on the settings file for "
                    f"{LOCK_TIMEOUT:g} s ({self.path}); nothing was changed: try again, or end "
                    "that process"
                )
            time.sleep(0.01)
        self._fd = fd

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _fsync_dir(path: Path) -> None:
        """Windows has no directory fsync; its rename is durable with the file's data."""
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _fsync_dir(path: Path) -> None:
        """Make the rename itself durable (the folder's entry), not only the data."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:  # some file systems cannot sync a folder; the data is synced
            pass
        finally:
            os.close(fd)


def _value_or_repr(v: object) -> str:
    try:
        return _value(v)
    except (TypeError, ProfileError):
        return repr(v)



# -- minimal TOML emitter -------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _string(k)


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ProfileError(f"cannot store the number {v!r}")
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, datetime.date | datetime.time):
        return v.isoformat()
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
