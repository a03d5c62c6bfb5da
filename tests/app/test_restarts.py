"""Restarts where features meet: one running source per deployment, whatever the order of
Saves, Removes, profile switches and reconnects; a Save restarts only what it changed;
every watched deployment follows the same rules as the one shown in detail.

Real Controller, real Settings dialog, real Monitors against two real databases; what
runs is counted where it cannot lie: the server's own pg_stat_activity.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import keyring
import psycopg
import pytest
from keyring.backends import fail
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.app.conftest import MemoryKeyring, make_processing, make_stable, run, save, wait_until
from traystatus.app.controller import Controller
from traystatus.app.deployments import Deployments
from traystatus.app.settings import SavedChange, SettingsDialog
from traystatus.app.slot import Opened, SourceSlot, SourceSpec, open_spec
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
from traystatus.core.model.progress import Progress
from traystatus.core.model.state import Problem, State, Status, utcnow
from traystatus.core.watch.options import MonitorOptions


def backends(admin_dsn: str, *dsns: str) -> dict[str, list[int]]:
    """The traystatus sessions the server has, per database: their backend pids."""
    names = [str(conninfo_to_dict(d)["dbname"]) for d in dsns]
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        rows = c.execute(
            "SELECT datname, pid FROM pg_stat_activity "
            "WHERE application_name = 'traystatus' AND datname = ANY(%s) ORDER BY pid",
            (names,),
        ).fetchall()
    out: dict[str, list[int]] = {n: [] for n in names}
    for datname, pid in rows:
        out[str(datname)].append(int(pid))
    return out


def counts(admin_dsn: str, *dsns: str) -> list[int]:
    got = backends(admin_dsn, *dsns)
    return [len(got[str(conninfo_to_dict(d)["dbname"])]) for d in dsns]


def admin_of(dsn: str) -> str:
    return make_conninfo(dsn, dbname="postgres")


def _select(dialog: SettingsDialog, name: str) -> None:
    items = dialog.profile_list.findItems(name, Qt.MatchFlag.MatchExactly)
    assert items, name
    dialog.profile_list.setCurrentItem(items[0])


# -- item 1: restarts in any order ---------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_restarts_in_any_order_leave_one_source_per_deployment(
    seed: int, qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
) -> None:
    """Saves of a connection setting, Saves of a notification setting, removing and
    adding back the watched profile, profile switches and reconnects, in a random order
    with random gaps (none, or while a restart is still stopping the old source). After
    the storm: each deployment has exactly one session on its server, the icon follows
    the deployments watched and no other, and Quit leaves none."""
    rng = random.Random(seed)
    store = ProfileStore()
    store.put(ConnectionProfile(name="prod", dsn=db_dsn), make_default=True)
    test_profile = ConnectionProfile(name="test", dsn=bare_db_dsn)
    store.put(test_profile)
    store.save_settings(replace(store.settings, watched=("test",), notify_min_processing_s=0.0))
    ctl = Controller(store, tray_available=lambda: True, use_desktop_notifier=False)
    admin = admin_of(db_dsn)
    done: list[str] = []

    def edit(name: str) -> None:  # a connection setting: this profile restarts
        if name not in store.names():
            return
        p = store.get(name)
        timeout = "6" if p.options.get("connect_timeout") == "5" else "5"
        store.put(replace(p, options={**p.options, "connect_timeout": timeout}))
        ctl._settings_saved(SavedChange(profile=name))

    def notify_only() -> None:  # applies in place
        s = store.settings
        store.save_settings(replace(s, notify_stable=not s.notify_stable))
        ctl._settings_saved(SavedChange(profile=ctl.profile_name))

    def remove_test() -> None:
        if "test" in store.names():
            store.remove("test")
            ctl._settings_saved(SavedChange(removed=("test",)))

    def add_test() -> None:
        if "test" not in store.names():
            store.put(test_profile)
            store.save_settings(replace(store.settings, watched=("test",)))
            ctl._settings_saved(SavedChange(profile="test"))

    def switch() -> None:
        ctl.switch_profile(rng.choice(store.names()))

    ops = {
        "edit prod": lambda: edit("prod"), "edit test": lambda: edit("test"),
        "notify": notify_only, "remove test": remove_test, "add test": add_test,
        "switch": switch, "reconnect": ctl._restart,
    }

    def expected() -> list[int]:
        """Sessions wanted on (prod's database, test's database)."""
        main = 0 if ctl.profile_name == "prod" else 1
        want = [0, 0]
        want[main] += 1
        if "test" in store.settings.watched and ctl.profile_name != "test":
            want[1] += 1
        return want

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.tray.shown.state is State.STABLE)
            for _ in range(14):
                name = rng.choice(list(ops))
                done.append(name)
                ops[name]()
                await asyncio.sleep(rng.choice([0, 0, 0, 0.01, 0.05, 0.3]))
            # End on a known set: prod in detail, test watched or not (as it fell).
            if ctl.profile_name != "prod":
                ctl.switch_profile("prod")
                done.append("switch prod")
            # Exactly one session per deployment, and it stays so (no late orphan).
            await wait_until(lambda: counts(admin, db_dsn, bare_db_dsn) == expected()
                             and ctl.tray.shown.state is State.STABLE, within=30)
            await asyncio.sleep(1.0)
            assert counts(admin, db_dsn, bare_db_dsn) == expected(), done
            watched = "test" in store.settings.watched
            assert [n for n, _ in ctl.deployments.rows()] == (["test"] if watched else [])
            # The icon follows the deployments watched, and nothing else.
            with psycopg.connect(bare_db_dsn, autocommit=True) as test_db:
                make_processing(test_db, 1)
                if watched:
                    await wait_until(lambda: ctl.tray.shown.state is State.PROCESSING)
                else:
                    await asyncio.sleep(1.5)
                    assert ctl.tray.shown.state is State.STABLE, done
                make_stable(test_db)
            await wait_until(lambda: ctl.tray.shown.state is State.STABLE)
        finally:
            await ctl.shutdown()
        await wait_until(lambda: counts(admin, db_dsn, bare_db_dsn) == [0, 0], within=10)

    run(qloop, scenario(), timeout=150)


def test_an_old_source_never_reaches_the_icon(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str,
) -> None:
    """The repro of issue 18 with real sources: two restarts in a row, then every source
    ever opened says "processing"; only the current one may move the icon."""
    opened: list[Any] = []

    class Counting(Controller):
        async def _open(self, spec: SourceSpec) -> Opened:
            source, found = await super()._open(spec)
            opened.append(source)
            return source, found

    ctl = Counting(ProfileStore(), dsn=db_dsn, tray_available=lambda: False,
                   use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.status.state is State.STABLE)
            ctl._restart()
            ctl._restart()
            await wait_until(lambda: ctl.status.state is State.STABLE and not ctl.slot.busy)
            assert len(opened) == 2  # the first, and the newest restart only
            assert [s._running for s in opened] == [False, True]
            for source in opened[:-1]:
                source._emit(source._listeners, Status(State.PROCESSING))
            ctl._render_throttle.flush()
            assert ctl.window.status.state is State.STABLE
        finally:
            await ctl.shutdown()
        assert not any(s._running for s in opened)

    run(qloop, scenario())


class Sampler:
    """Checks, every few milliseconds, that at most one of ``sources`` runs at a time."""

    def __init__(self, sources: list[Any]) -> None:
        self.sources = sources
        self.most = 0
        self.samples = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.most = max(self.most, sum(1 for s in self.sources if s._running))
            self.samples += 1
            await asyncio.sleep(0.003)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def test_a_slot_never_runs_two_sources_at_once(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, db_dsn: str,
) -> None:
    """Restarts in quick succession: the next source starts only once the one before it
    closed its connection, only the newest restart's source is started, and close()
    leaves none running."""
    opened: list[Any] = []

    async def opener(spec: SourceSpec) -> Opened:
        source, found = await open_spec(spec)
        opened.append(source)
        return source, found

    slot = SourceSlot(opener, "the database")
    rng = random.Random(7)

    async def scenario() -> None:
        sampler = Sampler(opened)
        try:
            for i in range(25):
                slot.restart(SourceSpec(db_dsn + f" connect_timeout={5 + i % 2}"))
                await asyncio.sleep(rng.choice([0, 0, 0.005, 0.05, 0.2]))
            await wait_until(lambda: not slot.busy and slot.adapter is not None
                             and slot.adapter.status.state is State.STABLE)
            assert sampler.most == 1 and sampler.samples > 50
            assert slot.adapter is not None
            assert [s for s in opened if s._running] == [slot.adapter.monitor]
            await slot.close()
            assert not any(s._running for s in opened) and slot.adapter is None
        finally:
            await sampler.stop()

    run(qloop, scenario())
    slot.deleteLater()


def test_a_deployment_unticked_and_ticked_again_has_one_source(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str,
) -> None:
    opened: list[Any] = []

    async def opener(spec: SourceSpec) -> Opened:
        source, found = await open_spec(spec)
        opened.append(source)
        return source, found

    store = ProfileStore()
    store.put(ConnectionProfile(name="test", dsn=db_dsn))
    deployments = Deployments(store, MonitorOptions, utcnow, opener=opener)

    async def scenario() -> None:
        sampler = Sampler(opened)
        try:
            for pause in (0, 0.3, 0, 0.01, 0.3, 0):
                deployments.sync(["test"])
                await wait_until(lambda: bool(opened) and opened[-1]._running)
                deployments.sync([])
                await asyncio.sleep(pause)
            deployments.sync(["test"])
            await wait_until(lambda: deployments.rows() == [("test", deployments.statuses[
                "test"])] and deployments.statuses["test"].state is State.STABLE)
            assert sampler.most == 1
            await deployments.stop()
            assert not any(s._running for s in opened)
        finally:
            await sampler.stop()

    run(qloop, scenario())
    deployments.deleteLater()


# -- item 2: a Save restarts only what it changed ------------------------------------------
def test_a_notification_setting_saves_in_place(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
) -> None:
    """Settings → a notification tick box → Save: no new connection anywhere, no
    Connecting flash, the details window stays open, the policy has the new setting. A
    connection setting of one profile then restarts that profile's source only."""
    store = ProfileStore()
    store.put(ConnectionProfile(name="prod", dsn=db_dsn), make_default=True)
    store.put(ConnectionProfile(name="test", dsn=bare_db_dsn))
    store.save_settings(replace(store.settings, watched=("test",)))
    ctl = Controller(store, tray_available=lambda: True, use_desktop_notifier=False)
    admin = admin_of(db_dsn)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: counts(admin, db_dsn, bare_db_dsn) == [1, 1]
                             and ctl.tray.shown.state is State.STABLE)
            ctl.show_details()
            window = ctl.details_window
            assert window is not None and window.isVisible()
            await wait_until(lambda: window.details is not None)
            before = backends(admin, db_dsn, bare_db_dsn)
            ctl.show_settings()
            dialog = ctl.settings_dialog
            assert dialog is not None
            _select(dialog, "prod")
            dialog.notify_stable.setChecked(False)
            dialog.icon_style.setCurrentIndex(dialog.icon_style.findData("mono-dark"))
            assert await save(dialog), dialog.message.text()
            assert ctl.tray.shown.state is State.STABLE  # no Connecting flash
            assert not ctl.policy.options.finished
            assert all(not p.options.finished for p in ctl.deployments.policies.values())
            await asyncio.sleep(1.0)
            assert backends(admin, db_dsn, bare_db_dsn) == before  # the same sessions
            assert ctl.details_window is window and window.isVisible()
            assert window.details is not None  # still read, not emptied

            # A connection setting of test: test reconnects, prod keeps its session.
            _select(dialog, "test")
            dialog.dsn.setText(bare_db_dsn + " connect_timeout=7")
            assert await save(dialog), dialog.message.text()
            prod_db, test_db = (str(conninfo_to_dict(d)["dbname"]) for d in (db_dsn, bare_db_dsn))
            await wait_until(lambda: (got := backends(admin, db_dsn, bare_db_dsn))[prod_db]
                             == before[prod_db] and len(got[test_db]) == 1
                             and got[test_db] != before[test_db])
            await wait_until(lambda: ctl.tray.shown.state is State.STABLE)
            assert ctl.details_window is window and window.isVisible()

            # Renaming either profile reconnects nothing: each is followed by its name.
            sessions = backends(admin, db_dsn, bare_db_dsn)
            for old, new in (("test", "staging"), ("prod", "production")):
                _select(dialog, old)
                dialog.name.setText(new)
                assert await save(dialog), dialog.message.text()
            assert ctl.profile_name == "production"
            assert [n for n, _ in ctl.deployments.rows()] == ["staging"]
            assert ProfileStore().settings.watched == ("staging",)  # the second Save kept it
            await asyncio.sleep(1.0)
            assert backends(admin, db_dsn, bare_db_dsn) == sessions
            assert ctl.tray.shown.state is State.STABLE
            dialog.close()
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


