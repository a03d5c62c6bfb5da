"""Which import jobs ended, told by a real monitor on a real server (issue 18 item 3).

Only a final state (finished, failed, rejected) ends an import: a job that stops for
review has not ended. Each ending is told once, also one that happened while the monitor
was stopped (the ledger in ``endings_dir``), and nothing that ended before the monitor
first saw the database."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.core.conftest import FAST, aconnect, running
from tests.core.test_monitor_progress import add_job
from traystatus.core.model.jobs import EndedJob
from traystatus.core.model.state import State
from traystatus.core.watch.monitor import Monitor


def _monitor(dsn: str, folder: Path | None, ended: list[EndedJob]) -> Monitor:
    m = Monitor(dsn, replace(FAST, endings_dir=str(folder)) if folder else FAST)
    m.add_import_listener(ended.append)
    return m


@pytest.mark.asyncio
async def test_review_is_not_an_ending_the_real_end_is_told_once(db_dsn: str) -> None:
    w = await aconnect(db_dsn)
    job = await add_job(w, "analysing_data", total_rows=8000, analysis_completed_pct=50,
                        description="Establishments 2026 (review)", review=True)
    ended: list[EndedJob] = []
    m = _monitor(db_dsn, None, ended)
    async with running(m) as rec:
        await rec.until(lambda: m.status.progress is not None
                        and len(m.status.progress.running_jobs) == 1, what="the job runs")
        await w.execute("UPDATE public.import_job SET state = 'waiting_for_review', "
                        "analysis_completed_pct = 100, warning_count = 24 WHERE id = %s",
                        (job,))
        await rec.until(lambda: m.status.review is not None, what="the review block")
        reads = m.counters.endings_reads
        await rec.until(lambda: m.counters.endings_reads >= reads + 2, what="two more reads")
        assert ended == []  # waiting for review is not an ending
        await w.execute("UPDATE public.import_job SET state = 'approved' WHERE id = %s", (job,))
        await w.execute("UPDATE public.import_job SET state = 'processing_data' WHERE id = %s",
                        (job,))
        await rec.state(State.PROCESSING)
        await w.execute("UPDATE public.import_job SET state = 'finished', imported_rows = 8000,"
                        " import_completed_pct = 100 WHERE id = %s", (job,))
        await rec.until(lambda: len(ended) == 1, what="the ending")
        assert (ended[0].id, ended[0].state) == (job, "finished")
        assert ended[0].text == "8,000 rows imported, 24 warnings"
        reads = m.counters.endings_reads
        await rec.until(lambda: m.counters.endings_reads >= reads + 2, what="two more reads")
        assert len(ended) == 1  # told once
    await w.close()


@pytest.mark.asyncio
async def test_an_ending_while_stopped_is_told_at_the_next_start_once(
    db_dsn: str, tmp_path: Path,
) -> None:
    w = await aconnect(db_dsn)
    await add_job(w, "finished", imported_rows=5, description="ancient history")
    running_job = await add_job(w, "processing_data", total_rows=100, import_completed_pct=3)
    folder = tmp_path / "endings"
    ended: list[EndedJob] = []
    first = _monitor(db_dsn, folder, ended)
    async with running(first) as rec:
        await rec.state(State.PROCESSING)
        await rec.until(lambda: first.counters.endings_reads >= 1, what="the baseline")
    assert ended == []  # the job that ended before the app saw the database: never told
    assert len(list(folder.glob("*.json"))) == 1

    # While no monitor runs: the job ends, and another begins and ends.
    await w.execute("UPDATE public.import_job SET state = 'failed', error = 'disk full' "
                    "WHERE id = %s", (running_job,))
    quick = await add_job(w, "finished", imported_rows=7, total_rows=7, description="quick")
    second = _monitor(db_dsn, folder, ended)
    async with running(second) as rec:
        await rec.until(lambda: len(ended) == 2, what="both endings")
        assert [(e.id, e.state, e.text) for e in ended] == [
            (running_job, "failed", "disk full"), (quick, "finished", "7 rows imported")]
    third = _monitor(db_dsn, folder, ended)
    async with running(third) as rec:
        await rec.state(State.STABLE)
        await rec.until(lambda: third.counters.endings_reads >= 2, what="two reads")
        await asyncio.sleep(0.2)
    assert len(ended) == 2  # told once, across restarts
    await w.close()


@pytest.mark.asyncio
async def test_one_owner_per_ledger_file_and_the_next_takes_it_over(
    db_dsn: str, tmp_path: Path,
) -> None:
    """One owner per file. A watcher replacing another (Save in Settings) waits for the
    file while the old one stops, then goes on from the old one's ledger: nothing told
    twice, nothing lost."""
    folder = tmp_path / "endings"
    a: list[EndedJob] = []
    b: list[EndedJob] = []
    ma, mb = _monitor(db_dsn, folder, a), _monitor(db_dsn, folder, b)
    w = await aconnect(db_dsn)
    owner = asyncio.create_task(ma.run())
    try:
        for _ in range(300):
            if ma._ledger_file is not None and ma._ledger.started:
                break
            await asyncio.sleep(0.05)
        assert ma._ledger_file is not None
        async with running(mb) as rb:
            await rb.state(State.STABLE)
            job = await add_job(w, "processing_data", total_rows=10, import_completed_pct=1)
            await rb.state(State.PROCESSING)
            await w.execute("UPDATE public.import_job SET state = 'finished', "
                            "imported_rows = 10 WHERE id = %s", (job,))
            await rb.until(lambda: len(a) == 1, what="the owner told it")
            assert mb._ledger_file is None and not mb._ledger.started  # waits for the file
            ma.stop()
            await asyncio.wait_for(owner, 30)
            await rb.until(lambda: mb._ledger_file is not None, what="mb took the file over")
            later = await add_job(w, "failed", error="x")
            await rb.until(lambda: len(b) == 1, what="the next ending")
            assert [e.id for e in b] == [later]  # the owner's ending is not told again
    finally:
        ma.stop()
        await asyncio.wait_for(owner, 30)
    await w.close()


@pytest.mark.asyncio
async def test_a_file_held_for_good_leaves_a_ledger_in_memory(
    db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two watchers of one database and login for good: the second, after the grace,
    keeps its ledger in memory and tells the same endings."""
    from traystatus.core.watch import monitor as monitor_module
    from traystatus.core.watch.endings import LedgerFile, ledger_key

    monkeypatch.setattr(monitor_module, "CLAIM_GRACE", 0.5)
    folder = tmp_path / "endings"
    params = conninfo_to_dict(db_dsn)
    holder = LedgerFile.claim(folder, ledger_key(str(params.get("host") or ""),
                                                 str(params.get("port") or ""),
                                                 str(params["dbname"]), str(params["user"])),
                              "held")
    assert holder is not None
    told: list[EndedJob] = []
    m = _monitor(db_dsn, folder, told)
    w = await aconnect(db_dsn)
    try:
        async with running(m) as rec:
            await rec.until(lambda: m._ledger.started, what="a baseline in memory")
            assert m._ledger_file is None
            job = await add_job(w, "finished", imported_rows=3)
            await rec.until(lambda: [e.id for e in told] == [job], what="the ending")
    finally:
        holder.release()
        await w.close()


