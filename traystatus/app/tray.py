"""The tray icon, its tooltip and its context menu: a thin view of the Status.

Left click and double click open the details window (GNOME's AppIndicator turns a left
click into the menu, so the menu starts with "Show details" too). The tooltip ticks once
a second only while it changes with time (processing: "for 3 min"; disconnected:
"retrying in N s"); a stable icon costs no timer at all.

Menus are replaced by setting the new one before deleting the old (deleting the menu a
tray still points to crashes some GNOME shells).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from traystatus.app import texts
from traystatus.app.deployments import worst
from traystatus.app.icons import IconCache, IconStyle
from traystatus.core.model.state import State, Status, utcnow
from traystatus.desktop import autostart

log = logging.getLogger(__name__)
CLOCK = "tooltipClock"  # the object name of the timer that refreshes the tooltip


class TrayIcon(QObject):
    """Owns the QSystemTrayIcon; every user intent leaves as a signal."""

    showDetailsRequested = Signal()
    settingsRequested = Signal()
    passwordRequested = Signal()
    reconnectRequested = Signal()
    pauseRequested = Signal(object)  # True: pause 1 h; False: resume (object, not bool)
    profileSelected = Signal(str)
    aboutRequested = Signal()
    quitRequested = Signal()
    autostartFailed = Signal(str)

    def __init__(
        self,
        icons: IconCache,
        style: IconStyle = IconStyle.COLOR,
        parent: QObject | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(parent)
        self.icons = icons
        self.style = style
        self.clock = clock
        self.status = Status(State.CONNECTING)
        self.profile: str | None = None
        self.profiles: list[str] = []
        self.paused_until: datetime | None = None
        self.password_needed = False  # offer "Enter password…"
        # Other watched deployments (app/deployments.py): (profile, Status), in order.
        self.others: list[tuple[str, Status]] = []
        self._deployment_actions: list[QAction] = []
        self.tray = QSystemTrayIcon(self)
        self.tray.activated.connect(self._on_activated)
        self._menu: QMenu | None = None
        # Runs only while the tooltip changes with time alone (texts.needs_ticking): its
        # name lets a test see whether it runs (findChild), as a person sees the tooltip.
        self._timer = QTimer(self)
        self._timer.setObjectName(CLOCK)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._refresh_tooltip)
        self._icon_key: tuple[object, ...] | None = None
        self.rebuild_menu()
        self._render()

    # -- inputs ----------------------------------------------------------------------------
    def set_status(self, status: Status) -> None:
        self.status = status
        self._render()

    def show_states(self, status: Status, others: Sequence[tuple[str, Status]]) -> None:
        """This deployment's state and the other watched ones', in one repaint."""
        self.status = status
        names_changed = [n for n, _ in others] != [n for n, _ in self.others]
        self.others = list(others)
        if names_changed:
            self.rebuild_menu()
        else:
            self._relabel_deployments()
        self.set_status(status)  # the one repaint (and the one place a Status arrives)

    def set_style(self, style: IconStyle) -> None:
        self.style = style
        self._render()

    def set_profiles(self, names: Sequence[str], current: str | None) -> None:
        self.profiles, self.profile = list(names), current
        self.rebuild_menu()
        self._render()

    def set_deployments(self, rows: Sequence[tuple[str, Status]]) -> None:
        """The other watched deployments: the icon shows the worst state of all, the
        tooltip and the menu a line each."""
        names_changed = [n for n, _ in rows] != [n for n, _ in self.others]
        self.others = list(rows)
        if names_changed:
            self.rebuild_menu()
        else:
            self._relabel_deployments()
        self._render()

    def set_password_needed(self, needed: bool) -> None:
        """Offer (or stop offering) "Enter password…" in the menu."""
        if needed != self.password_needed:
            self.password_needed = needed
            self.rebuild_menu()

    def set_paused(self, until: datetime | None) -> None:
        self.paused_until = until
        self.rebuild_menu()

    def show(self) -> None:
        self.tray.show()

    def hide(self) -> None:
        self.tray.hide()

    # -- rendering -------------------------------------------------------------------------
    @property
    def shown(self) -> Status:
        """What the one icon shows: this deployment's state, or the worst of all watched."""
        return worst([self.status, *(st for _, st in self.others)]) or self.status

    @property
    def progress(self) -> int | None:
        """The ring's percentage: ``Status.progress`` of the state shown, while processing."""
        return texts.progress_pct(self.shown)

    def current_icon(self) -> QIcon:
        return self.icons.for_status(self.shown, self.style, self.progress)

    def tooltip_text(self) -> str:
        now = self.clock()
        if not self.others:
            return texts.tooltip(self.status, now, self.profile)
        lines = [texts.APP_TITLE]
        for name, st in [(self.profile or "this database", self.status), *self.others]:
            lines.append(f"{name}: {texts.headline(st, now)}")
        return "\n".join(lines)

    def _render(self) -> None:
        key = (self.shown.state, self.style, self.icons_progress_key())
        if key != self._icon_key:
            self._icon_key = key
            self.tray.setIcon(self.current_icon())
        self._refresh_tooltip()
        if any(texts.needs_ticking(st) for st in [self.status, *(st for _, st in self.others)]):
            if not self._timer.isActive():
                self._timer.start()
        else:
            self._timer.stop()

    def icons_progress_key(self) -> int | None:
        return self.progress

    def _refresh_tooltip(self) -> None:
        text = self.tooltip_text()
        if self.tray.toolTip() != text:
            self.tray.setToolTip(text)

    # -- the menu --------------------------------------------------------------------------
    def rebuild_menu(self) -> None:
        menu = QMenu()
        menu.setAccessibleName("traystatus menu")
        menu.addAction("Show details").triggered.connect(self.showDetailsRequested.emit)
        if self.password_needed:
            menu.addAction("Enter password…").triggered.connect(self.passwordRequested.emit)
        self._deployment_actions = []
        if self.others:
            # A line per watched deployment, its state in words (informational).
            menu.addSection("Deployments")
            for _ in range(len(self.others) + 1):
                act = menu.addAction("")
                act.setEnabled(False)
                self._deployment_actions.append(act)
            self._relabel_deployments()
        menu.addSeparator()
        menu.addAction("Reconnect now").triggered.connect(self.reconnectRequested.emit)
        if self.paused_until is not None:
            until = texts.local_hhmm(self.paused_until)
            menu.addAction(f"Resume notifications (paused until {until})").triggered.connect(
                lambda: self.pauseRequested.emit(False)
            )
        else:
            menu.addAction("Pause notifications for 1 hour").triggered.connect(
                lambda: self.pauseRequested.emit(True)
            )
        if len(self.profiles) > 1:
            sub = menu.addMenu("Profile")
            group = QActionGroup(sub)
            group.setExclusive(True)
            for name in self.profiles:
                act = QAction(name, sub)
                act.setCheckable(True)
                act.setChecked(name == self.profile)
                act.triggered.connect(lambda _=False, n=name: self.profileSelected.emit(n))
                group.addAction(act)
                sub.addAction(act)
        menu.addSeparator()
        menu.addAction("Settings…").triggered.connect(self.settingsRequested.emit)
        act = menu.addAction("Start at login")
        act.setCheckable(True)
        try:
            act.setChecked(autostart.is_enabled())
        except OSError as ex:
            log.warning("cannot read the start-at-login setting: %s", ex)
            act.setEnabled(False)
        act.toggled.connect(self._toggle_autostart)
        menu.addAction("About traystatus").triggered.connect(self.aboutRequested.emit)
        menu.addSeparator()
        menu.addAction("Quit").triggered.connect(self.quitRequested.emit)
        old, self._menu = self._menu, menu
        self.tray.setContextMenu(menu)  # the new one first ...
        if old is not None:
            old.deleteLater()  # ... then the old one goes

    def deployment_lines(self) -> list[str]:
        """'prod: processing (42 %)', one per watched deployment, this one first."""
        out = []
        for name, st in [(self.profile or "this database", self.status), *self.others]:
            word = st.state.value
            pct = texts.progress_pct(st)
            out.append(f"{name}: {word}" + (f" ({pct} %)" if pct is not None else ""))
        return out

    def _relabel_deployments(self) -> None:
        for act, text in zip(self._deployment_actions, self.deployment_lines(), strict=False):
            if act.text() != text:
                act.setText(text)

    def _toggle_autostart(self, checked: bool) -> None:
        try:
            autostart.set_enabled(checked)
        except OSError as ex:
            self.autostartFailed.emit(
                f"Could not {'enable' if checked else 'disable'} start at login: {ex}. "
                "Check that your user can write its autostart folder."
            )
            self.rebuild_menu()

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.showDetailsRequested.emit()
