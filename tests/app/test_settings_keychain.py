"""Keychain calls never stop the tray app's loop, and a broken default profile is said at
start-up, never swapped for another database.

The slow keychain is a real keyring backend (a KeyringBackend subclass that sleeps, as a
Secret Service does while its unlock prompt waits for the person); the loop is the app's
qasync loop with a QTimer ticking: if a keychain call ran on the loop, the timer would
stop for as long as the call (seen: gaps of the full sleep before the fix).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS, run, wait_until
from traystatus.app.controller import Controller
from traystatus.app.settings import SavedChange, SettingsDialog
from traystatus.core.config import credentials
from traystatus.core.config.password import Source, resolve_async
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
from traystatus.core.model.state import Problem, State

DELAY = 1.0  # seconds each keychain call takes
SMOOTH = 0.4  # the longest the loop may stop meanwhile (a loaded 2-core machine)


class SlowKeyring(KeyringBackend):
    """Every call takes DELAY seconds (or until ``release`` is set, when ``hang``)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.hang = False
        self.release = threading.Event()
        self.calls: list[str] = []

    def _wait(self, what: str) -> None:
        self.calls.append(what)
        if self.hang:
            self.release.wait(30)
        else:
            time.sleep(DELAY)

    def get_password(self, service: str, username: str) -> str | None:
        self._wait("get")
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._wait("set")
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._wait("delete")
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@pytest.fixture
def slow_keyring() -> Iterator[SlowKeyring]:
    old = keyring.get_keyring()
    kr = SlowKeyring()
    keyring.set_keyring(kr)
    try:
        yield kr
    finally:
        kr.release.set()
        keyring.set_keyring(old)


