"""packaging/systemd/traystatus-serve.service passes ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "traystatus-serve.service"


def test_unit_verifies(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (Debian: systemd)")
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/traystatus serve" in text
    assert "KillSignal=SIGTERM" in text and "NoNewPrivileges=yes" in text
    # verify checks that ExecStart's program exists: point it at this environment's script
    script = Path(sys.executable).parent / "traystatus"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("/usr/local/bin/traystatus", str(script)))
    result = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "traystatus-serve.service" not in result.stderr, result.stderr  # no warnings
