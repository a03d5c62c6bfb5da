"""What ``traystatus doctor`` says about the desktop: tray host, notification server, keychain.

Each check returns a ``traystatus.core.model.checks.CheckResult`` (the one type of every report):
level OK when that part works, WARN when it does not (a desktop piece is never a FAIL: a
CLI-only user needs no tray); ``detail`` is
what was found; ``fix`` is what to do (it may be advice even when ``ok``, e.g. a
notification server that cannot show buttons). Nothing here raises for a missing or broken
desktop piece, and nothing waits longer than its timeout: a doctor must answer on a machine
where the session bus or the X server hangs.

How a tray host is found (the two ways Qt 6's QSystemTrayIcon can show an icon on Linux;
Qt picks one per process, when its first tray icon is created):

- StatusNotifierItem (SNI): Qt 6 uses it whenever the name ``org.kde.StatusNotifierWatcher``
  has an owner on the session bus, and then calls the tray available. The icon is only
  drawn if a host (a panel: KDE, XFCE, GNOME with the AppIndicator extension, waybar...)
  is registered with the watcher: ``IsStatusNotifierHostRegistered``. (Qt 5 asked that
  property before using SNI; Qt 6 does not.) A watcher without a host - KDE's kded
  outside a Plasma session, a stopped panel - takes the icon and nobody shows it.
- XEmbed (X11 only), used by Qt only when no watcher runs: the selection
  ``_NET_SYSTEM_TRAY_S<screen>`` has an owner window (trayer, older panels). Asked over
  libxcb with ctypes: libxcb is already a dependency of Qt's xcb plugin, and unlike Xlib it
  never calls ``exit()`` on a connection error.

So the tray host is there when a watcher runs with a registered host, or when no watcher
runs and an XEmbed tray exists. The tray app judges it the same way at run time
(traystatus/app/trayhost.py) and shows its status window otherwise.

The notification server is asked ``GetServerInformation`` and ``GetCapabilities`` on
``org.freedesktop.Notifications`` through dbus-fast (the library desktop-notifier uses).
No Qt is imported: the CLI's doctor runs without a display.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from traystatus.core.config import credentials
from traystatus.core.model.checks import CheckResult, Level

SNI_WATCHER = "org.kde.StatusNotifierWatcher"
SNI_WATCHER_PATH = "/StatusNotifierWatcher"
NOTIFICATIONS = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
SECRETS = "org.freedesktop.secrets"
DEFAULT_TIMEOUT = 2.0

GNOME_TRAY_FIX = (
    "GNOME has no tray of its own: install and enable the extension "
    '"AppIndicator and KStatusNotifierItem Support" (Debian/Ubuntu: '
    "gnome-shell-extension-appindicator), then log out and in. Until then traystatus shows "
    "a small status window instead."
)
GENERIC_TRAY_FIX = (
    "Add a system tray (notification area) to your panel, or start a tray host such as "
    "trayer or snixembed. Until one appears traystatus shows a small status window and "
    "moves to the tray by itself when it can."
)
HOSTLESS_WATCHER_FIX = (
    "Start a panel that shows StatusNotifierItems (Plasma, XFCE's panel, waybar, or "
    "snixembed to bridge them into an XEmbed tray), or stop the program that owns "
    f"{SNI_WATCHER} without showing anything (often KDE's kded outside a Plasma "
    "session). Until then traystatus shows a small status window and moves to the tray "
    "when a host registers."
)


T = TypeVar("T")


# -- session bus -------------------------------------------------------------------------------


def session_bus_address(env: Mapping[str, str] | None = None) -> str | None:
    """The session bus address, as libdbus would find it; None when there is none.

    ``DBUS_SESSION_BUS_ADDRESS`` first, then systemd's ``$XDG_RUNTIME_DIR/bus`` (set up by
    ``systemd --user`` sessions, which often leave the variable unset).
    """
    env = os.environ if env is None else env
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and (Path(runtime) / "bus").is_socket():
        return f"unix:path={Path(runtime) / 'bus'}"
    return None


@dataclass(frozen=True)
class _BusFindings:
    error: str | None = None  # could not reach the bus at all
    sni_owner: bool = False
    sni_host_registered: bool | None = None
    notif_info: tuple[str, str, str, str] | None = None
    notif_caps: tuple[str, ...] = ()
    notif_error: str | None = None
    secrets_owner: bool = False


async def _probe_bus(address: str, seconds: float) -> _BusFindings:
    try:
        from dbus_fast import Message, MessageType, Variant
        from dbus_fast.aio import MessageBus
    except ImportError:
        return _BusFindings(error="the dbus-fast package is not installed")

    try:
        bus = await asyncio.wait_for(MessageBus(bus_address=address).connect(), seconds)
    except TimeoutError:
        return _BusFindings(error=f"the session bus at {address} did not answer in {seconds:g} s")
    except Exception as ex:  # dbus-fast raises many kinds (AuthError, OSError, ValueError...)
        return _BusFindings(error=f"cannot connect to the session bus at {address}: {ex}")

    async def call(
        dest: str, path: str, iface: str, member: str, sig: str = "", body: list[Any] | None = None
    ) -> list[Any] | str:
        """The reply body, or the error text."""
        msg = Message(
            destination=dest,
            path=path,
            interface=iface,
            member=member,
            signature=sig,
            body=body or [],
        )
        try:
            reply = await asyncio.wait_for(bus.call(msg), seconds)
        except TimeoutError:
            return f"no answer in {seconds:g} s"
        except Exception as ex:
            return str(ex) or type(ex).__name__
        if reply.message_type == MessageType.ERROR:
            return f"{reply.error_name}: {' '.join(str(b) for b in reply.body)}"
        return list(reply.body)

    async def has_owner(name: str) -> bool:
        r = await call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            [name],
        )
        return isinstance(r, list) and bool(r and r[0])

    try:
        sni_owner = await has_owner(SNI_WATCHER)
        host: bool | None = None
        if sni_owner:
            r = await call(
                SNI_WATCHER,
                SNI_WATCHER_PATH,
                "org.freedesktop.DBus.Properties",
                "Get",
                "ss",
                [SNI_WATCHER, "IsStatusNotifierHostRegistered"],
            )
            if isinstance(r, list) and r and isinstance(r[0], Variant):
                host = bool(r[0].value)
        info: tuple[str, str, str, str] | None = None
        caps: tuple[str, ...] = ()
        notif_error: str | None = None
        r = await call(NOTIFICATIONS, NOTIFICATIONS_PATH, NOTIFICATIONS, "GetServerInformation")
        if isinstance(r, list) and len(r) == 4:
            info = (str(r[0]), str(r[1]), str(r[2]), str(r[3]))
            r = await call(NOTIFICATIONS, NOTIFICATIONS_PATH, NOTIFICATIONS, "GetCapabilities")
            if isinstance(r, list) and r:
                caps = tuple(str(c) for c in r[0])
        else:
            notif_error = r if isinstance(r, str) else "unexpected reply"
        secrets = await has_owner(SECRETS)
        return _BusFindings(
            sni_owner=sni_owner,
            sni_host_registered=host,
            notif_info=info,
            notif_caps=caps,
            notif_error=notif_error,
            secrets_owner=secrets,
        )
    finally:
        bus.disconnect()


# -- X11 XEmbed tray -------------------------------------------------------------------------


class _InternAtomReply(ctypes.Structure):
    _fields_ = (
        ("response_type", ctypes.c_uint8),
        ("pad0", ctypes.c_uint8),
        ("sequence", ctypes.c_uint16),
        ("length", ctypes.c_uint32),
        ("atom", ctypes.c_uint32),
    )


class _SelectionOwnerReply(ctypes.Structure):
    _fields_ = (
        ("response_type", ctypes.c_uint8),
        ("pad0", ctypes.c_uint8),
        ("sequence", ctypes.c_uint16),
        ("length", ctypes.c_uint32),
        ("owner", ctypes.c_uint32),
    )


class _Cookie(ctypes.Structure):
    _fields_ = (("sequence", ctypes.c_uint),)


def xembed_tray_owner(display: str) -> tuple[str, int]:
    """(selection name, owner window id) of the XEmbed tray on ``display``; window 0 = none.

    Raises OSError when libxcb is missing or the display cannot be opened.
    """
    name = ctypes.util.find_library("xcb") or "libxcb.so.1"
    try:
        xcb = ctypes.CDLL(name)
    except OSError as ex:
        raise OSError(f"libxcb is not installed ({ex})") from ex
    libc = ctypes.CDLL(None)
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = (ctypes.c_char_p, ctypes.POINTER(ctypes.c_int))
    xcb.xcb_connection_has_error.argtypes = (ctypes.c_void_p,)
    xcb.xcb_disconnect.argtypes = (ctypes.c_void_p,)
    xcb.xcb_intern_atom.restype = _Cookie
    xcb.xcb_intern_atom.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint8,
        ctypes.c_uint16,
        ctypes.c_char_p,
    )
    xcb.xcb_intern_atom_reply.restype = ctypes.POINTER(_InternAtomReply)
    xcb.xcb_intern_atom_reply.argtypes = (ctypes.c_void_p, _Cookie, ctypes.c_void_p)
    xcb.xcb_get_selection_owner.restype = _Cookie
    xcb.xcb_get_selection_owner.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    xcb.xcb_get_selection_owner_reply.restype = ctypes.POINTER(_SelectionOwnerReply)
    xcb.xcb_get_selection_owner_reply.argtypes = (ctypes.c_void_p, _Cookie, ctypes.c_void_p)
    libc.free.argtypes = (ctypes.c_void_p,)

    screen = ctypes.c_int(0)
    conn = xcb.xcb_connect(display.encode(), ctypes.byref(screen))
    try:
        if not conn or xcb.xcb_connection_has_error(conn):
            raise OSError(f"cannot open the X display {display}")
        selection = f"_NET_SYSTEM_TRAY_S{screen.value}"
        raw = selection.encode()
        atom_reply = xcb.xcb_intern_atom_reply(
            conn, xcb.xcb_intern_atom(conn, 0, len(raw), raw), None
        )
        if not atom_reply:
            raise OSError(f"the X server on {display} did not answer")
        atom = atom_reply.contents.atom
        libc.free(atom_reply)
        owner_reply = xcb.xcb_get_selection_owner_reply(
            conn, xcb.xcb_get_selection_owner(conn, atom), None
        )
        if not owner_reply:
            raise OSError(f"the X server on {display} did not answer")
        owner = int(owner_reply.contents.owner)
        libc.free(owner_reply)
        return selection, owner
    finally:
        if conn:
            xcb.xcb_disconnect(conn)


def _in_thread(func: Callable[[], T], timeout: float) -> T:
    """Run a blocking call with a deadline; a hung call is abandoned in a daemon thread."""
    box: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            box.append(func())
        except BaseException as ex:
            error.append(ex)

    t = threading.Thread(target=run, name="traystatus-desktop-check", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no answer in {timeout:g} s")
    if error:
        raise error[0]
    return box[0]


# -- the checks ------------------------------------------------------------------------------


def _is_gnome(env: Mapping[str, str]) -> bool:
    return "gnome" in env.get("XDG_CURRENT_DESKTOP", "").lower()


def _tray_result(bus: _BusFindings, env: Mapping[str, str], timeout: float) -> CheckResult:
    found: list[str] = []
    notes: list[str] = []
    hostless = False
    if bus.error:
        notes.append(f"StatusNotifierItem: not checked ({bus.error})")
    elif bus.sni_owner and bus.sni_host_registered:
        found.append("StatusNotifierItem watcher with a registered host")
    elif bus.sni_owner:
        hostless = True
        notes.append(
            "a StatusNotifierWatcher runs but no host is registered: Qt 6 gives it the icon "
            "and no panel shows it"
        )
    else:
        notes.append(f"no {SNI_WATCHER} on the session bus")

    display = env.get("DISPLAY")
    if display:
        try:
            selection, owner = _in_thread(lambda: xembed_tray_owner(display), timeout)
        except (OSError, TimeoutError) as ex:
            notes.append(f"XEmbed: not checked on {display} ({ex})")
        else:
            if owner and hostless:
                notes.append(
                    f"the XEmbed tray on {display} goes unused: Qt 6 uses the "
                    "StatusNotifierWatcher whenever one runs"
                )
            elif owner:
                found.append(f"XEmbed tray on {display} ({selection} owned by window {owner:#x})")
            else:
                notes.append(f"no XEmbed tray on {display} ({selection} has no owner)")
    elif env.get("WAYLAND_DISPLAY"):
        notes.append("Wayland session: only StatusNotifierItem trays exist")
    else:
        notes.append("no DISPLAY: no X11 tray")

    if found:
        return CheckResult("tray host", Level.OK, "; ".join(found))
    if hostless:
        fix = HOSTLESS_WATCHER_FIX
    else:
        fix = GNOME_TRAY_FIX if _is_gnome(env) else GENERIC_TRAY_FIX
    return CheckResult("tray host", Level.WARN, "not found: " + "; ".join(notes), fix)


def _notification_result(bus: _BusFindings) -> CheckResult:
    name = "notification server"
    if bus.error:
        return CheckResult(
            name,
            Level.WARN,
            f"not checked: {bus.error}",
            "Notifications need a D-Bus session bus: start traystatus from your desktop "
            "session (not over ssh or from a cron job).",
        )
    if bus.notif_info is None:
        return CheckResult(
            name,
            Level.WARN,
            f"not found: nothing answers {NOTIFICATIONS} on the session bus ({bus.notif_error})",
            "Start your desktop's notification service (GNOME/KDE/XFCE have one; on a "
            "window manager install one such as dunst or mako). traystatus still shows the "
            "state in its icon.",
        )
    server, vendor, version, spec = bus.notif_info
    caps = ", ".join(bus.notif_caps) or "none"
    detail = f"{server} {version} by {vendor} (spec {spec}); capabilities: {caps}"
    fix = ""
    if "actions" not in bus.notif_caps:
        fix = (
            "This server shows no buttons on notifications: use the tray menu for "
            '"Show details" and "Reconnect now".'
        )
    return CheckResult(name, Level.OK, detail, fix)


def keychain_result(
    bus: _BusFindings | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    backend: object | None = None,
) -> CheckResult:
    """Which keyring backend stores passwords, and whether it is a secure one.

    The judgement is ``traystatus.core.config.credentials.keychain_info`` (the same one that decides
    whether a password may be stored); this adds the timeout, since choosing the default
    backend may ask the session bus for a Secret Service, and what the bus says about it.
    ``backend``: the keyring backend to judge; default ``keyring.get_keyring()``.
    """
    import keyring  # here, not at the top: choosing a backend is this check's business

    name = "keychain"
    if backend is None:
        try:
            backend = _in_thread(keyring.get_keyring, timeout)
        except TimeoutError as ex:
            return CheckResult(
                name, Level.WARN, f"choosing a keyring backend hung ({ex})", credentials.ADVICE
            )
        except Exception:  # a backend that cannot start: the judgement says which and why
            backend = None
    info = credentials.keychain_info(backend)  # type: ignore[arg-type]
    if info.secure:
        return CheckResult(name, Level.OK, f"passwords are kept in {info.backend_name}")
    detail = f"no secure keychain: {info.reason}"
    if bus is not None and not bus.error and not bus.secrets_owner:
        detail += f"; nothing owns {SECRETS} on the session bus"
    return CheckResult(name, Level.WARN, detail, credentials.ADVICE)


def _native_desktop() -> bool:
    """Windows and macOS always have a tray and a notification centre: nothing to probe."""
    return sys.platform in ("win32", "darwin")


async def check_desktop_async(
    env: Mapping[str, str] | None = None, probe_timeout: float = DEFAULT_TIMEOUT
) -> list[CheckResult]:
    """All desktop checks, for a caller that already runs an asyncio loop."""
    env = dict(os.environ if env is None else env)
    if _native_desktop():
        return _native_results(probe_timeout)
    address = session_bus_address(env)
    if address is None:
        bus = _BusFindings(error="no session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
    else:
        bus = await _probe_bus(address, probe_timeout)
    loop = asyncio.get_running_loop()
    # The X11 and keyring probes block: keep them off the caller's loop.
    tray = await loop.run_in_executor(None, _tray_result, bus, env, probe_timeout)
    keychain = await loop.run_in_executor(None, keychain_result, bus, probe_timeout)
    return [tray, _notification_result(bus), keychain]


def check_desktop(
    env: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[CheckResult]:
    """All desktop checks: tray host, notification server, keychain. Never raises."""
    return asyncio.run(check_desktop_async(env, timeout))


def _native_results(timeout: float) -> list[CheckResult]:
    where = "the Windows notification area" if sys.platform == "win32" else "the macOS menu bar"
    centre = "Windows notifications" if sys.platform == "win32" else "macOS Notification Center"
    return [
        CheckResult("tray host", Level.OK, f"{where} is always present"),
        CheckResult(
            "notification server",
            Level.OK,
            f"{centre} (allowed or not in the system settings)",
            "If no notification appears, allow notifications for traystatus in the system "
            "settings.",
        ),
        keychain_result(None, timeout),
    ]
