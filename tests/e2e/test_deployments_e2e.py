"""Two deployments watched by one real tray app on a real desktop: one busy, one stable.

The app starts as a person starts it (``traystatus`` with a profile), with Settings
watching both profiles. The one icon turns amber when only the OTHER deployment is busy
(the worst state wins), and its "Processing finished" notification names it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest

from scripts.virtual_desktop import Box, Desktop, dominant, wait_for
from traystatus._paths import sql_dir
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
from traystatus.demo.embedded import temporary_server

SLOW = 90.0


@dataclass
class Two:
    prod: str
    test: str


@pytest.fixture(scope="module")
def two() -> Iterator[Two]:
    server = temporary_server(prefix="traystatus-e2e-two-")
    server.datadir.parent.chmod(0o755)
    server.start()
    try:
        for name in ("prod", "test"):
            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            with psycopg.connect(server.dsn(name), autocommit=True) as conn:
                conn.execute((sql_dir() / "fixtures" / "statbus_schema.sql").read_text())
                conn.execute((sql_dir() / "install.sql").read_text())
        yield Two(server.dsn("prod"), server.dsn("test"))
    finally:
        server.destroy()
        shutil.rmtree(server.datadir.parent, ignore_errors=True)


def test_one_icon_worst_state_and_named_notification(
    desktop: Desktop, two: Two, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    store = ProfileStore(config / "profiles.toml")
    store.put(ConnectionProfile(name="prod", dsn=two.prod), make_default=True)
    store.put(ConnectionProfile(name="test", dsn=two.test))
    store.save_settings(replace(store.settings, watched=("prod", "test"),
                                notify_min_processing_s=0.0))
    env = desktop.full_env(
        QT_QPA_PLATFORM="xcb",
        HOME=str(tmp_path),
        TRAYSTATUS_CONFIG_DIR=str(config),
        XDG_STATE_HOME=str(tmp_path / "state"),
        TRAYSTATUS_LOG_DIR=str(tmp_path / "logs"),
    )
    env.pop("PGPASSWORD", None)
    before = desktop.tray_icons()
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "traystatus", "-p", "prod", "-vv"],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=str(Path(__file__).resolve().parents[2]))
    try:
        def appeared() -> bool:
            assert proc.poll() is None, f"the app exited: {log.read_text()[-3000:]}"
            return len(desktop.tray_icons()) > len(before)

        wait_for(appeared, "the app's icon in the tray", timeout=SLOW)
        icon: Box = next(b for b in desktop.tray_icons() if b not in before)

        def colour_is(colour: str) -> bool:
            assert proc.poll() is None, f"the app exited: {log.read_text()[-3000:]}"
            return dominant(desktop.colors(icon, "two-icon")) == colour

        wait_for(lambda: colour_is("green"), "green: both deployments stable", timeout=SLOW)
        with psycopg.connect(two.test, autocommit=True) as test_db:
            # Only test gets busy: prod, the deployment shown in detail, stays stable.
            test_db.execute("INSERT INTO worker.tasks (command, state) "
                            "VALUES ('derive_statistical_unit', 'pending')")
            wait_for(lambda: colour_is("amber"), "amber: test is busy", timeout=SLOW)
            desktop.screenshot("two-deployments-one-busy", desktop.geometry(
                desktop.tray_window() or 0))
            test_db.execute("UPDATE worker.tasks SET state = 'completed' "
                            "WHERE command = 'derive_statistical_unit'")
        wait_for(lambda: colour_is("green"), "green again: test finished", timeout=SLOW)
        wait_for(lambda: any(n.summary == "test: Processing finished"
                             for n in desktop.notifications()),
                 "the finish announced in test's name", timeout=SLOW)
        desktop.screenshot("two-deployments-notification")
        desktop.dunst_close_all()
    finally:
        proc.terminate()
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(10)
        print(log.read_text()[-4000:])
    assert code == 0
    assert os.path.exists(config / "profiles.toml")
