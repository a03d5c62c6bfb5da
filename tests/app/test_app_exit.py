"""How the real tray app process ends: the display dying under it, its Qt loop stopped from
outside, Quit, SIGTERM and --replace. Each run is a real ``run_app`` in a child process
connected to the test database; what is checked is what a person or a supervisor sees: the
exit code, stderr (no traceback, no "Task was destroyed") and the socket file left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QDir
from PySide6.QtWidgets import QApplication

from traystatus.app.single import QUIT, send, server_name
from traystatus.core.model.exitcodes import ExitCode

REPO = Path(__file__).resolve().parents[2]

# The child: run_app as `traystatus` runs it. TEST_STOP_AFTER_MS makes the wrapper stop the
# Qt loop from outside (QApplication.exit(1)) once the app is up, as a dying display does.
CHILD = """
import argparse, os, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from traystatus.app.main import run_app
app = QApplication(sys.argv[:1])
stop_after = int(os.environ.get("TEST_STOP_AFTER_MS", "0"))
if stop_after:
    QTimer.singleShot(stop_after, lambda: QApplication.exit(1))
ns = argparse.Namespace(dsn=sys.argv[1], profile=None, replace="--replace" in sys.argv, verbose=0)
sys.exit(run_app(ns))
"""

BAD_SIGNS = ("Traceback", "Task was destroyed", "Event loop stopped before Future completed")


def socket_path(name: str) -> Path:
    """Where QLocalServer puts the socket file for ``name`` (Qt's temp folder)."""
    return Path(QDir.tempPath()) / name


def start_app(dsn: str, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, dsn, *extra], env=env, cwd=str(REPO),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_listening(name: str, proc: subprocess.Popen[str], within: float = 90) -> None:
    deadline = time.monotonic() + within
    while not send(name, b"ping\n", 500):
        if proc.poll() is not None:
            raise AssertionError(f"the app exited early ({proc.returncode}): "
                                 f"{proc.communicate()[1]}")
        assert time.monotonic() < deadline, "the app never started listening"
        time.sleep(0.3)


def log_text(tmp_path: Path) -> str:
    path = tmp_path / "logs" / "traystatus.log"
    return path.read_text() if path.exists() else ""


def assert_clean(err: str) -> None:
    for sign in BAD_SIGNS:
        assert sign not in err, err


@pytest.fixture
def app_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen",
               TRAYSTATUS_CONFIG_DIR=str(tmp_path / "config"),
               TRAYSTATUS_LOG_DIR=str(tmp_path / "logs"))
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)  # no notification server: fallback path
    return env


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.communicate()


