"""The demo keeps the tray's import-endings ledger in its own folder, not in the user's
config folder: its database gets a new port (so a new ledger identity) every run, and a
ledger per run would pile up in the user's config for ever."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.demo.test_demo_cli import DEMO, _env, _processes_using, _read_until


def _ledgers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*")) if folder.is_dir() else []


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


@pytest.mark.timeout(300)
def test_runs_of_the_demo_leave_no_ledger_in_the_users_config(
    tmp_path: Path, pg_dir: Path
) -> None:
    config = tmp_path / "config"
    datadir = pg_dir / "pg"
    demo_ledgers = datadir.parent / "import-endings"
    env = _env(PYTHONUNBUFFERED="1", QT_QPA_PLATFORM="offscreen",
               TRAYSTATUS_CONFIG_DIR=str(config), TRAYSTATUS_LOG_DIR=str(tmp_path / "logs"))
    env.pop("TRAYSTATUS_ENDINGS_DIR", None)
    counts = []
    for _ in range(2):
        proc = subprocess.Popen(
            [*DEMO, "--speed", "4", "--datadir", str(datadir)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            _read_until(proc, r"tray app running")
            # The tray's monitor claims its ledger (holds its lock) once it has connected:
            # wherever that is, wait for it.
            deadline = time.monotonic() + 120
            while not _claimed(config / "import-endings", demo_ledgers):
                assert proc.poll() is None, "the demo exited"
                assert time.monotonic() < deadline, "the tray never claimed a ledger"
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, out
        assert _processes_using(datadir) == []
        counts.append(len(_ledgers(config / "import-endings")))
    assert counts == [0, 0], f"ledger files in the user's config after each run: {counts}"
    # The demo's own folder holds the last run's ledger only (the previous run's jobs are
    # gone from the demo database, and so is its ledger).
    kept = _ledgers(demo_ledgers)
    assert 1 <= len(kept) <= 2 and {Path(n).stem for n in kept} == {Path(kept[0]).stem}, kept
