"""A child started by a test answers Ctrl-C (issue 24 item 8).

A test run started as a background job of a script (``pytest ... &`` in a non-interactive
shell, as some CI runners do) inherits SIGINT *ignored*, and an ignored signal stays ignored
across exec: every process a test started then ignored the SIGINT the test sent it (a
watcher or a demo "stopped by Ctrl-C" ran on until the test's timeout). tests/conftest.py
gives SIGINT its default handler back at start-up, so children start with the default action.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _ignored(pid: int) -> int:
    """The mask of signals process ``pid`` ignores (SigIgn in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn line for {pid}")


def test_a_child_starts_with_the_default_sigint() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert not _ignored(child.pid) & (1 << (signal.SIGINT - 1)), "the child ignores SIGINT"
        child.send_signal(signal.SIGINT)
        assert child.wait(10) == -signal.SIGINT
    finally:
        child.kill()
        child.wait()


def test_a_run_started_with_sigint_ignored_still_gives_children_the_default() -> None:
    """The test above, in a pytest run started the way a background job starts it."""
    test = f"{Path(__file__).relative_to(REPO)}::test_a_child_starts_with_the_default_sigint"
    proc = subprocess.run(
        ["sh", "-c", 'trap "" INT; exec "$0" -m pytest -q -p no:cacheprovider "$1"',
         sys.executable, test],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
