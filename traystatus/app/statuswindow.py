"""The small normal window shown when there is no tray (GNOME without AppIndicator, or
an autostart that raced the panel). The app never exits for lack of a tray: it shows
this, keeps checking, and moves to the tray when one appears (controller.py).

With several deployments watched it does what the tray does: the big icon shows the worst
state, and a line per deployment (its state icon, its name, its state in words) follows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from traystatus.app import palette, texts
from traystatus.app.deployments import worst
from traystatus.app.icons import IconStyle, accessible_name, kind_for, render_pixmap
from traystatus.app.palette import Tone
from traystatus.core.model.state import State, Status, utcnow


class StatusWindow(QWidget):
    showDetailsRequested = Signal()
    settingsRequested = Signal()
    passwordRequested = Signal()
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
        # One row per deployment when several are watched: (icon, text) labels.
        self.rows_box = QVBoxLayout()
        self.rows_box.setSpacing(2)
        self.rows_box.setContentsMargins(40, 0, 0, 0)
        lay.addLayout(self.rows_box)
        self.rows: list[tuple[QLabel, QLabel]] = []
        self.main_name: str | None = None
        self.others: list[tuple[str, Status]] = []
        self.note = QLabel(
            "No system tray was found; this window stands in for the tray icon "
            "(closing it quits traystatus)."
        )
        self.note.setWordWrap(True)
        self.note.setStyleSheet(palette.text_css(Tone.MUTED, palette.dark_window(self)))
        lay.addWidget(self.note)
        row = QHBoxLayout()
        # Shown while a password must be typed (the tray menu's "Enter password…").
        self.password_button = QPushButton("Enter password…")
        self.password_button.clicked.connect(self.passwordRequested.emit)
        self.password_button.hide()
        row.addWidget(self.password_button)
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

    def set_deployments(self, main_name: str | None, others: Sequence[tuple[str, Status]]) -> None:
        """The other watched deployments (name, Status), listed after this one."""
        self.show_states(main_name, self.status, others)

    def show_states(
        self, main_name: str | None, status: Status, others: Sequence[tuple[str, Status]]
    ) -> None:
        """This deployment's state and the other watched ones', in one repaint."""
        self.status = status
        self.main_name = main_name
        self.others = list(others)
        while len(self.rows) < len(self.others) + 1 and self.others:
            icon, text = QLabel(), QLabel()
            icon.setFixedSize(16, 16)
            text.setTextFormat(Qt.TextFormat.PlainText)
            text.setWordWrap(True)
            row = QHBoxLayout()
            row.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
            row.addWidget(text, 1)
            self.rows_box.addLayout(row)
            self.rows.append((icon, text))
        self.refresh()

    def deployment_lines(self) -> list[str]:
        """'prod: Stable since 14:02', one per deployment, this one first (none alone)."""
        return [text.text() for _icon, text in self.rows if not text.isHidden()]

    def refresh(self) -> None:
        now = self.clock()
        listed = [(self.main_name or "this database", self.status), *self.others]
        shown = worst([st for _, st in listed]) if self.others else self.status
        assert shown is not None
        progress = texts.progress_pct(shown)
        self.icon.setPixmap(
            render_pixmap(kind_for(shown), 32, IconStyle.COLOR, progress,
                          self.devicePixelRatioF())
        )
        self.icon.setAccessibleName(accessible_name(shown, progress))
        if self.others:
            lines = ["Several deployments watched; the icon shows the worst state."]
        else:
            lines = [texts.headline(self.status, now)]
            extra = texts.detail_line(self.status, now)
            if extra:
                lines.append(extra)
        self.text.setText("\n".join(lines))
        ratio = self.devicePixelRatioF()
        for i, (icon, text) in enumerate(self.rows):
            visible = bool(self.others) and i < len(listed)
            icon.setVisible(visible)
            text.setVisible(visible)
            if not visible:
                continue
            name, st = listed[i]
            pct = texts.progress_pct(st)
            icon.setPixmap(render_pixmap(kind_for(st), 16, IconStyle.COLOR, pct, ratio))
            icon.setAccessibleName(accessible_name(st, pct))
            text.setText(f"{name}: {texts.headline(st, now)}")
        self.adjustSize()  # wrapped reasons can be long: grow rather than clip
