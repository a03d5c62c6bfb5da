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


def _exec_start_args() -> list[str]:
    text = UNIT.read_text()
    start = text.index("ExecStart=")
    lines = []
    for line in text[start + len("ExecStart="):].splitlines():
        lines.append(line.rstrip("\\").strip())
        if not line.rstrip().endswith("\\"):
            break
    return " ".join(lines).split()


def test_the_unit_says_what_the_server_does() -> None:
    """The unit and the server agree: the options it passes exist, the files it passes are
    not called optional, the permissions it asks for are ones the server does not warn
    about, and `systemctl reload` is the server's SIGHUP (the token file read again)."""
    from traystatus.cli.main import build_parser

    args = _exec_start_args()
    assert args[0] == "/usr/local/bin/traystatus"
    values = {"${TRAYSTATUS_SERVE_DSN}": "host=/run/postgresql dbname=statbus",
              "${TRAYSTATUS_SERVE_ORIGIN}": "https://statbus.example.org"}
    parsed = build_parser().parse_args([values.get(a, a) for a in args[1:]])
    assert parsed.token_file and parsed.jwt_secret_file and parsed.verbose >= 1
    assert parsed.allow_origin == ["https://statbus.example.org"]
    text = UNIT.read_text()
    comments = [line for line in text.splitlines() if line.startswith("#")]
    for path in (parsed.token_file, parsed.jwt_secret_file):
        described = [c for c in comments if path in c]
        assert described and not any("optional" in c for c in described), path
    assert "640" not in text and "chmod 600" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
