"""The wheel, as a user gets it: built from this tree, installed in a new venv, run.

The venv is new and isolated (no --system-site-packages); to save time it is created
without its own pip and filled by this venv's pip (``pip --python``), which takes the
dependencies from pip's local cache when they are there. Everything the installed
``traystatus`` finds (SQL, icons, desktop files) must come from inside the wheel: the test
runs it from a folder outside the checkout, so nothing can leak in from the source tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from traystatus import __version__

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "io.github.statbus.traystatus"


@dataclass
class Installed:
    wheel: Path
    venv: Path
    home: Path  # an empty home: no profiles, no config of the developer's

    @property
    def traystatus(self) -> Path:
        return self.venv / "bin" / "traystatus"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "VIRTUAL_ENV"))}
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_STATE_HOME=str(self.home / ".local" / "state"),
            PYTHONPATH="",
            PATH=f"{self.venv / 'bin'}:/usr/bin:/bin",
            QT_QPA_PLATFORM="offscreen",
        )
        return env

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.traystatus), *args],
            cwd=self.home,  # outside the checkout
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python(self, code: str) -> str:
        return subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", code],
            cwd=self.home,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(base / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=280,
    )
    (wheel,) = (base / "dist").glob("traystatus-*.whl")
    venv = base / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        timeout=120,
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    home = base / "home"
    home.mkdir()
    yield Installed(wheel, venv, home)


def test_wheel_carries_sql_icons_and_desktop_files(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for needed in (
        "traystatus/_data/sql/install.sql",
        "traystatus/_data/sql/uninstall.sql",
        "traystatus/_data/resources/icons/traystatus.svg",
        "traystatus/_data/resources/icons/stable.svg",
        "traystatus/_data/resources/icons/processing.svg",
        f"traystatus/_data/linux/{APP_ID}.desktop",
        f"traystatus/_data/linux/{APP_ID}.metainfo.xml",
        f"traystatus/_data/linux/{APP_ID}.autostart.desktop.in",
        f"traystatus/_data/linux/icons/hicolor/256x256/apps/{APP_ID}.png",
        f"traystatus/_data/linux/icons/hicolor/scalable/apps/{APP_ID}.svg",
        "traystatus/cli/main.py",
        "traystatus/desktop/autostart.py",
    ):
        assert needed in names, f"{needed} is missing from {installed.wheel.name}"
    # No tests or caches in the wheel.
    assert not any(n.startswith("tests/") or "__pycache__" in n for n in names)


def test_venv_is_clean_and_isolated(installed: Installed) -> None:
    cfg = (installed.venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    out = installed.python("import traystatus, sys; print(traystatus.__file__); print(sys.prefix)")
    module_file, prefix = out.split()
    assert Path(prefix) == installed.venv
    assert Path(module_file).is_relative_to(installed.venv), "traystatus came from elsewhere"


def test_installed_paths_point_inside_the_wheel(installed: Installed) -> None:
    out = installed.python(
        "from traystatus import _paths as p; "
        "print(p.sql_dir()); print(p.resources_dir()); print(p.linux_data_dir())"
    )
    for line in out.split():
        path = Path(line)
        assert path.is_relative_to(installed.venv), path
        assert path.parent.name == "_data"
    assert (Path(out.split()[0]) / "install.sql").is_file()


def test_version(installed: Installed) -> None:
    proc = installed.run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"traystatus {__version__}"


def test_install_sql_then_status_from_the_wheel(installed: Installed, bare_db_dsn: str) -> None:
    """The packaged SQL installs into a bare StatBus database; then status reads it."""
    before = installed.run("status", "--source", "installed", "--dsn", bare_db_dsn)
    assert before.returncode == 3, before.stdout + before.stderr  # SQL not installed
    assert "install-sql" in before.stdout + before.stderr  # the message names the fix
    proc = installed.run("install-sql", "--dsn", bare_db_dsn)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = installed.run("status", "--dsn", bare_db_dsn, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["state"] == "stable"


def test_status_exit_codes_follow_the_database(
    installed: Installed, db_dsn: str, conn: object
) -> None:
    import psycopg

    assert isinstance(conn, psycopg.Connection)
    proc = installed.run("status", "--dsn", db_dsn)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # stable
    conn.execute(
        "INSERT INTO worker.tasks (command, state) VALUES ('derive_statistical_unit', 'pending')"
    )
    proc = installed.run("status", "--dsn", db_dsn, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # processing
    assert json.loads(proc.stdout)["state"] == "processing"


def test_desktop_files_install_from_the_wheel(installed: Installed) -> None:
    proc = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-m", "traystatus.desktop.files", "install"],
        cwd=installed.home,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    entry = installed.home / ".local" / "share" / "applications" / f"{APP_ID}.desktop"
    assert f"Exec={installed.traystatus}\n" in entry.read_text()
    icon = installed.home / ".local/share/icons/hicolor/48x48/apps" / f"{APP_ID}.png"
    assert icon.is_file()


def test_tray_app_from_the_wheel_starts_and_quits(installed: Installed, db_dsn: str) -> None:
    """The GUI face of the installed wheel: offscreen, it connects, then quits on SIGTERM."""
    import signal
    import time

    logdir = installed.home / "log"
    env = installed.env() | {"TRAYSTATUS_LOG_DIR": str(logdir)}
    proc = subprocess.Popen(
        [str(installed.traystatus), "--dsn", db_dsn, "-vv"],
        cwd=installed.home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    logfile = logdir / "traystatus.log"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if logfile.exists() and "state=<State.STABLE" in logfile.read_text():
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the tray app exited early: {proc.communicate()}"
        assert "state=<State.STABLE" in logfile.read_text()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
