"""The small normal window shown when there is no tray (GNOME without AppIndicator, or
an autostart that raced the panel). The app never exits for lack of a tray: it shows
this, keeps checking, and moves to the tray when one appears (controller.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from traystatus.app import texts
from traystatus.app.icons import IconStyle, accessible_name, kind_for, render_pixmap
from traystatus.core.state import State, Status, utcnow


class StatusWindow(QWidget):
    showDetailsRequested = Signal()
    settingsRequested = Signal()
    quitRequested = Signal()

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__()
        self.clock = clock
        self.status = Status(State.CONNECTING)
        self.setWindowTitle("StatBus status")
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.icon = QLabel()
        self.icon.setFixedSize(32, 32)
        top.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        self.text = QLabel()
        self.text.setWordWrap(True)
        top.addWidget(self.text, 1)
        lay.addLayout(top)
        self.note = QLabel(
            "No system tray was found; this window stands in for the tray icon "
            "(closing it quits traystatus)."
        )
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #666666;")
        lay.addWidget(self.note)
        row = QHBoxLayout()
        for label, signal in (
            ("Show details", self.showDetailsRequested),
            ("Settings…", self.settingsRequested),
            ("Quit", self.quitRequested),
        ):
            b = QPushButton(label)
            b.clicked.connect(signal.emit)
            row.addWidget(b)
        lay.addLayout(row)
        self.setMinimumWidth(420)
        self.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        # This window is the app's only face when there is no tray: closing it by hand
        # means "quit"; hiding it (the tray appeared) is done with hide(), not close().
        event.accept()
        if event.spontaneous():
            self.quitRequested.emit()

    def set_status(self, status: Status) -> None:
        self.status = status
        self.refresh()

    def refresh(self) -> None:
        progress = texts.progress_pct(self.status)
        self.icon.setPixmap(
            render_pixmap(kind_for(self.status), 32, IconStyle.COLOR, progress,
                          self.devicePixelRatioF())
        )
        self.icon.setAccessibleName(accessible_name(self.status, progress))
        now = self.clock()
        lines = [texts.headline(self.status, now)]
        extra = texts.detail_line(self.status, now)
        if extra:
            lines.append(extra)
        self.text.setText("\n".join(lines))
        self.adjustSize()  # wrapped reasons can be long: grow rather than clip
