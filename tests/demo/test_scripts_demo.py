"""``bash scripts/demo`` (the README's main command) without a screen, stopped the ways a
person stops it: the app ends first and cleanly, then the virtual desktop; nothing is left.

Without a screen the script starts its own Xvfb, session bus, trayer and dunst. Ctrl-C in a
terminal sends SIGINT to the whole foreground process group: the X server used to get it
too and die before the app, which then said "The X11 connection broke (error 1). Did the
X11 server die?" and exited uncleanly.

The runs share one user config folder: the tray's import-endings ledger is keyed by host,
port, database and login, the demo's port changes every run, and the demo used to leave a
ledger per run there (it keeps its own beside its database now).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.demo.test_demo_cli import _processes_using

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent  # the virtualenv running the tests
X11_BROKE = re.compile(r"X11 connection broke|X11 server die|XIO|Fatal IO error", re.I)


@pytest.fixture(scope="module")
def user_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's config folder, the same for every run (as a person's is)."""
    return tmp_path_factory.mktemp("user") / "config"


def _claimed(*folders: Path) -> bool:
    """A running monitor holds the lock of its ledger (core/watch/endings.py LedgerFile)."""
    for lock in (p for f in folders if f.is_dir() for p in f.glob("*.lock")):
        with lock.open("ab") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


@pytest.fixture(scope="module")
def demo_data() -> Iterator[Path]:
    """One data folder for the module's runs (the first creates the database, the others
    reuse it, as a person's demo does), outside pytest's temporary root (fix_db.pg_dir)."""
    base = Path(tempfile.mkdtemp(prefix="traystatus-test-"))
    base.chmod(0o755)
    try:
        yield base / "pg"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _ours(marker: str) -> list[str]:
    """Live processes whose environment holds ``marker`` (everything the script started
    inherits it, whichever session it runs in)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker.encode() in env:
            found.append(f"{pid}: {cmd}")
    return found


def _terminal_ctrl_c(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's whole foreground process group


def _to_the_script(sig: signal.Signals) -> Callable[[subprocess.Popen[bytes]], None]:
    return lambda proc: proc.send_signal(sig)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a script starts it


CASES = {
    "Ctrl-C in the terminal": (_terminal_ctrl_c, None),
    "SIGTERM to the script": (_to_the_script(signal.SIGTERM), None),
    "SIGINT to the script started as a background job": (
        _to_the_script(signal.SIGINT), _ignore_sigint),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", list(CASES))
def test_stopping_the_demo_stops_the_app_before_its_desktop(
    case: str, tmp_path: Path, demo_data: Path, user_config: Path
) -> None:
    send, preexec = CASES[case]
    home = tmp_path / "home"
    home.mkdir()
    logs = tmp_path / "logs"
    marker = str(logs)  # unique to this run, inherited by every child
    ledgers = user_config / "import-endings"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "XDG_RUNTIME_DIR",
                        "DBUS_SESSION_BUS_ADDRESS", "TRAYSTATUS_DEMO_SIGINT_RESET")}
    env.pop("TRAYSTATUS_ENDINGS_DIR", None)
    env.update(TRAYSTATUS_DEMO_VENV=str(VENV),  # no installing from a test
               HOME=str(home), TRAYSTATUS_CONFIG_DIR=str(user_config),
               TRAYSTATUS_LOG_DIR=marker,
               XDG_DATA_HOME=str(home / "data"), XDG_STATE_HOME=str(home / "state"),
               XDG_CACHE_HOME=str(home / "cache"), PYTHONUNBUFFERED="1")
    out_file = tmp_path / "out.txt"
    log_file = logs / "traystatus.log"
    with out_file.open("wb") as sink:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "demo"), "--speed", "4", "--datadir",
             str(demo_data)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
            preexec_fn=preexec,
        )
    try:
        deadline = time.monotonic() + 150
        # The app is on the virtual desktop: its X connection is up, its icon shown.
        while "showing the tray icon" not in (log_file.read_text() if log_file.exists()
                                              else ""):
            assert proc.poll() is None, f"the demo exited: {out_file.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no tray app: {out_file.read_text()[-3000:]}"
            time.sleep(0.2)
        # ... and connected: its monitor holds its import-endings ledger, wherever that is.
        while not _claimed(ledgers, demo_data.parent / "import-endings"):
            assert proc.poll() is None, f"the demo exited: {out_file.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no ledger: {log_file.read_text()[-3000:]}"
            time.sleep(0.1)
        send(proc)
        code = proc.wait(90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(90)
    out = out_file.read_text()
    log = log_file.read_text()
    assert code == 130, out
    assert "traystatus demo: stopped; nothing left running" in out, out
    assert not X11_BROKE.search(out), out
    assert not X11_BROKE.search(log), log
    assert "did not stop within" not in out, out  # every step ended within its deadline
    assert "traystatus tray app stopped (exit code 0)" in log, log
    assert _ours(marker) == []
    assert _processes_using(demo_data) == []
    left = sorted(p.name for p in ledgers.glob("*")) if ledgers.is_dir() else []
    assert left == [], f"the demo's ledger files in the user's config folder: {left}"
