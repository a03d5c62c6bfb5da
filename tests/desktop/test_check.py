"""desktop_check against real desktop pieces: none, a bare bus, X11 + trayer + dunst, SNI."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null

from tests.fix_desktop import Session
from traystatus.core.model.checks import CheckResult
from traystatus.desktop.check import (
    GNOME_TRAY_FIX,
    HOSTLESS_WATCHER_FIX,
    check_desktop,
    keychain_result,
    session_bus_address,
    xembed_tray_owner,
)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_nothing_running_says_not_found_with_a_fix(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    r = by_name(check_desktop(env, timeout=2))
    assert set(r) == {"tray host", "notification server", "keychain"}
    assert not r["tray host"].ok
    assert "not found" in r["tray host"].detail
    assert "no session bus" in r["tray host"].detail
    assert r["tray host"].fix
    assert not r["notification server"].ok
    assert "no session bus" in r["notification server"].detail
    assert r["notification server"].fix


def test_gnome_without_tray_names_the_appindicator_extension(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CURRENT_DESKTOP": "ubuntu:GNOME"}
    r = by_name(check_desktop(env, timeout=2))
    assert not r["tray host"].ok
    assert r["tray host"].fix == GNOME_TRAY_FIX
    assert "AppIndicator" in r["tray host"].fix


def test_bare_session_bus_has_no_tray_and_no_notifications(session: Session) -> None:
    session.start_bus()
    r = by_name(check_desktop(session.full_env(), timeout=5))
    assert not r["tray host"].ok
    assert "no org.kde.StatusNotifierWatcher on the session bus" in r["tray host"].detail
    assert not r["notification server"].ok
    assert "nothing answers org.freedesktop.Notifications" in r["notification server"].detail
    assert "ServiceUnknown" in r["notification server"].detail


def test_x11_trayer_and_dunst_are_found(session: Session) -> None:
    session.start_bus()
    display = session.start_xvfb()
    session.start_trayer()
    session.start_dunst()
    r = by_name(check_desktop(session.full_env(), timeout=5))
    tray = r["tray host"]
    assert tray.ok, tray
    assert f"XEmbed tray on {display}" in tray.detail
    assert "_NET_SYSTEM_TRAY_S0" in tray.detail
    notif = r["notification server"]
    assert notif.ok, notif
    assert notif.detail.startswith("dunst ")
    assert "actions" in notif.detail and "body" in notif.detail
    assert notif.fix == ""  # dunst shows action buttons: no advice needed


def test_x11_without_trayer_reports_the_free_selection(session: Session) -> None:
    display = session.start_xvfb()
    selection, owner = xembed_tray_owner(display)
    assert (selection, owner) == ("_NET_SYSTEM_TRAY_S0", 0)
    r = by_name(check_desktop(session.full_env(), timeout=5))
    assert not r["tray host"].ok
    assert f"no XEmbed tray on {display}" in r["tray host"].detail


def test_status_notifier_watcher_with_host_is_a_tray(session: Session) -> None:
    session.start_bus()
    session.start_sni_watcher()
    r = by_name(check_desktop(session.full_env(), timeout=5))
    assert r["tray host"].ok, r["tray host"]
    assert "StatusNotifierItem watcher with a registered host" in r["tray host"].detail


def test_status_notifier_watcher_without_host_is_not_a_tray(session: Session) -> None:
    session.start_bus()
    session.start_sni_watcher("--no-host")
    r = by_name(check_desktop(session.full_env(), timeout=5))
    assert not r["tray host"].ok
    assert "no host is registered" in r["tray host"].detail
    assert r["tray host"].fix == HOSTLESS_WATCHER_FIX


def test_a_hostless_watcher_takes_the_icon_even_with_an_xembed_tray(session: Session) -> None:
    """Qt 6 picks StatusNotifierItem whenever a watcher runs, host or not: an XEmbed tray
    next to a hostless watcher shows nothing of ours, and the doctor must not say "ok"."""
    session.start_bus()
    display = session.start_xvfb()
    session.start_trayer()
    session.start_sni_watcher("--no-host")
    tray = by_name(check_desktop(session.full_env(), timeout=5))["tray host"]
    assert not tray.ok, tray
    assert "no host is registered" in tray.detail
    assert f"the XEmbed tray on {display} goes unused" in tray.detail
    assert tray.fix == HOSTLESS_WATCHER_FIX


@pytest.fixture
def silent_bus(tmp_path: Path) -> Iterator[str]:
    """A Unix socket that accepts connections and never says a word (a hung bus)."""
    path = tmp_path / "silent-bus"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stopping.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"unix:path={path}"
    stopping.set()
    t.join(5)
    for c in held:
        c.close()
    server.close()


def test_hung_session_bus_does_not_hang_the_doctor(tmp_path: Path, silent_bus: str) -> None:
    env = {"HOME": str(tmp_path), "DBUS_SESSION_BUS_ADDRESS": silent_bus}
    started = time.monotonic()
    r = by_name(check_desktop(env, timeout=1))
    elapsed = time.monotonic() - started
    assert "did not answer in 1 s" in r["notification server"].detail
    assert not r["tray host"].ok
    assert elapsed < 60  # bounded by the timeouts, not by the silent peer


def test_unreachable_display_is_reported_not_raised(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "DISPLAY": ":987"}
    r = by_name(check_desktop(env, timeout=2))
    assert not r["tray host"].ok
    assert "cannot open the X display :987" in r["tray host"].detail


def test_session_bus_address_falls_back_to_the_systemd_socket(tmp_path: Path) -> None:
    assert session_bus_address({"XDG_RUNTIME_DIR": str(tmp_path)}) is None
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "bus"))
    try:
        assert session_bus_address({"XDG_RUNTIME_DIR": str(tmp_path)}) == (
            f"unix:path={tmp_path / 'bus'}"
        )
        assert session_bus_address({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}) == "unix:path=/x"
    finally:
        sock.close()


class MemoryKeyring(KeyringBackend):
    """A real (if volatile) keyring backend, standing in for a secure system keychain."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.data.pop((service, username), None)


def test_keychain_fail_and_null_backends_are_not_ok() -> None:
    for backend in (fail.Keyring(), null.Keyring()):
        r = keychain_result(backend=backend)
        assert not r.ok
        assert "no secure keychain" in r.detail
        assert "Secret Service" in r.fix


def test_keychain_secure_backend_is_ok_and_named() -> None:
    r = keychain_result(backend=MemoryKeyring())
    assert r.ok
    assert "MemoryKeyring" in r.detail


def test_keychain_chainer_is_judged_by_its_members() -> None:
    chain = chainer.ChainerBackend()
    r = keychain_result(backend=chain)
    # The chainer holds every viable backend class imported so far (other test modules
    # define some, a plaintext one among them): it is secure only if all its members are.
    # With none (a bare machine) it is "no keychain".
    members = list(chain.backends)
    assert r.ok == (bool(members) and all(keychain_result(backend=b).ok for b in members))
    if not members:
        assert "no keychain" in r.detail
