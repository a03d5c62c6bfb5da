"""The application shell: no-tray fallback window, moving to the tray when one appears,
notifications from real transitions, single-instance hand-over, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from PySide6.QtWidgets import QApplication

from tests.app.conftest import (
    Delivered,
    MemoryKeyring,
    make_processing,
    make_stable,
    run,
    wait_until,
)
from traystatus.app.controller import Controller
from traystatus.app.notify_policy import KEY_FINISHED, NotifyOptions
from traystatus.app.single import SHOW, SingleInstance, send, server_name
from traystatus.core.config.profiles import ProfileStore
from traystatus.core.model.state import State

REPO = Path(__file__).resolve().parents[2]


def test_no_tray_shows_a_window_then_moves_to_the_tray(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str,
) -> None:
    tray_here = [False]
    ctl = Controller(ProfileStore(), dsn=db_dsn, tray_available=lambda: tray_here[0],
                     use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            assert ctl.window.isVisible() and not ctl.in_tray
            await wait_until(lambda: ctl.window.status.state == State.STABLE)
            assert ctl.window.text.text().startswith("Stable since ")
            tray_here[0] = True  # the panel came up
            ctl._place()  # what the 5 s timer does
            assert ctl.in_tray and not ctl.window.isVisible()
        finally:
            await ctl.shutdown()
        assert ctl.adapter is None

    run(qloop, scenario())


def test_first_start_without_profile_opens_settings(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring,
) -> None:
    ctl = Controller(ProfileStore(), tray_available=lambda: False, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            assert ctl.adapter is None
            assert ctl.settings_dialog is not None and ctl.settings_dialog.isVisible()
        finally:
            await ctl.shutdown()

    run(qloop, scenario())


def test_processing_finished_notice_from_real_transitions(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, conn: psycopg.Connection[Any],
) -> None:
    ctl = Controller(ProfileStore(), dsn=db_dsn, tray_available=lambda: False,
                     use_desktop_notifier=False)
    told = Delivered(ctl.notifier)
    ctl.policy.options = NotifyOptions(min_processing=__import__("datetime").timedelta(seconds=1))

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.window.status.state == State.STABLE)
            make_processing(conn, 7)
            await wait_until(lambda: ctl.window.status.state == State.PROCESSING)
            await asyncio.sleep(1.5)
            make_stable(conn)
            await wait_until(lambda: any(n.key == KEY_FINISHED for n in told))
            n = next(n for n in told if n.key == KEY_FINISHED)
            assert n.title == "Processing finished"
            assert n.body.startswith("7 analytics tasks finished in ")
            # No server here (use_desktop_notifier=False) and no tray: the window shows it.
            assert told.routes[0] == "window"
            assert ctl.window.notice_texts()[0].startswith("Processing finished")
            # Quick flips right after: the same key, never a second "finished" stack.
            for _ in range(3):
                make_processing(conn, 1)
                await wait_until(lambda: ctl.window.status.state == State.PROCESSING)
                make_stable(conn)
                await wait_until(lambda: ctl.window.status.state == State.STABLE)
            await ctl.notifier.drain()
            assert {n.key for n in told} == {KEY_FINISHED}
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_single_instance_receives_show(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop
) -> None:
    name = server_name(f"test-{os.getpid()}-{time.time()}")
    single = SingleInstance(name)
    assert single.listen()
    shown: list[bool] = []
    single.showRequested.connect(lambda: shown.append(True))
    code = (
        "import sys; from PySide6.QtCore import QCoreApplication; "
        "from traystatus.app.single import send, SHOW; app = QCoreApplication([]); "
        f"sys.exit(0 if send({name!r}, SHOW) else 3)"
    )

    async def scenario() -> None:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=str(REPO))
        await wait_until(lambda: bool(shown), within=60)
        assert await asyncio.wait_for(proc.wait(), 60) == 0

    try:
        run(qloop, scenario(), timeout=90)
    finally:
        single.close()
    assert not send(name, SHOW, 300)  # nobody listens any more


def _app_cmd(dsn: str, *extra: str) -> list[str]:
    code = (
        "import sys, argparse; from traystatus.app.main import run_app; "
        "ns = argparse.Namespace(dsn=sys.argv[1], profile=None, "
        "replace='--replace' in sys.argv, verbose=0); sys.exit(run_app(ns))"
    )
    return [sys.executable, "-c", code, dsn, *extra]


def _wait_listening(name: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not send(name, b"ping\n", 500):
        assert time.monotonic() < deadline, "the app never started listening"
        time.sleep(0.3)


def test_run_app_hand_over_and_replace(
    qapp: QApplication, tmp_path: Path, config_dir: Path, db_dsn: str
) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    name = server_name(f"dsn:{db_dsn}")
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(_app_cmd(db_dsn, *extra), env=env, cwd=str(REPO),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    try:
        first = start()
        _wait_listening(name)
        second = subprocess.run(_app_cmd(db_dsn), env=env, cwd=str(REPO),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert first.poll() is None  # the first keeps running

        third = start("--replace")
        # --replace: the first quits cleanly (exit 0, no traceback) ...
        _, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert "Traceback" not in err
        # ... and the third takes the name over: a fourth start hands over to it.
        _wait_listening(name)
        fourth = subprocess.run(_app_cmd(db_dsn), env=env, cwd=str(REPO),
                                capture_output=True, text=True, timeout=60)
        assert "already running" in fourth.stderr and fourth.returncode == 0
        assert third.poll() is None
        third.terminate()  # SIGTERM: the same clean shutdown as Quit
        _, err3 = third.communicate(timeout=60)
        assert third.returncode == 0, err3
        assert "Traceback" not in err3
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def test_settings_the_monitor_would_refuse_do_not_stop_the_app(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str,
) -> None:
    """health_interval_s = 0 in the file (MonitorOptions raises for it): clamped on load,
    the monitor runs and the app shows the real state."""
    config_dir.mkdir(parents=True)
    (config_dir / "profiles.toml").write_text(
        "[settings]\nhealth_interval_s = 0\nhealth_timeout_s = -1\n"
        "notify_min_processing_s = 7\n"
    )
    ctl = Controller(ProfileStore(), dsn=db_dsn, tray_available=lambda: False,
                     use_desktop_notifier=False)
    assert ctl.policy.options.min_processing.total_seconds() == 7

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.window.status.state == State.STABLE)
            assert ctl.adapter is not None
        finally:
            await ctl.shutdown()

    run(qloop, scenario())
