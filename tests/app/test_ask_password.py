"""A profile that asks for its password each session (``ask_password``): the tray's real
Controller shows a real, non-modal QDialog while the asyncio loop runs on, a wrong password
is said in StatBus's words and asked again, the right one connects to a real PostgreSQL
with password auth, and the password reaches neither profiles.toml, the keychain nor the
log. Cancel leaves the icon red, "password needed", with a menu item to enter it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from tests.app.conftest import ARTIFACTS, MemoryKeyring, menu_texts, run, wait_until
from traystatus.app.controller import Controller
from traystatus.app.passworddialog import PasswordDialog
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
from traystatus.core.model.state import Problem, State

WRONG = "Zq-wrong-pw-5150"


class RecordingKeyring(MemoryKeyring):
    """The in-memory keychain, recording every call made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def get_password(self, service: str, username: str) -> str | None:
        self.calls.append(("get", username))
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls.append(("set", username))
        super().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        self.calls.append(("delete", username))
        super().delete_password(service, username)


@pytest.fixture
def recording_keyring() -> object:
    import keyring

    old = keyring.get_keyring()
    kr = RecordingKeyring()
    keyring.set_keyring(kr)
    try:
        yield kr
    finally:
        keyring.set_keyring(old)


@pytest.fixture
def no_libpq_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))


def _add_profile(db_dsn: str, user: str) -> None:
    p = conninfo_to_dict(db_dsn)
    ProfileStore().put(ConnectionProfile(
        name="work", host=str(p["host"]), port=str(p["port"]), dbname=str(p["dbname"]),
        user=user, ask_password=True,
    ))


def _click(dialog: PasswordDialog | None, which: QDialogButtonBox.StandardButton) -> None:
    assert dialog is not None
    dialog.buttons.button(which).click()


def test_wrong_then_right_password_connects_and_nothing_is_written(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    recording_keyring: RecordingKeyring, db_dsn: str, login_role: tuple[str, str],
    no_libpq_password: None, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    user, password = login_role
    _add_profile(db_dsn, user)
    ctl = Controller(ProfileStore(), tray_available=lambda: False, use_desktop_notifier=False)
    ticks: list[float] = []

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.password_dialog is not None
                             and ctl.password_dialog.isVisible(), within=60)
            dialog = ctl.password_dialog
            assert dialog is not None and not dialog.isModal()
            assert ctl.window.status.problem is Problem.NO_PASSWORD
            assert "Enter password…" in menu_texts(ctl.tray)
            # the asyncio loop runs on while the dialog waits
            loop = asyncio.get_running_loop()
            for _ in range(3):
                ticks.append(loop.time())
                await asyncio.sleep(0.05)
            dialog.field.setText(WRONG)
            _click(dialog, QDialogButtonBox.StandardButton.Ok)
            await wait_until(lambda: dialog.isVisible() and dialog.error.isVisible(),
                             within=60)
            assert dialog.error.text() == (
                f"wrong password for {user}: your StatBus web password")
            assert dialog.field.text() == ""
            ARTIFACTS.mkdir(exist_ok=True)
            assert dialog.grab().save(str(ARTIFACTS / "password-dialog-wrong.png"))
            assert ctl.window.status.state is State.ERROR  # red while it is needed
            dialog.field.setText(password)
            _click(dialog, QDialogButtonBox.StandardButton.Ok)
            await wait_until(lambda: ctl.window.status.state is State.STABLE, within=60)
            assert not dialog.isVisible()
            assert "Enter password…" not in menu_texts(ctl.tray)
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=180)
    assert len(ticks) == 3
    assert recording_keyring.calls == []  # the keychain was never asked, nor written
    text = (config_dir / "profiles.toml").read_text()
    assert "ask_password = true" in text
    assert password not in text and WRONG not in text
    logged = caplog.text
    assert password not in logged and WRONG not in logged
    for f in config_dir.parent.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert password.encode() not in data and WRONG.encode() not in data, f


def test_cancel_leaves_it_red_with_a_menu_item_to_enter_it(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    recording_keyring: RecordingKeyring, db_dsn: str, login_role: tuple[str, str],
    no_libpq_password: None,
) -> None:
    user, password = login_role
    _add_profile(db_dsn, user)
    ctl = Controller(ProfileStore(), tray_available=lambda: False, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.password_dialog is not None
                             and ctl.password_dialog.isVisible(), within=60)
            dialog = ctl.password_dialog
            assert dialog is not None
            _click(dialog, QDialogButtonBox.StandardButton.Cancel)
            await asyncio.sleep(0.3)
            assert not dialog.isVisible()
            st = ctl.window.status
            assert (st.state, st.problem) == (State.ERROR, Problem.NO_PASSWORD)
            assert "password needed for" in st.message
            assert "Password needed" in ctl.tray.tooltip_text()
            assert ctl.window.password_button.isVisibleTo(ctl.window)  # no tray: a button
            ctl.window.refresh()
            assert ctl.window.grab().save(str(ARTIFACTS / "password-needed-window.png"))
            ARTIFACTS.mkdir(exist_ok=True)
            ctl.tray.current_icon().pixmap(64, 64).save(
                str(ARTIFACTS / "password-needed-icon.png"))
            menu = ctl.tray.tray.contextMenu()
            [item] = [a for a in menu.actions() if a.text() == "Enter password…"]
            item.trigger()
            assert dialog.isVisible() and dialog.error.text() == ""
            assert dialog.grab().save(str(ARTIFACTS / "password-dialog.png"))
            dialog.field.setText(password)
            _click(dialog, QDialogButtonBox.StandardButton.Ok)
            await wait_until(lambda: ctl.window.status.state is State.STABLE, within=60)
            assert not ctl.window.password_button.isVisibleTo(ctl.window)
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=180)
    assert recording_keyring.calls == []


