"""A profile that asks for its password each session (``profile add --ask-password``):
the flag is in profiles.toml, the password is asked on the terminal (a real pty), checked
against a real PostgreSQL with password auth, and written nowhere."""

from __future__ import annotations

import os
import pty
import select
import time
import tomllib

from tests.cli.conftest import SCRIPT, Cli


def _pty_run(cli: Cli, args: list[str], answers: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run the console script on a new pseudo-terminal, typing each answer after a
    password prompt; returns the exit code and everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal (getpass opens /dev/tty)
        os.chdir(cli.home)
        os.execve(str(SCRIPT), [str(SCRIPT), *args], cli.env)
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if pending and out.count(b"not stored): ") > len(answers) - len(pending):
                os.write(fd, pending.pop(0).encode() + b"\n")
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def _add(cli: Cli, analyst_dsn: str) -> None:
    added = cli.run("profile", "add", "prod", "--dsn", analyst_dsn, "--ask-password")
    assert added.returncode == 0, added.stderr
    assert "password asked for each session, never stored" in added.stdout


def test_ask_password_profile_asks_on_the_terminal_again_after_a_wrong_one(
    cli: Cli, analyst_dsn: str, login_role: tuple[str, str]
) -> None:
    _add(cli, analyst_dsn)
    table = tomllib.loads(cli.config_file.read_text())
    assert table["profiles"]["prod"]["ask_password"] is True
    user, password = login_role
    code, shown = _pty_run(cli, ["status", "-p", "prod"], ["Zq-wrong-pw-77", password])
    assert code == 0, shown
    assert shown.count("(your StatBus web password; not stored): ") == 2, shown
    assert f"wrong password for {user}: your StatBus web password; try again" in shown
    assert "stable" in shown
    assert "Zq-wrong-pw-77" not in shown and password not in shown  # no echo
    # nothing written: not the file, not the keychain
    assert password not in cli.config_file.read_text()
    assert not cli.keyring_file.exists() or password not in cli.keyring_file.read_text()
    listed = cli.run("profile", "list")
    assert "[password asked each session]" in listed.stdout


def test_ask_password_profile_without_a_terminal_is_one_line_and_exit_3(
    cli: Cli, analyst_dsn: str
) -> None:
    _add(cli, analyst_dsn)
    r = cli.run("status", "-p", "prod")
    assert r.returncode == 3
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "asks for the password each session" in lines[0]
    assert "no terminal to ask on" in lines[0]


def test_ask_password_refuses_a_password_in_the_dsn(cli: Cli, analyst_dsn: str) -> None:
    r = cli.run("profile", "add", "prod", "--dsn", analyst_dsn + " password=Zq-secret-9",
                "--ask-password")
    assert r.returncode == 2, r.stderr
    assert "Nothing was changed" in r.stderr
    assert not cli.config_file.exists() or "Zq-secret-9" not in cli.config_file.read_text()
