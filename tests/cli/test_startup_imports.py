"""One-shot commands load only what they use: no Qt, no keyring, no demo, no desktop code.

Start-up cost is most of what `traystatus status` costs a script or a status bar (the
figures are in docs/cli.md); every module here is imported for nothing by `status`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.conftest import Cli

NOT_FOR_ONE_SHOTS = (
    "PySide6",
    "shiboken6",
    "qasync",
    "keyring",
    "desktop_notifier",
    "dbus_fast",
    "traystatus.app",
    "traystatus.demo",
    "traystatus.desktop",
    "logging.handlers",
)

PROBE = """
import sys
from traystatus.cli.main import main
code = main(sys.argv[1:])
bad = sorted(m for m in sys.modules if m.startswith(%r))
print("LOADED:" + ",".join(bad), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("command", [["status"], ["status", "--json", "--details"]])
def test_status_imports_nothing_it_does_not_use(cli: Cli, db_dsn: str, command: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE % (NOT_FOR_ONE_SHOTS,), *command, "--dsn", db_dsn],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cli.home,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    loaded = r.stderr.rsplit("LOADED:", 1)[1].strip()
    assert loaded == "", f"`traystatus {' '.join(command)}` imported {loaded}"


def test_the_probe_can_fail(cli: Cli, db_dsn: str) -> None:
    """The same probe sees a module that was imported (so the test above can fail)."""
    code = "import keyring\n" + PROBE % (NOT_FOR_ONE_SHOTS,)
    r = subprocess.run(
        [sys.executable, "-c", code, "status", "--dsn", db_dsn],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cli.home,
        check=False,
    )
    assert "keyring" in r.stderr.rsplit("LOADED:", 1)[1]
