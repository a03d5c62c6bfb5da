"""The active line, state by state: is_system_stable(), the notification and the lists agree.

One database per test, every combination inside it (cloning a database per combination
would cost more than the checks). Each case starts from the stable stand-in (only the
maintenance queue's two future tasks), adds one row, checks, and deletes it again.
"""

from __future__ import annotations

import json

from tests.sql.conftest import (
    ACTIVE_JOB_STATES,
    BUSY_TASK_STATES,
    IMPORT_JOB_STATES,
    QUEUE_COMMAND,
    TASK_STATES,
    Conn,
    Listener,
    add_job,
    add_task,
    payload,
    stable,
)

SCHEDULES = {"null": None, "past": "-1 hour", "future": "+1 hour"}


def test_every_import_job_state(conn: Conn, listener: Listener) -> None:
    assert stable(conn)
    wrong: list[tuple[object, ...]] = []
    for state in IMPORT_JOB_STATES:
        active = state in ACTIVE_JOB_STATES
        job = add_job(conn, state)
        sent = listener.drain()
        got = stable(conn)
        in_details = conn.execute(
            "SELECT j->>'active' FROM jsonb_array_elements("
            "public.get_system_status_details()->'import_jobs') AS j WHERE (j->>'id')::int = %s",
            (job,),
        ).fetchone()
        conn.execute("DELETE FROM public.import_job WHERE id = %s", (job,))
        sent_on_delete = listener.drain()
        # announced exactly when the answer changes (a single job: when it is active, or
        # when it waits for review: the review block is part of the answer)
        review = state == "waiting_for_review"
        expected_sent = ([payload(False)] if active
                         else [payload(True, [job])] if review else [])
        expected_sent_on_delete = [payload(True)] if active or review else []
        if (got, sent, sent_on_delete) != (not active, expected_sent, expected_sent_on_delete):
            wrong.append((state, got, sent, sent_on_delete))
        if in_details is not None and in_details[0] != json.dumps(active):
            wrong.append((state, "details.active", in_details[0]))
    assert wrong == []
    assert stable(conn)


def test_every_task_state_queue_and_schedule(conn: Conn, listener: Listener) -> None:
    wrong: list[tuple[object, ...]] = []
    for queue, command in QUEUE_COMMAND.items():
        for state in TASK_STATES:
            for when, offset in SCHEDULES.items():
                active = queue == "analytics" and state in BUSY_TASK_STATES and when != "future"
                scheduled = (
                    None if offset is None
                    else conn.execute("SELECT now() + %s::interval", (offset,)).fetchone()[0]  # type: ignore[index]
                )
                task = add_task(conn, state, command, scheduled)
                sent = listener.drain()
                got = stable(conn)
                listed = conn.execute(
                    "SELECT count(*) FROM public.get_analytics_tasks_in_progress() AS t "
                    "WHERE (t->>'id')::bigint = %s",
                    (task,),
                ).fetchone()
                conn.execute("DELETE FROM worker.tasks WHERE id = %s", (task,))
                sent_on_delete = listener.drain()
                case = (queue, state, when)
                if got != (not active):
                    wrong.append((*case, "is_system_stable", got))
                # a busy analytics task scheduled ahead changes nothing, but its due moment is
                # announced (the one before it, if any, was deleted along with its task)
                ahead = queue == "analytics" and state in BUSY_TASK_STATES and when == "future"
                if sent != ([payload(False)] if active else [payload(True)] if ahead else []):
                    wrong.append((*case, "insert sent", sent))
                if sent_on_delete != ([payload(True)] if active else []):
                    wrong.append((*case, "delete sent", sent_on_delete))
                if listed != (1 if active else 0,):
                    wrong.append((*case, "get_analytics_tasks_in_progress", listed))
    assert wrong == []