@pytest.mark.asyncio
async def test_a_recreated_database_starts_the_ledger_again(
    db_dsn: str, tmp_path: Path,
) -> None:
    """The ledger saw job ids up to 1000; the database was recreated (or restored) and its
    ids start at 1 again: endings from now on are told, not waited for above 1000."""
    from traystatus.core.watch.endings import EndingsLedger, LedgerFile, ledger_key

    folder = tmp_path / "endings"
    params = conninfo_to_dict(db_dsn)
    old = LedgerFile.claim(folder, ledger_key(str(params.get("host") or ""),
                                              str(params.get("port") or ""),
                                              str(params["dbname"]), str(params["user"])), "x")
    assert old is not None
    old.save(EndingsLedger(after=1000, open={990}))
    old.release()
    told: list[EndedJob] = []
    m = _monitor(db_dsn, folder, told)
    w = await aconnect(db_dsn)
    async with running(m) as rec:
        await rec.state(State.STABLE)
        await rec.until(lambda: m._ledger.after is not None and m._ledger.after < 1000,
                        what="a new baseline")
        job = await add_job(w, "processing_data", total_rows=10, import_completed_pct=1)
        await rec.state(State.PROCESSING)
        await w.execute("UPDATE public.import_job SET state = 'finished', imported_rows = 10 "
                        "WHERE id = %s", (job,))
        await rec.until(lambda: [e.id for e in told] == [job], what="the ending")
    await w.close()
