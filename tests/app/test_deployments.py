"""Several deployments in one tray app: one icon with the worst state, a line per
deployment in the tooltip and the menu, notifications that name the deployment; Settings
says which profiles are watched. Two real databases, one busy and one stable."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from PySide6.QtWidgets import QApplication

from tests.app.conftest import (
    ARTIFACTS,
    Delivered,
    MemoryKeyring,
    add_job,
    make_processing,
    make_stable,
    menu_texts,
    publish_doc_image,
    run,
    wait_until,
)
from traystatus.app.controller import Controller
from traystatus.app.deployments import worst
from traystatus.app.icons import IconKind, render_pixmap
from traystatus.app.notify_policy import Action
from traystatus.app.settings import SettingsDialog
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.watch.options import MonitorOptions


def test_the_worst_state_wins_and_ties_go_to_the_first() -> None:
    ok, busy = Status(State.STABLE), Status(State.PROCESSING)
    down = Status(State.DISCONNECTED, problem=Problem.STALE)
    assert worst([ok, busy, down]) is down
    assert worst([ok, busy]) is busy and worst([ok]) is ok and worst([]) is None
    error = worst([Status(State.ERROR), down])
    assert error is not None and error.state is State.ERROR


# The sources' timing (Controller's ``timing``): details every 0.25 s while processing
# (3 s by default); Settings' health checks every second (the shortest Settings allow).
TIMING = MonitorOptions(details_interval=0.25)


def two_deployments(db_dsn: str, bare_db_dsn: str) -> ProfileStore:
    store = ProfileStore()
    store.put(ConnectionProfile(name="prod", dsn=db_dsn), make_default=True)
    store.put(ConnectionProfile(name="test", dsn=bare_db_dsn))
    store.save_settings(replace(store.settings, watched=("prod", "test"),
                                notify_min_processing_s=0.0, health_interval_s=1.0))
    return store


def test_one_icon_shows_the_busy_deployment_and_names_each(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
    conn: psycopg.Connection[Any],
) -> None:
    store = two_deployments(db_dsn, bare_db_dsn)
    ctl = Controller(store, tray_available=lambda: True, use_desktop_notifier=False,
                     timing=TIMING)
    told = Delivered(ctl.notifier)
    with psycopg.connect(bare_db_dsn, autocommit=True) as test_db:

        async def scenario() -> None:
            ctl.start()
            try:
                # prod is shown in detail; test is the other watched deployment.
                assert ctl.deployments.names == ["test"]
                await wait_until(lambda: ctl.status.state is State.STABLE and [
                    st.state for _, st in ctl.deployments.rows()] == [State.STABLE])
                assert ctl.tray.shown.state is State.STABLE
                make_processing(test_db, 2)  # test gets busy, prod stays stable
                await wait_until(lambda: ctl.tray.shown.state is State.PROCESSING)
                assert ctl.status.state is State.STABLE  # prod itself
                tip = ctl.tray.tooltip_text().splitlines()
                assert tip[0] == "StatBus status"
                assert tip[1].startswith("prod: Stable since ")
                assert tip[2].startswith("test: Processing for ")
                assert ctl.tray.deployment_lines() == ["prod: stable", "test: processing"]
                texts = menu_texts(ctl.tray)
                assert "prod: stable" in texts and "test: processing" in texts
                icon = ctl.tray.tray.icon().pixmap(64, 64).toImage()
                assert icon == render_pixmap(IconKind.PROCESSING, 64).toImage()
                ARTIFACTS.mkdir(exist_ok=True)
                assert icon.save(str(ARTIFACTS / "tray-two-deployments.png"))
                menu = ctl.tray.tray.contextMenu()
                menu.adjustSize()
                assert menu.grab().save(str(ARTIFACTS / "tray-menu-deployments.png"))

                make_stable(test_db)
                await wait_until(lambda: ctl.tray.shown.state is State.STABLE)
                # The finish on test is announced in test's name, under its own key.
                await wait_until(lambda: any(n.title == "test: Processing finished"
                                             for n in told))
                notice = next(n for n in told
                              if n.title == "test: Processing finished")
                assert notice.key == "test/finished"
            finally:
                await ctl.shutdown()

        run(qloop, scenario(), timeout=120)
    assert ctl.deployments.names == []


def test_settings_say_which_profiles_are_watched(
    qapp: QApplication, config_dir: Path, memory_keyring: MemoryKeyring,
) -> None:
    store = ProfileStore()
    for name in ("prod", "test", "se"):
        store.put(ConnectionProfile(name=name, dsn=f"host=h{name} dbname=statbus"))
    store.save_settings(replace(store.settings, watched=("test",)))
    dialog = SettingsDialog(store)
    checked = {dialog.watched.item(i).text(): dialog.watched.item(i).checkState()
               for i in range(dialog.watched.count())}
    assert set(checked) == {"prod", "test", "se"}
    dialog.watched.item(2).setCheckState(checked["test"])  # tick a second one
    assert set(dialog.settings().watched) == {"test", dialog.watched.item(2).text()}
    store.save_settings(dialog.settings())
    again = ProfileStore()
    assert set(again.settings.watched) == set(dialog.settings().watched)
    dialog.close()


def test_watched_deployments_follow_a_rename_and_a_removal(
    qapp: QApplication, config_dir: Path, memory_keyring: MemoryKeyring,
) -> None:
    from traystatus.app.settings import SavedChange

    store = ProfileStore()
    for name in ("prod", "test", "se"):
        store.put(ConnectionProfile(name=name, dsn=f"host=h{name} dbname=statbus"))
    store.save_settings(replace(store.settings, watched=("prod", "test", "se")))
    ctl = Controller(store, tray_available=lambda: False, use_desktop_notifier=False)
    ctl._follow(SavedChange(profile="staging", renamed={"test": "staging"}))
    assert store.settings.watched == ("prod", "staging", "se")
    ctl._follow(SavedChange(removed=("se",)))
    assert ProfileStore().settings.watched == ("prod", "staging")  # saved


def monitor(ctl: Controller, name: str | None) -> Any:
    """A deployment's running source (None: the one shown in detail)."""
    adapter = ctl.adapter if name is None else ctl.deployments.slots[name].adapter
    assert adapter is not None
    return adapter.monitor


