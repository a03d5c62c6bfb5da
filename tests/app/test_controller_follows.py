"""The controller tells the truth after Settings changes and when something breaks.

Real Settings dialog, real Controller and Monitor, real database; the keychains are real
keyring backends living in this process.

- Renaming the watched profile keeps watching it; removing it moves to the default
  profile; with none left the icon shows an error, never the last state (a stale green).
- Without a secure keychain, Save keeps every other change and the typed password is
  really used for this session.
- The details window renders once per update.
- A task that dies of an unexpected error turns the icon red with the reason instead of
  leaving it on Connecting ("Task exception was never retrieved").
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backends import fail
from psycopg.conninfo import conninfo_to_dict
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS, MemoryKeyring, run, save, wait_until
from traystatus.app.adapter import MonitorAdapter
from traystatus.app.controller import Controller
from traystatus.app.icons import IconCache
from traystatus.app.settings import SettingsDialog
from traystatus.app.slot import Opened, SourceSpec
from traystatus.app.tray import TrayIcon
from traystatus.core.config.password import resolve_async
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
from traystatus.core.model.checks import CheckResult
from traystatus.core.model.state import Problem, State
from traystatus.core.watch.monitor import Monitor


def _profile(name: str, dsn: str, user: str | None = None) -> ConnectionProfile:
    p = conninfo_to_dict(dsn)
    return ConnectionProfile(name=name, host=str(p["host"]), port=str(p["port"]),
                             dbname=str(p["dbname"]), user=user or str(p["user"]))


def _select(dialog: SettingsDialog, name: str) -> None:
    items = dialog.profile_list.findItems(name, Qt.MatchFlag.MatchExactly)
    assert items, name
    dialog.profile_list.setCurrentItem(items[0])


@pytest.fixture
def no_libpq_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))


@pytest.fixture
def no_keychain() -> Iterator[None]:
    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(old)


def _controller(store: ProfileStore) -> Controller:
    return Controller(store, tray_available=lambda: False, use_desktop_notifier=False)


def test_rename_and_remove_of_the_watched_profile(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
) -> None:
    store = ProfileStore()
    store.put(_profile("work", db_dsn), make_default=True)
    ctl = _controller(store)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.tray.status.state == State.STABLE)
            ctl.show_settings()
            dialog = ctl.settings_dialog
            assert dialog is not None
            got: list[Any] = []
            dialog.saved.connect(got.append)

            # Rename "work" -> "office": still watched, under its new name.
            _select(dialog, "work")
            dialog.name.setText("office")
            assert await save(dialog), dialog.message.text()
            assert got[-1].renamed == {"work": "office"} and got[-1].profile == "office"
            await wait_until(lambda: ctl.profile_name == "office")
            await wait_until(lambda: ctl.adapter is not None
                             and ctl.tray.status.state == State.STABLE)
            assert ctl.tray.profile == "office"
            assert store.default_name == "office"  # the default follows the rename

            # A second profile (a database without our SQL), then remove the watched one:
            # the other one is watched now (directly: StatBus's own channels) and its truth
            # shows.
            dialog.add_button.click()
            dialog.name.setText("other")
            p = conninfo_to_dict(bare_db_dsn)
            dialog.host.setText(str(p["host"]))
            dialog.port.setText(str(p["port"]))
            dialog.dbname.setText(str(p["dbname"]))
            dialog.user.setText(str(p["user"]))
            assert await save(dialog), dialog.message.text()
            await wait_until(lambda: ctl.tray.status.state == State.STABLE)  # still "office"
            _select(dialog, "office")
            dialog.remove_button.click()
            assert got[-1].removed == ("office",)
            await wait_until(lambda: ctl.profile_name == "other")
            await wait_until(lambda: ctl.tray.status.source == "builtin"
                             and ctl.tray.status.state == State.STABLE)

            # Remove the last one: no profile left -> an error, never the last state.
            _select(dialog, "other")
            dialog.remove_button.click()
            await wait_until(lambda: ctl.adapter is None)
            await asyncio.sleep(0.2)
            assert ctl.tray.status.state == State.ERROR
            assert ctl.tray.status.problem == Problem.CONFIG
            assert "No connection profile" in ctl.tray.status.message
            assert ctl.tray.status.state == State.ERROR
            assert ctl.window.status.state == State.ERROR
            assert "No connection profile" in ctl.tray.tooltip_text()
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_rename_to_stable_never_shows_a_stale_green_on_the_way(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
) -> None:
    """Editing the watched profile to point elsewhere: from the moment Save is pressed the
    icon says Connecting, then the new database's truth; the old green never lingers."""
    store = ProfileStore()
    store.put(_profile("work", db_dsn), make_default=True)
    ctl = _controller(store)
    seen: list[tuple[State, str]] = []

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.tray.status.state == State.STABLE)
            ctl.show_settings()
            dialog = ctl.settings_dialog
            assert dialog is not None
            _select(dialog, "work")
            dialog.dbname.setText(str(conninfo_to_dict(bare_db_dsn)["dbname"]))
            original = ctl.tray.set_status

            def record(status: Any) -> None:
                seen.append((status.state, status.source))
                original(status)

            ctl.tray.set_status = record  # type: ignore[method-assign]  # records every status
            assert await save(dialog), dialog.message.text()
            assert ctl.tray.status.state == State.CONNECTING  # at once, not after the stop
            # The new database has no traystatus SQL: it is watched directly, and the old
            # one's green never shows in between.
            await wait_until(lambda: ctl.tray.status.source == "builtin"
                             and ctl.tray.status.state == State.STABLE)
            assert (State.STABLE, "installed") not in seen, seen
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_no_keychain_save_keeps_the_settings_and_uses_the_password_this_session(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    no_keychain: None, no_libpq_password: None, db_dsn: str, login_role: tuple[str, str],
) -> None:
    user, password = login_role
    store = ProfileStore()
    ctl = _controller(store)

    async def scenario() -> None:
        ctl.start()  # no profile yet: Settings opens, the icon says what is missing
        try:
            assert ctl.tray.status.state == State.ERROR
            assert ctl.tray.status.problem == Problem.CONFIG
            dialog = ctl.settings_dialog
            assert dialog is not None and dialog.isVisible()
            p = conninfo_to_dict(db_dsn)
            dialog.name.setText("work")
            dialog.host.setText(str(p["host"]))
            dialog.port.setText(str(p["port"]))
            dialog.dbname.setText(str(p["dbname"]))
            dialog.user.setText(user)
            dialog.password.setText(password)
            dialog.grace.setValue(95)
            dialog.notify_disconnected.setChecked(False)
            dialog.icon_style.setCurrentIndex(dialog.icon_style.findData("mono-dark"))
            assert not await save(dialog)  # the password could not be stored ...
            text = dialog.message.text()
            assert "no secure keychain" in text and "this session only" in text
            # ... but everything else was.
            again = ProfileStore()
            assert again.get("work").user == user
            s = again.settings
            assert (s.disconnect_grace_s, s.notify_disconnected, s.icon_style) == (
                95.0, False, "mono-dark")
            assert password not in (config_dir / "profiles.toml").read_text()
            # The typed password reaches the monitor: it connects.
            await wait_until(lambda: ctl.tray.status.state == State.STABLE, within=60)
            # Saving again without retyping it: a notification setting changes in place
            # (no reconnect), and a restart later still uses the typed password.
            opened = ctl.slot.opened
            dialog.grace.setValue(96)
            assert await save(dialog), dialog.message.text()
            assert ctl.tray.status.state == State.STABLE and ctl.slot.opened == opened
            ctl._restart()
            assert ctl.tray.status.state == State.CONNECTING
            await wait_until(lambda: ctl.tray.status.state == State.STABLE
                             and ctl.slot.opened == opened + 1, within=60)
            dialog.resize(720, dialog.sizeHint().height())
            ARTIFACTS.mkdir(exist_ok=True)
            assert dialog.grab().save(str(ARTIFACTS / "settings-no-keychain.png"))
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_details_window_renders_once_per_update(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str,
) -> None:
    ctl = Controller(ProfileStore(), dsn=db_dsn, tray_available=lambda: False,
                     use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.tray.status.state == State.STABLE)
            ctl.show_details()
            w = ctl.details_window
            assert w is not None and ctl.adapter is not None
            await wait_until(lambda: w.details is not None)
            await asyncio.sleep(0.5)
            renders: list[int] = []
            section = w.main  # the deployment shown in detail
            render = section._render

            def counted() -> None:
                renders.append(1)
                render()

            section._render = counted  # type: ignore[method-assign]  # counts the renders
            ctl.adapter.statusChanged.emit(ctl.adapter.status)
            assert len(renders) == 1
            ctl.adapter.detailsChanged.emit(w.details)
            assert len(renders) == 2
            w.close()
        finally:
            await ctl.shutdown()

    run(qloop, scenario())


