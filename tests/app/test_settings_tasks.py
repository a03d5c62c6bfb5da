"""The Settings dialog owns the tasks it starts: closing it ends its checks, and Quit
waits for them, so no task is left pending when the loop closes ("Task was destroyed but
it is pending!", which asyncio reports through the loop's exception handler).

The keychain is a real keyring backend that does not answer until released (as a locked
Secret Service waits for its unlock prompt), so the dialog's keychain check is still
running when the dialog closes.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import keyring
import pytest
import qasync
from PySide6.QtWidgets import QApplication

from tests.app.conftest import free_qt_garbage, wait_until
from tests.app.test_settings_keychain import SlowKeyring
from traystatus.app.controller import Controller
from traystatus.app.main import close_loop
from traystatus.app.settings import SettingsDialog
from traystatus.core.config import credentials
from traystatus.core.config.profiles import ProfileStore

pytestmark = pytest.mark.usefixtures("config_dir")


@pytest.fixture
def hanging_keyring() -> Iterator[SlowKeyring]:
    """A keychain that answers nothing until the test ends; a call already waits for it
    (the tray's password read at start, say), so the keychain thread is busy and the
    dialog's keychain check waits behind it."""
    old = keyring.get_keyring()
    kr = SlowKeyring()
    kr.hang = True
    keyring.set_keyring(kr)
    credentials._worker.submit(kr.get_password, credentials.SERVICE, "someone")
    try:
        yield kr
    finally:
        kr.release.set()
        keyring.set_keyring(old)


@pytest.fixture
def own_loop(qapp: QApplication) -> Iterator[tuple[asyncio.AbstractEventLoop, list[str]]]:
    """A qasync loop as the app runs it, closed here as the app closes it after Quit; the
    messages given to its exception handler (a pending task destroyed...) are collected,
    also those of tasks collected after the loop closed."""
    qapp.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    problems: list[str] = []

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        problems.append(str(context.get("message")))

    loop.set_exception_handler(handler)
    try:
        yield loop, problems
    finally:
        if not loop.is_closed():
            close_loop(loop)
        asyncio.set_event_loop(None)
        free_qt_garbage()


def _close(loop: asyncio.AbstractEventLoop, keychain: SlowKeyring) -> None:
    """What the app does after Quit: one last turn of the loop, close it; then the keychain
    answers at last (its thread lets go of what still waited for it) and the garbage is
    collected: a task left pending would be destroyed now and say so to the exception
    handler (or, in the app, at exit)."""
    loop.run_until_complete(asyncio.sleep(0))
    left = asyncio.all_tasks(loop)
    close_loop(loop)
    assert not left, f"tasks left pending as the loop closes: {left}"
    keychain.release.set()
    credentials._worker.submit(lambda: None).result(10)
    free_qt_garbage()
    gc.collect()


def test_closing_the_dialog_ends_its_keychain_check(
    own_loop: tuple[asyncio.AbstractEventLoop, list[str]], hanging_keyring: SlowKeyring,
) -> None:
    loop, problems = own_loop

    async def scenario() -> None:
        dialog = SettingsDialog(ProfileStore())
        dialog.show()
        await asyncio.sleep(0.05)
        assert len(dialog.tasks) == 1, "the keychain check should still be running"
        assert dialog.keychain.text() == "Checking the keychain…"
        dialog.close()  # the Close button, Escape and the window's x all end here
        await wait_until(lambda: len(dialog.tasks) == 0, within=5)
        dialog.deleteLater()

    loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    _close(loop, hanging_keyring)
    assert problems == []


def test_quit_with_settings_open_leaves_no_pending_task(
    own_loop: tuple[asyncio.AbstractEventLoop, list[str]], hanging_keyring: SlowKeyring,
) -> None:
    """No profile yet: the tray opens Settings at start; Quit at once."""
    loop, problems = own_loop

    async def scenario() -> None:
        ctl = Controller(ProfileStore(), tray_available=lambda: False,
                         use_desktop_notifier=False)
        ctl.start()
        await wait_until(lambda: ctl.settings_dialog is not None
                         and ctl.settings_dialog.isVisible(), within=10)
        assert ctl.settings_dialog is not None and len(ctl.settings_dialog.tasks) >= 1
        await ctl.shutdown()
        ctl.settings_dialog.deleteLater()
        ctl.deleteLater()

    loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    _close(loop, hanging_keyring)
    assert problems == []