def reads(ctl: Controller, name: str | None) -> int:
    """How often a deployment's source has read its details (its own counter)."""
    return int(monitor(ctl, name).counters.details_reads)


def readers(ctl: Controller, name: str | None) -> int:
    """How many viewers a deployment's source reads details for (its own count)."""
    return int(monitor(ctl, name).details_subscribers)


async def health_checks_pass(ctl: Controller, n: int) -> None:
    """Until both sources have made ``n`` more health checks (one a second): each is
    running and reading on its one connection, so a read sent before has ended, and
    ``n`` checks span at least ``n - 1`` seconds (``n - 1`` s / 0.25 s details intervals)."""
    sources = [monitor(ctl, None), monitor(ctl, "test")]
    targets = [m.counters.health_checks + n for m in sources]
    await wait_until(lambda: all(m.counters.health_checks >= t
                                 for m, t in zip(sources, targets, strict=True)), within=30)


def test_the_details_window_has_a_section_per_deployment(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
    conn: psycopg.Connection[Any],
) -> None:
    """prod stable, test busy with an import: a section each, fed by its own source, read
    only while the window is open; test's notice opens the window on test's section."""
    store = two_deployments(db_dsn, bare_db_dsn)
    ctl = Controller(store, tray_available=lambda: True, use_desktop_notifier=False,
                     timing=TIMING)
    told = Delivered(ctl.notifier)
    with psycopg.connect(bare_db_dsn, autocommit=True) as test_db:

        async def scenario() -> None:
            ctl.start()
            try:
                await wait_until(lambda: ctl.status.state is State.STABLE and [
                    st.state for _, st in ctl.deployments.rows()] == [State.STABLE])
                add_job(test_db, "lu_test_2026", "processing_data",
                        description="Legal units 2026 (test)", total_rows=10_000,
                        imported_rows=4_250, import_completed_pct=42.5,
                        import_rows_per_sec=812.3)
                make_processing(test_db, 3)
                await wait_until(lambda: ctl.deployments.statuses["test"].state
                                 is State.PROCESSING)
                # The no-tray window lists each deployment too (its worst-state icon).
                lines = ctl.window.deployment_lines()
                assert lines[0].startswith("prod: Stable since ")
                assert lines[1].startswith("test: Processing for ")
                ARTIFACTS.mkdir(exist_ok=True)
                ctl.window.adjustSize()
                assert ctl.window.grab().save(
                    str(ARTIFACTS / "status-window-two-deployments.png"))
                # The Controller's timing, with Settings' health checks, reach both sources.
                for name in (None, "test"):
                    options = monitor(ctl, name).options
                    assert (options.details_interval, options.health_interval) == (0.25, 1.0)
                # Four details intervals and more, the window closed: nothing read.
                await health_checks_pass(ctl, 2)
                assert reads(ctl, None) == 0 and reads(ctl, "test") == 0

                ctl.show_details()
                w = ctl.details_window
                assert w is not None
                prod, test = w.sections()
                assert (prod.name, test.name) == ("prod", "test")
                assert readers(ctl, None) == readers(ctl, "test") == 1  # both sources read details
                await wait_until(lambda: test.details is not None
                                 and len(test.details.import_jobs) == 1)
                await wait_until(lambda: prod.details is not None)
                assert reads(ctl, None) >= 1 and reads(ctl, "test") >= 1
                assert prod.headline.text().startswith(
                    "prod: All data processing complete, stable since ")
                assert test.headline.text().startswith("test: Processing for ")
                row = test.rows[0]
                assert row.isVisibleTo(w) and row.title.text() == "Legal units 2026 (test)"
                assert row.bar.format() == "Importing 42 %" and row.bar.value() == 425
                assert not any(r.isVisibleTo(w) for r in prod.rows)
                w.resize(640, 620)
                # Through the loop, not processEvents(): that would run the sources' asyncio
                # callbacks nested inside this task ("Cannot enter into task").
                await asyncio.sleep(0.05)
                ARTIFACTS.mkdir(exist_ok=True)
                png = ARTIFACTS / "details-two-deployments.png"
                assert w.grab().save(str(png))
                publish_doc_image(png, "details-two-deployments.png")

                # Closed: neither deployment's details are read any more.
                w.close()
                assert readers(ctl, None) == readers(ctl, "test") == 0
                assert ctl.deployments.wanted == set()
                await health_checks_pass(ctl, 1)  # a details read in flight has ended
                before = reads(ctl, None), reads(ctl, "test")
                # Four details intervals and more, test still processing: nothing read.
                await health_checks_pass(ctl, 2)
                assert (reads(ctl, None), reads(ctl, "test")) == before

                test_db.execute("UPDATE public.import_job SET state = 'finished', "
                                "imported_rows = 10000, import_completed_pct = 100")
                make_stable(test_db)
                await wait_until(lambda: any(n.title == "test: Processing finished"
                                             for n in told))
                notice = next(n for n in told
                              if n.title == "test: Processing finished")
                assert notice.deployment == "test" and Action.SHOW_DETAILS in notice.actions
                # What the notification's "Show details" button runs.
                ctl.notifier._action_cb(Action.SHOW_DETAILS, notice.job_id, notice.deployment)()
                assert ctl.details_window is w and w.isVisible()
                assert w.focused is test and readers(ctl, None) == readers(ctl, "test") == 1
                await asyncio.sleep(0.05)
                assert not test.headline.visibleRegion().isEmpty()
                assert w.grab().save(str(ARTIFACTS / "details-two-deployments-focused.png"))
            finally:
                await ctl.shutdown()

        run(qloop, scenario(), timeout=150)
