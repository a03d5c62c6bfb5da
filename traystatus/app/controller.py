"""Wires the watched deployments to the tray, the windows and the notifications.

Owns the pieces and their life cycle: the source slot of the profile shown in detail
(app/slot.py: the one owner of its running source; the other watched profiles have one
each in app/deployments.py, opened by the same ``_open``), the tray icon or - when no
tray host exists - the small status window (re-checked every 5 s; the icon moves to the
tray when one appears), the details window (created on first use), the Settings dialog,
and the notification policy + sender. ``shutdown()`` stops every source, closes their
connections and the notifier; main.py then stops the loop.

The controller is the one place that connects the slots' signals to the views: every
Status goes through ``_show`` to the notification policy at once, and to the icon and
the windows through one repaint throttle (a change of state at once, the latest always
drawn). It follows the Settings dialog: a Save restarts only the sources whose
connection changed (docs/app.md, "Which changes restart what"); a renamed profile is
followed under its new name, a removed one gives way to the default profile, and with no
profile left the icon shows an error - never the state of a database nobody watches any
more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon

from traystatus import __version__
from traystatus.app import texts
from traystatus.app.adapter import MonitorAdapter
from traystatus.app.deployments import Deployments, named, spec_for_profile
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache, IconStyle, platform_dark_scheme, resolve_style
from traystatus.app.notifications import NotificationSender
from traystatus.app.notify_policy import (
    Action,
    Decision,
    Kind,
    Notice,
    NotificationPolicy,
    NotifyOptions,
    Urgency,
)
from traystatus.app.passworddialog import PasswordDialog
from traystatus.app.settings import SavedChange, SettingsDialog
from traystatus.app.slot import Opened, SourceSlot, SourceSpec, open_spec
from traystatus.app.statuswindow import StatusWindow
from traystatus.app.throttle import Throttle
from traystatus.app.tray import TrayIcon
from traystatus.app.trayhost import TrayHost
from traystatus.core.config.password import Source, wrong_password_text
from traystatus.core.config.profiles import ProfileError, ProfileStore, Settings
from traystatus.core.model.details import Details, WorkSummary
from traystatus.core.model.jobs import EndedJob
from traystatus.core.model.state import Problem, State, Status, utcnow
from traystatus.core.model.today import DayView
from traystatus.core.watch.endings import endings_dir
from traystatus.core.watch.options import MonitorOptions

log = logging.getLogger(__name__)

TRAY_CHECK_MS = 5000
NO_PROFILE = "No connection profile is set up: add one in Settings."
WAKE_GAP = timedelta(seconds=30)
RENDER_MS = 250  # at most four repaints a second while progress streams in (throttle.py)


def icon_style_for(settings: Settings) -> IconStyle:
    """The tray icon's style; "auto" follows the desktop (icons.resolve_style)."""
    return resolve_style(settings.icon_style, dark=platform_dark_scheme())


def monitor_options(settings: Settings, timing: MonitorOptions | None = None) -> MonitorOptions:
    """The monitor's options: ``timing`` (the defaults when None) with the health check
    timing from Settings. Loading already clamps bad values
    (profiles.Settings.from_table); should one still slip through, the monitor runs with
    ``timing``'s health check timing rather than the app failing to start."""
    base = timing or MonitorOptions()
    try:
        return replace(
            base,
            health_interval=settings.health_interval_s, health_timeout=settings.health_timeout_s,
            endings_dir=endings_dir(),  # which imports ended: told once across restarts
        )
    except ValueError as ex:
        log.warning("settings: %s; using the default health check timing", ex)
        return base