class BuggyController(Controller):
    """The real controller with a bug in its start: it finds the password for real, then
    fails the way no one planned for."""

    async def _open(self, spec: SourceSpec) -> Opened:
        await resolve_async(spec.conninfo, spec.keychain_name)
        raise RuntimeError("a bug while starting")


class BuggySettings(SettingsDialog):
    async def run_check(self) -> CheckResult:
        await asyncio.sleep(0)
        raise RuntimeError("a bug in the test")


def test_an_unexpected_error_in_a_task_is_shown_not_swallowed(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, caplog: pytest.LogCaptureFixture,
) -> None:
    ctl = BuggyController(ProfileStore(), dsn=db_dsn, tray_available=lambda: False,
                          use_desktop_notifier=False)
    dialog = BuggySettings(ProfileStore())
    unretrieved: list[dict[str, Any]] = []
    qloop.set_exception_handler(lambda _loop, ctx: unretrieved.append(ctx))
    caplog.set_level(logging.ERROR)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.tray.status.state == State.ERROR, within=60)
            assert ctl.tray.status.problem == Problem.INTERNAL
            assert "a bug while starting" in ctl.tray.tooltip_text()
            assert ctl.window.status.problem == Problem.INTERNAL
            # The same under Settings' "Test connection": said in the dialog.
            dialog.test_button.click()
            await wait_until(lambda: "unexpected error" in dialog.check_result.text())
            assert "a bug in the test" in dialog.check_result.text()
            assert dialog.test_button.isEnabled()
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)
    gc.collect()
    qloop.run_until_complete(asyncio.sleep(0))
    assert not unretrieved, unretrieved
    logged = "\n".join(r.exc_text or "" for r in caplog.records)
    assert "a bug while starting" in logged and "a bug in the test" in logged


