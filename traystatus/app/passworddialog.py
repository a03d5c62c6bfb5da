"""The small dialog that asks for a password kept in memory only.

Shown for a profile with ``ask_password`` (once per session, and again after a wrong one)
and offered when the keychain is locked or missing. It is non-modal (``show()``, never
``exec()``): the asyncio loop that runs in Qt's loop keeps running while it is open. It
only collects the text; the controller decides what happens with it and never writes it
anywhere. The text is cleared as soon as it leaves the dialog.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from traystatus.app import palette
from traystatus.app.palette import Tone

NOTE = ("Your StatBus web password. traystatus keeps it in memory until it quits; "
        "it is not stored anywhere.")


class PasswordDialog(QDialog):
    """``entered(str)`` with the password, or ``cancelled()``; never both."""

    entered = Signal(str)
    cancelled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("traystatus: password")
        self.setModal(False)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.profile = ""
        self.who = QLabel()
        self.who.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(
            palette.text_css(Tone.PROBLEM, palette.dark_window(self), bold=True))
        self.error.hide()
        self.field = QLineEdit()
        self.field.setEchoMode(QLineEdit.EchoMode.Password)
        self.field.setAccessibleName("password")
        self.field.setPlaceholderText("password")
        note = QLabel(NOTE)
        note.setWordWrap(True)
        note.setStyleSheet("color: palette(placeholder-text);")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Connect")
        self.buttons.accepted.connect(self._ok)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.who)
        layout.addWidget(self.error)
        layout.addWidget(self.field)
        layout.addWidget(note)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(380)

    def ask(self, profile: str, who: str, error: str = "") -> None:
        """Show (or raise) the dialog for ``profile`` (``who``: user at host), with
        ``error`` (a wrong password, in StatBus's words) above the field."""
        self.profile = profile
        self.who.setText(f"Password for <b>{_html(who)}</b> (profile {_html(profile)})")
        self.error.setText(error)
        self.error.setVisible(bool(error))
        self.field.clear()
        self.field.setFocus()
        self.show()
        self.raise_()
        self.activateWindow()

    def _ok(self) -> None:
        text = self.field.text()
        if not text:
            self.error.setText("Type the password, or Cancel.")
            self.error.show()
            return
        self.field.clear()
        self.hide()
        self.entered.emit(text)

    def reject(self) -> None:
        self.field.clear()
        was = self.isVisible()
        super().reject()
        if was:
            self.cancelled.emit()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