# -- item 8: every watched deployment follows the same rules -------------------------------
@pytest.fixture
def no_keychain() -> Iterator[None]:
    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(old)


@pytest.fixture
def no_libpq_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))


class FailsFirstTest(Controller):
    """The real controller; opening deployment "test" hits a bug the first time."""

    failed = 0

    async def _open(self, spec: SourceSpec) -> Opened:
        if spec.keychain_name == "test" and not self.failed:
            self.failed += 1
            raise RuntimeError("a bug while opening test")
        return await super()._open(spec)


def test_a_watched_deployment_that_hits_a_bug_says_so_and_reconnects(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
) -> None:
    store = ProfileStore()
    store.put(ConnectionProfile(name="prod", dsn=db_dsn), make_default=True)
    store.put(ConnectionProfile(name="test", dsn=bare_db_dsn))
    store.save_settings(replace(store.settings, watched=("test",)))
    ctl = FailsFirstTest(store, tray_available=lambda: True, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            # Red with the reason, never "connecting" forever.
            await wait_until(lambda: ctl.deployments.statuses["test"].problem
                             is Problem.INTERNAL)
            assert ctl.tray.shown.state is State.ERROR
            assert "test: Cannot watch" in ctl.tray.tooltip_text()
            assert "a bug while opening test" in ctl.deployments.statuses["test"].message
            ctl.deployments.reconnect("test")  # its section's "Reconnect now"
            await wait_until(lambda: ctl.tray.shown.state is State.STABLE)
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_a_watched_deployment_reads_as_its_profile_says(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
) -> None:
    """The profile's ``source`` setting holds for a watched deployment too: "builtin"
    reads StatBus's own channels even where traystatus's SQL is installed."""
    store = ProfileStore()
    store.put(ConnectionProfile(name="prod", dsn=bare_db_dsn), make_default=True)
    store.put(ConnectionProfile(name="test", dsn=db_dsn, source="builtin"))
    store.save_settings(replace(store.settings, watched=("test",)))
    ctl = Controller(store, tray_available=lambda: True, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.deployments.statuses["test"].state is State.STABLE)
            assert ctl.deployments.statuses["test"].source == "builtin"
            # Switched to installed in Settings: test restarts and reads our SQL.
            store.put(replace(store.get("test"), source="installed"))
            ctl._settings_saved(SavedChange(profile="test"))
            await wait_until(lambda: ctl.deployments.statuses["test"].state is State.STABLE
                             and ctl.deployments.statuses["test"].source == "installed")
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_a_password_typed_without_a_keychain_reaches_a_watched_deployment(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    no_keychain: None, no_libpq_password: None, db_dsn: str, bare_db_dsn: str,
    login_role: tuple[str, str],
) -> None:
    user, password = login_role
    p = conninfo_to_dict(db_dsn)
    store = ProfileStore()
    store.put(ConnectionProfile(name="prod", dsn=bare_db_dsn), make_default=True)
    store.put(ConnectionProfile(name="test", host=str(p["host"]), port=str(p["port"]),
                                dbname=str(p["dbname"]), user=user))
    store.save_settings(replace(store.settings, watched=("test",)))
    ctl = Controller(store, tray_available=lambda: True, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            # No password anywhere yet: test says so.
            await wait_until(lambda: ctl.deployments.statuses["test"].state is State.ERROR)
            ctl.show_settings()
            dialog = ctl.settings_dialog
            assert dialog is not None
            _select(dialog, "test")
            dialog.password.setText(password)
            assert not await save(dialog)  # no keychain: for this session only
            assert "this session only" in dialog.message.text()
            await wait_until(lambda: ctl.deployments.statuses["test"].state is State.STABLE)
            dialog.close()
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_a_switch_to_another_database_forgets_the_statbus_user(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str,
) -> None:
    """The details window stays open across a switch; the "yours" marks of the old
    database's user must not carry over to the other database's jobs."""
    store = ProfileStore()
    store.put(ConnectionProfile(name="prod", dsn=db_dsn), make_default=True)
    store.put(ConnectionProfile(name="test", dsn=bare_db_dsn))
    ctl = Controller(store, tray_available=lambda: True, use_desktop_notifier=False)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.status.state is State.STABLE)
            ctl.show_details()
            window = ctl.details_window
            assert window is not None and ctl.adapter is not None
            ctl.adapter.statusChanged.emit(
                Status(State.PROCESSING, progress=Progress(me=5)))
            assert ctl.me == 5 and window.main.me == 5
            ctl.switch_profile("test")
            assert ctl.me is None and window.main.me is None
            await wait_until(lambda: ctl.status.state is State.STABLE
                             and ctl.status.source == "builtin")
            assert ctl.details_window is window and window.isVisible()
        finally:
            await ctl.shutdown()

    run(qloop, scenario())
