"""The tray app finds its password in the CLI's order (traystatus.core.config.password): the DSN's
own, then libpq's PGPASSWORD / ~/.pgpass, then the keychain. Before, the tray always passed
the keychain password, which overrides PGPASSWORD and ~/.pgpass: a stale keychain entry
locked out a user whose ~/.pgpass was right. Real database, real Controller and Monitor."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict
from PySide6.QtWidgets import QApplication

from tests.app.conftest import MemoryKeyring, run, wait_until
from traystatus.app.controller import Controller
from traystatus.core.config.password import Source, resolve, resolve_async
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
from traystatus.core.model.state import Problem, State

WRONG = "Zq-stale-keychain-entry-42"


@pytest.fixture
def no_libpq_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))


def _profile(db_dsn: str, user: str) -> ConnectionProfile:
    p = conninfo_to_dict(db_dsn)
    return ConnectionProfile(name="work", host=str(p["host"]), port=str(p["port"]),
                             dbname=str(p["dbname"]), user=user)


def _run_controller(qloop: asyncio.AbstractEventLoop, want: Any) -> Controller:
    ctl = Controller(ProfileStore(), tray_available=lambda: False, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: want(ctl.window.status), within=60)
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)
    return ctl


def test_pgpassword_wins_over_a_stale_keychain_entry(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, login_role: tuple[str, str],
    no_libpq_password: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = login_role
    ProfileStore().put(_profile(db_dsn, user))
    memory_keyring.set_password("traystatus", "work", WRONG)
    monkeypatch.setenv("PGPASSWORD", password)
    ctl = _run_controller(qloop, lambda st: st.state in (State.STABLE, State.ERROR))
    assert ctl.window.status.state == State.STABLE, ctl.window.status
    assert ctl.password_source == Source.LIBPQ


def test_pgpass_file_wins_over_a_stale_keychain_entry(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, login_role: tuple[str, str],
    no_libpq_password: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    user, password = login_role
    ProfileStore().put(_profile(db_dsn, user))
    memory_keyring.set_password("traystatus", "work", WRONG)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{user}:{password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    ctl = _run_controller(qloop, lambda st: st.state in (State.STABLE, State.ERROR))
    assert ctl.window.status.state == State.STABLE, ctl.window.status
    assert ctl.password_source == Source.LIBPQ


def test_keychain_is_used_when_libpq_has_none(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, login_role: tuple[str, str],
    no_libpq_password: None,
) -> None:
    user, password = login_role
    ProfileStore().put(_profile(db_dsn, user))
    memory_keyring.set_password("traystatus", "work", password)
    ctl = _run_controller(qloop, lambda st: st.state in (State.STABLE, State.ERROR))
    assert ctl.window.status.state == State.STABLE, ctl.window.status
    assert ctl.password_source == Source.KEYCHAIN


def test_no_password_anywhere_is_the_monitors_no_password_error(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, login_role: tuple[str, str],
    no_libpq_password: None,
) -> None:
    ProfileStore().put(_profile(db_dsn, login_role[0]))
    ctl = _run_controller(qloop, lambda st: st.state == State.ERROR)
    assert ctl.window.status.problem == Problem.NO_PASSWORD
    assert ctl.password_source == Source.NEEDED


def test_the_cli_and_the_tray_resolve_alike(
    qloop: asyncio.AbstractEventLoop, memory_keyring: MemoryKeyring, db_dsn: str,
    login_role: tuple[str, str], no_libpq_password: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One order in one place: the blocking (CLI) and async (tray) forms agree, step by step."""
    user, password = login_role
    conninfo = _profile(db_dsn, user).to_conninfo()

    def both(name: str | None) -> tuple[Source, Source]:
        a = resolve(conninfo, name)
        b = run(qloop, resolve_async(conninfo, name))
        assert a.password == b.password
        return a.source, b.source

    memory_keyring.set_password("traystatus", "work", password)
    assert both("work") == (Source.KEYCHAIN, Source.KEYCHAIN)
    assert both(None) == (Source.NEEDED, Source.NEEDED)  # a bare DSN: no keychain
    monkeypatch.setenv("PGPASSWORD", password)
    assert both("work") == (Source.LIBPQ, Source.LIBPQ)
    assert resolve(conninfo + f" password={password}", "work").source == Source.DSN
    assert resolve("host=127.0.0.1 port=1 connect_timeout=3", "work").source == Source.UNDECIDED