def test_settings_offers_the_choice_and_keeps_a_typed_password_out_of_the_keychain(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    recording_keyring: RecordingKeyring, db_dsn: str,
) -> None:
    from traystatus.app.settings import SavedChange, SettingsDialog

    recording_keyring.set_password("traystatus", "work", "Zq-old-entry-1")  # from before
    recording_keyring.calls.clear()
    dialog = SettingsDialog(ProfileStore())
    got: list[object] = []
    dialog.saved.connect(got.append)

    async def scenario() -> None:
        dialog.show()
        dialog.name.setText("work")
        dialog.dsn.setText(db_dsn)
        dialog.ask_password.setChecked(True)
        dialog.password.setText("Zq-typed-now-2")
        assert dialog.ask_password.text() == (
            "Ask for the password when the app starts; keep it in memory only")
        ARTIFACTS.mkdir(exist_ok=True)
        assert dialog.grab().save(str(ARTIFACTS / "settings-ask-password.png"))
        assert dialog.save()
        await wait_until(lambda: not recording_keyring.store, within=10)

    try:
        run(qloop, scenario())
    finally:
        dialog.close()
        dialog.deleteLater()
    assert ProfileStore().get("work").ask_password
    text = (config_dir / "profiles.toml").read_text()
    assert "ask_password = true" in text and "Zq-typed-now-2" not in text
    # the stale entry was removed; nothing was read or stored
    assert recording_keyring.calls == [("delete", "work")]
    [change] = got
    assert isinstance(change, SavedChange) and change.session_password == "Zq-typed-now-2"


def test_a_keychain_profile_without_an_entry_is_offered_the_dialog_once(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    recording_keyring: RecordingKeyring, db_dsn: str, login_role: tuple[str, str],
    no_libpq_password: None,
) -> None:
    """The keychain has nothing (locked, missing, or never stored): the same dialog is
    offered, and the password typed there is used this session only."""
    user, password = login_role
    p = conninfo_to_dict(db_dsn)
    ProfileStore().put(ConnectionProfile(
        name="work", host=str(p["host"]), port=str(p["port"]), dbname=str(p["dbname"]),
        user=user,
    ))
    ctl = Controller(ProfileStore(), tray_available=lambda: False, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.password_dialog is not None
                             and ctl.password_dialog.isVisible(), within=60)
            dialog = ctl.password_dialog
            assert dialog is not None
            assert ctl.window.status.problem is Problem.NO_PASSWORD
            dialog.field.setText(password)
            _click(dialog, QDialogButtonBox.StandardButton.Ok)
            await wait_until(lambda: ctl.window.status.state is State.STABLE, within=60)
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=180)
    assert recording_keyring.store == {}  # read (it had nothing), never written
    assert all(op == "get" for op, _ in recording_keyring.calls)


def test_a_password_refused_later_is_forgotten_and_asked_again(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    recording_keyring: RecordingKeyring, db_dsn: str, login_role: tuple[str, str],
    no_libpq_password: None,
) -> None:
    """The web password changed while the app ran: the next login is refused, the old
    password is dropped from memory and the dialog asks, in StatBus's words."""
    import psycopg
    from psycopg import sql

    user, password = login_role
    _add_profile(db_dsn, user)
    ctl = Controller(ProfileStore(), tray_available=lambda: False, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.password_dialog is not None
                             and ctl.password_dialog.isVisible(), within=60)
            dialog = ctl.password_dialog
            assert dialog is not None
            dialog.field.setText(password)
            _click(dialog, QDialogButtonBox.StandardButton.Ok)
            await wait_until(lambda: ctl.window.status.state is State.STABLE, within=60)
            async with await psycopg.AsyncConnection.connect(db_dsn, autocommit=True) as c:
                await c.execute(sql.SQL("ALTER ROLE {} PASSWORD 'Zq-changed-on-web-3'").format(
                    sql.Identifier(user)))
                await c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE usename = %s", (user,))
            ctl.reconnect_now()
            await wait_until(lambda: dialog.isVisible() and dialog.error.isVisible(),
                             within=90)
            assert dialog.error.text() == (
                f"wrong password for {user}: your StatBus web password")
            assert "work" not in ctl._session_passwords
            assert ctl.slot.adapter is None  # no source retrying the refused password
            dialog.field.setText("Zq-changed-on-web-3")
            _click(dialog, QDialogButtonBox.StandardButton.Ok)
            await wait_until(lambda: ctl.window.status.state is State.STABLE, within=60)
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=240)
    assert recording_keyring.calls == []
