"""The small normal window shown when there is no tray (GNOME without AppIndicator, or
an autostart that raced the panel). The app never exits for lack of a tray: it shows
this, keeps checking, and moves to the tray when one appears (controller.py).

With several deployments watched it does what the tray does: the big icon shows the worst
state, and a line per deployment (its state icon, its name, its state in words) follows.

With no tray there is no balloon either: when no notification server shows a notice, this
window does, in a short list of the latest notices at its top (newest first, NOTICES_KEPT
of them; a newer notice of the same key replaces the older, a withdrawn one goes), each
with its time and its buttons ("Show details"), which do what the bubble's buttons do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from traystatus.app import palette, texts
from traystatus.app.deployments import worst
from traystatus.app.icons import IconStyle, accessible_name, kind_for, render_pixmap
from traystatus.app.notifications import ACTION_TITLES
from traystatus.app.notify_policy import Action, Notice, Urgency
from traystatus.app.palette import Tone
from traystatus.core.model.state import State, Status, utcnow

NOTICES_KEPT = 4  # the latest notices listed; older ones were told already


@dataclass(frozen=True)
class ShownNotice:
    notice: Notice
    at: datetime  # when it was shown here


class StatusWindow(QWidget):
    showDetailsRequested = Signal()
    settingsRequested = Signal()
    passwordRequested = Signal()
    quitRequested = Signal()
    # A button of a listed notice was pressed: (Notice, Action).
    noticeActionRequested = Signal(object, object)

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__()
        self.clock = clock
        self.status = Status(State.CONNECTING)
        self.setWindowTitle("StatBus status")
        lay = QVBoxLayout(self)
        # The latest notices no server or balloon could show (hidden while there are none).
        self.notices: list[ShownNotice] = []
        self.notices_box = QFrame()
        self.notices_box.setObjectName("notices")
        self.notices_box.setFrameShape(QFrame.Shape.StyledPanel)
        self.notices_lay = QVBoxLayout(self.notices_box)
        self.notices_lay.setContentsMargins(8, 6, 8, 6)
        self.notices_lay.setSpacing(6)
        header = QLabel("Latest notices")
        header.setStyleSheet(palette.text_css(Tone.MUTED, palette.dark_window(self), bold=True))
        self.notices_lay.addWidget(header)
        self.notices_box.hide()
        lay.addWidget(self.notices_box)
        self._entries: list[QWidget] = []
        # Fit the window to new notices once Qt has shown them (a widget added to a
        # layout is shown a moment later, and a hidden one has no height yet).
        self._fit = QTimer(self)
        self._fit.setSingleShot(True)
        self._fit.setInterval(0)
        self._fit.timeout.connect(self.adjustSize)
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

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.notices:
            self._fit.start()

    def closeEvent(self, event: QCloseEvent) -> None:
        # This window is the app's only face when there is no tray: closing it by hand
        # means "quit"; hiding it (the tray appeared) is done with hide(), not close().
        event.accept()
        if event.spontaneous():
            self.quitRequested.emit()

    # -- notices ---------------------------------------------------------------------------
    def add_notice(self, notice: Notice) -> None:
        """List ``notice`` first (replacing an older one of its key), keep NOTICES_KEPT."""
        kept = [s for s in self.notices if s.notice.key != notice.key]
        self.notices = [ShownNotice(notice, self.clock()), *kept][:NOTICES_KEPT]
        self._show_notices()

    def withdraw_notice(self, key: str) -> None:
        """The notice of ``key`` is obsolete (the connection is back, the review done)."""
        kept = [s for s in self.notices if s.notice.key != key]
        if len(kept) != len(self.notices):
            self.notices = kept
            self._show_notices()

    def notice_texts(self) -> list[str]:
        """Each listed notice as its labels read: 'title\nbody\ntime', newest first."""
        return [
            "\n".join(label.text() for label in entry.findChildren(QLabel))
            for entry in self._entries
        ]

    def notice_buttons(self) -> list[list[QPushButton]]:
        """Each listed notice's buttons, newest first."""
        return [entry.findChildren(QPushButton) for entry in self._entries]

    def _show_notices(self) -> None:
        for entry in self._entries:
            self.notices_lay.removeWidget(entry)
            entry.hide()
            entry.setParent(None)
            entry.deleteLater()
        self._entries = [self._notice_entry(shown) for shown in self.notices]
        for entry in self._entries:
            self.notices_lay.addWidget(entry)
        self.notices_box.setVisible(bool(self._entries))
        self._fit.start()

    def _notice_entry(self, shown: ShownNotice) -> QWidget:
        n = shown.notice
        dark = palette.dark_window(self)
        entry = QWidget(self.notices_box)
        lay = QVBoxLayout(entry)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(1)
        top = QHBoxLayout()
        title = QLabel(n.title)
        title.setTextFormat(Qt.TextFormat.PlainText)
        title.setWordWrap(True)
        tone = Tone.PROBLEM if n.urgency is Urgency.CRITICAL else Tone.PLAIN
        title.setStyleSheet(palette.text_css(tone, dark, bold=True))
        top.addWidget(title, 1)
        when = QLabel(texts.local_hhmm(shown.at))
        when.setStyleSheet(palette.text_css(Tone.MUTED, dark))
        top.addWidget(when, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(top)
        if n.body:
            body = QLabel(n.body)
            body.setTextFormat(Qt.TextFormat.PlainText)
            body.setWordWrap(True)
            lay.addWidget(body)
        if n.actions:
            buttons = QHBoxLayout()
            for action in n.actions:
                b = QPushButton(ACTION_TITLES[action])
                b.clicked.connect(lambda _=False, a=action, n=n: self._act(n, a))
                buttons.addWidget(b)
            buttons.addStretch(1)
            lay.addLayout(buttons)
        return entry

    def _act(self, notice: Notice, action: Action) -> None:
        self.noticeActionRequested.emit(notice, action)

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
