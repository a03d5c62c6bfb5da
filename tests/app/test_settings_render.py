"""The Settings dialog as a person sees it: the keychain's sentence (the longest: no secure
keychain) is shown whole, at the size the dialog opens with and in its narrowest window.

The text arrives after the dialog is shown (the keychain is asked off the loop), so the
dialog must make room for it then. PNGs: test-artifacts/settings-keychain-*.png.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QApplication, QLabel

from tests.app.conftest import ARTIFACTS, run, wait_until
from traystatus.app.settings import SettingsDialog
from traystatus.core.config.profiles import ProfileStore


@pytest.fixture
def no_keychain() -> Iterator[None]:
    """keyring's 'fail' backend: what a machine without a keychain service has."""
    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(old)


def _shown_whole(dialog: SettingsDialog, label: QLabel, name: str) -> None:
    QApplication.processEvents()
    ARTIFACTS.mkdir(exist_ok=True)
    assert dialog.grab().save(str(ARTIFACTS / f"settings-keychain-{name}.png"))
    needs = label.heightForWidth(label.width())
    assert label.height() >= needs, (
        f"{name}: the keychain line is {label.height()} px high, its text needs {needs} px "
        f"at {label.width()} px wide (window {dialog.width()}x{dialog.height()})")
    where = QRect(label.mapTo(dialog, QPoint(0, 0)), label.size())
    assert dialog.rect().contains(where), f"{name}: the keychain line is outside the window"


@pytest.mark.usefixtures("no_keychain")
def test_the_keychain_sentence_is_shown_whole(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
) -> None:
    dialog = SettingsDialog(ProfileStore())

    async def scenario() -> None:
        dialog.show()
        await wait_until(lambda: "No secure keychain" in dialog.keychain.text(), within=10)
        await asyncio.sleep(0.05)  # the layout's turn
        _shown_whole(dialog, dialog.keychain, "default")
        dialog.resize(dialog.minimumSize().expandedTo(dialog.minimumSizeHint()))
        await asyncio.sleep(0.05)
        _shown_whole(dialog, dialog.keychain, "narrow")

    try:
        run(qloop, scenario())
    finally:
        dialog.close()
        dialog.deleteLater()
