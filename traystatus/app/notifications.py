"""Sending the notices that notify_policy decided on, through desktop-notifier.

desktop-notifier talks to the platform's notification service (freedesktop D-Bus on Linux,
native on Windows and macOS) from the asyncio loop, which under qasync is the Qt loop.

Replace in place: desktop-notifier always sends ``replaces_id = 0``, so a notice that
replaces another (same key) first closes the old one (CloseNotification) and then shows the
new: on screen one bubble per kind, never a stack. The old one may be gone already (the
server expired it, the user dismissed it): closing it then fails, which is logged at debug
level and never stops the new notice.

Storms: sends go through one queue that keeps only the newest notice per key, so 10,000
decisions in a burst cost a few D-Bus calls, not 10,000.

No notification server (no D-Bus session, nothing owning org.freedesktop.Notifications),
or one that stopped taking notices (it went away: the send raises or is never dispatched):
logged once, then notices go to ``fallback``. The app's fallback is the tray's balloon, or
with no tray the status window's list of latest notices (controller.py): a notice is never
dropped on the floor, an import that failed is always told somewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from traystatus._paths import resources_dir
from traystatus.app.notify_policy import (
    Action,
    Decision,
    Notice,
    Urgency,
    Withdraw,
)

log = logging.getLogger(__name__)

# A server that does not answer a send within this long is taken as gone: the notice goes
# to the fallback rather than wait (a hung server must not hold "import failed" back).
SEND_TIMEOUT_S = 10.0

ACTION_TITLES = {Action.SHOW_DETAILS: "Show details", Action.RECONNECT: "Reconnect now"}

# Shows a notice some other way; returns the route it took ("balloon", "window"), or
# None for plain "fallback".
Fallback = Callable[[Notice], str | None]


class NotificationSender(QObject):
    """Shows notices; emits ``actionRequested(Action)`` when a button is pressed."""

    actionRequested = Signal(object)
    jobRequested = Signal(object)  # "Show details" on a notice about one import job: its id
    # "Show details" on a notice of a watched deployment: (its name, the job id or None).
    deploymentRequested = Signal(object)
    # A notice went out, in order: (Notice, "server") when the notification server took
    # it, else (Notice, route) with the route ``fallback`` named ("balloon": the tray's
    # balloon, "window": the status window's latest notices; "fallback" if it named none).
    delivered = Signal(object, str)

    def __init__(
        self,
        app_name: str = "traystatus",
        fallback: Fallback | None = None,
        parent: QObject | None = None,
        use_desktop_notifier: bool = True,
        withdraw_fallback: Callable[[str], None] | None = None,
    ) -> None:
        """``withdraw_fallback(key)``: a notice of this key became obsolete (Withdraw);
        the fallback removes it where it keeps notices (the status window's list)."""
        super().__init__(parent)
        self.app_name = app_name
        self.fallback = fallback
        self.withdraw_fallback = withdraw_fallback
        self.send_timeout = SEND_TIMEOUT_S
        self._notifier: Any = None
        self._use_dn = use_desktop_notifier
        self._server_ok: bool | None = None  # unknown until the first probe
        self._warned = False
        self._queue: OrderedDict[str, Decision] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._shown: dict[str, str] = {}  # key -> desktop-notifier identifier

    # -- public -----------------------------------------------------------------------------
    def handle(self, decisions: list[Decision]) -> None:
        """Queue the decisions; the newest per key wins if several wait."""
        for d in decisions:
            key = d.key
            self._queue.pop(key, None)
            self._queue[key] = d
        if self._queue:
            self._idle.clear()
            self._ensure_worker()
            self._wakeup.set()

    def act(self, notice: Notice, action: Action) -> None:
        """Do what the button ``action`` of ``notice`` does, as if pressed on the bubble
        (the status window's notice buttons call this: one mapping for both)."""
        self._action_cb(action, notice.job_id, notice.deployment)()

    async def drain(self) -> None:
        """Wait until everything queued has been sent (tests, shutdown)."""
        await self._idle.wait()

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        # desktop-notifier has no close(); its D-Bus backend keeps a dbus-fast MessageBus
        # open for the life of the process. Disconnect it so Quit leaves no socket behind.
        bus = getattr(getattr(self._notifier, "_backend", None), "bus", None)
        if bus is not None and getattr(bus, "connected", False):
            bus.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bus.wait_for_disconnect(), 2)
        if self._notifier is not None:
            self._notifier = None
            self._server_ok = None if self._server_ok else self._server_ok

    # -- the worker -------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._work())

    async def _work(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                _, decision = self._queue.popitem(last=False)
                try:
                    await self._deliver(decision)
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let one bad notice stop the others
                    log.exception("could not show a notification")
            self._idle.set()

    async def _deliver(self, decision: Decision) -> None:
        if isinstance(decision, Withdraw):
            ident = self._shown.pop(decision.key, None)
            if ident is not None:
                await self._close(ident)
            if self.withdraw_fallback is not None:
                self.withdraw_fallback(decision.key)
            return
        notice = decision
        if await self._probe():
            old = self._shown.pop(notice.key, None)
            if old is not None:
                await self._close(old)
            try:
                ident = await asyncio.wait_for(self._send_dn(notice), self.send_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as ex:  # gone (D-Bus error, bus closed), or hung (timeout)
                log.debug("sending a notification failed: %r", ex)
                ident = None
            if ident is not None:
                self._shown[notice.key] = ident
                self.delivered.emit(notice, "server")
                return
            # From now on the fallback: a server that failed once is not trusted with
            # the next notice (it would be lost the same way).
            self._server_ok = False
            self._warn_once("the notification server did not take the notification")
        self._fall_back(notice)

    async def _close(self, ident: str) -> None:
        """Close a notice we showed, if it is still there. The server may have closed it
        already (expired, dismissed): desktop-notifier then raises (``KeyError``), and a
        notice already gone is what closing wants. Never let it cost the notice that
        replaces it."""
        if self._notifier is None:
            return
        try:
            await self._notifier.clear(ident)
        except asyncio.CancelledError:
            raise
        except Exception as ex:
            log.debug("notice %s was already closed (%r)", ident, ex)

    # -- desktop-notifier -------------------------------------------------------------------
    async def _probe(self) -> bool:
        if not self._use_dn:
            return False
        if self._server_ok is not None:
            return self._server_ok
        try:
            from desktop_notifier import DesktopNotifier, Icon

            icon_path = _app_icon_path()
            self._notifier = DesktopNotifier(
                app_name=self.app_name, app_icon=Icon(path=icon_path) if icon_path else None
            )
            caps = await asyncio.wait_for(self._notifier.get_capabilities(), 5)
            self._server_ok = bool(caps)
        except Exception as ex:  # no session bus, no server, a timeout: all mean "none here"
            self._server_ok = False
            self._warn_once(f"no desktop notification server is reachable ({ex})")
        if not self._server_ok:
            self._warn_once("no desktop notification server is reachable")
        return self._server_ok

    async def _send_dn(self, notice: Notice) -> str | None:
        from desktop_notifier import Button, Icon
        from desktop_notifier import Urgency as DnUrgency

        dispatched: list[bool] = []
        urgency = {
            Urgency.LOW: DnUrgency.Low,
            Urgency.NORMAL: DnUrgency.Normal,
            Urgency.CRITICAL: DnUrgency.Critical,
        }[notice.urgency]
        buttons = [
            Button(title=ACTION_TITLES[a],
                   on_pressed=self._action_cb(a, notice.job_id, notice.deployment))
            for a in notice.actions
        ]
        on_clicked = (
            self._action_cb(Action.SHOW_DETAILS, notice.job_id, notice.deployment)
            if Action.SHOW_DETAILS in notice.actions else None
        )
        icon_path = _state_icon_path(notice.icon)
        ident: str = await self._notifier.send(
            title=notice.title,
            icon=Icon(path=icon_path) if icon_path else None,
            message=notice.body,
            urgency=urgency,
            buttons=buttons,
            on_clicked=on_clicked,
            on_dispatched=lambda: dispatched.append(True),
        )
        return ident if dispatched else None

    def _action_cb(
        self, action: Action, job_id: int | None = None, deployment: str | None = None
    ) -> Callable[[], None]:
        if action is Action.SHOW_DETAILS and deployment is not None:
            return lambda: self.deploymentRequested.emit((deployment, job_id))
        if action is Action.SHOW_DETAILS and job_id is not None:
            return lambda: self.jobRequested.emit(job_id)

        def fire() -> None:
            self.actionRequested.emit(action)

        return fire

    def _fall_back(self, notice: Notice) -> None:
        route: str | None = None
        if self.fallback is not None:
            route = self.fallback(notice)
        self.delivered.emit(notice, route or "fallback")

    def _warn_once(self, what: str) -> None:
        if self._warned:
            return
        self._warned = True
        log.warning(
            "%s: notifications are shown as tray balloons instead (without a tray: in "
            "the status window). "
            "To get desktop notifications, run a notification daemon on the session bus.",
            what,
        )


def _state_icon_path(name: str) -> Path | None:
    try:
        path = resources_dir() / "icons" / f"{name}.svg"
    except FileNotFoundError:
        return None
    return path if path.exists() else None


def _app_icon_path() -> Path | None:
    try:
        path = resources_dir() / "icons" / "traystatus.svg"
    except FileNotFoundError:
        return None
    return path if path.exists() else None
