"""The built-in reader on every supported StatBus: the oldest (2026-03-01) has no
worker.tasks.depth, process_start_at, process_duration_ms, child_mode or
import_job.error_count; every built-in read still answers there, and with details
wanted the state stays STABLE on one connection. A details read that fails costs
only the details, never the state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest

from tests.core.conftest import FAST, Recorder, running
from tests.statbus_real.conftest import VERSIONS, Kit
from traystatus.core.model.state import State, utcnow
from traystatus.core.watch import _builtin_sql as builtin_sql
from traystatus.core.watch.endings import BASELINE_SQL, ENDINGS_SQL
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.readers import HISTORY_SQL, PROGRESS_SQL

# With details wanted the state is watched for WATCH more health checks (each a stability
# and an endings read on the same connection; a details read or a reconnect would come
# between): every 0.5 s here, so about 2 s (was 4 s at FAST's 1 s: about 4 checks).
WATCH = 4
OPTIONS = replace(FAST, reader="builtin", health_interval=0.5)


async def watch(rec: Recorder, m: Monitor) -> None:
    target = m.counters.health_checks + WATCH
    await rec.until(lambda: m.counters.health_checks >= target, what=f"{WATCH} health checks")


@pytest.mark.parametrize("version", VERSIONS)
def test_every_builtin_read_answers_on_every_supported_statbus(
    kit: Kit, new_db: Callable[..., str], version: str,
) -> None:
    dsn = new_db(kit.template(version))
    with psycopg.connect(dsn) as c:
        params = {"ids": [], "holds": True, "low": 0, "mark": 0, "since": utcnow()}
        for name, query in (("DETAILS", builtin_sql.DETAILS),
                            ("WORK_MARK", builtin_sql.WORK_MARK),
                            ("WORK_SUMMARY", builtin_sql.WORK_SUMMARY),
                            ("RULE_FULL", builtin_sql.RULE_FULL),
                            ("PROGRESS_SQL", PROGRESS_SQL), ("HISTORY_SQL", HISTORY_SQL),
                            ("BASELINE_SQL", BASELINE_SQL)):
            try:
                c.execute(query, params).fetchone()
            except psycopg.Error as ex:
                pytest.fail(f"{name} on StatBus {version}: {ex}")
            c.rollback()
        c.execute(ENDINGS_SQL, {"ids": [], "after": 0, "limit": 10}).fetchall()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.asyncio
async def test_builtin_details_on_every_supported_statbus_keep_the_state(
    kit: Kit, new_db: Callable[..., str], version: str,
) -> None:
    dsn = new_db(kit.template(version))
    with psycopg.connect(dsn) as c:
        row = c.execute(builtin_sql.RULE_NAIVE, {"holds": True}).fetchone()
    assert row is not None
    want = State.STABLE if row[0] else State.PROCESSING
    m = Monitor(dsn, OPTIONS)
    m.subscribe_details()
    async with running(m) as rec:
        await rec.until(lambda: bool(rec.details), what="details")
        await watch(rec, m)
        assert rec.flips == [want], rec.flips  # never ERROR, never a reconnect
        assert m.counters.connects == 1, m.counters
    assert rec.details[-1].system_stable is row[0]


@pytest.mark.asyncio
async def test_a_failing_details_read_costs_the_details_not_the_state(
    kit: Kit, new_db: Callable[..., str], caplog: pytest.LogCaptureFixture,
) -> None:
    """A StatBus whose import_job lacks a column only the details read: the state stays
    STABLE on one connection, and no details are handed out."""
    dsn = new_db(kit.template(VERSIONS[-1]))
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("ALTER TABLE public.import_job DROP COLUMN analysis_rows_per_sec CASCADE")
    m = Monitor(dsn, OPTIONS)
    m.subscribe_details()
    async with running(m) as rec:
        await rec.until(lambda: m.counters.details_reads >= 1, what="a details read")
        await watch(rec, m)
        assert rec.flips == [State.STABLE], rec.flips
        assert m.counters.connects == 1, m.counters
    assert rec.details == []
    said = [r.getMessage() for r in caplog.records if "no details" in r.getMessage()]
    assert said == ["no details from this database: column j.analysis_rows_per_sec "
                    "does not exist"], said
