"""The real ``traystatus`` CLI (subprocess) and the profiles file: a taken name is never
overwritten, the CLI and another process's ProfileStore never lose each other's profiles,
and a broken default profile is an error naming it, never another database.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import pytest

from tests.cli.conftest import Cli
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore


def _keychain(cli: Cli) -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads(cli.keyring_file.read_text())
    except FileNotFoundError:
        return {}
    return data


def test_add_onto_a_taken_name_is_refused(cli: Cli) -> None:
    r = cli.run("profile", "add", "prod", "--host", "prod.example.org", "--password-stdin",
                input="prod-secret\n")
    assert r.returncode == 0, r.stderr
    before = cli.config_file.read_bytes()

    r = cli.run("profile", "add", "prod", "--host", "test.example.org", "--password-stdin",
                input="test-secret\n")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        "traystatus: cannot add 'prod': a profile named 'prod' already exists; choose "
        "another name, or remove 'prod' first (`traystatus profile remove prod`); nothing "
        "was changed (or `traystatus profile add --replace` to replace it)"
    ]
    assert cli.config_file.read_bytes() == before
    assert _keychain(cli) == {"traystatus/prod": "prod-secret"}

    # On purpose: --replace.
    r = cli.run("profile", "add", "prod", "--replace", "--host", "new.example.org",
                "--password-stdin", input="new-secret\n")
    assert r.returncode == 0, r.stderr
    assert ProfileStore(cli.config_file).get("prod").host == "new.example.org"
    assert _keychain(cli) == {"traystatus/prod": "new-secret"}


def test_rename_moves_the_password_and_refuses_a_taken_name(cli: Cli) -> None:
    assert cli.run("profile", "add", "prod", "--host", "prod.example.org", "--default",
                   "--password-stdin", input="prod-secret\n").returncode == 0
    assert cli.run("profile", "add", "work", "--host", "test.example.org",
                   "--password-stdin", input="test-secret\n").returncode == 0
    before = cli.config_file.read_bytes()

    r = cli.run("profile", "rename", "work", "prod")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot rename 'work' to 'prod': a profile named 'prod' already exists" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert cli.config_file.read_bytes() == before
    assert _keychain(cli) == {"traystatus/prod": "prod-secret",
                              "traystatus/work": "test-secret"}

    r = cli.run("profile", "rename", "prod", "live")
    assert r.returncode == 0, r.stderr
    assert "renamed profile 'prod' to 'live' and its keychain entry" in r.stdout
    store = ProfileStore(cli.config_file)
    assert store.names() == ["live", "work"]
    assert store.default_name == "live"
    assert store.get("live").host == "prod.example.org"
    assert _keychain(cli) == {"traystatus/live": "prod-secret",
                              "traystatus/work": "test-secret"}

    r = cli.run("profile", "rename", "nope", "x")
    assert r.returncode == 3 and "no profile named 'nope'" in r.stderr


def test_the_cli_and_a_running_store_keep_each_others_profiles(cli: Cli) -> None:
    """The tray app's store (here: a ProfileStore in this process, loaded before) and the
    CLI (a real process) write in turns: nothing either wrote is lost."""
    assert cli.run("profile", "add", "prod", "--host", "p.example.org",
                   "--no-password").returncode == 0
    app = ProfileStore(cli.config_file)  # the tray app, loaded at its start
    r = cli.run("profile", "add", "from-cli", "--host", "c.example.org", "--no-password")
    assert r.returncode == 0, r.stderr
    # The app's next Settings save: its own settings change, not a stale whole copy.
    app.save_settings(replace(app.settings, notify_disconnected=False))
    app.put(ConnectionProfile(name="from-app", host="a.example.org"))
    assert cli.run("profile", "remove", "prod").returncode == 0
    app.save_settings(replace(app.settings, notify_error=False))
    store = ProfileStore(cli.config_file)
    assert store.names() == ["from-cli", "from-app"]
    assert (store.settings.notify_disconnected, store.settings.notify_error) == (False, False)


def test_cli_processes_and_a_store_interleaving_lose_nothing(cli: Cli) -> None:
    app = ProfileStore(cli.config_file)
    procs: list[subprocess.Popen[str]] = [
        cli.popen("profile", "add", f"cli-{i}", "--host", "c.example.org", "--no-password")
        for i in range(6)
    ]
    for i in range(30):
        app.put(ConnectionProfile(name=f"app-{i}", host="a.example.org"))
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    names = set(ProfileStore(cli.config_file).names())
    assert names == {f"cli-{i}" for i in range(6)} | {f"app-{i}" for i in range(30)}


BROKEN_DEFAULTS = {
    "no default, the first profile not valid": (
        "[profiles.prod]\nhost = 'h.invalid'\nport = 'x'\n[profiles.test]\nhost = 't.invalid'\n",
        "the default profile: profile 'prod': port='x' is not valid",
    ),
    "a default that names no profile (typo)": (
        "default = 'prdo'\n[profiles.prod]\nhost = 'h.invalid'\n"
        "[profiles.test]\nhost = 't.invalid'\n",
        "the default profile 'prdo' (default = \"prdo\" in",
    ),
    "a default that is not text": (
        "default = 5\n[profiles.prod]\nhost = 'h.invalid'\n[profiles.test]\nhost = 't.invalid'\n",
        "the default profile is not valid: default = 5 in",
    ),
    "the only profile not valid": (
        "[profiles.only]\nsslmode = 'sometimes'\n",
        "the default profile: profile 'only': sslmode='sometimes' is not valid",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_DEFAULTS))
@pytest.mark.parametrize("command", [("status",), ("wait", "--timeout", "1"),
                                     ("watch", "--json")])
def test_a_broken_default_profile_is_named_never_replaced(
    cli: Cli, db_dsn: str, case: str, command: tuple[str, ...]
) -> None:
    """The test database is reachable through libpq's variables: a command that fell back
    to libpq's defaults (or to the next profile) would answer; it must fail instead,
    saying which profile is wrong."""
    from psycopg.conninfo import conninfo_to_dict

    text, wanted = BROKEN_DEFAULTS[case]
    cli.config_file.parent.mkdir(parents=True, exist_ok=True)
    cli.config_file.write_text(text)
    p = conninfo_to_dict(db_dsn)
    libpq = {"PGHOST": str(p["host"]), "PGPORT": str(p["port"]),
             "PGDATABASE": str(p["dbname"]), "PGUSER": str(p["user"])}
    r = cli.run(*command, env=libpq, timeout=60)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("traystatus: ") and wanted in lines[0], \
        r.stderr
    # Named on purpose, another profile still works (the test database is not needed).
    if "test" in text:
        r = cli.run("status", "-p", "test", timeout=60)
        assert r.returncode == 3 and "t.invalid" in r.stdout + r.stderr


def test_status_all_names_an_invalid_profile_and_replace_fixes_it(cli: Cli) -> None:
    cli.config_file.parent.mkdir(parents=True, exist_ok=True)
    cli.config_file.write_text("[profiles.broken]\nport = 'x'\n")
    r = cli.run("status", "--all", timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout.startswith("broken: unknown: profile 'broken': port='x' is not valid")
    assert "`traystatus profile add --replace broken ...`" in r.stdout
    r = cli.run("profile", "add", "broken", "--host", "h.example.org", "--no-password")
    assert r.returncode == 2 and "--replace" in r.stderr
    r = cli.run("profile", "add", "broken", "--replace", "--host", "h.example.org",
                "--no-password")
    assert r.returncode == 0, r.stderr
    assert ProfileStore(cli.config_file).get().host == "h.example.org"


def test_profile_list_says_when_the_default_names_no_profile(cli: Cli) -> None:
    cli.config_file.parent.mkdir(parents=True, exist_ok=True)
    cli.config_file.write_text("default = 'prdo'\n[profiles.prod]\nhost = 'p'\n")
    r = cli.run("profile", "list")
    assert r.returncode == 0
    assert r.stdout.startswith("  prod ")  # no row is marked the default
    assert "the default profile 'prdo'" in r.stderr and "does not exist" in r.stderr
    listed = json.loads(cli.run("profile", "list", "--json").stdout)
    assert "the default profile 'prdo'" in listed["default_problem"]
    assert cli.run("profile", "set-default", "prod").returncode == 0
    r = cli.run("profile", "list")
    assert r.stdout.startswith("* prod ") and r.stderr == ""
