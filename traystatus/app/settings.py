"""The Settings dialog: connection profiles, password in the keychain, notifications,
start at login, icon style.

Profiles and settings are ``ProfileStore`` (traystatus.core.config.profiles, as for the CLI:
one TOML file, no secrets); passwords go through traystatus.core.config.credentials to the OS
keychain. When there is no secure keychain the dialog says so in red and keeps the
password out of every file (the user can still rely on ~/.pgpass) - never a silent drop.

Keychain calls never run on the event loop (a Secret Service unlock prompt or a hanging
D-Bus call would freeze the tray): they go to credentials' keychain thread with a deadline,
the dialog says "Saving…" meanwhile and the result when it comes; ``saved`` is emitted once
everything, keychain included, is done. Names are never reused by accident: adding or
renaming onto a profile's name is refused (ProfileStore.add/rename), and a profile another
program changed since it was shown is not overwritten.

"Test connection" connects the way the monitor does and reports exactly what is wrong,
using the core's error classification (probe.diagnose: by SQLSTATE / error class, never
by message text): unreachable, TLS, wrong password, SQL missing or outdated, no privilege.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from psycopg.conninfo import make_conninfo
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from traystatus.app import palette
from traystatus.app.palette import Tone
from traystatus.app.tasks import TaskSet
from traystatus.core.config import credentials
from traystatus.core.config.password import resolve_async as resolve_password_async
from traystatus.core.config.profiles import ConnectionProfile, ProfileError, ProfileStore, Settings
from traystatus.core.model.checks import CheckResult, Level
from traystatus.core.model.state import Problem
from traystatus.core.pg import connect as pgconnect
from traystatus.core.pg.diagnosis import Phase
from traystatus.core.pg.probe import diagnose
from traystatus.core.pg.sqlfiles import installed_version, version_problem
from traystatus.core.watch.builtin import check_builtin
from traystatus.desktop import autostart

log = logging.getLogger(__name__)

T = TypeVar("T")

SSLMODES = ("", "disable", "allow", "prefer", "require", "verify-ca", "verify-full")
ICON_STYLE_LABELS = {
    "auto": "Automatic (what this desktop's panel expects)",
    "color": "Colour",
    "mono-light": "Monochrome, light (for dark panels)",
    "mono-dark": "Monochrome, dark (for light panels)",
}


@dataclass(frozen=True)
class SavedChange:
    """What one Save or Remove changed, for whoever follows a profile (the controller).

    ``profile``: the profile saved (None for a removal). ``renamed``: old name -> new
    name. ``removed``: names that no longer exist. ``session_password``: a password typed
    for ``profile`` that no keychain took: use it for this session only, never store it.
    ``password_stored``: a password for ``profile`` went to the keychain (it replaces one
    typed earlier in this session).
    """

    profile: str | None = None
    renamed: dict[str, str] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    session_password: str | None = field(default=None, repr=False)
    password_stored: bool = False


TEST = "connection"  # the name of Test connection's CheckResult


def _failed(problem: Problem | None, message: str) -> CheckResult:
    return CheckResult(TEST, Level.FAIL, message, problem=problem)


async def check_connection(
    conninfo: str, password: str | None, seconds: float = 10, source: str = "auto"
) -> CheckResult:
    """Connect, check the installed SQL version and call is_system_stable() once. Without
    current SQL (and unless ``source`` is "installed"), check that this login may watch
    StatBus directly instead, as the monitor then will."""
    extra: dict[str, str | int] = {"connect_timeout": max(2, int(seconds))}
    if password:
        extra["password"] = password
    try:
        full = make_conninfo(conninfo, **extra)
        conn = await asyncio.wait_for(
            pgconnect.AsyncConnection.connect(full, autocommit=True), seconds
        )
    except Exception as ex:
        d = await diagnose(ex, conninfo, Phase.CONNECT)
        return _failed(d.problem, d.full_message)
    try:
        async with conn:
            wrong = version_problem(await installed_version(conn), "this database")
            if wrong is not None and source != "installed":
                found = await check_builtin(conn, "this database")
                if found.problem is not None:
                    return _failed(found.problem.problem,
                                   f"Connected, but: {found.problem.message}")
                state = "stable" if found.stable else "processing data"
                sql = ("traystatus's SQL is not installed" if wrong.problem is Problem.SQL_MISSING
                       else wrong.fact)
                return CheckResult(
                    TEST, Level.OK,
                    f"Connected. {sql}: watching StatBus directly (an administrator can install "
                    f"it for fewer notifications). The system is {state}.",
                )
            if wrong is not None:
                return _failed(wrong.problem, f"Connected, but: {wrong.message}")
            cur = await conn.execute("SELECT public.is_system_stable()")
            row = await cur.fetchone()
    except Exception as ex:
        d = await diagnose(ex, conninfo, Phase.QUERY)
        return _failed(d.problem, d.full_message)
    stable = bool(row and row[0])
    return CheckResult(
        TEST, Level.OK, f"Connected. The system is {'stable' if stable else 'processing data'}."
    )


RELAY_PREFIXES = ("ws://", "wss://", "http://", "https://")


async def check_server(profile: ConnectionProfile, token: str | None) -> CheckResult:
    """Test connection for a profile that names a traystatus server: reachable, token
    accepted, the server's database connected (traystatus.core.relay.client.server_checks)."""
    from traystatus.core.relay.client import server_checks

    assert profile.relay is not None
    if not token:
        token = await credentials.get_password_async(profile.name)
    results = await server_checks(profile.relay, token)
    for r in results:
        if not r.ok:
            return _failed(r.problem, f"{r.name}: {r.detail}. {r.fix}".strip())
    state = results[-1].detail if results else ""
    return CheckResult(TEST, Level.OK, f"Connected to the traystatus server; its database is "
                       f"{state}.")


