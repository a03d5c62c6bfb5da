"""ConnectionProfile and ProfileStore: libpq conventions, the file, and no password in it."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from traystatus.core.config.profiles import (
    ConnectionProfile,
    ProfileError,
    ProfileStore,
    Settings,
    config_dir,
)
from traystatus.core.words.redact import redact_conninfo, redact_url


def test_unset_fields_are_left_to_libpq() -> None:
    params = conninfo_to_dict(ConnectionProfile(name="p", host="db.example.org").to_conninfo())
    assert params == {"host": "db.example.org", "fallback_application_name": "traystatus"}


def test_fields_override_the_dsn_and_options_pass_through() -> None:
    profile = ConnectionProfile(
        name="p",
        dsn="postgresql://alice@old.example.org:3014/statbus?sslmode=require",
        host="new.example.org",
        port="3015",
        sslmode="verify-full",
        sslnegotiation="direct",
        sslsni="1",
        sslrootcert="/etc/ca.pem",
        options={"connect_timeout": "7"},
    )
    params = conninfo_to_dict(profile.to_conninfo())
    assert params["host"] == "new.example.org"
    assert params["port"] == "3015"
    assert params["user"] == "alice"
    assert params["dbname"] == "statbus"
    assert params["sslmode"] == "verify-full"
    assert params["sslnegotiation"] == "direct"
    assert params["sslrootcert"] == "/etc/ca.pem"
    assert params["connect_timeout"] == "7"


def test_bad_dsn_and_bad_name_are_refused() -> None:
    with pytest.raises(ProfileError, match="DSN is not valid"):
        ConnectionProfile(name="p", dsn="host=x port")
    with pytest.raises(ProfileError, match="invalid profile name"):
        ConnectionProfile(name=" spaced ")
    with pytest.raises(ProfileError, match="invalid profile name"):
        ConnectionProfile(name="a/b")


def test_without_secrets_takes_the_password_out() -> None:
    profile = ConnectionProfile(name="p", dsn="postgresql://bob:s3cret@h/db")
    assert profile.has_secret
    clean, secrets = profile.without_secrets()
    assert secrets == {"password": "s3cret"}
    assert not clean.has_secret
    assert "s3cret" not in (clean.dsn or "")
    assert conninfo_to_dict(clean.to_conninfo())["user"] == "bob"


def test_redact_conninfo() -> None:
    shown = redact_conninfo("host=h user=u password=topsecret sslpassword=x2")
    assert "topsecret" not in shown and "x2" not in shown
    assert "password=***" in shown
    uri = redact_conninfo("postgresql://u:topsecret@h:5432/db?sslpassword=x2")
    assert "topsecret" not in uri and "x2" not in uri and "user=u" in uri
    assert redact_conninfo("not = a = conninfo") == "(unparsable conninfo)"


def test_redact_url() -> None:
    shown = redact_url("wss://me:pw123@stat.example.org:8443/ts?token=abc&x=1")
    assert "pw123" not in shown and "abc" not in shown
    assert shown == "wss://me:***@stat.example.org:8443/ts?token=***&x=1"
    assert redact_url("ws://h:1/") == "ws://h:1/"


def test_libpq_environment_is_honoured(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    params = conninfo_to_dict(db_dsn)
    for key, env in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"),
                     ("dbname", "PGDATABASE")):
        monkeypatch.setenv(env, str(params[key]))
    with psycopg.connect(ConnectionProfile(name="env").to_conninfo()) as conn:
        row = conn.execute("SELECT current_database(), current_setting('application_name')")
        assert row.fetchone() == (params["dbname"], "traystatus")


def test_service_file_and_pgpass_are_honoured(
    db_dsn: str, login_role: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = conninfo_to_dict(db_dsn)
    user, password = login_role
    service = tmp_path / "pg_service.conf"
    service.write_text(
        f"[statbus]\nhost={params['host']}\nport={params['port']}\n"
        f"dbname={params['dbname']}\nuser={user}\n"
    )
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"{params['host']}:{params['port']}:*:{user}:{password}\n")
    pgpass.chmod(0o600)
    for env in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("PGSERVICEFILE", str(service))
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    profile = ConnectionProfile(name="svc", options={"service": "statbus"})
    with psycopg.connect(profile.to_conninfo()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)
        assert conn.pgconn.used_password


def test_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "profiles.toml"
    store = ProfileStore(path)
    assert len(store) == 0 and store.default_name is None
    store.put(ConnectionProfile(name="prod", host="statbus.example.org", port="3015",
                                sslmode="verify-full", options={"connect_timeout": "5"}))
    store.put(ConnectionProfile(name="test env", dsn="host=localhost dbname=t"))
    assert store.default_name == "prod"  # the first one becomes the default
    store.set_default("test env")
    store.save_settings(Settings(notify_disconnected=False, icon_style="mono-dark",
                                 disconnect_grace_s=90.0))

    again = ProfileStore(path)
    assert again.names() == ["prod", "test env"]
    assert again.default_name == "test env"
    assert again.get("prod") == store.get("prod")
    assert again.get() == store.get("test env")
    assert again.settings.icon_style == "mono-dark"
    assert again.settings.notify_disconnected is False
    assert again.settings.disconnect_grace_s == 90.0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tomllib.loads(path.read_text())  # a valid TOML file a person can edit

    again.remove("test env")
    assert ProfileStore(path).default_name == "prod"
    with pytest.raises(ProfileError, match="no profile named 'nope'"):
        again.get("nope")


def test_store_refuses_a_password(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "profiles.toml")
    with pytest.raises(ProfileError, match="keychain"):
        store.put(ConnectionProfile(name="p", dsn="host=h password=hunter2"))
    with pytest.raises(ProfileError, match="keychain"):
        store.put(ConnectionProfile(name="p", options={"password": "hunter2"}))
    assert not (tmp_path / "profiles.toml").exists()


def test_config_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAYSTATUS_CONFIG_DIR", str(tmp_path / "x"))
    assert config_dir() == tmp_path / "x"
    assert ProfileStore().path == tmp_path / "x" / "profiles.toml"


def test_broken_files_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text("default = \n")
    with pytest.raises(ProfileError, match=r"not valid TOML.*move it away"):
        ProfileStore(path)
    path.write_text("[profiles.p]\nhots = 'x'\n")
    store = ProfileStore(path)  # a bad profile is reported when used, not at load
    assert "unknown keys" in store.invalid["p"]
    with pytest.raises(ProfileError, match=r"unknown keys.*profile remove p"):
        store.get("p")


def test_new_settings_defaults() -> None:
    s = Settings()
    assert s.disconnect_grace_s == 60.0  # "once, after a grace period (default 60 s ...)"
    assert s.notify_min_processing_s == 30.0


def test_bad_settings_in_the_file_are_replaced_with_a_warning_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hand-edited [settings] must not keep the tray app from starting: every value the
    monitor would refuse is clamped (or set to its default) and named in a warning."""
    path = tmp_path / "profiles.toml"
    path.write_text(
        "[settings]\n"
        "health_interval_s = 0\n"
        "health_timeout_s = -5\n"
        "disconnect_grace_s = -1.5\n"
        "notify_min_processing_s = nan\n"
        "notify_stable = 'yes'\n"
        "icon_style = 'neon'\n"
        "notify_error = false\n"
        "[profiles.a]\nhost = 'h'\n"
    )
    with caplog.at_level("WARNING", logger="traystatus.core.config.profiles"):
        store = ProfileStore(path)
    s = store.settings
    assert (s.health_interval_s, s.health_timeout_s) == (1.0, 1.0)  # MonitorOptions wants > 0
    assert s.disconnect_grace_s == 0.0
    assert s.notify_min_processing_s == 30.0
    assert s.notify_stable is True and s.icon_style == "auto"
    assert s.notify_error is False  # good values are kept
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for key in ("health_interval_s = 0", "health_timeout_s = -5", "disconnect_grace_s = -1.5",
                "notify_min_processing_s = nan", "notify_stable = 'yes'", "icon_style = 'neon'"):
        assert key in warned, warned
    assert "notify_error" not in warned
    assert str(path) in warned
    assert store.get("a").host == "h"
    # The dialog's way in stays strict: a bad value is refused with the reason.
    with pytest.raises(ProfileError, match="health_interval_s"):
        store.save_settings(Settings(health_interval_s=0))


