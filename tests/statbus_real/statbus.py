"""Driving a real StatBus only through its own code paths, as its app and worker do.

- a job: ``INSERT INTO public.import_job`` as the app does (StatBus's triggers derive the rest
  and create the job's upload table);
- the upload: ``COPY public.<slug>_upload (...) FROM STDIN`` of one of StatBus's demo files
  (StatBus moves the job to upload_completed and enqueues its task);
- the review: the app's ``UPDATE public.import_job SET state = 'approved' | 'rejected'``;
- the worker: ``CALL worker.process_tasks(...)`` per queue, as StatBus's worker
  (cli/src/worker.cr) calls it, until no task is due.
Each write runs as StatBus's test administrator (``test.set_user_from_email``), as the API
does for a logged-in user.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

ADMIN_EMAIL = "test.admin@statbus.org"
QUEUES = ("import", "analytics", "maintenance")
DUE = ("SELECT count(*) FROM worker.tasks WHERE state::text IN "
       "('interrupted', 'pending', 'processing', 'waiting') "
       "AND (scheduled_at IS NULL OR scheduled_at <= now())")

Conn = psycopg.Connection[tuple[Any, ...]]


def _as_admin(conn: Conn, email: str = ADMIN_EMAIL) -> None:
    conn.execute("CALL test.set_user_from_email(%s)", (email,))


def create_job(conn: Conn, slug: str, *, review: bool = False,
               definition: str = "legal_unit_job_provided", email: str = ADMIN_EMAIL) -> int:
    """A new job, uploaded by the StatBus user ``email`` (the job's ``user_id``)."""
    with conn.transaction():
        _as_admin(conn, email)
        row = conn.execute(
            "INSERT INTO public.import_job (definition_id, slug, time_context_ident, review) "
            "SELECT id, %s, 'r_year_curr', %s FROM public.import_definition WHERE slug = %s "
            "RETURNING id", (slug, review, definition)).fetchone()
    assert row is not None, f"no import definition {definition}"
    return int(row[0])


def upload(conn: Conn, slug: str, csv: Path) -> None:
    """COPY a demo CSV into the job's upload table, as the app's upload does."""
    header = csv.read_text(encoding="utf-8").splitlines()[0]
    table = conn.execute("SELECT upload_table_name FROM public.import_job WHERE slug = %s",
                         (slug,)).fetchone()
    assert table is not None
    with conn.transaction():
        _as_admin(conn)
        with conn.cursor().copy(
            f'COPY public."{table[0]}" ({header}) FROM STDIN WITH (FORMAT csv, HEADER true)'
        ) as cp:
            cp.write(csv.read_bytes())


def set_state(conn: Conn, job: int, state: str) -> None:
    """The app's review decision: approve or reject with an UPDATE."""
    with conn.transaction():
        _as_admin(conn)
        conn.execute("UPDATE public.import_job SET state = %s WHERE id = %s", (state, job))


def job_state(conn: Conn, job: int) -> str:
    row = conn.execute("SELECT state::text FROM public.import_job WHERE id = %s",
                       (job,)).fetchone()
    assert row is not None
    return str(row[0])


def run_worker(dsn: str, *, after_call: Callable[[], None] | None = None,
               limit: int = 5000) -> int:
    """StatBus's worker until no task is due; returns the number of CALLs.

    Per queue, a serial call and a concurrent one (``process_mode``'s two values; they were
    'top' and 'child' before 20260318134111), in one session, as the worker's fibres would
    take turns. ``after_call`` runs after every CALL (the tests check stability there).
    """
    calls = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        modes = [r[0] for r in conn.execute(
            "SELECT enumlabel FROM pg_enum WHERE enumtypid = 'worker.process_mode'::regtype "
            "ORDER BY enumsortorder")]
        while _due(conn):
            for queue in QUEUES:
                for mode in modes:
                    conn.execute("CALL worker.process_tasks(p_queue => %s, p_batch_size => 10, "
                                 "p_mode => %s::worker.process_mode)", (queue, mode))
                    calls += 1
                    if after_call is not None:
                        after_call()
            assert calls < limit, "the worker did not become idle"
    return calls


def _due(conn: Conn) -> int:
    row = conn.execute(DUE).fetchone()
    return int(row[0]) if row else 0


def results(conn: Conn) -> dict[str, Any]:
    """StatBus's own results: task outcomes, jobs' end states, statistical units.

    Times and clock-derived values are left out, and StatBus's own enterprise numbering
    (see _without_enterprise_ids); everything else is compared as is.
    """
    tasks = conn.execute(
        "SELECT command, state::text, count(*), array_agg(DISTINCT coalesce(error, '')) "
        "FROM worker.tasks GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    jobs = conn.execute(
        "SELECT slug, state::text, total_rows, imported_rows, error, "
        "       to_jsonb(j) -> 'error_count', to_jsonb(j) -> 'warning_count' "
        "FROM public.import_job AS j ORDER BY slug").fetchall()
    stamp_cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'public.statistical_unit'::regclass "
        "AND attnum > 0 AND NOT attisdropped "
        "AND atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype)")]
    units = sorted(json.dumps(_without_enterprise_ids(r[0]), sort_keys=True) for r in conn.execute(
        "SELECT to_jsonb(su) - %s::text[] FROM public.statistical_unit AS su", (stamp_cols,)))
    return {"tasks": tasks, "jobs": jobs, "statistical_units": units}


def _without_enterprise_ids(unit: dict[str, Any]) -> dict[str, Any]:
    """StatBus numbers the enterprises it derives in an order of its own: two runs of the
    same import without traystatus give the same enterprises different ids. So enterprise
    ids (an enterprise's unit_id and hash_slot, every ``*enterprise*`` id field) are left out,
    and the units are compared as a set. Everything else, legal unit ids included, must
    match."""
    out = {k: v for k, v in unit.items()
           if "enterprise" not in k or not k.endswith(("_id", "_ids"))}
    if unit.get("unit_type") == "enterprise":
        out.pop("unit_id", None)
        out.pop("hash_slot", None)  # a hash of the enterprise's id
    return out


@contextlib.contextmanager
def setup_sql_lock(superuser_dsn: str) -> Iterator[None]:
    """Held while StatBus's test/setup.sql runs: it creates and grants cluster-wide roles,
    and two runs at once on one server (parallel test workers share the kit) fail with
    "tuple concurrently updated". An advisory lock in the server's ``postgres`` database,
    released when its connection closes."""
    with psycopg.connect(make_conninfo(superuser_dsn, dbname="postgres"),
                         autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(7472730101)")
        yield
