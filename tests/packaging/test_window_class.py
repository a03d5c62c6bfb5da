"""The tray app's X window class is ``traystatus`` whatever script started it.

Desktops match a window to its menu entry by WM_CLASS (the entry's StartupWMClass); Qt
takes the instance part from argv[0], so a launcher named ``tray.py`` (as the demo's was)
made it ``tray.py``. Real Xvfb, the real app started from such a launcher, ``xprop``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from scripts.virtual_desktop import wait_for
from tests.fix_desktop import Session
from traystatus._paths import linux_data_dir
from traystatus.app.main import DESKTOP_FILE_NAME

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = """\
import argparse, sys
from traystatus.app.main import run_app
sys.exit(run_app(argparse.Namespace(dsn=sys.argv[1], profile=None, replace=False, verbose=0)))
"""


def _windows(session: Session, pid: int) -> list[str]:
    out = subprocess.run(["xdotool", "search", "--pid", str(pid)], env=session.full_env(),
                         capture_output=True, text=True, timeout=30, check=False)
    return out.stdout.split()


def _wm_class(session: Session, window: str) -> str:
    out = subprocess.run(["xprop", "-id", window, "WM_CLASS"], env=session.full_env(),
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def test_window_class_is_traystatus_even_from_a_tray_py_launcher(
    session: Session, tmp_path: Path, db_dsn: str
) -> None:
    session.start_xvfb()  # no tray host: the app shows its status window
    launcher = tmp_path / "tray.py"
    launcher.write_text(LAUNCHER)
    env = session.full_env()
    env.update(PYTHONPATH=str(REPO), QT_QPA_PLATFORM="xcb",
               TRAYSTATUS_CONFIG_DIR=str(tmp_path / "config"),
               TRAYSTATUS_LOG_DIR=str(tmp_path / "log"))
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    log = (tmp_path / "app.log").open("wb")
    app = subprocess.Popen([sys.executable, str(launcher), db_dsn], env=env, cwd=str(tmp_path),
                           stdout=log, stderr=subprocess.STDOUT)
    try:
        classes: list[str] = []

        def mapped() -> bool:
            classes[:] = [_wm_class(session, w) for w in _windows(session, app.pid)]
            return any("=" in c for c in classes)

        wait_for(mapped, "the app's window")
        time.sleep(0.5)
        mapped()
        assert classes, (tmp_path / "app.log").read_text()
        for c in classes:
            if "=" in c:
                assert c == 'WM_CLASS(STRING) = "traystatus", "traystatus"', classes
    finally:
        app.terminate()
        app.wait(30)
        log.close()


def test_desktop_entries_name_the_window_class() -> None:
    data = linux_data_dir()
    entry = data / f"{DESKTOP_FILE_NAME}.desktop"
    assert entry.is_file(), "setDesktopFileName must name the packaged .desktop file"
    for path in (entry, data / f"{DESKTOP_FILE_NAME}.autostart.desktop.in"):
        lines = path.read_text().splitlines()
        assert "StartupWMClass=traystatus" in lines, path
    assert os.path.basename(str(entry)) == "io.github.statbus.traystatus.desktop"