def test_every_task_transition_notifies_exactly_when_it_crosses(
    conn: Conn, listener: Listener
) -> None:
    """36 UPDATEs of state on a due analytics task: one notification iff busy-ness changes."""
    wrong: list[tuple[object, ...]] = []
    for old in TASK_STATES:
        for new in TASK_STATES:
            task = add_task(conn, old)
            listener.drain()
            conn.execute("UPDATE worker.tasks SET state = %s WHERE id = %s", (new, task))
            sent = listener.drain()
            crosses = (old in BUSY_TASK_STATES) != (new in BUSY_TASK_STATES)
            expected = [payload(new not in BUSY_TASK_STATES)] if crosses else []
            if sent != expected:
                wrong.append((old, new, sent))
            conn.execute("DELETE FROM worker.tasks WHERE id = %s", (task,))
            listener.drain()
    assert wrong == []


def test_every_job_transition_notifies_exactly_when_it_crosses(
    conn: Conn, listener: Listener
) -> None:
    """100 UPDATEs of state on an import job: one notification iff it changes the answer.

    The answer is the boolean and the review block (the jobs waiting for review, the imports
    queued behind them): a change of either announces once, the payload is the answer after
    it (with the review fingerprint while a job waits), and a change of neither sends nothing.
    """
    wrong: list[tuple[object, ...]] = []
    for old in IMPORT_JOB_STATES:
        job = add_job(conn, old, error="boom")
        listener.drain()
        for new in IMPORT_JOB_STATES:
            conn.execute("UPDATE public.import_job SET state = %s WHERE id = %s", (old, job))
            listener.drain()
            conn.execute("UPDATE public.import_job SET state = %s WHERE id = %s", (new, job))
            sent = listener.drain()
            # one notification exactly when the answer changes (a single job: it is
            # "processing" in the active states)
            review = new == "waiting_for_review"
            changes = ((old in ACTIVE_JOB_STATES) != (new in ACTIVE_JOB_STATES)
                       or (old == "waiting_for_review") != review)
            expected = ([payload(new not in ACTIVE_JOB_STATES, [job] if review else None)]
                        if changes else [])
            if sent != expected:
                wrong.append((old, new, sent))
        conn.execute("DELETE FROM public.import_job WHERE id = %s", (job,))
        listener.drain()
    assert wrong == []


def test_schedule_changes_cross_the_line(conn: Conn, listener: Listener) -> None:
    """A future task made due, and a due task pushed into the future, each cross the line."""
    task = add_task(conn, "pending", scheduled_at=None)
    assert listener.drain() == [payload(False)]
    conn.execute("UPDATE worker.tasks SET scheduled_at = now() + interval '1 hour' WHERE id = %s",
                 (task,))
    assert listener.drain() == [payload(True)]
    conn.execute("DELETE FROM worker.tasks WHERE id = %s", (task,))
    assert listener.drain() == []

    future = add_task(conn, "pending", scheduled_at=None)
    conn.execute("UPDATE worker.tasks SET scheduled_at = now() + interval '1 hour' WHERE id = %s",
                 (future,))
    listener.drain()
    assert stable(conn)
    conn.execute("UPDATE worker.tasks SET scheduled_at = now() - interval '1 second' WHERE id = %s",
                 (future,))
    assert listener.drain() == [payload(False)]
    assert not stable(conn)
    conn.execute("UPDATE worker.tasks SET scheduled_at = now() + interval '1 day' WHERE id = %s",
                 (future,))
    assert listener.drain() == [payload(True)]
    assert stable(conn)


def test_command_moved_to_another_queue_crosses_the_line(conn: Conn, listener: Listener) -> None:
    task = add_task(conn, "pending", "derive_statistical_unit")
    assert listener.drain() == [payload(False)]
    conn.execute("UPDATE worker.tasks SET command = 'import_job_process' WHERE id = %s", (task,))
    assert listener.drain() == [payload(True)]
    conn.execute("UPDATE worker.tasks SET command = 'collect_changes' WHERE id = %s", (task,))
    assert listener.drain() == [payload(False)]
    conn.execute("UPDATE worker.tasks SET command = 'derive_reports' WHERE id = %s", (task,))
    assert listener.drain() == []