class Controller(QObject):
    """The running app for one profile (or one ``--dsn``)."""

    quitRequested = Signal()

    def __init__(
        self,
        store: ProfileStore,
        profile: str | None = None,
        dsn: str | None = None,
        tray_available: Callable[[], bool] | None = None,
        tray_host: TrayHost | None = None,
        use_desktop_notifier: bool = True,
        clock: Callable[[], datetime] = utcnow,
        source: str | None = None,
        timing: MonitorOptions | None = None,
    ) -> None:
        """``timing``: the sources' timing (core.monitor.MonitorOptions: details and
        progress intervals, backoff, ...); the health check timing always comes from
        Settings. None: the defaults, which suit a tray app on a laptop."""
        super().__init__()
        self.timing = timing
        self.store = store
        self.profile_name = profile
        self.dsn = dsn
        # How to read the database: --source, else the watched profile's, else auto.
        self.source_override = source
        self._source_mode = source or "auto"
        self.clock = clock
        # Whether a tray shows the icon: asked of ``tray_host`` (Qt 6 is not enough on
        # Linux: trayhost.py); a ``tray_available`` callable replaces it (tests).
        self.tray_available = tray_available
        self.icons = IconCache()
        self.style = icon_style_for(store.settings)
        self.policy = NotificationPolicy(
            NotifyOptions.from_settings(store.settings), started_at=clock()
        )
        self.tray = TrayIcon(self.icons, self.style, self, clock)
        # Created after the QSystemTrayIcon, whose creation fixed Qt's SNI/XEmbed choice.
        if tray_host is None and tray_available is None:
            tray_host = TrayHost(parent=self)
        self.tray_host = tray_host
        if tray_host is not None:
            tray_host.answered.connect(self._placed)
        self.window = StatusWindow(clock)
        # No server (or it went away): the tray's balloon, or with no tray this window.
        self.notifier = NotificationSender(
            fallback=self._elsewhere, parent=self, use_desktop_notifier=use_desktop_notifier,
            withdraw_fallback=self.window.withdraw_notice,
        )
        self.window.noticeActionRequested.connect(self.notifier.act)
        self.notifier.actionRequested.connect(self._on_action)
        self.notifier.jobRequested.connect(self.show_job)
        self.notifier.deploymentRequested.connect(self._show_deployment)
        self.me: int | None = None  # the StatBus user behind the login, once known
        # The one owner of the running source of the profile shown in detail (slot.py).
        self.slot = SourceSlot(self._open, "the database", self)
        self.slot.statusChanged.connect(self._on_status)
        self.slot.detailsChanged.connect(self._on_details)
        self.slot.dayChanged.connect(self._on_day)
        self.slot.workFinished.connect(self._on_summary)
        self.slot.importEnded.connect(self._on_import_end)
        self.slot.adapterChanged.connect(self._adapter_changed)
        # Every Status reaches the policy; the icon and windows are repainted at most
        # every RENDER_MS (a state change at once), always with the latest.
        self._render_throttle = Throttle(self._render, RENDER_MS, self)
        self._rendered: tuple[object, ...] = ()
        self.details_window: DetailsWindow | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.in_tray = False
        self._window_shown_once = False
        self._last_tick: datetime | None = None
        # Passwords typed in Settings that no secure keychain could keep, per profile:
        # used for this session only, never written anywhere.
        self._session_passwords: dict[str, str] = {}
        # The password dialog (a profile that asks each session, or a keychain that is
        # locked or missing): profiles whose dialog was cancelled are asked again only
        # from the menu; a keychain profile's dialog opens by itself once per session.
        self.password_dialog: PasswordDialog | None = None
        self._password_cancelled: set[str] = set()
        self._password_offered: set[str] = set()
        self.status = Status(State.CONNECTING)
        self._profile_problem = NO_PROFILE
        # The other watched deployments (Settings.watched): one icon shows the worst.
        self.deployments = Deployments(
            # (no ledger of import endings: a deployment's endings get no notice of
            # their own, and the file of a database must stay the shown profile's)
            store, lambda: replace(monitor_options(self.store.settings, self.timing),
                           endings_dir=None),
            clock, self,
            passwords=self._session_passwords, opener=self._open,
        )
        self.deployments.changed.connect(self._deployments_changed)
        self.deployments.noticed.connect(self.notifier.handle)
        self.deployments.detailsChanged.connect(self._on_deployment_details)
        self.deployments.dayChanged.connect(self._on_deployment_day)

        t = self.tray
        t.showDetailsRequested.connect(self.show_details)
        t.settingsRequested.connect(self.show_settings)
        t.passwordRequested.connect(self.ask_password)
        t.reconnectRequested.connect(self.reconnect_now)
        t.pauseRequested.connect(self._pause)
        t.profileSelected.connect(self.switch_profile)
        t.aboutRequested.connect(self.show_about)
        t.quitRequested.connect(self.quitRequested.emit)
        t.autostartFailed.connect(
            lambda msg: self._elsewhere(Notice(Kind.ERROR, "autostart", "Start at login", msg))
        )
        w = self.window
        w.showDetailsRequested.connect(self.show_details)
        w.settingsRequested.connect(self.show_settings)
        w.passwordRequested.connect(self.ask_password)
        w.quitRequested.connect(self.quitRequested.emit)

        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._on_tick)
        self._tray_check = QTimer(self)
        self._tray_check.setInterval(TRAY_CHECK_MS)
        self._tray_check.timeout.connect(self._place)
        app = QGuiApplication.instance()
        if isinstance(app, QGuiApplication):
            app.styleHints().colorSchemeChanged.connect(self._restyle)

    # -- start / stop --------------------------------------------------------------------------
    @property
    def adapter(self) -> MonitorAdapter | None:
        """The running source of the profile shown in detail (its slot's)."""
        return self.slot.adapter

    @property
    def password_source(self) -> Source | None:
        """Where the running source's password came from."""
        return self.slot.password_source

    def start(self) -> None:
        self._place()
        self._tray_check.start()
        self._tick.start()
        self.tray.set_profiles(self.store.names(), self.profile_name)
        if not self._start_monitor():
            self.show_settings()
        self._sync_deployments()

    def _sync_deployments(self, forced: frozenset[str] = frozenset()) -> None:
        """Watch the other deployments Settings lists: only those whose connection
        changed (or in ``forced``) are restarted (Deployments.sync)."""
        # The profile shown in detail is known now (the default one when none was named).
        self.tray.set_profiles(self.store.names(), self.profile_name)
        others = [n for n in self.store.settings.watched
                  if n != self.profile_name or self.dsn is not None]
        self.deployments.sync(others, forced)

    def _deployments_changed(self) -> None:
        self._request_render()

    def _request_render(self) -> None:
        self._render_throttle.request(urgent=self._shown_key() != self._rendered)

    def _render(self) -> None:
        """Repaint the icon, the tooltip and the windows with the latest states (the
        throttle calls this: at once for a change of state, else at most every
        RENDER_MS)."""
        status, rows = self.status, self.deployments.rows()
        self._rendered = self._shown_key()
        self.tray.show_states(status, rows)
        self.window.show_states(self.profile_name, status, rows)
        if self.details_window is not None:
            self.details_window.set_status(status)
            self._list_deployments(self.details_window)
            for name, st in rows:
                self.details_window.set_deployment_status(name, st)

    def _shown_key(self) -> tuple[object, ...]:
        """What makes a repaint urgent when it changes: each deployment's state."""
        return (self.status.state, self.status.problem,
                *((n, st.state, st.problem) for n, st in self.deployments.rows()))

    def _list_deployments(self, window: DetailsWindow) -> None:
        """The details window's sections: the deployment shown in detail, then each
        watched one, fed by its own source."""
        deployments = self.deployments
        window.set_deployments(self.profile_name, [
            (name, partial(deployments.want_details, name), status)
            for name, status in deployments.rows()
        ])

    def _on_day(self, day: object) -> None:
        if self.details_window is not None and isinstance(day, DayView):
            self.details_window.set_day(day)

    def _on_deployment_day(self, item: object) -> None:
        if self.details_window is not None and isinstance(item, tuple):
            name, day = item
            if isinstance(day, DayView):
                self.details_window.set_deployment_day(name, day)

    def _on_deployment_details(self, item: object) -> None:
        if self.details_window is not None and isinstance(item, tuple):
            name, details = item
            self.details_window.set_deployment_details(name, details)

    def _show_deployment(self, target: object) -> None:
        """"Show details" on a deployment's notice: the window, on that deployment's
        section (and job, when the notice is about one)."""
        name, job_id = target if isinstance(target, tuple) else (None, None)
        log.info("showing deployment %s in the details window (a notification's action)",
                 name)
        self.show_details()
        if self.details_window is not None:
            self.details_window.focus_deployment(
                name if isinstance(name, str) else None,
                job_id if isinstance(job_id, int) else None,
            )

    def _named(self, decisions: list[Decision]) -> list[Decision]:
        """With several deployments watched, this one's notices name it too."""
        if not self.deployments.names or not decisions:
            return decisions
        return [named(d, self.profile_name or "this database") for d in decisions]

    def _spec(self) -> SourceSpec | None:
        """What the profile shown in detail (or ``--dsn``) is watched with; None when no
        profile is set up yet (``_profile_problem`` says why)."""
        options = monitor_options(self.store.settings, self.timing)
        if self.dsn:
            return SourceSpec(self.dsn, None, self.source_override or "auto", options)
        if self.profile_name is None and not self.store.configured:
            self._profile_problem = NO_PROFILE
            return None
        try:
            profile = self.store.get(self.profile_name)
        except ProfileError as ex:
            log.warning("cannot watch: %s", ex)
            self._profile_problem = f"{ex}. Choose or add a profile in Settings."
            return None
        self.profile_name = profile.name
        return spec_for_profile(profile, options, self._session_passwords.get(profile.name),
                                self.source_override)

    def _start_monitor(self, force: bool = False) -> bool:
        """Watch the current profile; False when there is none. Its slot restarts the
        source only when what it is opened with changed (or ``force``): a Save of a
        notification setting leaves the connection alone. Without a profile the icon
        says so (an error, not whatever it showed before)."""
        spec = self._spec()
        if spec is None:
            if self.slot.spec is not None or self.slot.adapter is not None:
                self.slot.restart(None)
            self._show(
                Status(State.ERROR, problem=Problem.CONFIG, message=self._profile_problem),
                notify=False,
            )
            return False
        if force or spec != self.slot.spec:
            old = self.slot.spec
            if old is None or old.conninfo != spec.conninfo:
                self._forget_me()  # another login or database: its own user, learnt anew
            # The old state goes at once: it describes a connection being replaced.
            self._show(Status(State.CONNECTING), notify=False)
            self.slot.restart(spec)
        return True

    def _forget_me(self) -> None:
        if self.me is not None:
            self.me = None
            if self.details_window is not None:
                self.details_window.set_me(None)

    async def _open(self, spec: SourceSpec) -> Opened:
        """Open the source of ``spec``: every slot's opener, the profile shown in detail
        and each watched deployment alike (tests replace it)."""
        return await open_spec(spec)

    def _adapter_changed(self, adapter: object) -> None:
        """A new source (or none, while the slot replaces it): the details window moves
        its subscription along and drops the old source's details."""
        if self.details_window is not None:
            self.details_window.set_adapter(
                adapter if isinstance(adapter, MonitorAdapter) else None
            )

    async def shutdown(self) -> None:
        """Quit: stop the monitor (its connection closes), the timers and the notifier."""
        self._tick.stop()
        self._tray_check.stop()
        self._render_throttle.stop()
        await self.deployments.stop()
        await self.slot.close()
        await self.notifier.close()
        if self.tray_host is not None:
            self.tray_host.close()
        self.tray.hide()
        self.window.hide()
        if self.settings_dialog is not None:
            await self.settings_dialog.aclose()  # its tasks end before the loop does
        if self.password_dialog is not None:
            self.password_dialog.close()

    # -- tray or window ------------------------------------------------------------------------
    def _place(self) -> None:
        """Check for a tray (every TRAY_CHECK_MS); ``_placed`` acts on the answer."""
        if self.tray_host is not None:
            self.tray_host.check()
        elif self.tray_available is not None:
            self._placed(self.tray_available())

    def _placed(self, available: object) -> None:
        if available and not self.in_tray:
            self.in_tray = True
            self.window.hide()
            self.tray.show()
            log.info("showing the tray icon")
        elif not available and (self.in_tray or not self._window_shown_once):
            # Shown when the app starts without a tray or the tray goes away, not every
            # 5 s: a person who closes the window asked to quit (StatusWindow.closeEvent).
            if self.in_tray:
                log.warning("the system tray went away; showing a window instead")
            self.in_tray = False
            self._window_shown_once = True
            self.tray.hide()
            self.window.show()

    # -- status flow ---------------------------------------------------------------------------
    def _on_status(self, status: Status) -> None:
        status = self._password_wanted(status)
        self._show(status)

    # -- a password asked for (never stored) ----------------------------------------------------
    def _password_wanted(self, status: Status) -> Status:
        """Offer the password dialog when the shown profile needs a password no keychain
        holds: the menu item while it is needed, the dialog itself for a profile that asks
        each session (every time, a wrong password too, until cancelled) and once for a
        keychain profile. A password typed this session that the server now refuses is
        forgotten and asked again."""
        spec, name = self.slot.spec, self.profile_name
        if spec is None or self.dsn or name is None:
            return status
        if (status.problem is Problem.AUTH_FAILED and name in self._session_passwords
                and spec.typed_password is not None):
            del self._session_passwords[name]  # refused now: ask again, keep nothing
            self.slot.restart(None)
            status = Status(State.ERROR, problem=Problem.NO_PASSWORD,
                            message=wrong_password_text(self._user()))
            wrong = True
        elif status.problem is Problem.NO_PASSWORD:
            needed = self.slot.password_needed
            wrong = needed is not None and needed.wrong
        else:
            self._offer_password(False)
            return status
        self._offer_password(True)
        if name in self._password_cancelled:
            return status
        if spec.ask_password or wrong or name not in self._password_offered:
            self._password_offered.add(name)
            self._open_password_dialog(status.message if wrong else "")
        return status

    def _offer_password(self, needed: bool) -> None:
        self.tray.set_password_needed(needed)
        self.window.password_button.setVisible(needed)

    def _user(self) -> str | None:
        try:
            return self.store.get(self.profile_name).params().get("user")
        except ProfileError:
            return None

    def ask_password(self) -> None:
        """The menu's "Enter password…"."""
        if self.profile_name is not None:
            self._password_cancelled.discard(self.profile_name)
            self._open_password_dialog("")

    def _open_password_dialog(self, error: str) -> None:
        name = self.profile_name
        if name is None:
            return
        if self.password_dialog is None:
            self.password_dialog = PasswordDialog()
            self.password_dialog.entered.connect(self._password_entered)
            self.password_dialog.cancelled.connect(self._password_dialog_cancelled)
        try:
            params = self.store.get(name).params()
        except ProfileError:
            params = {}
        who = (f"{params.get('user') or 'your login'} at "
               f"{params.get('host') or 'the local socket'}")
        self.password_dialog.ask(name, who, error)

    def _password_entered(self, password: str) -> None:
        dialog = self.password_dialog
        if dialog is None or dialog.profile != self.profile_name:
            return  # another profile is shown now
        self._session_passwords[dialog.profile] = password  # memory only, this session
        self._password_cancelled.discard(dialog.profile)
        self._start_monitor(force=True)
        self._sync_deployments()

    def _password_dialog_cancelled(self) -> None:
        dialog = self.password_dialog
        if dialog is not None and dialog.profile:
            self._password_cancelled.add(dialog.profile)

    def _show(self, status: Status, notify: bool = True) -> None:
        """The one way a Status reaches the icon, the window and the details window. The
        policy sees every Status; the repaint is throttled (``_render``)."""
        self.status = status
        if status.progress is not None and status.progress.me is not None:
            if status.progress.me != self.me and self.details_window is not None:
                self.details_window.set_me(status.progress.me)
            self.me = status.progress.me
        if notify:
            self.notifier.handle(self._named(self.policy.on_status(status, self.clock())))
        self._request_render()

    def _on_details(self, details: Details) -> None:
        # The icon's ring and the tooltip take their numbers from Status.progress (read
        # while processing, window or not): details feed only the details window.
        if self.details_window is not None:
            self.details_window.set_details(details)

    def _on_import_end(self, job: EndedJob) -> None:
        self.notifier.handle(self._named(self.policy.on_import_end(job, self.clock())))

    def show_job(self, job_id: object) -> None:
        """"Show details" on a notice about one import job: the window, on that job."""
        log.info("showing import job %s in the details window (a notification's action)",
                 job_id)
        self.show_details()
        if self.details_window is not None and isinstance(job_id, int):
            self.details_window.focus_job(job_id)

    def _on_summary(self, summary: WorkSummary) -> None:
        self.notifier.handle(self._named(self.policy.on_summary(summary, self.clock())))

    def _on_tick(self) -> None:
        now = self.clock()
        last, self._last_tick = self._last_tick, now
        if last is not None and now - last > WAKE_GAP:
            # The machine slept (timers do not fire meanwhile): the connection is probably
            # dead; do not wait for the health check to find out.
            log.info("woke up after %s; reconnecting now", now - last)
            self.reconnect_now()
        decisions = self._named(self.policy.tick(now))
        if decisions:
            self.notifier.handle(decisions)
        self.deployments.tick(now)
        if self.tray.paused_until is not None and self.policy.paused_until is None:
            self.tray.set_paused(None)
        if not self.in_tray and any(texts.needs_ticking(st) for st in [
            self.window.status, *(st for _, st in self.window.others)
        ]):
            self.window.refresh()

    # -- user intents --------------------------------------------------------------------------
    def _restyle(self) -> None:
        """The tray icon's style from Settings and, for "auto", the desktop's colour
        scheme (re-asked when it changes). Windows keep colour: they have their own
        background, not the panel's."""
        style = icon_style_for(self.store.settings)
        if style != self.style:
            log.info("tray icon style: %s", style.value)
        self.style = style
        self.tray.set_style(style)

    def show_details(self) -> None:
        if self.details_window is None:
            self._render_throttle.flush()
            self.details_window = DetailsWindow(self.adapter, self.icons, clock=self.clock)
            self.details_window.reconnectRequested.connect(self.reconnect_now)
            self.details_window.deploymentReconnectRequested.connect(self.deployments.reconnect)
            self.details_window.set_me(self.me)
            self.details_window.set_status(self.status)
            self._list_deployments(self.details_window)
        w = self.details_window
        w.show()
        w.raise_()
        w.activateWindow()

    def show_settings(self) -> None:
        if self.settings_dialog is None:
            self.settings_dialog = SettingsDialog(self.store)
            self.settings_dialog.saved.connect(self._settings_saved)
        self.settings_dialog.load()
        self.settings_dialog.show()
        self.settings_dialog.raise_()

    def _settings_saved(self, change: object = None) -> None:
        """Apply a Save (or Remove) in place; restart only the sources whose connection
        changed: the profile's connection settings, its source setting, a new password
        (docs/app.md, "Which changes restart what")."""
        forced: frozenset[str] = frozenset()
        if isinstance(change, SavedChange):
            self._follow(change)
            if change.profile is not None and (change.session_password
                                               or change.password_stored):
                forced = frozenset({change.profile})  # a new password: reconnect with it
        s = self.store.settings
        self.policy.options = NotifyOptions.from_settings(s)
        self.deployments.set_notify_options(NotifyOptions.from_settings(s))
        self._restyle()
        self.tray.set_profiles(self.store.names(), self.profile_name)
        self._start_monitor(force=self.dsn is None and self.profile_name in forced)
        self._sync_deployments(forced)
        self._request_render()

    def _follow(self, change: SavedChange) -> None:
        """Keep watching the same profile under its new name; a removed one gives way to
        the default profile (``_conninfo`` picks it; none left -> the error state)."""
        passwords = self._session_passwords
        for old, new in change.renamed.items():
            if old in passwords:
                passwords[new] = passwords.pop(old)
            self.deployments.rename(old, new)  # its source keeps running
            if self.profile_name == old:
                log.info("following the renamed profile %r -> %r", old, new)
                self.profile_name = new
        for name in change.removed:
            passwords.pop(name, None)
            if self.profile_name == name:
                log.info("the watched profile %r was removed", name)
                self.profile_name = None
        if change.profile is not None:
            if change.session_password:
                passwords[change.profile] = change.session_password
            elif change.password_stored:
                passwords.pop(change.profile, None)  # the keychain has the newer one
        # The watched deployments follow renames and removals too.
        watched = self.store.settings.watched
        kept = tuple(dict.fromkeys(
            change.renamed.get(n, n) for n in watched if n not in change.removed
        ))
        if kept != watched:
            self.store.save_settings(replace(self.store.settings, watched=kept))
            self._tick_watched(kept)
        if self.dsn is None and self.profile_name is None:
            # Removed, or the first profile: watch the default one (or none: error).
            self.profile_name = self.store.default_name

    def _tick_watched(self, watched: tuple[str, ...]) -> None:
        """The open Settings dialog's "Also watch" ticks follow a rename or removal: it
        showed the list before the controller moved the names, and its next Save would
        otherwise unwatch a renamed profile."""
        dialog = self.settings_dialog
        if dialog is None:
            return
        for i in range(dialog.watched.count()):
            item = dialog.watched.item(i)
            item.setCheckState(
                Qt.CheckState.Checked if item.text() in watched else Qt.CheckState.Unchecked
            )

    def _restart(self) -> None:
        """Start the source over with the current profile and settings."""
        if self._start_monitor(force=True):
            self._sync_deployments()

    def switch_profile(self, name: str) -> None:
        if name == self.profile_name:
            return
        self.profile_name = name
        self.dsn = None
        self.tray.set_profiles(self.store.names(), name)
        self._start_monitor()
        self._sync_deployments()

    def reconnect_now(self) -> None:
        if self.status.problem is Problem.INTERNAL:
            self._start_monitor(force=True)  # a bug stopped the monitor or its start
        else:
            self.slot.reconnect_now()
        self.deployments.reconnect_now()

    def _pause(self, pause: object) -> None:
        if pause:
            until = self.clock() + timedelta(hours=1)
            self.policy.pause(until)
            self.deployments.pause(until)
            self.tray.set_paused(until)
        else:
            self.policy.resume()
            self.deployments.pause(None)
            self.tray.set_paused(None)

    def show_about(self) -> None:
        QMessageBox.about(
            None,
            "About traystatus",
            f"traystatus {__version__}\n\nTells StatBus analysts whether the register is "
            "stable or processing data."
            + (f"\n\n{line}" if (line := texts.source_line(self.status)) else ""),
        )

    def _on_action(self, action: object) -> None:
        if action == Action.SHOW_DETAILS:
            self.show_details()
        elif action == Action.RECONNECT:
            self.reconnect_now()

    def _elsewhere(self, notice: Notice) -> str:
        """Where a notice goes when no notification server shows it: the tray's own
        balloon, or with no tray (no balloon either) the status window's latest notices,
        and the window asks for attention (QApplication.alert: the taskbar entry flashes,
        focus is not taken). Returns the route: "balloon" or "window"."""
        if self.in_tray and QSystemTrayIcon.supportsMessages():
            icon = (
                QSystemTrayIcon.MessageIcon.Critical
                if notice.urgency == Urgency.CRITICAL
                else QSystemTrayIcon.MessageIcon.Information
            )
            self.tray.tray.showMessage(notice.title, notice.body, icon, 10_000)
            return "balloon"
        # Also before the first tray check placed the app: the window shows it then.
        self.window.add_notice(notice)
        if self.window.isVisible():
            self.window.raise_()
            QApplication.alert(self.window)
        return "window"

