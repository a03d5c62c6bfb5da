"""``profile add/list/remove/set-default``: the password goes to the keychain and only there."""

from __future__ import annotations

import json
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.cli.conftest import Cli

FAIL_BACKEND = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}


def _files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_round_trip_password_only_in_the_keychain(
    cli: Cli, analyst_dsn: str, login_role: tuple[str, str], tmp_path: Path
) -> None:
    user, password = login_role
    r = cli.run("profile", "add", "prod", "--dsn", analyst_dsn, "--password-stdin",
                input=password + "\n")
    assert r.returncode == 0, r.stderr
    assert "password in the keychain" in r.stdout
    assert password not in r.stdout + r.stderr

    text = cli.config_file.read_text()
    assert password not in text
    assert f'user={user}' in text or user in text
    assert json.loads(cli.keyring_file.read_text()) == {"traystatus/prod": password}
    # The only file anywhere under the test's folders that holds it: the test keychain.
    assert _files_containing(tmp_path, password) == [cli.keyring_file]

    # The stored profile connects with the keychain password (no PGPASSWORD, no .pgpass).
    r = cli.run("status", "--profile", "prod")
    assert (r.returncode, r.stdout.strip()) == (0, "stable"), r.stdout + r.stderr
    # ... and is the default, so no flag is needed at all; debug logging never shows it.
    r = cli.run("status", "-vv")
    assert r.returncode == 0 and "DEBUG" in r.stderr
    assert password not in r.stdout + r.stderr

    listed = json.loads(cli.run("profile", "list", "--json").stdout)
    assert listed["profiles"] == [{
        "name": "prod", "default": True, "password_in_keychain": True,
        "connection": listed["profiles"][0]["connection"],
    }]
    assert password not in listed["profiles"][0]["connection"]

    r = cli.run("profile", "remove", "prod")
    assert r.returncode == 0 and "keychain entry" in r.stdout
    assert json.loads(cli.keyring_file.read_text()) == {}
    assert "prod" not in cli.config_file.read_text()


def test_password_in_the_dsn_is_moved_to_the_keychain(
    cli: Cli, analyst_dsn: str, login_role: tuple[str, str]
) -> None:
    password = login_role[1]
    dsn = make_conninfo(analyst_dsn, password=password)
    r = cli.run("profile", "add", "p1", "--dsn", dsn)
    assert r.returncode == 0, r.stderr
    assert password not in cli.config_file.read_text()
    assert json.loads(cli.keyring_file.read_text()) == {"traystatus/p1": password}
    assert cli.run("status", "-p", "p1").returncode == 0


def test_fields_default_and_list(cli: Cli, db_dsn: str) -> None:
    params = conninfo_to_dict(db_dsn)
    r = cli.run("profile", "add", "local", "--host", str(params["host"]),
                "--port", str(params["port"]), "--dbname", str(params["dbname"]),
                "--user", "postgres", "--sslmode", "disable", "-o", "connect_timeout=5",
                "--no-password")
    assert r.returncode == 0, r.stderr
    assert "no password stored" in r.stdout
    assert cli.run("profile", "add", "other", "--host", "h.invalid",
                   "--no-password").returncode == 0
    assert cli.run("status").returncode == 0  # "local" was first: the default
    assert cli.run("profile", "set-default", "other").returncode == 0
    text = cli.run("profile", "list").stdout.splitlines()
    assert text[0].startswith("  local ") and "connect_timeout=5" in text[0]
    assert text[1].startswith("* other ")
    assert cli.run("status", "-p", "local").returncode == 0
    # A --dsn on top of a profile overrides only what it names.
    assert cli.run("status", "-p", "other", "--dsn", make_conninfo(
        "", host=str(params["host"]), port=str(params["port"]), dbname=str(params["dbname"]),
        user="postgres")).returncode == 0

    bad = cli.run("profile", "set-default", "nope")
    assert bad.returncode == 3 and "no profile named 'nope'" in bad.stderr
    assert cli.run("status", "-p", "nope").returncode == 3


def test_no_keychain_is_said_clearly_and_nothing_is_written(
    cli: Cli, analyst_dsn: str, tmp_path: Path
) -> None:
    secret = "Pw-that-must-not-land-on-disk-7"
    r = cli.run("profile", "add", "prod", "--dsn", analyst_dsn, "--password-stdin",
                input=secret + "\n", env=FAIL_BACKEND)
    assert r.returncode == 3
    assert "no secure keychain" in r.stderr
    assert "gnome-keyring" in r.stderr and "~/.pgpass" in r.stderr
    assert "--no-password" in r.stderr
    assert not cli.config_file.exists()  # nothing half-saved
    assert _files_containing(tmp_path, secret) == []

    # With --no-password the profile is saved; the password then comes from elsewhere.
    r = cli.run("profile", "add", "prod", "--dsn", analyst_dsn, "--no-password",
                env=FAIL_BACKEND)
    assert r.returncode == 0, r.stderr
    listed = json.loads(cli.run("profile", "list", "--json", env=FAIL_BACKEND).stdout)
    assert listed["profiles"][0]["password_in_keychain"] is False


def test_bad_profile_input(cli: Cli) -> None:
    r = cli.run("profile", "add", "bad/name", "--no-password")
    assert r.returncode == 2 and "invalid profile name" in r.stderr
    r = cli.run("profile", "add", "x", "-o", "novalue", "--no-password")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr
    assert cli.run("profile").returncode == 2
    r = cli.run("profile", "add", "x", "--host", "h", "--password-stdin", input="")
    assert r.returncode == 2 and "stdin had no password" in r.stderr
    assert not cli.config_file.exists()
    r = cli.run("profile", "remove", "ghost")
    assert r.returncode == 3 and "no profile named 'ghost'" in r.stderr


def test_broken_settings_file(cli: Cli) -> None:
    cli.config_file.parent.mkdir(parents=True)
    cli.config_file.write_text("this is [not toml\n")
    r = cli.run("status")
    assert r.returncode == 3
    assert "not valid TOML" in r.stderr and "Traceback" not in r.stderr