def test_clamped_settings_make_valid_monitor_options(tmp_path: Path) -> None:
    from traystatus.core.watch.options import MonitorOptions

    path = tmp_path / "profiles.toml"
    path.write_text("[settings]\nhealth_interval_s = -3\nhealth_timeout_s = 0\n")
    s = ProfileStore(path).settings
    opts = MonitorOptions(health_interval=s.health_interval_s, health_timeout=s.health_timeout_s)
    assert opts.health_interval > 0 and opts.health_timeout > 0


def test_unknown_settings_keys_are_tolerated_a_dangling_default_is_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text("default = 'gone'\n[settings]\nfuture_toggle = true\n"
                    "[profiles.a]\nhost = 'h'\n")
    store = ProfileStore(path)
    assert store.settings == Settings()
    # The default the file names is gone: never silently profile "a" instead.
    assert store.default_name == "gone"
    with pytest.raises(ProfileError, match=r"the default profile 'gone'.*does not exist"):
        store.get()
    assert store.get("a").host == "h"


_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1, max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(
    name=st.from_regex(r"[\w.@+-][\w .@+-]{0,20}[\w.@+-]", fullmatch=True),
    host=_text,
    option=_text,
)
def test_any_values_survive_the_toml_round_trip(name: str, host: str, option: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "profiles.toml"
        profile = ConnectionProfile(name=name, host=host, options={"application_name": option})
        ProfileStore(path).put(profile)
        assert ProfileStore(path).get(name) == profile
        assert os.stat(path).st_size > 0


def test_a_file_with_the_retired_settings_still_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Six settings were stored but never read (quiet hours, "only my imports", ...). They
    are gone; a file written by an older version still loads, keeps every other value,
    warns about nothing, and drops them on the next save."""
    path = tmp_path / "profiles.toml"
    path.write_text(
        'default = "a"\n'
        "[settings]\n"
        "notify_processing_started = true\n"
        "notify_stable = false\n"
        "notify_import_finished = true\n"
        "only_my_imports = true\n"
        "flap_damping_s = 5.0\n"
        "disconnect_grace_s = 120.0\n"
        'quiet_hours_start = "22:00"\n'
        'quiet_hours_end = "07:00"\n'
        'icon_style = "mono-light"\n'
        "[profiles.a]\nhost = 'h'\n"
    )
    with caplog.at_level("INFO", logger="traystatus.core.config.profiles"):
        store = ProfileStore(path)
    s = store.settings
    assert (s.notify_stable, s.disconnect_grace_s, s.icon_style) == (False, 120.0, "mono-light")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert "quiet_hours_start" in caplog.text and "no longer used" in caplog.text
    store.save_settings(s)
    text = path.read_text()
    for gone in ("quiet_hours", "only_my_imports", "flap_damping_s",
                 "notify_processing_started", "notify_import_finished"):
        assert gone not in text
    assert ProfileStore(path).settings == s


def test_huge_settings_are_clamped_to_their_maximum_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Numbers past any sense (and past Qt's 2**31 ms timers, or timedelta's range) must not
    reach the app: each is clamped to its maximum and named in a warning."""
    from traystatus.core.config.profiles import SECONDS_MAX

    path = tmp_path / "profiles.toml"
    path.write_text(
        "[settings]\n"
        "disconnect_grace_s = 1e15\n"
        "notify_min_processing_s = 1e308\n"
        "health_timeout_s = 3e6\n"
        f"health_interval_s = {10**400}\n"
        "review_remind_s = 1e12\n"
    )
    with caplog.at_level("WARNING", logger="traystatus"):
        settings = ProfileStore(path).settings
    for name, high in SECONDS_MAX.items():
        assert getattr(settings, name) == high, name
        assert any(name in r.getMessage() and f"using {high!r}" in r.getMessage()
                   for r in caplog.records), name
    assert max(SECONDS_MAX.values()) * 1000 < 2**31  # every one fits a Qt timer
    with pytest.raises(ProfileError, match="from 1 to 300"):
        Settings(health_timeout_s=301).validate()


def test_config_dir_without_a_home_is_a_profile_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    def no_home(*_: object, **__: object) -> Path:
        raise RuntimeError("could not determine the home directory")

    monkeypatch.delenv("TRAYSTATUS_CONFIG_DIR", raising=False)
    monkeypatch.setattr(platformdirs, "user_config_path", no_home)
    with pytest.raises(ProfileError, match="set HOME, or set TRAYSTATUS_CONFIG_DIR"):
        ProfileStore()


def test_a_profile_may_name_a_traystatus_server() -> None:
    from traystatus.core.config.profiles import ConnectionProfile, ProfileError

    p = ConnectionProfile(name="office", relay="https://statbus.example.org/tray")
    assert p.to_conninfo() == "wss://statbus.example.org/tray"
    assert p.describe() == "traystatus server https://statbus.example.org/tray"
    assert ConnectionProfile.from_table("office", p.to_table()) == p
    for bad in ("ftp://x", "statbus.example.org", "ws://:1", "ws://h:port"):
        with pytest.raises(ProfileError):
            ConnectionProfile(name="x", relay=bad)
    with pytest.raises(ProfileError, match="one or the other"):
        ConnectionProfile(name="x", relay="ws://h", host="db")
