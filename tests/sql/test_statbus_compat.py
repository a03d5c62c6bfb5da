"""Behaviour that the real StatBus relies on and the stand-in alone would not show.

docs/statbus-compat.md says where each case comes from in StatBus's migrations.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from tests.sql.conftest import Conn, Listener, add_job, add_task, payload

# (table, a DML that moves an active row OUT of the line, DDL that StatBus migrations run)
DDL_AFTER_DML = {
    "tasks-alter": ("UPDATE worker.tasks SET state = 'completed' WHERE id = {task}",
                    "ALTER TABLE worker.tasks ADD COLUMN compat_probe integer"),
    "tasks-index": ("DELETE FROM worker.tasks WHERE id = {task}",
                    "CREATE INDEX compat_probe_idx ON worker.tasks (created_at)"),
    "tasks-truncate": ("UPDATE worker.tasks SET state = 'completed' WHERE id = {task}",
                       "TRUNCATE worker.tasks"),
    "job-alter": ("UPDATE public.import_job SET state = 'finished' WHERE id = {job}",
                  "ALTER TABLE public.import_job ADD COLUMN compat_probe integer"),
    "job-index": ("DELETE FROM public.import_job WHERE id = {job}",
                  "CREATE INDEX compat_probe_idx ON public.import_job (created_at)"),
}


@pytest.mark.parametrize("case", list(DDL_AFTER_DML))
def test_ddl_after_moving_rows_out_in_the_same_transaction(
    db_dsn: str, conn: Conn, listener: Listener, case: str
) -> None:
    """A StatBus migration that changes task/job rows and then ALTERs the table in one
    transaction must not fail because of us (no deferred trigger event on StatBus's tables:
    PostgreSQL would refuse the DDL with SQLSTATE 55006), and the change of the answer is
    still announced: only the row the migration moves out is active."""
    on_tasks = case.startswith("tasks")
    task = add_task(conn, "processing" if on_tasks else "completed")
    job = add_job(conn, "finished" if on_tasks else "processing_data")
    assert listener.drain() == [payload(False)]
    dml, ddl = DDL_AFTER_DML[case]
    with psycopg.connect(db_dsn) as migration:
        migration.execute(dml.format(task=task, job=job))
        try:
            migration.execute(ddl)
        except errors.ObjectInUse as e:  # pragma: no cover - the failure being guarded
            pytest.fail(f"StatBus DDL refused because of our trigger: {e}")
        migration.commit()
    got = listener.drain()
    assert got, "the transaction changed the answer and said nothing"
    assert got == [payload(True)]


def test_the_announcement_is_still_made_at_commit(db_dsn: str, conn: Conn,
                                                  listener: Listener) -> None:
    """The hint is computed at COMMIT, after the transaction's last change: completing task A
    and then adding task B in one transaction announces {"stable": false}."""
    a = add_task(conn, "processing")
    listener.drain()
    with psycopg.connect(db_dsn) as t:
        t.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (a,))
        add_task(t, "pending", "derive_statistical_unit", scheduled_at="infinity")
        # still stable so far; now make the future task due
        t.execute("UPDATE worker.tasks SET scheduled_at = NULL WHERE scheduled_at = 'infinity'")
        t.commit()
    # decided at COMMIT: the answer before and after is "processing", so nothing is sent (a
    # decision at the completion of A would have announced "stable")
    assert listener.drain() == []
    # and the hook table never holds a committed row
    row = conn.execute("SELECT count(*) FROM public.system_stability_commit_hook").fetchone()
    assert row == (0,)


def test_worker_style_procedure_commits_and_exception_blocks(db_dsn: str, conn: Conn,
                                                             listener: Listener) -> None:
    """StatBus's worker.process_tasks is a PROCEDURE that COMMITs between steps and runs each
    handler in an EXCEPTION block (a subtransaction, rolled back when the handler fails).
    Each COMMIT announces what it moved; a rolled-back handler announces nothing."""
    conn.execute("""
        CREATE PROCEDURE public.compat_worker(a bigint, b bigint) LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE worker.tasks SET state = 'processing' WHERE id IN (a, b);
            COMMIT;
            BEGIN  -- a handler that completes task b, then fails: rolled back
                UPDATE worker.tasks SET state = 'completed' WHERE id = b;
                RAISE EXCEPTION 'handler failed';
            EXCEPTION WHEN OTHERS THEN
                NULL;
            END;
            COMMIT;
            UPDATE worker.tasks SET state = 'completed' WHERE id = a;
            COMMIT;
            UPDATE worker.tasks SET state = 'failed', error = 'x' WHERE id = b;
            COMMIT;
        END $$""")
    a = add_task(conn, "pending")
    b = add_task(conn, "pending")
    listener.drain()
    conn.execute("CALL public.compat_worker(%s, %s)", (a, b))
    # completing a leaves b running: no change; failing b makes the system stable
    assert listener.drain() == [payload(True)]


def _as(dsn: str, user: str, password: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, user=user, password=password)


def test_an_analyst_writing_tasks_is_announced_and_the_hook_announces_only_the_truth(
    db_dsn: str, conn: Conn, listener: Listener, login_role: tuple[str, str]
) -> None:
    """StatBus grants authenticated INSERT/UPDATE/DELETE on worker.tasks (its enqueue
    functions run as the caller). Such a writer moves rows across the line through our
    row triggers, which run as the writer (SECURITY INVOKER, issue 23) and queue the
    decision through the hook table (PUBLIC may insert into it). A row inserted there by
    hand only queues a decision: it announces nothing while the answer stays, and the
    next change is announced as before."""
    task = add_task(conn, "processing")
    listener.drain()
    with psycopg.connect(_as(db_dsn, *login_role), autocommit=True) as analyst:
        analyst.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (task,))
        assert listener.drain() == [payload(True)]
        analyst.execute("INSERT INTO worker.tasks (command) VALUES ('derive_statistical_unit')")
        assert listener.drain() == [payload(False)]
        analyst.execute("INSERT INTO public.system_stability_commit_hook DEFAULT VALUES")
        assert listener.drain() == []
        analyst.execute("UPDATE worker.tasks SET state = 'completed'")
        assert listener.drain() == [payload(True)]
        with pytest.raises(errors.InsufficientPrivilege):
            analyst.execute("TRUNCATE public.system_stability_commit_hook")
        with pytest.raises(errors.InsufficientPrivilege):
            analyst.execute("UPDATE public.system_stability_announced SET stable = true")


RENAMES = {
    # StatBus renamed worker.tasks.duration_ms to process_duration_ms in 2026-03; a rename
    # of a column or enum value that our functions name must not break StatBus's writes.
    "column": "ALTER TABLE worker.tasks RENAME COLUMN scheduled_at TO run_at",
    "enum-value": "ALTER TYPE worker.task_state RENAME VALUE 'waiting' TO 'awaiting_children'",
}


@pytest.mark.parametrize("rename", list(RENAMES))
def test_a_statbus_rename_never_breaks_statbus_writes(
    db_dsn: str, conn: Conn, listener: Listener, rename: str
) -> None:
    """After such an upgrade our trigger functions fail inside; they must catch it, let the
    worker's change commit, and still make clients re-read (where they meet the error)."""
    task = add_task(conn, "processing")
    listener.drain()
    conn.execute(RENAMES[rename])
    with psycopg.connect(db_dsn, autocommit=True) as worker:
        worker.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (task,))
        worker.execute("INSERT INTO worker.tasks (command) VALUES ('derive_statistical_unit')")
        worker.execute("DELETE FROM worker.tasks WHERE command = 'derive_statistical_unit'")
        worker.execute("TRUNCATE worker.tasks")
        row = worker.execute("SELECT count(*) FROM worker.tasks").fetchone()
        assert row == (0,)
    assert payload(False) in listener.drain()
