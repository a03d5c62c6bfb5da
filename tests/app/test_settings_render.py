"""The Settings dialog as a person sees it: the keychain's sentence (the longest: no secure
keychain) is shown whole, at the size the dialog opens with and in its narrowest window; the
window fits the screen (its sections scroll) and Save stays in view.

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
    """``label`` has the height its lines need, can be scrolled into view whole, and Save
    is in the window."""
    dialog.scroller.ensureWidgetVisible(label)
    QApplication.processEvents()
    ARTIFACTS.mkdir(exist_ok=True)
    assert dialog.grab().save(str(ARTIFACTS / f"settings-keychain-{name}.png"))
    needs = label.heightForWidth(label.width())
    assert label.height() >= needs, (
        f"{name}: the keychain line is {label.height()} px high, its text needs {needs} px "
        f"at {label.width()} px wide (window {dialog.width()}x{dialog.height()})")
    viewport = dialog.scroller.viewport()
    where = QRect(label.mapTo(viewport, QPoint(0, 0)), label.size())
    assert viewport.rect().contains(where), f"{name}: the keychain line is cut off"
    save = dialog.buttons.button(dialog.buttons.StandardButton.Save)
    where = QRect(save.mapTo(dialog, QPoint(0, 0)), save.size())
    assert dialog.rect().contains(where), f"{name}: Save is outside the window"


@pytest.mark.usefixtures("no_keychain")
def test_the_keychain_sentence_is_shown_whole(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
) -> None:
    dialog = SettingsDialog(ProfileStore())

    async def scenario() -> None:
        dialog.show()
        await wait_until(lambda: "No secure keychain" in dialog.keychain.text(), within=10)
        await asyncio.sleep(0.05)  # the layout's turn
        # The sections need ~950 px; this screen (offscreen: 800 x 800) has fewer: the
        # window fits the screen and scrolls.
        room = dialog.screen().availableGeometry()
        assert dialog.height() <= room.height() and dialog.width() <= room.width()
        _shown_whole(dialog, dialog.keychain, "default")
        dialog.resize(dialog.minimumSizeHint().width(), 420)  # as narrow as it goes, short
        await asyncio.sleep(0.05)
        assert dialog.width() < 740, "the window did not get narrow"
        _shown_whole(dialog, dialog.keychain, "narrow")

    try:
        run(qloop, scenario())
    finally:
        dialog.close()
        dialog.deleteLater()