class FailsOnce(Controller):
    starts = 0

    async def _open(self, spec: SourceSpec) -> Opened:
        self.starts += 1
        if self.starts == 1:
            raise RuntimeError("a bug on the first start")
        return await super()._open(spec)


def test_reconnect_now_in_the_details_window_starts_over_after_a_bug(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str,
) -> None:
    """The details window's button goes through the controller, which starts the monitor
    again when a bug stopped its start (there is no monitor to reconnect)."""
    ctl = FailsOnce(ProfileStore(), dsn=db_dsn, tray_available=lambda: False,
                    use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.tray.status.problem == Problem.INTERNAL)
            ctl.show_details()
            w = ctl.details_window
            assert w is not None and w.main.reconnect.isVisible()
            w.main.reconnect.click()
            await wait_until(lambda: ctl.tray.status.state == State.STABLE)
            assert ctl.starts == 2
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_a_server_url_it_cannot_open_is_a_config_error(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring,
) -> None:
    ctl = Controller(ProfileStore(), dsn="ws://host:99999/x", tray_available=lambda: False,
                     use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.tray.status.state == State.ERROR, within=60)
            assert ctl.tray.status.problem == Problem.CONFIG
            assert "the port is not a number" in ctl.tray.status.message
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_a_monitor_that_dies_of_a_bug_turns_the_icon_red_not_stale(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, db_dsn: str,
) -> None:
    """The monitor promises never to raise; should a bug break that promise after it saw
    "stable", the icon must not keep the green that nothing keeps true any more."""

    class BuggyMonitor(Monitor):
        async def run(self) -> None:
            task = asyncio.ensure_future(super().run())
            await wait_until(lambda: self.status.state == State.STABLE)
            self.stop()
            await task
            raise RuntimeError("a bug in the monitor")

    adapter = MonitorAdapter(BuggyMonitor(db_dsn))
    tray = TrayIcon(IconCache())
    adapter.statusChanged.connect(tray.set_status)
    # Every state the tray was given, in order: the green lasts only until the monitor
    # stops, which polling can miss on a loaded machine.
    shown: list[State] = []
    adapter.statusChanged.connect(lambda st: shown.append(st.state))

    async def scenario() -> None:
        adapter.start()
        await wait_until(lambda: tray.status.state == State.ERROR)
        assert State.STABLE in shown and shown[-1] is State.ERROR
        assert tray.status.problem == Problem.INTERNAL
        assert "a bug in the monitor" in tray.tooltip_text()
        await adapter.stop()

    run(qloop, scenario())
