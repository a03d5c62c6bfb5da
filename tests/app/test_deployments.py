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
    MemoryKeyring,
    make_processing,
    make_stable,
    run,
    wait_until,
)
from traystatus.app.controller import Controller
from traystatus.app.deployments import worst
from traystatus.app.icons import IconKind, render_pixmap
from traystatus.app.settings import SettingsDialog
from traystatus.core.profiles import ConnectionProfile, ProfileStore
from traystatus.core.state import Problem, State, Status


def test_the_worst_state_wins_and_ties_go_to_the_first() -> None:
    ok, busy = Status(State.STABLE), Status(State.PROCESSING)
    down = Status(State.DISCONNECTED, problem=Problem.STALE)
    assert worst([ok, busy, down]) is down
    assert worst([ok, busy]) is busy and worst([ok]) is ok and worst([]) is None
    assert worst([Status(State.ERROR), down]).state is State.ERROR


def two_deployments(db_dsn: str, bare_db_dsn: str) -> ProfileStore:
    store = ProfileStore()
    store.put(ConnectionProfile(name="prod", dsn=db_dsn), make_default=True)
    store.put(ConnectionProfile(name="test", dsn=bare_db_dsn))
    store.save_settings(replace(store.settings, watched=("prod", "test"),
                                notify_min_processing_s=0.0))
    return store


def test_one_icon_shows_the_busy_deployment_and_names_each(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
    conn: psycopg.Connection[Any],
) -> None:
    store = two_deployments(db_dsn, bare_db_dsn)
    ctl = Controller(store, tray_available=lambda: True, use_desktop_notifier=False)
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
                texts = ctl.tray.action_texts()
                assert "prod: stable" in texts and "test: processing" in texts
                icon = ctl.tray.tray.icon().pixmap(64, 64).toImage()
                assert icon == render_pixmap(IconKind.PROCESSING, 64).toImage()
                ARTIFACTS.mkdir(exist_ok=True)
                assert icon.save(str(ARTIFACTS / "tray-two-deployments.png"))
                menu = ctl.tray.menu
                menu.adjustSize()
                assert menu.grab().save(str(ARTIFACTS / "tray-menu-deployments.png"))

                make_stable(test_db)
                await wait_until(lambda: ctl.tray.shown.state is State.STABLE)
                # The finish on test is announced in test's name, under its own key.
                await wait_until(lambda: any(n.title == "test: Processing finished"
                                             for n in ctl.notifier.sent))
                notice = next(n for n in ctl.notifier.sent
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
