"""``traystatus demo`` on a real desktop: the icon shows the simulated work, and both ways
out (Ctrl-C in the terminal, Quit in the tray menu) leave nothing running."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.virtual_desktop import Box, Desktop, dominant, wait_for
from tests.demo.test_demo_cli import _processes_using

TRAYSTATUS = Path(sys.executable).with_name("traystatus")  # the installed entry point
SLOW = 120.0


def _start(desktop: Desktop, tmp_path: Path, pg_dir: Path, *extra: str
           ) -> tuple[subprocess.Popen[bytes], Path]:
    home = tmp_path / "home"
    log = tmp_path / "demo.log"
    env = desktop.full_env(
        QT_QPA_PLATFORM="xcb", HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"), XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"), PYTHONUNBUFFERED="1",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(TRAYSTATUS), "demo", "--datadir", str(pg_dir / "pg"), *extra],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    return proc, log


def _wait_for_icon(desktop: Desktop, proc: subprocess.Popen[bytes], log: Path,
                   before: list[Box]) -> Box:
    def appeared() -> bool:
        assert proc.poll() is None, f"the demo exited: {log.read_text()[-3000:]}"
        return len(desktop.tray_icons()) > len(before)

    wait_for(appeared, "the demo's icon in the tray", timeout=SLOW)
    return next(b for b in desktop.tray_icons() if b not in before)


@pytest.mark.timeout(400)
def test_demo_shows_work_and_ctrl_c_leaves_nothing(
    desktop: Desktop, tmp_path: Path, pg_dir: Path
) -> None:
    before = desktop.tray_icons()
    proc, log = _start(desktop, tmp_path, pg_dir, "--speed", "2")
    try:
        icon = _wait_for_icon(desktop, proc, log, before)
        colours: set[str | None] = set()

        def seen_both() -> bool:
            assert proc.poll() is None, f"the demo exited: {log.read_text()[-3000:]}"
            colours.add(dominant(desktop.colors(icon, "demo-icon")))
            return {"green", "amber"} <= colours

        wait_for(seen_both, "the demo's icon showing stable and then processing", timeout=SLOW)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        code = proc.wait(60)
    out = log.read_text()
    assert code == 130, out
    assert "nothing left running" in out
    assert _processes_using(pg_dir / "pg") == []
    wait_for(lambda: icon not in desktop.tray_icons(), "the icon leaving the tray", timeout=30)


@pytest.mark.timeout(400)
def test_quit_in_the_tray_menu_stops_everything(
    desktop: Desktop, tmp_path: Path, pg_dir: Path
) -> None:
    before = desktop.tray_icons()
    proc, log = _start(desktop, tmp_path, pg_dir, "--speed", "1")
    try:
        icon = _wait_for_icon(desktop, proc, log, before)
        time.sleep(2)  # let the app build its menu
        code = None
        for attempt in range(3):  # a loaded machine may open the menu late: try again
            desktop.click(*icon.center, button=3)
            time.sleep(1.5 * (attempt + 1))
            desktop.screenshot("demo-context-menu")
            desktop.run("xdotool", "key", "Up", "Return")  # Quit is the menu's last item
            try:
                code = proc.wait(30)
                break
            except subprocess.TimeoutExpired:
                desktop.run("xdotool", "key", "Escape")
        assert code is not None, "Quit in the tray menu did not end the demo"
    finally:
        if proc.poll() is None:  # Ctrl-C, so that the demo still stops its server
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    out = log.read_text()
    assert code == 0, out
    assert "nothing left running" in out
    assert _processes_using(pg_dir / "pg") == []