@pytest.fixture
def xvfb(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private X server (display number chosen by Xvfb itself)."""
    r, w = os.pipe()
    with open(tmp_path / "Xvfb.log", "wb") as log:
        proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
            pass_fds=(w,), stdout=log, stderr=log,
        )
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    assert number, (tmp_path / "Xvfb.log").read_text()
    try:
        yield f":{number}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_x_server_dying_under_the_app_ends_it_cleanly(
    qapp: QApplication, tmp_path: Path, db_dsn: str, app_env: dict[str, str],
    procs: list[subprocess.Popen[str]], xvfb: tuple[str, subprocess.Popen[bytes]],
) -> None:
    display, server = xvfb
    env = dict(app_env, QT_QPA_PLATFORM="xcb", DISPLAY=display)
    name = server_name(f"dsn:{db_dsn}")
    app = start_app(db_dsn, env)
    procs.append(app)
    wait_listening(name, app)
    time.sleep(2)  # let the monitor connect and the notifier start
    server.send_signal(signal.SIGTERM)  # the display goes away under the running app
    _, err = app.communicate(timeout=120)
    assert app.returncode == ExitCode.STOPPED, err
    assert_clean(err)
    stopped = [line for line in log_text(tmp_path).splitlines()
               if "event loop stopped before Quit" in line]
    assert len(stopped) == 1, log_text(tmp_path)
    assert "ERROR" in stopped[0]
    assert not socket_path(name).exists()


def test_loop_stopped_from_outside_ends_the_app_cleanly(
    qapp: QApplication, tmp_path: Path, db_dsn: str, app_env: dict[str, str],
    procs: list[subprocess.Popen[str]],
) -> None:
    name = server_name(f"dsn:{db_dsn}")
    app = start_app(db_dsn, dict(app_env, TEST_STOP_AFTER_MS="4000"))
    procs.append(app)
    wait_listening(name, app)
    _, err = app.communicate(timeout=120)
    assert app.returncode == ExitCode.STOPPED, err
    assert_clean(err)
    assert err.count("event loop stopped before Quit") == 1, err
    # Shut down properly: the monitor stopped (closing its connection) before the exit.
    assert "traystatus tray app stopped (exit code 1)" in log_text(tmp_path)
    assert not socket_path(name).exists()


def test_quit_sigterm_and_replace_leave_no_socket_file(
    qapp: QApplication, db_dsn: str, app_env: dict[str, str],
    procs: list[subprocess.Popen[str]],
) -> None:
    name = server_name(f"dsn:{db_dsn}")
    path = socket_path(name)

    # Quit (what the menu's Quit and --replace's message do).
    first = start_app(db_dsn, app_env)
    procs.append(first)
    wait_listening(name, first)
    assert path.is_socket()
    assert send(name, QUIT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert_clean(err)
    assert not path.exists()

    # SIGTERM (a session ending, a service manager).
    second = start_app(db_dsn, app_env)
    procs.append(second)
    wait_listening(name, second)
    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert_clean(err)
    assert not path.exists()

    # --replace: the old one goes and takes its socket with it, the new one owns the name.
    third = start_app(db_dsn, app_env)
    procs.append(third)
    wait_listening(name, third)
    fourth = start_app(db_dsn, app_env, "--replace")
    procs.append(fourth)
    _, err = third.communicate(timeout=120)
    assert third.returncode == 0, err
    assert_clean(err)
    wait_listening(name, fourth)
    assert path.is_socket()
    fourth.send_signal(signal.SIGTERM)
    _, err = fourth.communicate(timeout=120)
    assert fourth.returncode == 0, err
    assert_clean(err)
    assert not path.exists()


def test_a_stale_socket_file_does_not_block_the_next_start(
    qapp: QApplication, db_dsn: str, app_env: dict[str, str],
    procs: list[subprocess.Popen[str]],
) -> None:
    """A crash (SIGKILL) leaves the file behind; the next start removes it and listens."""
    name = server_name(f"dsn:{db_dsn}")
    crashed = start_app(db_dsn, app_env)
    procs.append(crashed)
    wait_listening(name, crashed)
    crashed.kill()
    crashed.communicate(timeout=60)
    assert socket_path(name).is_socket()  # nobody could clean up
    again = start_app(db_dsn, app_env)
    procs.append(again)
    wait_listening(name, again)
    again.send_signal(signal.SIGTERM)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert not socket_path(name).exists()


# A script that builds the app's loop, leaves work in the loop's default executor (what
# the monitor's ledger file does with asyncio.to_thread, one call still running) and exits
# without closing the loop: an exception on the way out, or a harness that forgot.
UNCLOSED = """
import asyncio, sys, time
from PySide6.QtWidgets import QApplication
from traystatus.app.main import new_loop
app = QApplication(sys.argv[:1])
loop = new_loop(app)
asyncio.set_event_loop(loop)

async def main():
    await asyncio.to_thread(time.sleep, 0.01)
    loop.run_in_executor(None, time.sleep, 0.3)  # still running at exit
    print("done", flush=True)

loop.run_until_complete(main())
"""


def test_an_exit_without_closing_the_loop_does_not_abort(app_env: dict[str, str]) -> None:
    """qasync's own default executor is QThreads; one still running when Python and Qt
    tear down aborts the process ("QThread: Destroyed while thread '' is still running",
    exit -6: the tray app crashing on its way out). The app's loop uses Python threads."""
    proc = subprocess.run([sys.executable, "-c", UNCLOSED], env=app_env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout == "done\n", proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "QThread" not in proc.stderr
    assert_clean(proc.stderr)


PROFILE_CHILD = """
import argparse, sys
from PySide6.QtWidgets import QApplication
from traystatus.app.main import run_app
app = QApplication(sys.argv[:1])
ns = argparse.Namespace(dsn=None, profile=sys.argv[1], replace=False, verbose=0)
sys.exit(run_app(ns))
"""


def test_quit_while_a_keychain_read_hangs_exits_cleanly(
    qapp: QApplication, app_env: dict[str, str], tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    """Quit while the keychain thread is stuck in a read (a locked keychain's prompt): the
    app still ends at once with exit code 0, no abort and no traceback."""
    from traystatus.core.config.profiles import CONFIG_FILE, ConnectionProfile, ProfileStore

    ProfileStore(tmp_path / "config" / CONFIG_FILE).put(
        ConnectionProfile(name="relayed", relay="ws://127.0.0.1:9/"))
    asked = tmp_path / "asked"
    env = dict(app_env, PYTHON_KEYRING_BACKEND="tests.cli.keyrings.HangingKeyring",
               TRAYSTATUS_TEST_KEYRING=str(tmp_path / "keyring.json"),
               TRAYSTATUS_TEST_KEYRING_ASKED=str(asked))
    name = server_name("relayed")
    proc = subprocess.Popen([sys.executable, "-c", PROFILE_CHILD, "relayed"], env=env,
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    procs.append(proc)
    wait_listening(name, proc)
    deadline = time.monotonic() + 60
    while not asked.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the app never read the keychain"
        time.sleep(0.1)
    assert send(name, QUIT)
    _, err = proc.communicate(timeout=40)  # well before the keychain's minute is over
    assert proc.returncode == 0, err
    assert "QThread" not in err
    assert_clean(err)