class Ticks:
    """A QTimer on the loop, noting when it fired: the longest gap is how long the loop
    stood still."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(lambda: self.times.append(time.monotonic()))

    def __enter__(self) -> Ticks:
        self.times.append(time.monotonic())
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.stop()
        self.times.append(time.monotonic())

    @property
    def longest_gap(self) -> float:
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))


@pytest.fixture
def no_libpq_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))


def test_resolving_a_keychain_password_does_not_stop_the_loop(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, slow_keyring: SlowKeyring,
    no_libpq_password: None, db_dsn: str, login_role: tuple[str, str],
) -> None:
    user, password = login_role
    slow_keyring.entries[("traystatus", "work")] = password
    conninfo = make_conninfo(db_dsn, user=user, password="")

    async def resolve() -> None:
        with Ticks() as ticks:
            found = await resolve_async(conninfo, "work")
        assert found.source is Source.KEYCHAIN and found.password == password
        assert slow_keyring.calls == ["get"]
        assert ticks.longest_gap < SMOOTH, f"the loop stood still {ticks.longest_gap:.2f} s"

    run(qloop, resolve())


def test_a_keychain_that_never_answers_costs_a_deadline_not_the_loop(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, slow_keyring: SlowKeyring,
    no_libpq_password: None, db_dsn: str, login_role: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    user, password = login_role
    slow_keyring.entries[("traystatus", "work")] = password
    slow_keyring.hang = True
    monkeypatch.setattr(credentials, "KEYCHAIN_TIMEOUT", 0.5)
    conninfo = make_conninfo(db_dsn, user=user, password="")

    async def resolve() -> None:
        with Ticks() as ticks:
            found = await resolve_async(conninfo, "work")
        # Not known in time: the server's question stays unanswered (the monitor says
        # "no password"), and the loop went on meanwhile.
        assert found.source is Source.NEEDED
        assert ticks.longest_gap < SMOOTH
        assert "did not answer within 0.5 s" in caplog.text

    try:
        run(qloop, resolve())
    finally:
        slow_keyring.release.set()


def _fill(dialog: SettingsDialog, name: str, dsn: str, password: str = "") -> None:
    p = conninfo_to_dict(dsn)
    dialog.name.setText(name)
    dialog.host.setText(str(p["host"]))
    dialog.port.setText(str(p["port"]))
    dialog.dbname.setText(str(p["dbname"]))
    dialog.user.setText(str(p["user"]))
    dialog.password.setText(password)


def test_settings_save_and_rename_keep_the_window_alive_while_the_keychain_works(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    slow_keyring: SlowKeyring, db_dsn: str,
) -> None:
    store = ProfileStore()
    dialog = SettingsDialog(store)
    got: list[object] = []
    dialog.saved.connect(got.append)

    async def scenario() -> None:
        dialog.show()
        with Ticks() as ticks:
            _fill(dialog, "work", db_dsn, "s3cret")
            assert dialog.save()  # returns at once; the keychain works in its thread
            assert "storing the password in the keychain" in dialog.message.text()
            assert not dialog.buttons.button(dialog.buttons.StandardButton.Save).isEnabled()
            ARTIFACTS.mkdir(exist_ok=True)
            assert dialog.grab().save(str(ARTIFACTS / "settings-saving.png"))
            assert got == []  # saved is emitted when the password is stored
            assert dialog.saving is not None
            assert await dialog.saving, dialog.message.text()
        assert ticks.longest_gap < SMOOTH, f"the loop stood still {ticks.longest_gap:.2f} s"
        assert dialog.message.text() == "Saved."
        assert slow_keyring.entries == {("traystatus", "work"): "s3cret"}
        assert len(got) == 1

        # Rename: the password moves along (read, store, delete: three slow calls).
        with Ticks() as ticks:
            dialog.name.setText("office")
            assert dialog.save()
            assert "moving the password" in dialog.message.text()
            assert await dialog.saving, dialog.message.text()
        assert ticks.longest_gap < SMOOTH, f"the loop stood still {ticks.longest_gap:.2f} s"
        assert slow_keyring.entries == {("traystatus", "office"): "s3cret"}
        assert ProfileStore().names() == ["office"]

        # Remove: the profile goes at once, the keychain entry after.
        with Ticks() as ticks:
            dialog.remove_button.click()
            assert ProfileStore().names() == []
            await wait_until(lambda: not slow_keyring.entries, within=10)
        assert ticks.longest_gap < SMOOTH, f"the loop stood still {ticks.longest_gap:.2f} s"

    try:
        run(qloop, scenario())
    finally:
        dialog.close()
        dialog.deleteLater()  # freed by Qt here, never by a later cyclic GC


def test_settings_refuses_adding_or_renaming_onto_a_taken_name(
    qapp: QApplication, config_dir: Path, db_dsn: str,
) -> None:
    from tests.app.conftest import MemoryKeyring

    old = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    try:
        store = ProfileStore()
        store.add(ConnectionProfile(name="prod", host="prod.example.org"), make_default=True)
        store.add(ConnectionProfile(name="work", host="test.example.org"))
        credentials.store_password("prod", "prod-secret")
        credentials.store_password("work", "test-secret")
        before = (config_dir / "profiles.toml").read_bytes()
        dialog = SettingsDialog(store)
        items = dialog.profile_list.findItems("work", Qt.MatchFlag.MatchExactly)
        dialog.profile_list.setCurrentItem(items[0])
        dialog.name.setText("prod")
        assert not dialog.save()
        assert dialog.message.text().startswith("Not saved: a profile named 'prod' already "
                                                "exists; choose another name")
        dialog.add_button.click()
        _fill(dialog, "prod", db_dsn)
        assert not dialog.save()
        assert "a profile named 'prod' already exists" in dialog.message.text()
        assert (config_dir / "profiles.toml").read_bytes() == before
        assert kr.store == {("traystatus", "prod"): "prod-secret",
                            ("traystatus", "work"): "test-secret"}
        dialog.close()
        dialog.deleteLater()  # freed by Qt here, never by a later cyclic GC
    finally:
        keyring.set_keyring(old)


BROKEN = {
    "no default, the first profile not valid": (
        "[profiles.prod]\nhost = 'h.invalid'\nport = 'x'\n[profiles.test]\n{test}\n",
        "profile 'prod': port='x' is not valid"),
    "a default that names no profile": (
        "default = 'prdo'\n[profiles.prod]\n{test}\n[profiles.test]\n{test}\n",
        "the default profile 'prdo'"),
    "a default that is not text": (
        "default = 5\n[profiles.prod]\n{test}\n[profiles.test]\n{test}\n",
        "default = 5"),
    "the only profile not valid": (
        "[profiles.only]\nsslmode = 'sometimes'\n",
        "profile 'only': sslmode='sometimes' is not valid"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_the_tray_starts_with_the_error_naming_the_broken_default(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    monkeypatch: pytest.MonkeyPatch, db_dsn: str, case: str,
) -> None:
    """Every other profile, and libpq's defaults, lead to the real test database: a tray
    that fell back to one of them would turn green. It must show the error instead."""
    p = conninfo_to_dict(db_dsn)
    for var, key in (("PGHOST", "host"), ("PGPORT", "port"), ("PGDATABASE", "dbname"),
                     ("PGUSER", "user")):
        monkeypatch.setenv(var, str(p[key]))
    test = "\n".join(f"{k} = '{p[k]}'" for k in ("host", "port", "dbname", "user"))
    text, wanted = BROKEN[case]
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "profiles.toml").write_text(text.replace("{test}", test))
    ctl = Controller(ProfileStore(), tray_available=lambda: False, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await asyncio.sleep(1.0)  # time to connect, were it watching anything
            status = ctl.tray.status
            assert (status.state, status.problem) == (State.ERROR, Problem.CONFIG)
            assert status.message is not None and wanted in status.message
            assert ctl.adapter is None
            assert wanted in ctl.window.status.message
            assert ctl.settings_dialog is not None and ctl.settings_dialog.isVisible()
            if case.startswith("a default that names"):
                ctl.window.resize(520, ctl.window.sizeHint().height())
                ARTIFACTS.mkdir(exist_ok=True)
                assert ctl.window.grab().save(str(ARTIFACTS / "tray-broken-default.png"))
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=60)


def test_renaming_a_watched_profile_in_settings_keeps_it_watched(
    qapp: QApplication, config_dir: Path,
) -> None:
    from dataclasses import replace

    from tests.app.conftest import MemoryKeyring

    old = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        store = ProfileStore()
        store.add(ConnectionProfile(name="prod", host="prod.example.org"))
        store.add(ConnectionProfile(name="work", host="test.example.org"))
        store.save_settings(replace(store.settings, watched=("work",)))
        dialog = SettingsDialog(store)
        dialog.profile_list.setCurrentItem(
            dialog.profile_list.findItems("work", Qt.MatchFlag.MatchExactly)[0])
        dialog.name.setText("office")
        assert dialog.save(), dialog.message.text()  # no loop running: done here
        again = ProfileStore()
        assert again.names() == ["prod", "office"]
        assert again.settings.watched == ("office",)
        dialog.close()
        dialog.deleteLater()  # freed by Qt here, never by a later cyclic GC
    finally:
        keyring.set_keyring(old)


def test_a_keychain_that_never_answers_a_save_is_said_and_the_password_kept_for_now(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    slow_keyring: SlowKeyring, db_dsn: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(credentials, "KEYCHAIN_TIMEOUT", 0.5)
    dialog = SettingsDialog(ProfileStore())
    got: list[SavedChange] = []
    dialog.saved.connect(got.append)

    async def scenario() -> None:
        await wait_until(lambda: "keychain (" in dialog.keychain.text(), within=10)
        slow_keyring.hang = True
        with Ticks() as ticks:
            _fill(dialog, "work", db_dsn, "s3cret")
            assert dialog.save()
            assert dialog.saving is not None
            assert not await dialog.saving
        assert ticks.longest_gap < SMOOTH
        text = dialog.message.text()
        assert "the keychain did not answer within 0.5 s" in text, text
        assert "this session only" in text
        assert ProfileStore().names() == ["work"]  # the profile itself is saved
        assert len(got) == 1 and got[0].session_password == "s3cret"
        assert dialog.buttons.button(dialog.buttons.StandardButton.Save).isEnabled()

    try:
        run(qloop, scenario())
    finally:
        slow_keyring.release.set()
        dialog.close()
        dialog.deleteLater()  # freed by Qt here, never by a later cyclic GC
