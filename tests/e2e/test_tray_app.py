"""The real tray app on a real desktop against a real PostgreSQL, checked as a person sees it.

One app process for the module (started exactly as ``traystatus demo`` starts it:
``traystatus --dsn ...`` with the password in PGPASSWORD), one embedded PostgreSQL with
the StatBus stand-in and sql/install.sql that this module may stop and start. The tests
run in file order and each leaves the system stable for the next.

What is checked: the icon's pixels in trayer (green / amber / grey), the Notify calls on
the session bus and dunst's history, the details window opened by a real click, its
progress bars' pixels, and the icon through a database crash and restart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from scripts.virtual_desktop import (
    Box,
    Desktop,
    Notification,
    classify_png,
    dominant,
    wait_for,
)
from traystatus._paths import sql_dir
from traystatus.demo.cli import tray_command
from traystatus.demo.embedded import EmbeddedPostgres, temporary_server

ANALYST = "e2e.analyst@example.org"
SLOW = 90.0  # seconds: grace periods, flap damping and a busy machine
# Settings' notify_min_processing_s for the app (30 s by default): "Processing finished"
# only after processing lasted this long (a shorter spell is not news).
MIN_PROCESSING = 5.0


@dataclass
class Database:
    server: EmbeddedPostgres
    admin_dsn: str
    analyst_dsn: str

    def execute(self, query: str, params: tuple[object, ...] = ()) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(query, params)


@dataclass
class App:
    proc: subprocess.Popen[bytes]
    icon: Box
    log: Path


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    # Outside pytest's temporary root, which pytest re-locks to 0700 whenever any pytest
    # session starts: the restart below runs pg_ctl as the server's own user again.
    server = temporary_server(prefix="traystatus-e2e-pg-")
    server.datadir.parent.chmod(0o755)
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE statbus")
        admin = server.dsn("statbus")
        password = uuid.uuid4().hex
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute((sql_dir() / "fixtures" / "statbus_schema.sql").read_text())
            conn.execute((sql_dir() / "install.sql").read_text())
            conn.execute(sql.SQL(
                "CREATE ROLE {} LOGIN PASSWORD {} IN ROLE authenticated, regular_user"
            ).format(sql.Identifier(ANALYST), sql.Literal(password)))
            # The StatBus user behind the login (as StatBus's user_create makes one).
            conn.execute('INSERT INTO auth."user" (email) VALUES (%s)', (ANALYST,))
        yield Database(server, admin, server.dsn("statbus", user=ANALYST, password=password))
    finally:
        server.destroy()
        shutil.rmtree(server.datadir.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def app(desktop: Desktop, database: Database, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[App]:
    home = tmp_path_factory.mktemp("e2e-home")
    # The user's settings file: only the minimum a processing spell must last to be news.
    config = home / "config" / "traystatus"
    config.mkdir(parents=True)
    (config / "profiles.toml").write_text(
        f"[settings]\nnotify_min_processing_s = {MIN_PROCESSING}\n")
    env = desktop.full_env(
        QT_QPA_PLATFORM="xcb",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
        TRAYSTATUS_CONFIG_DIR=str(config),
    )
    # Started exactly as `traystatus demo` starts its tray child.
    command, child_env = tray_command(database.analyst_dsn, verbose=2)
    env["PGPASSWORD"] = child_env["PGPASSWORD"]
    before = desktop.tray_icons()
    log = home / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def appeared() -> bool:
            assert proc.poll() is None, f"the app exited: {log.read_text()[-3000:]}"
            return len(desktop.tray_icons()) > len(before)

        wait_for(appeared, "the app's icon in the tray", timeout=SLOW)
        icon = next(b for b in desktop.tray_icons() if b not in before)
        yield App(proc, icon, log)
    finally:
        proc.terminate()  # the app quits cleanly on SIGTERM
        code: int | None
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            code = None
        print(log.read_text()[-5000:])
    assert code == 0, "the app did not quit cleanly on SIGTERM"


def icon_colour(desktop: Desktop, app: App, name: str = "icon") -> str | None:
    return dominant(desktop.colors(app.icon, name))


def wait_colour(desktop: Desktop, app: App, colour: str, what: str) -> None:
    def check() -> bool:
        assert app.proc.poll() is None, f"the app exited: {app.log.read_text()[-3000:]}"
        return icon_colour(desktop, app) == colour
    wait_for(check, f"the tray icon turning {colour} ({what})", timeout=SLOW)


def tray_shot(desktop: Desktop, name: str) -> Path:
    tray = desktop.tray_window()
    assert tray is not None
    return desktop.screenshot(name, desktop.geometry(tray))


JOB_SQL = """INSERT INTO public.import_job (slug, description, definition_id, state, total_rows,
    imported_rows, import_completed_pct, import_rows_per_sec, analysis_completed_pct,
    preparing_data_at, analysis_start_at, analysis_stop_at, processing_start_at,
    last_progress_update, priority)
  VALUES (%s, %s, 1, 'processing_data', 10000, %s, %s, 812.5, 100,
    now() - interval '2 min', now() - interval '2 min', now() - interval '1 min', now(),
    now(), 1)"""


def set_progress(db: Database, slug: str, pct: float) -> None:
    db.execute(
        "UPDATE public.import_job SET imported_rows = %s, import_completed_pct = %s, "
        "last_progress_update = now() WHERE slug = %s",
        (int(pct * 100), pct, slug),
    )


def finish(db: Database, slug: str) -> None:
    db.execute(
        "UPDATE public.import_job SET state = 'finished', imported_rows = total_rows, "
        "import_completed_pct = 100, processing_stop_at = now(), last_progress_update = now() "
        "WHERE slug = %s",
        (slug,),
    )


def test_icon_appears_green_when_stable(desktop: Desktop, app: App) -> None:
    wait_colour(desktop, app, "green", "the stand-in starts stable")
    tray_shot(desktop, "01-tray-stable")


def test_ring_shows_progress_with_the_details_window_never_opened(
    desktop: Desktop, app: App, database: Database
) -> None:
    """Progress at a glance: the details window has not been opened yet, and the icon's
    ring still fills as the import moves on (Status.progress, read while processing)."""
    database.execute(JOB_SQL, ("e2e_glance", "Glance", 1000, 10.0))
    wait_colour(desktop, app, "amber", "an import job is processing")
    assert not desktop.find_windows("StatBus status: details")
    time.sleep(3)  # the first progress read lands within a second or so
    at_10 = desktop.colors(app.icon, "02a-ring-10pct")["amber"]
    set_progress(database, "e2e_glance", 90.0)
    database.execute("SELECT pg_notify('import_job_progress', '{}')")

    def ring_grew() -> bool:
        # The dark ring covers the amber rim: 80 % more of it at 90 % than at 10 %.
        return desktop.colors(app.icon, "02b-ring-90pct")["amber"] < at_10 * 0.85
    wait_for(ring_grew, "the ring filling from 10 % to 90 % (window closed)", timeout=SLOW)
    tray_shot(desktop, "02c-tray-ring-90pct")
    assert not desktop.find_windows("StatBus status: details")
    # Gone, not finished: a recently ended job would stay listed in the details window,
    # which the next test measures.
    database.execute("DELETE FROM public.import_job WHERE slug = 'e2e_glance'")
    wait_colour(desktop, app, "green", "the glance job gone")


def test_processing_amber_details_progress_then_finished_notice(
    desktop: Desktop, app: App, database: Database
) -> None:
    started = time.monotonic()
    database.execute(JOB_SQL, ("e2e_legal_units", "Legal units 2026", 4000, 40.0))
    wait_colour(desktop, app, "amber", "an import job is processing")
    tray_shot(desktop, "02-tray-processing")

    # A left click on the icon opens the details window.
    desktop.click(*app.icon.center)
    wait_for(lambda: desktop.find_windows("StatBus status: details"), "the details window",
             timeout=SLOW)
    window = desktop.find_windows("StatBus status: details")[0]
    box = desktop.geometry(window)
    # Until the details subscription delivered the first snapshot: a progress bar chunk.
    wait_for(lambda: classify_png(desktop.screenshot("03-details-40pct", box))["blue"] > 50,
             "a progress bar chunk in the details window", timeout=SLOW)
    first = classify_png(desktop.screenshot("03-details-40pct", box))
    assert first["blue"] > 50, f"no progress bar chunk visible: {first}"
    set_progress(database, "e2e_legal_units", 80.0)

    def grew() -> bool:
        now = classify_png(desktop.screenshot("04-details-80pct", box))
        return now["blue"] > first["blue"] * 1.5
    wait_for(grew, "the progress bar growing from 40 % to 80 %", timeout=SLOW)

    # Processing must last past the policy's minimum (Settings, MIN_PROCESSING) to be news.
    time.sleep(max(0.0, MIN_PROCESSING + 5 - (time.monotonic() - started)))
    finish(database, "e2e_legal_units")
    wait_colour(desktop, app, "green", "the job finished")
    tray_shot(desktop, "05-tray-stable-again")

    # This spell's notice (an earlier test's spell, whose job was deleted, may have one
    # too: "Work finished in ...").
    def finished() -> list[Notification]:
        return [n for n in desktop.notifications()
                if n.summary == "Processing finished" and "1 import" in n.body]
    wait_for(finished, "the 'Processing finished' notification", timeout=SLOW)
    notice = finished()[-1]
    assert "1 import" in notice.body and "finished in" in notice.body, notice.body
    desktop.screenshot("06-notification")
    desktop.dunst_close_all()
    wait_for(lambda: any(h["summary"] == "Processing finished" and h["body"] == notice.body
                         for h in desktop.dunst_history()), "dunst's history", timeout=30)


def test_my_import_gets_its_own_notice_whose_action_opens_the_job(
    desktop: Desktop, app: App, database: Database
) -> None:
    database.execute(
        JOB_SQL.replace("priority)", "priority, user_id)").replace(
            "now(), 1)", "now(), 1, (SELECT id FROM auth.\"user\" WHERE email = %s))"),
        ("e2e_mine", "Legal units 2026", 5000, 50.0, ANALYST))
    wait_colour(desktop, app, "amber", "my import is processing")
    time.sleep(2)  # a progress read sees it running
    database.execute(
        "UPDATE public.import_job SET state = 'finished', imported_rows = 20000, "
        "total_rows = 20000, warning_count = 16, import_completed_pct = 100, "
        "processing_stop_at = now() WHERE slug = 'e2e_mine'")
    title = "Your import 'Legal units 2026' finished"
    wait_for(lambda: any(n.summary == title for n in desktop.notifications()),
             "my import's own notice", timeout=SLOW)
    notice = [n for n in desktop.notifications() if n.summary == title][-1]
    assert notice.body == "20,000 rows imported, 16 warnings", notice.body
    time.sleep(1)
    desktop.screenshot("10-notification-my-import")
    # Its "Show details" (the job framed in the details window) is checked with the real
    # Controller in tests/app/test_my_imports.py: dunst 1.9 here does not invoke a
    # desktop-notifier default action from dunstctl or a middle click.
    desktop.dunst_close_all()
    wait_colour(desktop, app, "green", "my import ended")


def test_job_with_errors_gets_its_own_notice(
    desktop: Desktop, app: App, database: Database
) -> None:
    database.execute(JOB_SQL, ("e2e_with_errors", "Corrections with errors", 100, 1.0))
    wait_colour(desktop, app, "amber", "a job with errors is processing")
    database.execute(
        "UPDATE public.import_job SET state = 'finished', error_count = 17, warning_count = 2, "
        "error = '17 of 10000 rows had errors and were not imported', "
        "processing_stop_at = now(), imported_rows = 9983, import_completed_pct = 100 "
        "WHERE slug = %s",
        ("e2e_with_errors",),
    )
    wait_colour(desktop, app, "green", "the job with errors ended")
    title = "Import job finished with errors: e2e_with_errors"
    wait_for(lambda: any(n.summary == title for n in desktop.notifications()),
             "the job's own notice", timeout=SLOW)
    notice = [n for n in desktop.notifications() if n.summary == title][-1]
    assert "17 errors" in notice.body and "2 warnings" in notice.body, notice.body
    time.sleep(1)
    desktop.screenshot("09-notification-job-errors")
    desktop.dunst_close_all()


def test_database_crash_shows_disconnected_and_restart_the_truth(
    desktop: Desktop, app: App, database: Database
) -> None:
    wait_colour(desktop, app, "green", "stable before the crash")
    database.server.stop("immediate")
    wait_colour(desktop, app, "grey", "the database is down")
    tray_shot(desktop, "07-tray-disconnected")
    database.server.start()
    # While the app was away, work started: after reconnecting it must show that truth.
    database.execute(JOB_SQL, ("e2e_after_restart", "After the restart", 10, 0.1))
    wait_colour(desktop, app, "amber", "reconnected to a busy system")
    tray_shot(desktop, "08-tray-reconnected-processing")
    finish(database, "e2e_after_restart")
    wait_colour(desktop, app, "green", "the job after the restart finished")
    assert app.proc.poll() is None
    assert os.path.exists(app.log)
