"""StatBus's software upgrades on the real StatBus: ``public.upgrade`` driven as StatBus's
upgrade daemon writes it (cli/internal/upgrade/service.go: schedule, claim ``in_progress``
with ``started_at``, then ``completed``, ``failed`` with ``error`` and ``scheduled_at``
cleared, or ``rolled_back`` with ``rolled_back_at``), its own trigger announcing each
change on ``worker_status``. Watched as the kit's analyst, with and without traystatus's
SQL, on the newest StatBus (``state`` column), on v2026.03.0 (the commit-centric table,
``rollback_completed_at``, no ``state``) and on the oldest (no table: as before).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from tests.builtin.kit import Conn, Kit, KitDb
from tests.core.conftest import FAST, running
from tests.statbus_real import conftest as real
from traystatus.core.model.state import State
from traystatus.core.model.upgrade import UpgradePhase
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import ReaderMode

INSTALL = Path(__file__).resolve().parents[2] / "sql" / "install.sql"


class Daemon:
    """Writes public.upgrade as StatBus's upgrade daemon does (superuser connection, one
    statement per step: each commits and its trigger notifies ``worker_status``)."""

    def __init__(self, c: Conn) -> None:
        self.c = c
        cols = {r[0] for r in c.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'upgrade'").fetchall()}
        self.has_state = "state" in cols
        self.rolled = "rolled_back_at" if "rolled_back_at" in cols else "rollback_completed_at"
        self.tags = "commit_tags" if "commit_tags" in cols else "tags"

    def _set(self, row: int, assignments: str, state: str | None, *args: object) -> None:
        if self.has_state and state is not None:
            assignments = f"state = '{state}', " + assignments
        self.c.execute(f"UPDATE public.upgrade SET {assignments} WHERE id = %s",
                       (*args, row))

    def discover(self, tag: str) -> int:
        sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        row = self.c.execute(
            f"INSERT INTO public.upgrade (commit_sha, committed_at, {self.tags}, summary) "
            "VALUES (%s, now() - interval '1 day', ARRAY[%s], 'a release') RETURNING id",
            (sha, tag)).fetchone()
        assert row is not None
        return int(row[0])

    def schedule(self, row: int, at: str = "now() + interval '2 hours'") -> None:
        self._set(row, f"scheduled_at = {at}", "scheduled")

    def claim(self, row: int) -> None:
        self._set(row, "started_at = now(), from_version = 'v0'" if not self.has_state
                  else "started_at = now()", "in_progress")

    def complete(self, row: int) -> None:
        extra = ", log_relative_file_path = 'logs/x.log'" if self.has_state else ""
        self._set(row, "completed_at = now()" + extra, "completed")
        # service.go also NOTIFYs after the health check (its LISTENers may be new)
        self.c.execute("""NOTIFY worker_status, '{"type":"upgrade_changed"}'""")

    def fail(self, row: int, error: str) -> None:
        self._set(row, "error = %s, scheduled_at = NULL", "failed", error)

    def roll_back(self, row: int, error: str) -> None:
        self._set(row, f"error = %s, {self.rolled} = now()", "rolled_back", error)


def _install(db: KitDb) -> None:
    db.psql(INSTALL.read_text())


async def _watch_a_whole_lifecycle(db: KitDb, reader: ReaderMode) -> None:
    m = Monitor(db.analyst_dsn, replace(FAST, reader=reader, health_interval=30.0))
    with db.connect() as c:
        d = Daemon(c)
        async with running(m) as rec:
            # (the first release's template has a derive queued: processing throughout)
            await rec.until(lambda: m.status.is_known, what="the first answer")
            base = m.status.state
            assert m.status.upgrade is None
            row = d.discover("v2026.09.0")  # available: not news
            d.schedule(row)
            await rec.until(lambda: m.status.upgrade is not None, what="the scheduled upgrade")
            s = m.status
            assert s.state is base and s.upgrade is not None
            assert s.upgrade.phase is UpgradePhase.SCHEDULED and s.upgrade.name == "v2026.09.0"
            assert s.upgrade.text().startswith("StatBus will be upgraded at ")
            upgrade = s.to_json()["upgrade"]
            assert isinstance(upgrade, dict) and upgrade["phase"] == "scheduled"
            d.claim(row)
            s = await rec.state(State.UPGRADING, within=10)
            assert s.upgrade is not None and s.upgrade.running
            assert "being upgraded since" in s.upgrade.text()
            d.complete(row)
            s = await rec.state(base, within=10)
            assert s.upgrade is not None and s.upgrade.phase is UpgradePhase.COMPLETED
            # a second one fails; a third one is rolled back
            row = d.discover("v2026.10.0")
            d.schedule(row, "now()")
            d.claim(row)
            await rec.state(State.UPGRADING, within=10)
            d.fail(row, "Insufficient disk space: 2 GB free")
            s = await rec.state(base, within=10)
            assert s.upgrade is not None and s.upgrade.phase is UpgradePhase.FAILED
            assert s.upgrade.text() == ("The StatBus upgrade failed: Insufficient disk "
                                        "space: 2 GB free")
            row = d.discover("v2026.11.0")
            d.schedule(row, "now()")
            d.claim(row)
            await rec.state(State.UPGRADING, within=10)
            d.roll_back(row, "MIGRATION_FAILED: ./sb migrate up")
            s = await rec.state(base, within=10)
            assert s.upgrade is not None and s.upgrade.phase is UpgradePhase.ROLLED_BACK
            assert "rolled back" in s.upgrade.text()
    # never stable while one ran: every UPGRADING spell ended in STABLE only after the end
    assert [s for s in rec.flips if s is not State.CONNECTING] == [
        base, State.UPGRADING, base, State.UPGRADING, base, State.UPGRADING, base]
    assert m.counters.upgrade_reads < 20


@pytest.mark.asyncio
@pytest.mark.parametrize("reader", ["builtin", "installed"])
async def test_an_upgrade_lifecycle_on_the_newest_statbus(kit: Kit, reader: ReaderMode) -> None:
    with kit.database(prefix="ts_upgrade") as db:
        if reader == "installed":
            await asyncio.to_thread(_install, db)
        await _watch_a_whole_lifecycle(db, reader)


@pytest.mark.asyncio
async def test_an_upgrade_lifecycle_on_the_first_release(kit: Kit) -> None:
    """v2026.03.0: no state column, rollback_completed_at."""
    with kit.database(prefix="ts_upgrade", template=f"statbus_template_{real.MIDDLE}") as db:
        await _watch_a_whole_lifecycle(db, "builtin")


@pytest.mark.asyncio
async def test_the_oldest_statbus_has_no_upgrades_and_is_watched_as_before(kit: Kit) -> None:
    with kit.database(prefix="ts_upgrade", template=f"statbus_template_{real.OLDEST}") as db:
        with db.connect() as c:
            row = c.execute("SELECT to_regclass('public.upgrade')").fetchone()
            assert row is not None and row[0] is None
        m = Monitor(db.analyst_dsn, replace(FAST, reader="builtin", health_interval=30.0))
        async with running(m) as rec:
            s = await rec.state(State.STABLE)
            assert s.upgrade is None and s.to_json()["upgrade"] is None
            with db.connect() as c:
                c.execute("""NOTIFY worker_status, '{"type":"upgrade_changed"}'""")
            await asyncio.sleep(0.3)
        assert m.counters.upgrade_reads == 0
        assert m.status.state is State.STABLE


@pytest.mark.asyncio
async def test_a_forged_flood_of_upgrade_changed_costs_a_read_a_second(kit: Kit) -> None:
    """Anyone may NOTIFY worker_status: the payload is a hint, public.upgrade the truth."""
    with kit.database(prefix="ts_upgrade") as db:
        m = Monitor(db.analyst_dsn, replace(FAST, reader="builtin", health_interval=30.0))
        async with running(m) as rec:
            await rec.state(State.STABLE)
            before = m.counters.upgrade_reads
            with psycopg.connect(db.analyst_dsn, autocommit=True) as forger:
                for i in range(300):
                    forger.execute(
                        f"""NOTIFY worker_status, '{{"type":"upgrade_changed","n":{i}}}'""")
                    await asyncio.sleep(0.005)
            await rec.until(lambda: m.counters.notifications >= 300, what="the flood read")
            await asyncio.sleep(1.2)
            assert m.status.state is State.STABLE and m.status.upgrade is None
        assert 1 <= m.counters.upgrade_reads - before <= 6
