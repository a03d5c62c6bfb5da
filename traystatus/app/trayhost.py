"""Is there a tray that shows our icon? Qt 6's own answer is not enough on Linux.

On Linux Qt 6 shows a QSystemTrayIcon one of two ways, chosen once per process when the
first one is created: as a StatusNotifierItem (SNI, over D-Bus) whenever the name
``org.kde.StatusNotifierWatcher`` has an owner, else as an XEmbed icon (X11 only) docked
into the window owning ``_NET_SYSTEM_TRAY_S<screen>``. Qt 5 asked the watcher whether a
*host* (a panel that draws the items) is registered; Qt 6 no longer does, and
``isSystemTrayAvailable()`` is then true as soon as the watcher runs. A watcher without
a host - KDE's daemon (kded) running outside a Plasma session, a stopped panel - takes
the item and nobody draws it: the app would be invisible, and its fallback window would
never appear.

So the app asks the watcher itself (``IsStatusNotifierHostRegistered``, asynchronously on
the session bus; no answer in ``TIMEOUT_MS`` counts as "no host") when the controller's
timer says so, and at once when the watcher announces a host (StatusNotifierHostRegistered
/ ...Unregistered) or the watcher's name changes owner:

- the watcher was there when the app started (Qt uses SNI): the tray counts as available
  only while a host is registered;
- it was not (Qt uses XEmbed, for good): Qt's own check, which then looks for the XEmbed
  tray manager, is right;
- Windows and macOS: Qt's check (their tray always exists).

``traystatus doctor`` judges the tray host the same way (traystatus.desktop.check).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from PySide6.QtCore import SLOT, QObject, Signal, Slot
from PySide6.QtWidgets import QSystemTrayIcon

from traystatus.desktop.check import SNI_WATCHER, SNI_WATCHER_PATH, session_bus_address

if TYPE_CHECKING:  # QtDBus is imported where it is used: on Linux only
    from PySide6.QtDBus import QDBusConnection, QDBusPendingCallWatcher

log = logging.getLogger(__name__)

PROPERTIES = "org.freedesktop.DBus.Properties"
TIMEOUT_MS = 2000


class TrayHost(QObject):
    """Answers "is the tray usable?" with ``answered(object)`` (a bool; ``object``, never
    ``bool``: PySide6 6.12's bool-signal leak). ``check()`` never blocks."""

    answered = Signal(object)

    def __init__(
        self,
        bus_address: str | None = None,
        platform: str | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.platform = sys.platform if platform is None else platform
        self.uses_sni: bool | None = None  # Qt's choice, learnt from the first answer
        self.watcher = False
        self.host_registered = False
        self._pending: QDBusPendingCallWatcher | None = None
        self._bus: QDBusConnection | None = None
        self._name = f"traystatus-tray-host-{id(self):x}"
        if self.platform.startswith("linux"):
            from PySide6.QtDBus import QDBusConnection

            address = bus_address or session_bus_address()
            if address:
                bus = QDBusConnection.connectToBus(address, self._name)
                if bus.isConnected():
                    self._bus = bus
                    self._follow_watcher(bus)
                else:
                    log.info("tray check: no session bus at %s (%s)", address,
                             bus.lastError().message())

    def _follow_watcher(self, bus: QDBusConnection) -> None:
        """Ask again at once when a host comes or goes, or the watcher itself does."""
        from PySide6.QtDBus import QDBusServiceWatcher

        for name in ("StatusNotifierHostRegistered", "StatusNotifierHostUnregistered"):
            # The stubs want bytes for the slot; PySide6 itself takes only the str.
            bus.connect(  # type: ignore[call-overload]
                "", SNI_WATCHER_PATH, SNI_WATCHER, name, self, SLOT("_changed()")
            )
        self._names = QDBusServiceWatcher(SNI_WATCHER, bus,
                                          QDBusServiceWatcher.WatchModeFlag.WatchForOwnerChange,
                                          self)
        self._names.serviceOwnerChanged.connect(self._changed)

    @Slot()
    def _changed(self) -> None:
        if self.uses_sni is not None:  # after the first answer, which the controller asks
            self.check()

    def check(self) -> None:
        """Ask; ``answered`` follows (at once where no D-Bus question is needed)."""
        if not self.platform.startswith("linux"):
            self.answered.emit(QSystemTrayIcon.isSystemTrayAvailable())
            return
        if self._bus is None:
            self._decide(watcher=False, host=False)
            return
        if self._pending is not None:
            return  # the last question is still out
        from PySide6.QtDBus import QDBusMessage, QDBusPendingCallWatcher

        msg = QDBusMessage.createMethodCall(SNI_WATCHER, SNI_WATCHER_PATH, PROPERTIES, "Get")
        msg.setArguments([SNI_WATCHER, "IsStatusNotifierHostRegistered"])
        self._pending = QDBusPendingCallWatcher(self._bus.asyncCall(msg, TIMEOUT_MS), self)
        self._pending.finished.connect(self._on_reply)

    def _on_reply(self, call: QDBusPendingCallWatcher) -> None:
        from PySide6.QtDBus import QDBusVariant

        self._pending = None
        call.deleteLater()
        reply = call.reply()
        if call.isError():
            # ServiceUnknown / NameHasNoOwner: no watcher. Anything else (a watcher that
            # does not answer): it exists, but nothing shows our item.
            name = call.error().name()
            watcher = not name.endswith((".ServiceUnknown", ".NameHasNoOwner"))
            if watcher:
                log.debug("the StatusNotifierWatcher did not answer: %s", name)
            self._decide(watcher=watcher, host=False)
            return
        args = reply.arguments()
        value = args[0].variant() if args and isinstance(args[0], QDBusVariant) else None
        self._decide(watcher=True, host=value is True)

    def _decide(self, watcher: bool, host: bool) -> None:
        if self.uses_sni is None:
            self.uses_sni = watcher
            log.info(
                "tray: Qt shows the icon as %s",
                "a StatusNotifierItem (a StatusNotifierWatcher is on the session bus)"
                if watcher else "an XEmbed icon (no StatusNotifierWatcher on the session bus)",
            )
        if (watcher, host) != (self.watcher, self.host_registered):
            log.info("StatusNotifierWatcher: %s, host registered: %s",
                     "present" if watcher else "absent", "yes" if host else "no")
        self.watcher, self.host_registered = watcher, host
        if self.uses_sni:
            self.answered.emit(watcher and host)
        else:
            self.answered.emit(QSystemTrayIcon.isSystemTrayAvailable())

    def close(self) -> None:
        if self._bus is not None:
            self._bus = None
            from PySide6.QtDBus import QDBusConnection

            QDBusConnection.disconnectFromBus(self._name)
