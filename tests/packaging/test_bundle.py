"""The PyInstaller bundle, built by packaging/build-bundle.sh and run as a user would.

It must answer ``status`` with the right exit codes against the test database, start the
tray app offscreen, connect and report the state (seen in its debug log), and quit cleanly
on SIGTERM. ``PSYCOPG_IMPL=binary`` makes psycopg refuse to fall back to the machine's own
libpq: the bundle must carry psycopg-binary's, as it must on a machine without PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.fix_desktop import Session
from traystatus import __version__

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "io.github.statbus.traystatus"


@dataclass
class Bundle:
    folder: Path
    home: Path

    @property
    def exe(self) -> Path:
        return self.folder / "traystatus"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PG", "VIRTUAL_ENV", "PYTHON", "DBUS_", "QT_"))
            and k not in ("DISPLAY", "WAYLAND_DISPLAY")
        }
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_STATE_HOME=str(self.home / ".local" / "state"),
            XDG_RUNTIME_DIR=str(self.home / "runtime"),
            TRAYSTATUS_LOG_DIR=str(self.home / "log"),
            PATH="/usr/bin:/bin",
            QT_QPA_PLATFORM="offscreen",
            PSYCOPG_IMPL="binary",
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.exe), *args],
            cwd=self.home,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    base = tmp_path_factory.mktemp("bundle")
    proc = subprocess.run(
        ["bash", str(ROOT / "packaging" / "build-bundle.sh"), str(base / "dist")],
        env=os.environ | {"TRAYSTATUS_BUNDLE_WORKDIR": str(base / "work")},
        capture_output=True,
        text=True,
        timeout=290,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    home = base / "home"
    (home / "runtime").mkdir(parents=True, mode=0o700)
    yield Bundle(base / "dist" / "traystatus", home)


def test_bundle_carries_its_data(bundle: Bundle) -> None:
    data = bundle.folder / "_internal" / "traystatus" / "_data"
    assert (data / "sql" / "install.sql").is_file()
    assert (data / "resources" / "icons" / "stable.svg").is_file()
    assert (data / "linux" / f"{APP_ID}.autostart.desktop.in").is_file()
    # Unused Qt modules stay out.
    qt = bundle.folder / "_internal" / "PySide6"
    assert not list(qt.glob("QtQml*")) and not list(qt.glob("QtQuick*"))
    assert list(qt.glob("QtSvg*")), "QtSvg is needed for the icons"


def test_bundle_version(bundle: Bundle) -> None:
    proc = bundle.run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"traystatus {__version__}"


def test_bundle_status_exit_codes(
    bundle: Bundle, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    proc = bundle.run("status", "--dsn", db_dsn, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["state"] == "stable"
    conn.execute(
        "INSERT INTO worker.tasks (command, state) VALUES ('derive_statistical_unit', 'pending')"
    )
    proc = bundle.run("status", "--dsn", db_dsn)
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_bundle_doctor_runs_its_desktop_checks(bundle: Bundle, db_dsn: str) -> None:
    """dbus-fast, keyring and libxcb lookups work frozen; no session here: clear warnings."""
    proc = bundle.run("doctor", "--dsn", db_dsn, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["check"]: c for c in json.loads(proc.stdout)}
    assert checks["tray host"]["level"] == "warn"
    assert "not found" in checks["tray host"]["detail"]
    assert checks["notification server"]["level"] == "warn"
    assert "keychain" in checks


def test_bundle_tray_app_connects_and_quits_cleanly(bundle: Bundle, db_dsn: str) -> None:
    logfile = bundle.home / "log" / "traystatus.log"
    logfile.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [str(bundle.exe), "--dsn", db_dsn, "-vv"],
        cwd=bundle.home,
        env=bundle.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        log = ""
        while time.monotonic() < deadline and proc.poll() is None:
            log = logfile.read_text() if logfile.exists() else ""
            if "state=<State.STABLE" in log:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the tray app exited early: {proc.communicate()}"
        assert "state=<State.STABLE" in log, f"no stable state reported:\n{log[-3000:]}"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Fatal Python error" not in err, err
    assert "tray app stopped" in logfile.read_text()


def test_bundle_shows_its_icon_in_a_real_x11_tray(
    bundle: Bundle, db_dsn: str, session: Session
) -> None:
    """xcb, not offscreen: the bundled Qt platform plugin loads and docks in trayer."""
    session.start_bus()
    session.start_xvfb()
    session.start_trayer()
    session.start_dunst()
    logdir = bundle.home / "log-x11"
    env = bundle.env(QT_QPA_PLATFORM="xcb", TRAYSTATUS_LOG_DIR=str(logdir)) | {
        k: session.env[k] for k in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS")
    }
    proc = subprocess.Popen(
        [str(bundle.exe), "--dsn", db_dsn, "-vv"],
        cwd=bundle.home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    logfile = logdir / "traystatus.log"
    try:
        deadline = time.monotonic() + 90
        log = ""
        while time.monotonic() < deadline and proc.poll() is None:
            log = logfile.read_text() if logfile.exists() else ""
            if "showing the tray icon" in log and "state=<State.STABLE" in log:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the tray app exited early: {proc.communicate()}"
        assert "showing the tray icon" in log, log[-3000:]
        doctor = subprocess.run(
            [str(bundle.exe), "doctor", "--dsn", db_dsn, "--json"],
            cwd=bundle.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        checks = {c["check"]: c for c in json.loads(doctor.stdout)}
        assert checks["tray host"]["level"] == "ok", checks["tray host"]
        assert checks["notification server"]["level"] == "ok", checks["notification server"]
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
