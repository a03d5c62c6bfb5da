"""The estimate through the monitor, on a real server: the history is read while
processing (at most once per ``history_interval``, per connection), never while stable,
and ``Status.progress.estimate`` says when it will be stable, or unknown."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.core.conftest import FAST, aconnect, running
from tests.core.test_monitor_progress import add_job
from traystatus.core.model.estimate import History
from traystatus.core.model.state import State
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import ReaderMode
from traystatus.core.watch.readers import HISTORY_SQL

# Three finished 1,000-row imports, each followed by a derive run of about 5 minutes
# (plus the run before them, which only marks where the imports' rows start counting).
HISTORY = """
INSERT INTO worker.tasks (command, state, child_mode, process_start_at, completed_at)
SELECT 'collect_changes', 'completed', 'serial',
       now() - make_interval(hours => 10 - g) + interval '20 min',
       now() - make_interval(hours => 10 - g) + interval '25 min' + make_interval(secs => g * 10)
  FROM generate_series(0, 3) AS g;
INSERT INTO public.import_job (slug, definition_id, state, total_rows, preparing_data_at,
       analysis_start_at, analysis_stop_at, processing_start_at, processing_stop_at)
SELECT 'done_' || g, 1, 'finished', 1000,
       now() - make_interval(hours => 10 - g),
       now() - make_interval(hours => 10 - g) + interval '10 s',
       now() - make_interval(hours => 10 - g) + interval '2 min',
       now() - make_interval(hours => 10 - g) + interval '2 min',
       now() - make_interval(hours => 10 - g) + interval '12 min'
  FROM generate_series(1, 3) AS g;
"""


async def _history(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
        await c.execute(HISTORY)


@pytest.mark.parametrize("reader", ["installed", "builtin"])
@pytest.mark.asyncio
async def test_estimate_while_processing_from_the_history(db_dsn: str, reader: ReaderMode) -> None:
    await _history(db_dsn)
    m = Monitor(db_dsn, replace(FAST, history_interval=3600.0, reader=reader))
    w = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        await asyncio.sleep(1.5)
        assert m.counters.history_reads == 0, "nothing read while stable"
        await add_job(w, "processing_data", total_rows=1000, import_completed_pct=50,
                      processing_start_at=datetime.now(UTC) - timedelta(minutes=5))
        await rec.until(lambda: m.status.progress is not None
                        and m.status.progress.estimate is not None
                        and m.status.progress.estimate.known, what="a known estimate")
        e = m.status.progress.estimate if m.status.progress else None
        assert e is not None and e.at is not None and e.low is not None and e.high is not None
        rest = (e.at - datetime.now(UTC)).total_seconds()
        # about 5 min of import left, then about 5 min of derive
        assert 300 < rest < 1200, rest
        assert "after imports of this size this week (3 runs)" in e.how
        assert m.status.source == reader
        js = m.status.to_json()["progress"]
        assert isinstance(js, dict) and js["estimate"]["known"] is True
        # nudges while processing: still the one history read of this connection
        for _ in range(3):
            await w.execute("SELECT pg_notify('import_job_progress', '{}')")
            await asyncio.sleep(1.1)
        assert m.counters.history_reads == 1
    await w.close()


@pytest.mark.asyncio
async def test_unknown_without_history_and_no_reads_once_stable(db_dsn: str) -> None:
    m = Monitor(db_dsn, replace(FAST, history_interval=1.0))
    w = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        job = await add_job(w, "processing_data", total_rows=1000, import_completed_pct=1)
        await rec.until(lambda: m.status.progress is not None
                        and m.status.progress.estimate is not None, what="an estimate")
        e = m.status.progress.estimate if m.status.progress else None
        assert e is not None and not e.known and e.at is None
        assert e.text() == "when stable: unknown"
        await w.execute("UPDATE public.import_job SET state = 'finished' WHERE id = %s", (job,))
        await rec.state(State.STABLE)
        reads = m.counters.history_reads
        start = time.monotonic()
        while time.monotonic() - start < 2.5:
            await w.execute("SELECT pg_notify('import_job_progress', '{}')")
            await asyncio.sleep(0.2)
        assert m.counters.history_reads == reads, "no history read while stable"
    await w.close()


KIT = os.environ.get("STATBUS_REAL_ANALYST_DSN")


@pytest.mark.skipif(not KIT, reason="the real StatBus kit is not set up (STATBUS_REAL_*)")
def test_the_history_read_runs_as_an_analyst_on_the_real_statbus() -> None:
    """An analyst's login (authenticated: SELECT on import_job and worker.tasks) may read
    the estimate's history on the real StatBus schema."""
    assert KIT is not None
    with psycopg.connect(KIT, autocommit=True) as conn:
        row = conn.execute(HISTORY_SQL).fetchone()
    assert row is not None
    History.from_rows(*row)  # parses whatever the kit holds
