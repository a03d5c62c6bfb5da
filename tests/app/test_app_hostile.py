"""The real tray app process against a hand-edited settings file with absurd numbers: it
starts, clamps them with a warning, and its monitor keeps working (it reconnects after the
server drops it). Its log file is readable by its owner only."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow
from PySide6.QtWidgets import QApplication

from tests.app.test_app_exit import (  # noqa: F401  (fixtures)
    app_env,
    assert_clean,
    log_text,
    procs,
    start_app,
    wait_listening,
)
from traystatus.app.single import QUIT, send, server_name

HUGE = """\
[settings]
disconnect_grace_s = 1e15
notify_min_processing_s = 1e308
health_timeout_s = 3e6
health_interval_s = 99999999999999999999999
"""


def _monitor_pids(conn: psycopg.Connection[TupleRow], dbname: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'traystatus'"
        " AND pid <> pg_backend_pid()", (dbname,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def _wait_for_pid(conn: psycopg.Connection[TupleRow], dbname: str,
                  not_in: list[int], app: subprocess.Popen[str], within: float = 60) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert app.poll() is None, f"the app exited ({app.returncode}): {app.communicate()[1]}"
        pids = [p for p in _monitor_pids(conn, dbname) if p not in not_in]
        if pids:
            return pids[0]
        time.sleep(0.3)
    raise AssertionError("the monitor never (re)connected")


def test_huge_settings_are_clamped_and_the_monitor_keeps_working(
    qapp: QApplication, tmp_path: Path, db_dsn: str, app_env: dict[str, str],  # noqa: F811
    procs: list[subprocess.Popen[str]],  # noqa: F811
    conn: psycopg.Connection[TupleRow],
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "profiles.toml").write_text(HUGE)
    name = server_name(f"dsn:{db_dsn}")
    app = start_app(db_dsn, app_env)
    procs.append(app)
    wait_listening(name, app)
    dbname = str(conn.info.dbname)
    first = _wait_for_pid(conn, dbname, [], app)
    conn.execute("SELECT pg_terminate_backend(%s)", (first,))
    _wait_for_pid(conn, dbname, [first], app)  # the monitor is alive: it reconnects

    log = log_text(tmp_path)
    for key, used in (("disconnect_grace_s", "3600.0"), ("notify_min_processing_s", "3600.0"),
                      ("health_timeout_s", "300.0"), ("health_interval_s", "3600.0")):
        assert any(key in line and f"using {used}" in line and "WARNING" in line
                   for line in log.splitlines()), (key, log)
    assert "OverflowError" not in log and "Traceback" not in log

    # 13: the log names hosts and users: owner only, like the settings file.
    mode = stat.S_IMODE((tmp_path / "logs" / "traystatus.log").stat().st_mode)
    assert mode == 0o600, oct(mode)

    send(name, QUIT)
    _, err = app.communicate(timeout=60)
    assert app.returncode == 0, err
    assert_clean(err)