class SettingsDialog(QDialog):
    """Edits a ProfileStore; ``saved(SavedChange)`` is emitted after every change stored."""

    saved = Signal(object)

    def __init__(self, store: ProfileStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.setWindowTitle("traystatus settings")
        self.setAccessibleName("traystatus settings")
        self._current: str | None = None
        self._shown: ConnectionProfile | None = None  # the stored profile the form shows
        self._check_task: asyncio.Future[CheckResult] | None = None
        # Checks only read (the keychain's kind, a connection test): nobody sees their
        # answer once the dialog is closed, so closing cancels them. Saves and deletes
        # change the keychain: they run to their end (awaited by ``aclose`` at Quit).
        self._checks: set[asyncio.Future[Any]] = set()
        # The keychain half of the last Save (None: nothing pending); its result is True
        # when everything, the password included, was saved.
        self.saving: asyncio.Future[bool] | None = None
        self.tasks = TaskSet(self._task_failed)
        self._sized = False  # given its first size (showEvent)

        # The sections scroll when the screen is shorter than they are (they need about
        # 950 px, a laptop has 768); the message and the buttons stay in view.
        window = self._window = QVBoxLayout(self)
        self.body = QWidget()
        outer = QVBoxLayout(self.body)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroller = QScrollArea()
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        self.scroller.setWidgetResizable(True)
        self.scroller.setWidget(self.body)
        window.addWidget(self.scroller, 1)
        # Down, not across: a sentence cut at the right edge would be clipped all the same.
        self.scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        # -- profiles
        box = QGroupBox("Connection profiles")
        row = QHBoxLayout(box)
        left = QVBoxLayout()
        self.profile_list = QListWidget()
        self.profile_list.setMaximumWidth(170)
        self.profile_list.currentTextChanged.connect(self._select)
        left.addWidget(self.profile_list)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(self._add)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        left.addLayout(buttons)
        row.addLayout(left)
        form = QFormLayout()
        self.name = QLineEdit()
        self.dsn = QLineEdit()
        self.dsn.setPlaceholderText(
            "optional: host=... port=..., postgresql://..., or a traystatus server wss://..."
        )
        self.host = QLineEdit()
        self.host.setPlaceholderText("statbus.example.org")
        self.port = QLineEdit()
        self.port.setPlaceholderText("5432")
        self.dbname = QLineEdit()
        self.user = QLineEdit()
        self.user.setPlaceholderText("your.name@example.org")
        self.sslmode = QComboBox()
        for mode in SSLMODES:
            self.sslmode.addItem(mode or "(libpq default)", mode)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("leave empty to keep the stored one")
        form.addRow("Name", self.name)
        form.addRow("DSN", self.dsn)
        form.addRow("Host", self.host)
        form.addRow("Port", self.port)
        form.addRow("Database", self.dbname)
        form.addRow("User", self.user)
        form.addRow("TLS mode", self.sslmode)
        form.addRow("Password", self.password)
        self.ask_password = QCheckBox(
            "Ask for the password when the app starts; keep it in memory only"
        )
        self.ask_password.setToolTip(
            "Never stored (no keychain, no file): typed once per session in a small dialog. "
            "For a StatBus login, the password is your StatBus web password."
        )
        self.ask_password.toggled.connect(self._ask_toggled)
        form.addRow("", self.ask_password)
        self.keychain = _wrapping_label()
        form.addRow("", self.keychain)
        test_row = QHBoxLayout()
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self._start_check)
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        form.addRow("", test_row)
        self.check_result = _wrapping_label()
        form.addRow("", self.check_result)
        row.addLayout(form, 1)
        outer.addWidget(box)

        # -- notifications
        nbox = QGroupBox("Notifications")
        nform = QFormLayout(nbox)
        self.notify_stable = QCheckBox("When processing has finished (with a summary)")
        self.notify_import_failed = QCheckBox("When an import job fails or ends with errors")
        self.notify_disconnected = QCheckBox("When the connection is lost")
        self.notify_error = QCheckBox("When the database cannot be watched (password, SQL, ...)")
        self.grace = QDoubleSpinBox()
        self.grace.setRange(0, 3600)
        self.grace.setSuffix(" s")
        self.grace.setDecimals(0)
        self.min_processing = QDoubleSpinBox()
        self.min_processing.setRange(0, 3600)
        self.min_processing.setSuffix(" s")
        self.min_processing.setDecimals(0)
        self.min_processing.setToolTip(
            "Shorter spells of processing are not announced: a quick flip is not news."
        )
        for w in (self.notify_stable, self.notify_import_failed, self.notify_disconnected,
                  self.notify_error):
            nform.addRow(w)
        self.import_notices = QComboBox()
        self.import_notices.addItem("My imports only", "mine")
        self.import_notices.addItem("Every import", "all")
        self.import_notices.setToolTip(
            "Which import jobs get a notification of their own when they end. "
            "\"Processing finished\" still sums up all of them."
        )
        nform.addRow("When an import ends, notify for", self.import_notices)
        nform.addRow("Announce finished processing only after", self.min_processing)
        nform.addRow("Announce a lost connection after", self.grace)
        self.review_remind = QDoubleSpinBox()
        self.review_remind.setRange(0, 7 * 24 * 60)
        self.review_remind.setSuffix(" min")
        self.review_remind.setDecimals(0)
        self.review_remind.setSpecialValueText("never")
        self.review_remind.setToolTip(
            "While an import job waits for review, StatBus holds every other import. "
            "Remind this often, if this login may approve it."
        )
        nform.addRow("Remind of a waiting review every", self.review_remind)
        outer.addWidget(nbox)

        # -- appearance and start
        abox = QGroupBox("Tray icon and start")
        aform = QFormLayout(abox)
        self.icon_style = QComboBox()
        for value, label in ICON_STYLE_LABELS.items():
            self.icon_style.addItem(label, value)
        aform.addRow("Icon style", self.icon_style)
        self.autostart = QCheckBox("Start traystatus when I log in")
        aform.addRow(self.autostart)
        outer.addWidget(abox)

        # -- several deployments: which profiles the one icon also watches
        wbox = QGroupBox("Also watch these deployments (one icon shows the worst state)")
        wlay = QVBoxLayout(wbox)
        self.watched = QListWidget()
        self.watched.setAccessibleName("Watched deployments")
        self.watched.setMaximumHeight(90)
        wlay.addWidget(self.watched)
        outer.addWidget(wbox)

        self.message = _wrapping_label()
        window.addWidget(self.message)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        window.addWidget(self.buttons)
        self.scroller.setMinimumWidth(self.body.minimumSizeHint().width()
                                    + self.scroller.verticalScrollBar().sizeHint().width())
        self.load()

    def full_size(self, width: int | None = None) -> QSize:
        """The size that shows every section without scrolling (``width``: at that width;
        wrapped sentences are taller in a narrower window)."""
        hint = super().sizeHint()
        body = self.body.sizeHint()
        margins = self._window.contentsMargins()
        bar = self.scroller.verticalScrollBar().sizeHint().width()
        around = margins.left() + margins.right() + bar
        if width is None:
            width = max(hint.width(), body.width() + around)
        body_height = max(body.height(), self.body.heightForWidth(width - around))
        height = hint.height() - self.scroller.sizeHint().height() + body_height
        return QSize(width, height)

    def sizeHint(self) -> QSize:
        """:meth:`full_size` as far as the screen has room: a scroll area alone asks for
        a small window and would hide most of the sections."""
        size = self.full_size()
        screen = self.screen()
        if screen is not None:
            room = screen.availableGeometry()
            size = size.boundedTo(QSize(room.width(), room.height() - 40))  # the title bar
        return size

    def showEvent(self, event: QShowEvent) -> None:
        """The first time: the size above (Qt's own first size for a window that can
        scroll is two thirds of the screen, which hides half the sections)."""
        if not self._sized:
            self._sized = True
            if not self.testAttribute(Qt.WidgetAttribute.WA_Resized):  # a size chosen wins
                self.resize(self.sizeHint())
                QTimer.singleShot(0, self.grow_to_sections)
        super().showEvent(event)

    def grow_to_sections(self) -> None:
        """Taller by what the sections still scroll, as far as the screen has room (the
        hint above is estimated; wrapped sentences settle their height once laid out)."""
        short = self.body.height() - self.scroller.viewport().height()
        screen = self.screen()
        if short <= 0 or screen is None:
            return
        room = screen.availableGeometry().height() - 40  # the title bar
        if self.height() < room:
            self.resize(self.width(), min(self.height() + short, room))

    # -- loading ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Show what the file holds now (re-read: the CLI may have changed it), and ask
        the keychain (off the loop) whether passwords can be kept."""
        try:
            self.store.load()
        except ProfileError as ex:
            self._say(f"The settings file cannot be read: {ex}", error=True)
        self._show_store()
        self.keychain.setText("Checking the keychain…")
        self.keychain.setStyleSheet("")
        check = self._off_loop(self._check_keychain(), "checking the keychain")
        if isinstance(check, asyncio.Future):
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)

    def _show_store(self, select: str | None = None) -> None:
        """Fill the lists and settings from the store; select ``select`` (else the
        default profile, else the first)."""
        self.profile_list.clear()
        for name in self.store.names():
            self.profile_list.addItem(name)
        s = self.store.settings
        self.notify_stable.setChecked(s.notify_stable)
        self.notify_import_failed.setChecked(s.notify_import_failed)
        self.notify_disconnected.setChecked(s.notify_disconnected)
        self.notify_error.setChecked(s.notify_error)
        self.grace.setValue(s.disconnect_grace_s)
        self.min_processing.setValue(s.notify_min_processing_s)
        self.review_remind.setValue(s.review_remind_s / 60)
        i = self.icon_style.findData(s.icon_style)
        self.icon_style.setCurrentIndex(max(0, i))
        self.import_notices.setCurrentIndex(max(0, self.import_notices.findData(s.import_notices)))
        self.watched.clear()
        for name in self.store.names():
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if name in s.watched else Qt.CheckState.Unchecked
            )
            self.watched.addItem(item)
        try:
            self.autostart.setChecked(autostart.is_enabled())
        except OSError:
            self.autostart.setEnabled(False)
        wanted = select if select is not None else self.store.default_name
        items = self.profile_list.findItems(wanted, _exact()) if wanted is not None else []
        if not items and self.profile_list.count():
            items = [self.profile_list.item(0)]  # the default is broken: show the first
        if items:
            self.profile_list.setCurrentItem(items[0])
        else:
            self._current = self._shown = None
            self._show_profile(ConnectionProfile(name="default"))

    async def _check_keychain(self) -> None:
        try:
            info = await credentials.off_loop(credentials.keychain_info)
        except credentials.KeychainTimeout as ex:
            self.keychain.setText(f"The keychain does not answer: {ex.reason}.")
            self.keychain.setStyleSheet(self._tone(Tone.PROBLEM, bold=True))
            return
        if info.secure:
            self.keychain.setText(f"Passwords are kept in the keychain ({info.backend_name}).")
            self.keychain.setStyleSheet(self._tone(Tone.STABLE))
        else:
            self.keychain.setText(
                f"No secure keychain: {info.reason}. A password typed here is used until "
                "traystatus quits and is NOT saved; ~/.pgpass keeps one for good."
            )
            self.keychain.setToolTip(f"To fix: {credentials.ADVICE}.")
            self.keychain.setStyleSheet(self._tone(Tone.PROBLEM, bold=True))

    def _off_loop(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Future[T] | T:
        """Run ``coro`` (keychain work, in credentials' keychain thread) as a task of this
        dialog on the running loop: the window keeps painting meanwhile. Without a running
        loop (a script, a test without one) nothing can freeze: run it to its end here."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            try:
                return loop.run_until_complete(coro)
            finally:
                loop.close()
        return self.tasks.start(coro, what)

    def _select(self, name: str) -> None:
        if not name or name not in self.store:
            return
        self._current = name
        self._shown = self.store.get(name)
        self._show_profile(self._shown)

    def _show_profile(self, p: ConnectionProfile) -> None:
        self.name.setText(p.name)
        self.dsn.setText(p.relay or p.dsn or "")  # a traystatus server's URL shows here too
        self.host.setText(p.host or "")
        self.port.setText(p.port or "")
        self.dbname.setText(p.dbname or "")
        self.user.setText(p.user or "")
        self.sslmode.setCurrentIndex(max(0, self.sslmode.findData(p.sslmode or "")))
        self.ask_password.setChecked(p.ask_password)
        self._ask_toggled(p.ask_password)
        self.password.clear()
        self.check_result.clear()

    def _ask_toggled(self, checked: bool) -> None:
        self.password.setPlaceholderText(
            "asked when the app starts (optional here: used until it quits, not stored)"
            if checked else "leave empty to keep the stored one"
        )

    def _add(self) -> None:
        n = 1
        while f"profile {n}" in self.store:
            n += 1
        self._current = self._shown = None
        self.profile_list.clearSelection()
        self._show_profile(ConnectionProfile(name=f"profile {n}"))
        self.name.setFocus()

    def _remove(self) -> None:
        name = self._current
        if name is None or name not in self.store:
            return
        try:
            self.store.remove(name)
        except ProfileError as ex:
            self._say(f"Not removed: {ex}", error=True)
            return
        self._current = self._shown = None
        self._say(f"Removed {name!r}.")
        self._show_store()
        self.saved.emit(SavedChange(removed=(name,)))
        self._off_loop(self._forget_password(name), "deleting a password")

    async def _drop_stale_entries(self, name: str, old: str | None) -> None:
        """A profile that asks each session keeps nothing in the keychain (never raises:
        an entry that cannot be deleted is never read for it either)."""
        for entry in dict.fromkeys(n for n in (name, old) if n):
            try:
                await credentials.off_loop(credentials.delete_password, entry)
            except credentials.NoSecureKeychain as ex:  # no answer in time
                log.warning("could not delete the keychain entry of %r: %s", entry, ex)

    async def _forget_password(self, name: str) -> None:
        try:
            await credentials.off_loop(credentials.delete_password_or_raise, name)
        except credentials.NoSecureKeychain as ex:
            self._say(f"Removed {name!r}, but its keychain entry could not be deleted: {ex}. "
                      "Delete it in your keychain app.", error=True)

    # -- the form as a profile -------------------------------------------------------------------
    def profile(self) -> ConnectionProfile:
        """The form's profile; raises ProfileError with what to change."""
        def text(w: QLineEdit) -> str | None:
            return w.text().strip() or None

        # Start from the stored profile so what the form does not show (sslrootcert,
        # sslnegotiation, sslsni, extra libpq options) survives an edit.
        base = (
            self.store.get(self._current)
            if self._current is not None and self._current in self.store
            else ConnectionProfile(name="default")
        )
        dsn = text(self.dsn)
        relay = dsn if dsn and dsn.lower().startswith(RELAY_PREFIXES) else None
        return replace(
            base,
            name=self.name.text().strip(),
            relay=relay,
            dsn=None if relay else dsn,
            host=text(self.host),
            port=text(self.port),
            dbname=text(self.dbname),
            user=text(self.user),
            sslmode=self.sslmode.currentData() or None,
            ask_password=self.ask_password.isChecked() and not relay,
        )

    def settings(self) -> Settings:
        return replace(
            self.store.settings,
            notify_stable=self.notify_stable.isChecked(),
            notify_import_failed=self.notify_import_failed.isChecked(),
            notify_disconnected=self.notify_disconnected.isChecked(),
            notify_error=self.notify_error.isChecked(),
            disconnect_grace_s=float(self.grace.value()),
            notify_min_processing_s=float(self.min_processing.value()),
            review_remind_s=float(self.review_remind.value()) * 60,
            icon_style=str(self.icon_style.currentData()),
            import_notices=str(self.import_notices.currentData()),
            watched=tuple(
                self.watched.item(i).text()
                for i in range(self.watched.count())
                if self.watched.item(i).checkState() == Qt.CheckState.Checked
            ),
        )

    # -- saving ----------------------------------------------------------------------------------
    def save(self) -> bool:
        """Save button: write the profile and the settings (a quick, locked file change),
        then hand the keychain part (store, move or keep the password) to the keychain
        thread; ``saved`` is emitted when it is done, :attr:`saving` is its future.

        False (and a message) when nothing could be saved: a name another profile has, a
        profile another program changed meanwhile, a bad value. The password goes last:
        without a secure keychain it cannot be stored, and that must not cost the other
        changes in the dialog; it is then handed on in ``saved`` for this session only."""
        if self.saving is not None and not self.saving.done():
            self._say("Still saving the last change…")
            return False
        self.saving = None
        old = self._current
        asked_before = self._shown is not None and self._shown.ask_password
        renamed: dict[str, str] = {}
        try:
            profile, secrets = self.profile().without_secrets()
            self.store.load()  # what the file holds now (the CLI may have added this name)
            if old != profile.name and self.store.taken(profile.name):
                raise ProfileError(
                    f"a profile named {profile.name!r} already exists; choose another name "
                    f"(to replace {profile.name!r}, select it and edit it, or remove it first)"
                )
            if old is None:
                self.store.add(profile)  # refuses a name that is taken
            elif old == profile.name:
                self.store.replace(profile, expected=self._shown)
            else:
                self.store.rename(old, profile, expected=self._shown)  # refuses a taken one
                renamed[old] = profile.name
            self._current = profile.name
            self._shown = profile
            settings = self.settings()
            if renamed:  # the watched list was shown before the rename
                settings = replace(settings, watched=tuple(dict.fromkeys(
                    renamed.get(n, n) for n in settings.watched)))
            self.store.save_settings(settings)
        except (ProfileError, OSError) as ex:
            self._say(f"Not saved: {ex}", error=True)
            return False
        typed = self.password.text() or secrets.get("password")
        self.password.clear()
        problems: list[str] = []
        try:
            if self.autostart.isEnabled() and autostart.is_enabled() != self.autostart.isChecked():
                autostart.set_enabled(self.autostart.isChecked())
        except OSError as ex:
            problems.append(f"Saved, but start at login could not be changed: {ex}")
        if profile.ask_password:
            # Asked each session: a password typed here is used until the app quits and
            # stored nowhere; an entry the keychain may still hold for it is removed.
            if not asked_before:
                self._off_loop(self._drop_stale_entries(profile.name, old),
                               "deleting a password")
            return self._finish_save(profile.name, old if renamed else None, typed, False,
                                     problems)
        if not (typed or renamed):  # no keychain work: done now
            return self._finish_save(profile.name, None, None, False, problems)
        self._show_store(select=profile.name)  # the file has it already
        self._say("Saved; storing the password in the keychain…" if typed
                  else "Saved; moving the password in the keychain…")
        self._save_button().setEnabled(False)
        result = self._off_loop(
            self._save_password(profile.name, typed, old if renamed else None, problems),
            "saving the password",
        )
        if isinstance(result, bool):
            return result
        self.saving = result
        return True

    def _save_button(self) -> QPushButton:
        button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        assert button is not None
        return button

    async def _save_password(self, name: str, typed: str | None, old: str | None,
                             problems: list[str]) -> bool:
        """The keychain part of Save, off the loop: store a typed password, or move the
        stored one along a rename. Ends by telling the user and emitting ``saved``."""
        session_password: str | None = None
        stored = False
        password = typed
        try:
            if old is not None and not typed:
                try:
                    password = await credentials.off_loop(credentials.peek_password, old)
                except credentials.NoSecureKeychain as ex:
                    problems.append(f"Renamed, but the password of {old!r} could not be moved "
                                    f"({ex}): type it again and save.")
            if password:
                try:
                    await credentials.off_loop(credentials.store_password, name, password)
                    stored = True
                except credentials.NoSecureKeychain as ex:
                    session_password = password
                    why = (str(ex) if isinstance(ex, credentials.BrokenKeychain)
                           else f"no secure keychain, {ex.reason}")
                    if isinstance(ex, credentials.KeychainTimeout):
                        why += "; if it answers later, it may keep the password after all"
                    problems.append(
                        f"Saved, except the password: {why}. traystatus uses the password "
                        f"for this session only, until it quits. To keep it: "
                        f"{credentials.ADVICE}."
                    )
            elif old is not None:
                # Nothing to move: make sure the new name does not inherit a stray entry.
                try:
                    await credentials.off_loop(credentials.delete_password, name)
                except credentials.KeychainTimeout as ex:
                    log.warning("could not clear the keychain entry of %r: %s", name, ex)
            if old is not None and (stored or password is None):
                try:
                    await credentials.off_loop(credentials.delete_password_or_raise, old)
                except credentials.NoSecureKeychain as ex:
                    problems.append(f"Renamed, but the old keychain entry {old!r} could not be "
                                    f"deleted ({ex}); delete it in your keychain app.")
        finally:
            self._save_button().setEnabled(True)
        return self._finish_save(name, old, session_password, stored, problems)

    def _finish_save(self, name: str, old: str | None, session_password: str | None,
                     stored: bool, problems: list[str]) -> bool:
        if problems:
            self._say(" ".join(problems), error=True)
        else:
            self._say("Saved.")
        self._show_store(select=name)
        self.saved.emit(
            SavedChange(profile=name, renamed={old: name} if old is not None else {},
                        session_password=session_password, password_stored=stored)
        )
        return not problems

    def _tone(self, tone: Tone, bold: bool = False) -> str:
        return palette.text_css(tone, palette.dark_window(self), bold=bold)

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(self._tone(Tone.PROBLEM if error else Tone.STABLE))

    # -- test connection -------------------------------------------------------------------------
    def _start_check(self) -> None:
        if self._check_task is not None and not self._check_task.done():
            return
        self._check_task = self.tasks.start(self.run_check(), "testing the connection")
        self._checks.add(self._check_task)
        self._check_task.add_done_callback(self._checks.discard)

    # -- closing ---------------------------------------------------------------------------------
    def done(self, result: int) -> None:
        """Close, Escape, the window's x (through reject): the checks end with the dialog."""
        super().done(result)
        self._stop_checks()

    def closeEvent(self, event: QCloseEvent) -> None:
        super().closeEvent(event)  # a visible dialog rejects (done above); a hidden one not
        if event.isAccepted():
            self._stop_checks()

    def _stop_checks(self) -> None:
        if self._check_task is not None and not self._check_task.done():
            self.check_result.clear()  # "Testing…" would stay: the test is not finished
        for task in list(self._checks):
            task.cancel()

    async def aclose(self) -> None:
        """Quit: close, and wait until every task of the dialog has ended (the checks are
        cancelled; a Save's keychain part ends within the keychain's deadline), so none
        is left pending when the loop closes."""
        self.close()
        self._stop_checks()
        await self.tasks.wait()

    def _task_failed(self, what: str, error: BaseException) -> None:
        """A bug in the test itself (not a connection problem, which run_check reports)."""
        self.test_button.setEnabled(True)
        self.check_result.setText(
            f"The test stopped with an unexpected error ({type(error).__name__}: {error}). "
            "This is a bug in traystatus; the log file has the details."
        )
        self.check_result.setStyleSheet(self._tone(Tone.PROBLEM))

    async def run_check(self) -> CheckResult:
        try:
            profile, secrets = self.profile().without_secrets()
        except ProfileError as ex:
            result = _failed(Problem.CONFIG, str(ex))
        else:
            self.test_button.setEnabled(False)
            self.check_result.setText("Testing…")
            self.check_result.setStyleSheet("")
            try:
                # A password typed here is tested as typed; else the app's own order (DSN,
                # PGPASSWORD / ~/.pgpass, keychain), so the test says what the tray will do.
                password = self.password.text() or secrets.get("password")
                if profile.relay is not None:
                    result = await check_server(profile, password)
                    return self._show_check(result)
                if not password:
                    found = await resolve_password_async(
                        profile.to_conninfo(),
                        None if profile.ask_password else profile.name,  # no keychain
                    )
                    password = found.password
                result = await check_connection(profile.to_conninfo(), password,
                                                source=profile.source or "auto")
            finally:
                self.test_button.setEnabled(True)  # also when cancelled: closed meanwhile
        return self._show_check(result)

    def _show_check(self, result: CheckResult) -> CheckResult:
        self.check_result.setText(result.detail)
        self.check_result.setStyleSheet(self._tone(Tone.STABLE if result.ok else Tone.PROBLEM))
        return result


def _wrapping_label() -> QLabel:
    """A label for sentences of any length: wrapped, and never given less height than its
    lines need at the width it has (a Preferred label is the first thing a form squeezes
    when the window is shorter than its hint: the keychain's warning lost its last lines)."""
    label = QLabel()
    label.setWordWrap(True)  # sets the policy's height-for-width: keep it
    policy = label.sizePolicy()
    policy.setVerticalPolicy(QSizePolicy.Policy.Minimum)
    label.setSizePolicy(policy)
    return label


def _exact() -> Qt.MatchFlag:
    return Qt.MatchFlag.MatchExactly
