"""Issue 22 through a real ``traystatus serve``: the estimate the server's monitor makes from
StatBus's history reaches a relay client whole (the same at, low, high and how)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.core.test_monitor_estimate import HISTORY
from tests.serve.conftest import FAST, served, until
from traystatus.core.model.state import State
from traystatus.core.relay.client import RelaySource


@pytest.mark.asyncio
async def test_the_estimate_crosses_the_relay(db_dsn: str, tmp_path: Path) -> None:
    from tests.sql.conftest import add_job

    with psycopg.connect(db_dsn, autocommit=True) as c:
        c.execute(HISTORY)
    async with served(db_dsn, tmp_path) as srv:
        relay = RelaySource(srv.url, FAST, token="test-token-0123456789abcdef")
        task = asyncio.create_task(relay.run())
        try:
            await until(lambda: relay.status.state is State.STABLE, what="stable")
            with psycopg.connect(db_dsn, autocommit=True) as c:
                add_job(c, "processing_data", slug="lu_q3", total_rows=1000,
                        import_completed_pct=50,
                        processing_start_at=datetime.now(UTC) - timedelta(minutes=5))

            def known() -> bool:
                p = relay.status.progress
                return p is not None and p.estimate is not None and p.estimate.known

            await until(known, what="a known estimate via the relay")
            theirs = srv.monitor.status.progress
            mine = relay.status.progress
            assert mine is not None and theirs is not None
            assert mine.estimate == theirs.estimate
            assert mine.estimate is not None and "(3 runs)" in mine.estimate.how
            assert relay.status.source == "relay"
        finally:
            relay.stop()
            await asyncio.wait_for(task, 10)
