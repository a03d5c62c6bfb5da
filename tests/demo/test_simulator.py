"""The simulator drives a StatBus stand-in through processing and back to stable.

Runs one whole cycle, fast, against a fresh test database while a second connection
LISTENs on system_stability and samples is_system_stable(), the way the tray app does.
"""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest

from traystatus.demo.simulator import Simulator, TaskSpec, count_tasks, derive_run_spec


def _small_derive() -> TaskSpec:
    return derive_run_spec(batches=30, periods=10, partitions=12)


async def _watch(dsn: str, seen: list[bool], notes: list[str], done: asyncio.Event) -> None:
    """LISTEN, then sample the truth, as the protocol in docs/architecture.md says."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("LISTEN system_stability")
        while not done.is_set():
            cur = await conn.execute("SELECT public.is_system_stable()")
            row = await cur.fetchone()
            assert row is not None
            seen.append(bool(row[0]))
            async for n in conn.notifies(timeout=0.05):
                notes.append(n.payload)


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_one_cycle_goes_busy_and_back_to_stable(db_dsn: str) -> None:
    events: list[str] = []
    sim = Simulator(
        db_dsn, speed=15.0, quiet=1.0, user_email="demo@example.org",
        derive_shape=_small_derive, rows_scale=0.1, on_event=events.append,
    )
    seen: list[bool] = []
    notes: list[str] = []
    done = asyncio.Event()
    watcher = asyncio.create_task(_watch(db_dsn, seen, notes, done))
    reports = await sim.run(cycles=1)
    await asyncio.sleep(0.3)  # let the last notification arrive
    done.set()
    await watcher

    assert len(reports) == 1
    # all three imports ended; cycle 1 is not a "failed" cycle, so the error job finished
    assert set(reports[0].jobs.values()) == {"finished"}
    assert reports[0].analytics_tasks >= 2 * count_tasks(_small_derive())

    # the system went busy and came back to stable, and listeners were told both ways
    assert seen[0] is True and seen[-1] is True
    assert False in seen
    payloads = [json.loads(p)["stable"] for p in notes]
    assert False in payloads and payloads[-1] is True
    # Four busy spells, no flicker in between: import 1 + its derive run; import 2's
    # analysis; import 2 after approval + its derive run; import 3 + its derive run.
    # (The derive run is queued before the import finishes, as StatBus does.)
    # (A notification is sent per crossing row, so runs of equal hints are collapsed.)
    spells = [p for i, p in enumerate(payloads) if i == 0 or p != payloads[i - 1]]
    assert spells == [False, True] * 4, payloads

    with psycopg.connect(db_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT public.is_system_stable()").fetchone() == (True,)
        jobs = conn.execute(
            """SELECT slug, state::text, error, error_count, imported_rows, total_rows,
                      import_completed_pct, analysis_completed_pct, last_progress_update,
                      review, u.email
               FROM public.import_job j LEFT JOIN auth."user" u ON u.id = j.user_id
               ORDER BY j.id"""
        ).fetchall()
        assert [j[0] for j in jobs] == [
            "demo_1_legal_units", "demo_1_establishments", "demo_1_corrections",
        ]
        for slug, state, _e, _n, imported, total, ipct, apct, lpu, _r, email in jobs:
            assert state == "finished", slug
            assert ipct == 100 and apct == 100, slug
            assert lpu is not None and email == "demo@example.org"
            assert total is not None and 0 < imported <= total
        assert jobs[1][9] is True  # the review job was approved
        assert jobs[2][2] and jobs[2][3] > 0  # errors recorded
        assert jobs[0][2] is None and jobs[0][4] == jobs[0][5]

        # every analytics task completed, in a consistent tree
        states: dict[object, object] = dict(
            conn.execute(
                """SELECT t.state::text, count(*) FROM worker.tasks t
                   JOIN worker.command_registry cr USING (command)
                   WHERE cr.queue <> 'maintenance' GROUP BY 1"""
            ).fetchall()
        )
        assert set(states) == {"completed"}, states
        bad = conn.execute(
            """SELECT c.id FROM worker.tasks c JOIN worker.tasks p ON p.id = c.parent_id
               WHERE c.depth <> p.depth + 1 OR p.child_mode IS NULL
                  OR c.completed_at > p.completed_at OR c.process_start_at < p.process_stop_at"""
        ).fetchall()
        assert bad == []
        assert conn.execute(
            "SELECT count(*) FROM worker.tasks WHERE command = 'collect_changes'"
        ).fetchone() == (3,)
        # the maintenance tasks were left alone: still pending, 24 h ahead
        maint = conn.execute(
            """SELECT state::text, scheduled_at > now() + interval '23 hours'
               FROM worker.tasks WHERE command IN ('task_cleanup', 'import_job_cleanup')"""
        ).fetchall()
        assert maint == [("pending", True), ("pending", True)]
    assert any("waiting_for_review" in e for e in events)


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_failed_job_and_parallel_limit(db_dsn: str) -> None:
    """Cycle 3 fails its error job; the worker never runs more than 4 analytics handlers."""
    sim = Simulator(db_dsn, speed=30.0, quiet=0.2, derive_shape=_small_derive, rows_scale=0.05)
    sim.cycle = 2  # the next cycle is the third, whose error job fails
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        async with await psycopg.AsyncConnection.connect(db_dsn, autocommit=True) as conn:
            while not done.is_set():
                cur = await conn.execute(
                    "SELECT count(*) FROM public.worker_task "
                    "WHERE queue = 'analytics' AND state = 'processing'"
                )
                row = await cur.fetchone()
                assert row is not None
                peak = max(peak, int(row[0]))
                await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    reports = await sim.run(cycles=1)
    done.set()
    await sampler
    assert reports[0].jobs["demo_3_corrections"] == "failed"
    assert 1 <= peak <= 4
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT state::text, error IS NOT NULL, error_count > 0 FROM public.import_job "
            "WHERE slug = 'demo_3_corrections'"
        ).fetchone()
        assert row == ("failed", True, True)
        assert conn.execute("SELECT public.is_system_stable()").fetchone() == (True,)


@pytest.mark.asyncio
async def test_stop_ends_the_loop_promptly(db_dsn: str) -> None:
    sim = Simulator(db_dsn, speed=1.0, quiet=60.0)
    task = asyncio.create_task(sim.run())
    await asyncio.sleep(0.5)
    sim.stop()
    reports = await asyncio.wait_for(task, timeout=10)
    assert reports == []  # stopped during the first quiet period


def test_derive_run_has_a_few_hundred_tasks() -> None:
    assert 250 <= count_tasks(derive_run_spec()) <= 400


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Simulator("dbname=x", speed=0)
