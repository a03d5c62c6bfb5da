"""A StatusNotifierWatcher with no host must not hide the app (Qt 6 would).

Qt 6 shows the icon as a StatusNotifierItem as soon as the watcher's name has an owner,
and says the tray is available, even when no host (panel) is registered to draw it: the
icon is then invisible and, trusting Qt, the app never showed its window. Real Xvfb,
real session bus, the test's real StatusNotifierWatcher (sni_watcher.py), the real
controller under the xcb platform in its own process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fix_desktop import Session

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """\
import asyncio, json, sys, threading
from PySide6.QtWidgets import QApplication, QSystemTrayIcon
from traystatus.app.main import new_loop
app = QApplication(["traystatus"])
app.setQuitOnLastWindowClosed(False)
loop = new_loop(app)  # the app's loop; never closed here, which must not abort the exit
asyncio.set_event_loop(loop)
from traystatus.app.controller import Controller
from traystatus.core.config.profiles import ProfileStore

def report(ctl):
    print(json.dumps({"qt_says_available": QSystemTrayIcon.isSystemTrayAvailable(),
                      "in_tray": ctl.in_tray, "window": ctl.window.isVisible()}), flush=True)

async def main():
    ctl = Controller(ProfileStore(), dsn=sys.argv[1], use_desktop_notifier=False)
    ctl.start()
    await asyncio.sleep(1.5)
    report(ctl)
    go = asyncio.Event()  # the test registers a host, then says "go" on stdin
    threading.Thread(target=lambda: (sys.stdin.readline(), loop.call_soon_threadsafe(go.set)),
                     daemon=True).start()
    await go.wait()
    # No ctl._place() here: the watcher's StatusNotifierHostRegistered signal moves the
    # icon, well before the 5 s timer would.
    for _ in range(40):
        if ctl.in_tray:
            break
        await asyncio.sleep(0.05)
    report(ctl)
    await ctl.shutdown()

loop.run_until_complete(main())
"""


def _start_app(session: Session, tmp_path: Path, dsn: str) -> subprocess.Popen[str]:
    env = session.full_env()
    env.update(PYTHONPATH=str(REPO), QT_QPA_PLATFORM="xcb",
               TRAYSTATUS_CONFIG_DIR=str(tmp_path / "config"),
               TRAYSTATUS_LOG_DIR=str(tmp_path / "log"))
    return subprocess.Popen([sys.executable, "-c", SCRIPT, dsn], env=env, cwd=str(tmp_path),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _line(app: subprocess.Popen[str]) -> dict[str, Any]:
    assert app.stdout is not None
    line = app.stdout.readline()
    if not line:
        _, err = app.communicate(timeout=30)
        raise AssertionError(f"the app said nothing; stderr:\n{err}")
    result: dict[str, Any] = json.loads(line)
    return result


def _register_host(session: Session) -> None:
    subprocess.run(
        ["dbus-send", "--session", "--print-reply", "--dest=org.kde.StatusNotifierWatcher",
         "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher.RegisterStatusNotifierHost",
         "string:org.kde.StatusNotifierHost-test"],
        env=session.full_env(), check=True, capture_output=True, timeout=30,
    )


def test_a_watcher_without_host_shows_the_window_then_moves_to_the_tray(
    session: Session, tmp_path: Path, db_dsn: str
) -> None:
    session.start_bus()
    session.start_xvfb()
    session.start_sni_watcher("--no-host")
    app = _start_app(session, tmp_path, db_dsn)
    try:
        first = _line(app)
        # Qt 6 believes the watcher alone (the reason for this test) ...
        assert first["qt_says_available"] is True
        # ... the app does not: no host draws items, so the window stands in.
        assert first == {"qt_says_available": True, "in_tray": False, "window": True}
        _register_host(session)  # a panel comes up
        assert app.stdin is not None
        app.stdin.write("go\n")
        app.stdin.flush()
        assert _line(app) == {"qt_says_available": True, "in_tray": True, "window": False}
        _, err = app.communicate(timeout=60)
        assert app.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()


def test_a_watcher_with_a_host_is_a_tray(session: Session, tmp_path: Path, db_dsn: str) -> None:
    session.start_bus()
    session.start_xvfb()
    session.start_sni_watcher()
    app = _start_app(session, tmp_path, db_dsn)
    try:
        assert _line(app)["in_tray"] is True
        assert app.stdin is not None
        app.stdin.write("go\n")
        app.stdin.flush()
        assert _line(app)["in_tray"] is True
        app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()


def test_no_watcher_and_an_xembed_tray_is_a_tray(
    session: Session, tmp_path: Path, db_dsn: str
) -> None:
    session.start_bus()
    session.start_xvfb()
    session.start_trayer()
    app = _start_app(session, tmp_path, db_dsn)
    try:
        assert _line(app) == {"qt_says_available": True, "in_tray": True, "window": False}
        assert app.stdin is not None
        app.stdin.write("go\n")
        app.stdin.flush()
        _line(app)
        app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()
