"""A running StatBus upgrade with the database stopped in the middle (it is, for the
backup): the monitor says UPGRADING throughout, never "connection lost", never stable,
and follows the row to its end once the database is back.

A server of this test's own (the shared kit must stay up), with the stand-in StatBus,
traystatus's SQL and a stand-in ``public.upgrade`` with the real table's lifecycle
columns and StatBus's own trigger (migration 20260328092344, state column 20260414180000).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from tests.core.conftest import FAST, running
from tests.fix_db import FIXTURE_SCHEMA, INSTALL_SQL
from traystatus.core.model.state import Problem, State
from traystatus.core.model.upgrade import UpgradePhase
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import ReaderMode
from traystatus.demo.embedded import EmbeddedPostgres

UPGRADE_TABLE = """
CREATE TYPE public.upgrade_state AS ENUM ('available', 'scheduled', 'in_progress',
  'completed', 'failed', 'rolled_back', 'dismissed', 'skipped', 'superseded');
CREATE TABLE public.upgrade (
    id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    commit_sha TEXT NOT NULL UNIQUE,
    commit_tags TEXT[] NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL,
    scheduled_at TIMESTAMPTZ,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    error TEXT,
    rolled_back_at TIMESTAMPTZ,
    skipped_at TIMESTAMPTZ,
    dismissed_at TIMESTAMPTZ,
    superseded_at TIMESTAMPTZ,
    state public.upgrade_state NOT NULL DEFAULT 'available'
);
GRANT SELECT ON public.upgrade TO authenticated;
CREATE FUNCTION public.upgrade_notify_frontend() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  PERFORM pg_notify('worker_status', '{"type":"upgrade_changed"}');
  RETURN COALESCE(NEW, OLD);
END;
$$;
CREATE TRIGGER upgrade_notify_frontend_trigger
  AFTER INSERT OR UPDATE OR DELETE ON public.upgrade
  FOR EACH ROW EXECUTE FUNCTION public.upgrade_notify_frontend();
"""


@pytest.fixture
def server(pg_dir: Path) -> Iterator[EmbeddedPostgres]:
    """Our own server to stop and start, outside pytest's temporary root (fix_db.pg_dir)."""
    srv = EmbeddedPostgres(pg_dir / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.destroy()


def _prepare(server: EmbeddedPostgres) -> str:
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE watched")
    dsn = server.dsn("watched")
    with psycopg.connect(dsn, autocommit=True) as c:
        for f in (FIXTURE_SCHEMA, INSTALL_SQL):
            c.execute(f.read_text().encode())
        c.execute(UPGRADE_TABLE.encode())
    return dsn


def _run(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(statement.encode())


@pytest.mark.asyncio
@pytest.mark.parametrize("reader", ["installed", "builtin"])
async def test_the_database_stopped_by_a_running_upgrade(
    server: EmbeddedPostgres, reader: ReaderMode
) -> None:
    dsn = _prepare(server)
    m = Monitor(dsn, replace(FAST, reader=reader))
    async with running(m) as rec:
        await rec.state(State.STABLE)
        await asyncio.to_thread(_run, dsn, (
            "INSERT INTO public.upgrade (commit_sha, commit_tags, summary, state, scheduled_at)"
            " VALUES (repeat('a', 40), ARRAY['v2026.12.0'], 'x', 'scheduled', now())"))
        await rec.until(lambda: m.status.upgrade is not None, what="the scheduled upgrade")
        assert m.status.state is State.STABLE
        claimed = len(rec.statuses)
        await asyncio.to_thread(_run, dsn, (
            "UPDATE public.upgrade SET state = 'in_progress', started_at = now()"))
        s = await rec.state(State.UPGRADING, within=10)
        assert s.problem is None and s.upgrade is not None and s.upgrade.running
        # the daemon stops the database for the backup
        await asyncio.to_thread(server.stop)
        await rec.until(lambda: m.status.problem is not None, what="the connection lost")
        s = m.status
        assert s.state is State.UPGRADING
        assert s.problem in (Problem.CONNECTION_LOST, Problem.UNREACHABLE)
        assert s.upgrade is not None and "being upgraded since" in s.upgrade.text()
        await rec.until(lambda: m.status.attempt >= 2, what="retries while it is down")
        assert m.status.state is State.UPGRADING
        # started again, migrated: still in progress until the daemon says completed
        await asyncio.to_thread(server.start)
        await rec.until(lambda: m.status.problem is None, what="connected again")
        assert m.status.state is State.UPGRADING and m.counters.reconnects == 1
        await asyncio.sleep(0.3)
        assert m.status.state is State.UPGRADING
        await asyncio.to_thread(_run, dsn, (
            "UPDATE public.upgrade SET state = 'completed', completed_at = now()"))
        s = await rec.state(State.STABLE, within=10)
        assert s.upgrade is not None and s.upgrade.phase is UpgradePhase.COMPLETED
    between = [st.state for st in rec.statuses[claimed:]][:-1]
    assert set(between) == {State.UPGRADING}, between  # never stable, never grey meanwhile
