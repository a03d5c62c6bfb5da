"""Notifications: exactly one for a statement that crosses the line, none otherwise.

The listener collects everything committed before each check (a sentinel, see conftest),
so "none" is a real observation, not a timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fix_db import STATBUS_REAL
from tests.sql.conftest import (
    BUSY_TASK_STATES,
    IMPORT_JOB_STATES,
    NEEDS_2026_03,
    QUEUE_COMMAND,
    REVIEW_HOLDS,
    TASK_STATES,
    Conn,
    Listener,
    add_job,
    add_task,
    jobs_busy,
    payload,
    stable,
)
from traystatus.core.pg.link import Link
from traystatus.core.watch.readers import InstalledReader, StableRead

INSERT_N = (
    "INSERT INTO worker.tasks (command, state) "
    "SELECT 'derive_statistical_unit', 'pending' FROM generate_series(1, %s)"
)


def test_payload_is_exactly_stable_bool(conn: Conn, listener: Listener) -> None:
    task = add_task(conn, "pending")
    conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (task,))
    sent = listener.drain()
    assert sent == ['{"stable": false}', '{"stable": true}']
    assert [json.loads(p) for p in sent] == [{"stable": False}, {"stable": True}]


def test_thousand_row_crossing_statements_send_one_notification_each(
    conn: Conn, listener: Listener
) -> None:
    conn.execute(INSERT_N, (1000,))
    assert listener.drain() == [payload(False)]
    conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE state = 'pending' "
                 "AND command = 'derive_statistical_unit'")
    assert listener.drain() == [payload(True)]
    assert stable(conn)


@NEEDS_2026_03
def test_thousand_tasks_pending_to_processing_send_nothing(conn: Conn, listener: Listener) -> None:
    conn.execute(INSERT_N, (1000,))
    assert listener.drain() == [payload(False)]
    res = conn.execute("UPDATE worker.tasks SET state = 'processing', process_start_at = now() "
                       "WHERE state = 'pending' AND command = 'derive_statistical_unit'")
    assert res.rowcount == 1000
    assert listener.drain() == []
    conn.execute("UPDATE worker.tasks SET state = 'waiting' WHERE state = 'processing'")
    conn.execute("UPDATE worker.tasks SET state = 'interrupted' WHERE state = 'waiting'")
    assert listener.drain() == []
    assert not stable(conn)


def test_update_touching_no_row_sends_nothing(conn: Conn, listener: Listener) -> None:
    add_task(conn, "pending")
    listener.drain()
    assert conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = -1").rowcount == 0
    res = conn.execute("UPDATE public.import_job SET state = 'finished' WHERE id = -1")
    assert res.rowcount == 0
    assert conn.execute("DELETE FROM worker.tasks WHERE id = -1").rowcount == 0
    assert listener.drain() == []


@NEEDS_2026_03
def test_progress_updates_send_nothing(conn: Conn, listener: Listener) -> None:
    job = add_job(conn, "processing_data", total_rows=1000)
    task = add_task(conn, "processing")
    assert listener.drain() == [payload(False)]  # the second one changed nothing
    for i in range(1, 11):
        conn.execute(
            "UPDATE public.import_job SET imported_rows = %s, import_completed_pct = %s, "
            "last_progress_update = now(), state = state WHERE id = %s",
            (i * 100, i * 10, job),
        )
        conn.execute("UPDATE worker.tasks SET process_duration_ms = %s, info = '{}', "
                     "state = state WHERE id = %s", (i, task))
    assert listener.drain() == []


def test_maintenance_and_import_queue_tasks_send_nothing(conn: Conn, listener: Listener) -> None:
    for queue in ("maintenance", "import"):
        command = QUEUE_COMMAND[queue]
        for scheduled in (None, "now() - interval '1 minute'", "now() + interval '1 day'"):
            sched_sql = scheduled or "NULL"
            row = conn.execute(
                f"INSERT INTO worker.tasks (command, state, scheduled_at) "
                f"VALUES (%s, 'pending', {sched_sql}) RETURNING id",
                (command,),
            ).fetchone()
            assert row is not None
            for state in ("processing", "waiting", "completed", "failed", "pending"):
                conn.execute("UPDATE worker.tasks SET state = %s WHERE id = %s", (state, row[0]))
            conn.execute("DELETE FROM worker.tasks WHERE id = %s", (row[0],))
    # the stand-in's own self-rescheduling maintenance tasks, re-scheduled as StatBus does
    conn.execute("UPDATE worker.tasks SET scheduled_at = scheduled_at + interval '24 hours' "
                 "WHERE command IN ('task_cleanup', 'import_job_cleanup')")
    assert listener.drain() == []
    assert stable(conn)


def test_future_scheduled_analytics_tasks_announce_their_due_moment_once(
    conn: Conn, listener: Listener
) -> None:
    """Scheduling analytics work ahead does not change the answer, but clients must learn when
    it falls due (no write happens then): one {"stable": true} when the next due moment moves
    earlier, nothing when it moves later or goes away."""
    conn.execute(
        "INSERT INTO worker.tasks (command, state, scheduled_at) "
        "SELECT 'derive_statistical_history', 'pending', now() + interval '1 hour' "
        "FROM generate_series(1, 100)"
    )
    assert listener.drain() == [payload(True)]
    due = conn.execute("SELECT public.system_stability_next_due() - now()").fetchone()
    assert due is not None and 3590 < due[0].total_seconds() <= 3600
    conn.execute("UPDATE worker.tasks SET scheduled_at = scheduled_at + interval '1 hour' "
                 "WHERE command = 'derive_statistical_history'")
    conn.execute("DELETE FROM worker.tasks WHERE command = 'derive_statistical_history'")
    assert listener.drain() == []
    assert stable(conn)
    assert conn.execute("SELECT public.system_stability_next_due()").fetchone() == (None,)


def test_a_task_falling_due_is_seen_by_time_and_its_end_is_announced(
    conn: Conn, listener: Listener
) -> None:
    """Time alone makes a scheduled task due: no notification (no write), but the database
    said when; once it ran, its end is announced (the record no longer knows what clients
    read at the due moment, so it announces)."""
    conn.execute("INSERT INTO worker.tasks (command, state, scheduled_at) "
                 "VALUES ('derive_statistical_history', 'pending', now() + interval '1 s')")
    assert listener.drain() == [payload(True)]
    row = conn.execute("SELECT public.system_stability_next_due()").fetchone()
    assert row is not None and row[0] is not None
    time.sleep(1.2)
    assert not stable(conn)
    assert listener.drain() == []
    conn.execute("UPDATE worker.tasks SET state = 'processing' "
                 "WHERE command = 'derive_statistical_history'")
    conn.execute("UPDATE worker.tasks SET state = 'completed' "
                 "WHERE command = 'derive_statistical_history'")
    assert listener.drain() == [payload(True)]
    assert stable(conn)


def test_delete_of_active_rows_crosses(conn: Conn, listener: Listener) -> None:
    conn.execute(INSERT_N, (10,))
    job = add_job(conn, "analysing_data")
    listener.drain()
    conn.execute("DELETE FROM worker.tasks WHERE command = 'derive_statistical_unit'")
    assert listener.drain() == []  # the job is still active: the answer did not change
    conn.execute("DELETE FROM public.import_job WHERE id = %s", (job,))
    assert listener.drain() == [payload(True)]


def test_truncate_announces_only_when_it_removed_active_rows(
    conn: Conn, listener: Listener
) -> None:
    # only the maintenance queue's future tasks: nothing active goes
    conn.execute("TRUNCATE worker.tasks")
    assert listener.drain() == []
    conn.execute(INSERT_N, (5,))
    listener.drain()
    conn.execute("TRUNCATE worker.tasks")
    assert listener.drain() == [payload(True)]
    add_job(conn, "finished")
    listener.drain()
    conn.execute("TRUNCATE public.import_job")
    assert listener.drain() == []
    add_job(conn, "approved")
    listener.drain()
    conn.execute("TRUNCATE public.import_job")
    assert listener.drain() == [payload(True)]
    assert stable(conn)


def test_rolled_back_crossing_sends_nothing(conn: Conn, listener: Listener) -> None:
    with conn.transaction(force_rollback=True):
        add_task(conn, "pending")
    with psycopg.connect(conn.info.dsn, autocommit=True) as other:
        add_task(other, "pending")
        with other.transaction():
            other.execute("UPDATE worker.tasks SET state = 'completed'")
            with other.transaction(force_rollback=True):  # a savepoint rolled back
                add_task(other, "pending")
    assert listener.drain() == [payload(False), payload(True)]


def test_one_transaction_many_crossings(conn: Conn, listener: Listener) -> None:
    """Deliveries happen at commit; identical payloads of one transaction fold into one."""
    with conn.transaction():
        for _ in range(5):
            add_task(conn, "pending")
            add_job(conn, "upload_completed")
    assert listener.drain() == [payload(False)]
    with conn.transaction():
        conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE state = 'pending' "
                     "AND command = 'derive_statistical_unit'")
        conn.execute("UPDATE public.import_job SET state = 'finished'")
    assert listener.drain() == [payload(True)]


def next_due(conn: Conn) -> datetime | None:
    row = conn.execute("SELECT public.system_stability_next_due()").fetchone()
    assert row is not None and (row[0] is None or isinstance(row[0], datetime))
    return row[0]


# -- a property over random statements ---------------------------------------------------------
ROW = st.tuples(
    st.sampled_from(TASK_STATES),
    # (a real StatBus allows one pending task per maintenance command: one is enough there)
    st.sampled_from([c for q, c in QUEUE_COMMAND.items()
                     if not (STATBUS_REAL and q == "maintenance")]),
    st.sampled_from([None, "past", "future"]),
)


def announced(conn: Conn, stable_value: bool) -> str:
    """The exact payload for ``stable_value`` with the review block as it is now: a
    decision on a task-only statement carries the recorded review fingerprint along."""
    row = conn.execute("SELECT public.system_stability_review()").fetchone()
    review = row[0] if row else None
    if not review:
        return payload(stable_value)
    return payload(stable_value, [j["id"] for j in review["jobs"]], review["queued_behind"])


def _active(state: str, command: str, when: str | None) -> bool:
    return state in BUSY_TASK_STATES and command == QUEUE_COMMAND["analytics"] and when != "future"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(ROW, min_size=0, max_size=8),
    jobs=st.lists(st.sampled_from(IMPORT_JOB_STATES), max_size=3),
    new_state=st.sampled_from(TASK_STATES),
    pick=st.sets(st.integers(0, 7)),
)
def test_a_statement_notifies_once_iff_a_row_crossed(
    conn: Conn,
    listener: Listener,
    rows: list[tuple[str, str, str | None]],
    jobs: list[str],
    new_state: str,
    pick: set[int],
) -> None:
    conn.execute("DELETE FROM worker.tasks WHERE command <> 'task_cleanup' "
                 "AND command <> 'import_job_cleanup'")
    conn.execute("DELETE FROM public.import_job")
    ids = []
    for state, command, when in rows:
        sched = {None: None, "past": "-1 hour", "future": "+1 hour"}[when]
        row = conn.execute(
            "INSERT INTO worker.tasks (command, state, scheduled_at) "
            "VALUES (%s, %s, now() + %s::interval) RETURNING id",
            (command, state, sched),
        ).fetchone()
        assert row is not None
        ids.append(row[0])
    for js in jobs:
        add_job(conn, js)
    listener.drain()

    chosen = [ids[i] for i in sorted(pick) if i < len(ids)]
    crossed = any(
        _active(*rows[i]) != _active(new_state, rows[i][1], rows[i][2])
        for i in sorted(pick) if i < len(ids)
    )
    before, due_before = stable(conn), next_due(conn)
    conn.execute("UPDATE worker.tasks SET state = %s WHERE id = ANY(%s)", (new_state, chosen))
    sent = listener.drain()
    after, due_after = stable(conn), next_due(conn)
    if before != after:
        assert crossed
        assert sent == [announced(conn, after)]
    elif after and due_after is not None and (due_before is None or due_after < due_before):
        assert sent == [announced(conn, True)]  # clients must learn the earlier due moment
    else:
        assert sent == []
    assert stable(conn) == (
        not any(_active(new_state if ids[i] in chosen else s, c, w)
                for i, (s, c, w) in enumerate(rows))
        and not jobs_busy(jobs)
    )


def test_a_rolled_back_savepoint_takes_its_announcement_with_it(
    conn: Conn, listener: Listener
) -> None:
    """The "already announced" notes are transaction-local settings: a savepoint rollback
    reverts them along with the notification, so a later crossing still announces."""
    with conn.transaction():
        with conn.transaction(force_rollback=True):
            add_task(conn, "pending")
        add_job(conn, "approved")
    assert listener.drain() == [payload(False)]
    with conn.transaction():
        with conn.transaction(force_rollback=True):
            conn.execute("UPDATE public.import_job SET state = 'finished'")
        assert listener.drain() == []  # nothing delivered before commit
        conn.execute("UPDATE public.import_job SET state = 'rejected'")
    assert listener.drain() == [payload(True)]


# -- the review block is part of the answer -----------------------------------------------------
def _reader_sees(dsn: str) -> StableRead:
    """What the installed reader reads (its own query, one round trip), as a client would."""

    async def read() -> StableRead:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
            reader = InstalledReader(dsn)
            link = Link(aconn, timeout=30)
            await reader.first_read(link, with_mark=False)
            return await reader.read_stable(link, with_mark=False)

    return asyncio.run(read())


def test_a_job_starting_to_wait_for_review_alone_notifies_once(
    db_dsn: str, conn: Conn, listener: Listener
) -> None:
    """Nothing runs; a job goes waiting_for_upload -> waiting_for_review (the register stays
    stable, the boolean does not change). The review block changes what a client shows, so
    one notification, and the reader then sees the review."""
    job = add_job(conn, "waiting_for_upload")
    listener.drain()
    assert stable(conn)
    conn.execute("UPDATE public.import_job SET state = 'waiting_for_review' WHERE id = %s",
                 (job,))
    assert listener.drain() == [payload(True, [job])]
    seen = _reader_sees(db_dsn)
    assert seen.stable is True and seen.review is not None
    assert [i for i, _ in seen.review.waiting] == [job] and seen.review.queued_behind == 0
    # the same again changes nothing: nothing sent
    conn.execute("UPDATE public.import_job SET state = 'waiting_for_review' WHERE id = %s",
                 (job,))
    assert listener.drain() == []


def test_an_upload_behind_a_review_notifies_once(
    db_dsn: str, conn: Conn, listener: Listener
) -> None:
    """While a review waits (and holds the queue), another upload completes: the register
    stays stable (the upload is held), the count queued behind goes 0 -> 1: one notification,
    with the count; the reader sees it."""
    if not REVIEW_HOLDS:
        pytest.skip("this StatBus does not hold its import queue during a review")
    reviewed = add_job(conn, "waiting_for_review")
    queued = add_job(conn, "waiting_for_upload")
    listener.drain()
    conn.execute("UPDATE public.import_job SET state = 'upload_completed' WHERE id = %s",
                 (queued,))
    assert listener.drain() == [payload(True, [reviewed], 1)]
    seen = _reader_sees(db_dsn)
    assert seen.review is not None and seen.review.queued_behind == 1
    # the held job moving on within the work states (the count stays 1): nothing
    conn.execute("UPDATE public.import_job SET state = 'preparing_data' WHERE id = %s",
                 (queued,))
    assert listener.drain() == []


def test_a_rejection_that_clears_the_hold_notifies_once(conn: Conn, listener: Listener) -> None:
    """Rejecting the only job waiting for review, with nothing behind it: the register was
    stable and stays stable, the block clears: one {"stable": true}. With an upload behind
    it, the rejection releases it: one {"stable": false}."""
    job = add_job(conn, "waiting_for_review")
    listener.drain()
    conn.execute("UPDATE public.import_job SET state = 'rejected' WHERE id = %s", (job,))
    assert listener.drain() == [payload(True)]
    assert stable(conn)
    if REVIEW_HOLDS:
        job = add_job(conn, "waiting_for_review")
        add_job(conn, "upload_completed")
        assert listener.drain() == [payload(True, [job]), payload(True, [job], 1)]
        conn.execute("UPDATE public.import_job SET state = 'rejected' WHERE id = %s", (job,))
        assert listener.drain() == [payload(False)]
        assert not stable(conn)


def test_task_lifecycles_while_busy_and_under_review_send_nothing(
    conn: Conn, listener: Listener
) -> None:
    """A busy period with a job waiting for review: 30 task lifecycles (each step its own
    transaction, as the worker commits) change neither the boolean nor the review block:
    nothing is sent. (Task-only transactions carry the recorded review part over.)"""
    add_job(conn, "waiting_for_review")
    long_task = add_task(conn, "processing")
    listener.drain()
    for _ in range(30):
        t = add_task(conn, "pending")
        conn.execute("UPDATE worker.tasks SET state = 'processing' WHERE id = %s", (t,))
        conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (t,))
    assert listener.drain() == []
    conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (long_task,))
    sent = listener.drain()
    assert len(sent) == 1 and json.loads(sent[0])["stable"] is True
    assert json.loads(sent[0])["review"]["queued_behind"] == 0


def test_an_upgraded_record_without_review_part_announces_once(
    conn: Conn, listener: Listener
) -> None:
    """After an upgrade from an install whose record had no review part (the column is NULL:
    unknown), the next decision reads the review block and announces, once."""
    add_task(conn, "processing")
    listener.drain()
    conn.execute("UPDATE public.system_stability_announced SET review = NULL")
    add_task(conn, "pending")  # a row moved in: the decision reads nothing else normally
    assert listener.drain() == [payload(False)]
    # known again (JSON null: no job waits), so the next task-only decision is silent
    assert conn.execute("SELECT review IS NOT NULL FROM public.system_stability_announced"
                        ).fetchone() == (True,)
    add_task(conn, "pending")
    assert listener.drain() == []
