"""``traystatus demo`` as a user runs it: a real subprocess, a real embedded server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from traystatus.demo.cli import headless_reason, tray_argv, tray_command

DEMO = [sys.executable, "-m", "traystatus", "demo"]
TRAYSTATUS = Path(sys.executable).with_name("traystatus")


def _processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (e.g. postgres -D path)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(extra)
    return env


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 120) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"never printed {pattern!r}; got {lines}")


def test_no_screen_says_so_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*DEMO, "--datadir", str(tmp_path / "pg")], env=_env(), capture_output=True,
        text=True, timeout=60,
    )
    assert proc.returncode == 3
    err = [line for line in proc.stderr.splitlines() if "Warning" not in line
           and "return Path" not in line]
    assert len(err) == 1, proc.stderr
    assert "no screen" in err[0] and "xvfb-run -a traystatus demo" in err[0]
    assert "--no-tray" in err[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "pg").exists()  # refused before starting anything


def test_headless_reason() -> None:
    assert headless_reason({}) is not None
    assert headless_reason({"DISPLAY": ":0"}) is None
    assert headless_reason({"WAYLAND_DISPLAY": "wayland-0"}) is None
    assert headless_reason({"QT_QPA_PLATFORM": "offscreen"}) is None


def test_tray_argv_keeps_the_password_off_the_command_line() -> None:
    argv, password = tray_argv("host=127.0.0.1 port=5 dbname=d user=u password=s3cret", 1)
    assert password == "s3cret"
    assert "s3cret" not in " ".join(argv)
    assert argv[0] == "--dsn" and "user=u" in argv[1] and argv[2:] == ["-v"]


def test_the_tray_child_is_the_plain_app_with_the_password_in_its_environment() -> None:
    """No demo module in between (the tray app is `python -m traystatus --dsn ...`), and
    the password in PGPASSWORD only."""
    command, env = tray_command("host=127.0.0.1 port=5 dbname=d user=u password=s3cret")
    assert command[:3] == [sys.executable, "-m", "traystatus"] and command[3] == "--dsn"
    assert "s3cret" not in " ".join(command) and env["PGPASSWORD"] == "s3cret"


@pytest.mark.timeout(240)
def test_no_tray_serves_the_analyst_and_ctrl_c_leaves_nothing_running(pg_dir: Path) -> None:
    datadir = pg_dir / "pg"
    proc = subprocess.Popen(
        [*DEMO, "--no-tray", "--speed", "4", "-v", "--datadir", str(datadir)],
        env=_env(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = _read_until(proc, r"^  host=")
        dsn = lines[-1].strip()
        assert "user=demo.analyst@example.org" in dsn and "password=" in dsn
        # The analyst logs in with a password (not trust) and sees the API, as on StatBus.
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("demo.analyst@example.org",)
            conn.execute("SELECT public.is_system_stable()")
        bad = dsn.replace("password=", "password=x")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(bad, connect_timeout=10).close()
        # The printed command line works as printed (the CLI's status command).
        hint = _read_until(proc, r"^  e\.g\. PGPASSWORD=")[-1].strip()[len("e.g. "):]
        status = subprocess.run(
            ["sh", "-c", hint.replace(" traystatus ", f" {TRAYSTATUS} status --timeout 60 ", 1)],
            env=_env(), capture_output=True, text=True, timeout=120,
        )
        assert status.returncode in (0, 1), status.stderr  # stable or processing
        # The simulator works: the system leaves stable within its first import.
        _read_until(proc, r"upload_completed")
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            assert conn.execute("SELECT public.is_system_stable()").fetchone() == (False,)
        # A second demo on the same folder is refused instead of stopping this one's server.
        second = subprocess.run(
            [*DEMO, "--no-tray", "--datadir", str(datadir)], env=_env(), capture_output=True,
            text=True, timeout=60,
        )
        assert second.returncode == 3 and "another traystatus demo" in second.stderr
        assert _processes_using(datadir)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "nothing left running" in out
    assert _processes_using(datadir) == []


@pytest.mark.timeout(240)
def test_restart_reuses_the_folder_and_starts_clean(pg_dir: Path) -> None:
    """Second start: schema already there, previous run's jobs gone, new password."""
    datadir = pg_dir / "pg"
    dsns = []
    for _ in range(2):
        proc = subprocess.Popen(
            [*DEMO, "--no-tray", "--speed", "20", "--datadir", str(datadir)],
            env=_env(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        try:
            dsns.append(_read_until(proc, r"^  host=")[-1].strip())
            with psycopg.connect(dsns[-1], autocommit=True, connect_timeout=10) as conn:
                jobs = conn.execute("SELECT count(*) FROM public.import_job").fetchone()
                assert jobs is not None and jobs[0] <= 1  # a fresh stage
            time.sleep(1.5)  # let the simulator write something
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert _processes_using(datadir) == []
    assert dsns[0] != dsns[1]  # a fresh password each run
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsns[0], connect_timeout=5).close()  # server is down


@pytest.mark.timeout(240)
def test_sigterm_while_setting_up_still_stops_the_server(pg_dir: Path) -> None:
    """scripts/demo passes a Ctrl-C on as SIGTERM, which may come before the demo's loop
    runs: Python's default would end the process at once and leave PostgreSQL running."""
    datadir = pg_dir / "pg"
    proc = subprocess.Popen(
        [*DEMO, "--no-tray", "--datadir", str(datadir)], env=_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _read_until(proc, r"starting PostgreSQL")
        deadline = time.monotonic() + 60
        while not (datadir / "postmaster.pid").exists():  # the server is starting
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 130, out
    assert "nothing left running" in out
    assert _processes_using(datadir) == []
