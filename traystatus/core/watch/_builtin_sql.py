"""The "StatBus built-in" source's SQL: the rule of ``is_system_stable()`` as plain reads.

When traystatus's SQL is not installed, the monitor LISTENs on StatBus's own channels and
runs these read-only queries as the analyst's own login (every StatBus login is a member
of ``authenticated``, which may SELECT ``public.import_job``, ``worker.tasks`` and
``worker.command_registry``). The line is the one ``sql/install.sql`` draws:

- an import job in ``upload_completed``, ``approved``, ``preparing_data``,
  ``analysing_data`` or ``processing_data``;
- an analytics-queue task in ``pending``, ``processing``, ``waiting`` or ``interrupted``
  that is due (``scheduled_at`` null or not in the future).

Cost. StatBus indexes ``worker.tasks`` only for ``pending`` and ``waiting`` rows (partial
indexes); a plain ``state IN ('processing', 'interrupted')`` reads the whole table, which
at 10^6 rows costs a sequential scan (bench/bench_builtin.py). So the everyday read
(``RULE``) finds pending and waiting tasks through StatBus's partial indexes, and
processing or interrupted tasks by id, through the primary key: the ids come from
``worker_task_changed`` (StatBus sends ``{"id", "parent_id"}`` on every state change of a
task), and from one full read (``RULE_FULL``) when the connection starts. Every task that
becomes processing or interrupted after LISTEN announces its id; every one that already
was is in the full read made after LISTEN. The rule stays exact; docs/architecture.md
says what it assumes.

All names are schema-qualified, ``state`` is compared as text where a label may be
missing (``interrupted`` exists since StatBus 2026-03-25), and nothing here writes.
"""

from __future__ import annotations

# The job half of the line, as sql/install.sql draws it (a test compares them):
# "approved" always counts; the states in which the worker owes a job work count unless a
# job waits for review on a StatBus that holds its import queue meanwhile (migration
# 20260310132309): then nothing runs, and an hourglass would wait for a person, not work.
APPROVED_JOB_STATES = ("approved",)
WORK_JOB_STATES = ("upload_completed", "preparing_data", "analysing_data", "processing_data")
REVIEW_JOB_STATES = ("waiting_for_review",)
ACTIVE_JOB_STATES = (*WORK_JOB_STATES[:3], "approved", WORK_JOB_STATES[3])
# Task states that count when due, split by how StatBus lets us find them cheaply.
INDEXED_TASK_STATES = ("pending", "waiting")  # StatBus's partial indexes
TRACKED_TASK_STATES = ("processing", "interrupted")  # no index: tracked by id

def _quoted(states: tuple[str, ...]) -> str:
    return ", ".join(f"'{s}'" for s in states)


_JOB_LIST = _quoted(ACTIVE_JOB_STATES)
# Whether job row j counts. Parameter %(holds)s: this StatBus holds the import queue while
# a job waits for review (builtin_sql.PROBE's holds_queue).
_JOB_COUNTS = f"""(j.state::text IN ({_quoted(APPROVED_JOB_STATES)})
 OR (j.state::text IN ({_quoted(WORK_JOB_STATES)})
     AND NOT (%(holds)s::boolean AND EXISTS (
         SELECT FROM public.import_job AS r
         WHERE r.state::text IN ({_quoted(REVIEW_JOB_STATES)})))))"""

# Whether job row j is held back by a review: it waits for work (not approved) while
# another job waits for review on a StatBus that holds its queue meanwhile. The details'
# ``held_by_review``; such a job is ``active`` (the worker owes it work) but not counted.
_JOB_HELD = f"""(j.state::text IN ({_quoted(WORK_JOB_STATES)})
 AND %(holds)s::boolean AND EXISTS (
     SELECT FROM public.import_job AS r
     WHERE r.state::text IN ({_quoted(REVIEW_JOB_STATES)})))"""

# When job row j ended, if it did: StatBus stamps processing_stop_at when an import ends,
# changes_rejected_at when a person rejects it (its trigger import_job_state_change_before;
# the column exists on every supported StatBus), and a failure at any step leaves the last
# of the others. sql/install.sql's ended_at is the same expression.
_ENDED_AT = """greatest(j.processing_stop_at, j.analysis_stop_at, j.last_progress_update,
                    j.preparing_data_at, j.changes_rejected_at)"""

_JOBS_ACTIVE = f"""
EXISTS (SELECT FROM public.import_job AS j WHERE {_JOB_COUNTS})"""

_DUE = "(t.scheduled_at IS NULL OR t.scheduled_at <= pg_catalog.now())"


def _indexed_active(state: str) -> str:
    # `t.state = '<label>'` (not a list, not text): the planner then matches StatBus's
    # partial index `WHERE state = '<label>'`.
    return f"""
EXISTS (SELECT FROM worker.tasks AS t
        JOIN worker.command_registry AS cr ON cr.command = t.command
        WHERE t.state = '{state}' AND cr.queue = 'analytics' AND {_DUE})"""


_TRACKED = "t.state::text IN ('processing', 'interrupted')"

# system_stability_review()'s jsonb: the jobs waiting for review and how many imports wait
# behind them (when the queue is held); NULL when no job waits.
_REVIEW = f"""(
    SELECT CASE WHEN count(*) > 0 THEN jsonb_build_object(
        'jobs', jsonb_agg(jsonb_build_object('id', j.id, 'slug', j.slug,
                                             'description', j.description) ORDER BY j.id),
        'holds_queue', %(holds)s::boolean,
        'queued_behind', CASE WHEN %(holds)s::boolean THEN (
            SELECT count(*) FROM public.import_job AS q
            WHERE q.state::text IN ({_quoted(WORK_JOB_STATES)})) ELSE 0 END) END
    FROM public.import_job AS j
    WHERE j.state::text IN ({_quoted(REVIEW_JOB_STATES)}))"""

# The lowest id of a task that is queued and due, or waiting, now (any queue). Each through
# StatBus's partial indexes (OFFSET 0 keeps the planner from walking the primary key in id
# order instead). With the tracked ids it is the floor below which no task can start
# without announcing it (builtin.TaskTracker). Tasks scheduled ahead are not in it (one
# queued long ago, like the maintenance queue's self-rescheduling tasks, would hold the
# floor back for days): analytics ones are listed instead (_SCHEDULED_AHEAD), through
# StatBus's index of scheduled pending tasks, and the tracker probes them by id.
_LOWEST_QUEUED = f"""least(
           (SELECT min(p.id) FROM (SELECT t.id FROM worker.tasks AS t
                                   WHERE t.state = 'pending' AND {_DUE}
                                   OFFSET 0) AS p),
           (SELECT min(w.id) FROM (SELECT t.id FROM worker.tasks AS t
                                   WHERE t.state = 'waiting' OFFSET 0) AS w))"""
_SCHEDULED_AHEAD = """ARRAY(
           SELECT t.id FROM worker.tasks AS t
           JOIN worker.command_registry AS cr ON cr.command = t.command
           WHERE t.state = 'pending' AND t.scheduled_at IS NOT NULL
             AND t.scheduled_at > pg_catalog.now() AND cr.queue = 'analytics'
           ORDER BY t.id)"""

# What the reads return from the tasks they track (``tracked``): the answer, the ids still
# processing/interrupted, the next due time, the newest id and the review block; those
# that keep the floor (RULE_FLOOR, RULE_SINCE, RULE_FULL) add the lowest id of a task
# tracked, pending and due, or waiting (null when none), and the ids of analytics tasks
# scheduled ahead. The lowest id costs a look at every pending row (1.3 ms with 2,000
# pending at 10^6 rows), so the everyday read leaves them out and builtin.TaskTracker asks
# for them only every few seconds.
_RULE_ANSWER = f"""SELECT NOT {_JOBS_ACTIVE}
       AND NOT {_indexed_active("pending")}
       AND NOT {_indexed_active("waiting")}
       AND NOT EXISTS (SELECT FROM tracked AS t
                       JOIN worker.command_registry AS cr ON cr.command = t.command
                       WHERE cr.queue = 'analytics' AND {_DUE}) AS stable,
       ARRAY(SELECT tr.id FROM tracked AS tr ORDER BY tr.id) AS tracked,
       (SELECT min(t.scheduled_at) FROM worker.tasks AS t
        JOIN worker.command_registry AS cr ON cr.command = t.command
        WHERE t.state = 'pending' AND t.scheduled_at > pg_catalog.now()
          AND cr.queue = 'analytics') AS next_due,
       (SELECT max(t.id) FROM worker.tasks AS t) AS newest,
       {_REVIEW} AS review"""
_FLOOR_COLUMN = f""",
       least((SELECT min(tr.id) FROM tracked AS tr), {_LOWEST_QUEUED}) AS lowest_active,
       {_SCHEDULED_AHEAD} AS scheduled_ahead
"""

# Tasks that may be processing or interrupted, by the ids %(ids)s.
_BY_IDS = f"""
WITH tracked AS (
    SELECT t.id, t.command, t.scheduled_at
    FROM worker.tasks AS t
    WHERE t.id = ANY (%(ids)s::bigint[]) AND {_TRACKED}
)
"""

# The everyday read. Parameter: the ids of tasks that may be processing or interrupted.
# Returns (stable, ids still processing/interrupted, the next future due time of a pending
# analytics task or null, the newest task id: the work mark when stable, as
# system_work_mark() gives it, and the review block as system_stability_review() gives it).
RULE = f"{_BY_IDS}{_RULE_ANSWER}\n"

# The same, and the floor's column.
RULE_FLOOR = f"{_BY_IDS}{_RULE_ANSWER}{_FLOOR_COLUMN}"

# The read after lost information (a payload we could not use, a flood beyond what we
# parse): the same answer, processing/interrupted found by the tracked ids AND by a
# primary-key range from %(low)s, the floor builtin.TaskTracker keeps. Every task that
# can have started since the last exact read without its payload reaching us lies at or
# above the floor, so the answer does not depend on any payload; its cost is the tasks
# above the floor (the derive in flight, if any), not the table. Columns of RULE_FLOOR.
RULE_SINCE = f"""
WITH tracked AS (
    SELECT t.id, t.command, t.scheduled_at
    FROM worker.tasks AS t
    WHERE t.id = ANY (%(ids)s::bigint[]) AND {_TRACKED}
    UNION
    SELECT t.id, t.command, t.scheduled_at
    FROM worker.tasks AS t
    WHERE t.id >= %(low)s::bigint AND {_TRACKED}
)
{_RULE_ANSWER}{_FLOOR_COLUMN}"""

# The full read: the same answer, processing/interrupted found by reading every row (a
# sequential scan of worker.tasks). Made once per connection, after LISTEN, to learn the
# tasks that were already running; and as the only read on a StatBus too old to send
# worker_task_changed. Columns of RULE_FLOOR.
RULE_FULL = f"""
WITH tracked AS (
    SELECT t.id, t.command, t.scheduled_at
    FROM worker.tasks AS t
    WHERE {_TRACKED}
)
{_RULE_ANSWER}{_FLOOR_COLUMN}"""

# The naive plain read, for comparison in bench/bench_builtin.py and as the oracle in
# tests: exactly is_system_stable()'s text, as a query.
RULE_NAIVE = f"""
SELECT NOT {_JOBS_ACTIVE}
       AND NOT EXISTS (
           SELECT FROM worker.tasks AS t
           JOIN worker.command_registry AS cr ON cr.command = t.command
           WHERE cr.queue = 'analytics'
             AND t.state::text IN ('pending', 'processing', 'waiting', 'interrupted')
             AND {_DUE})
"""

# What this login may do, and what this StatBus sends. No name is resolved through the
# search_path or with a permission check that could raise: a login without USAGE on
# schema worker gets false here, not "permission denied for schema worker".
PROBE = r"""
WITH rel AS (
    SELECT n.nspname, c.relname, c.oid
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE (n.nspname, c.relname) IN (('public', 'import_job'), ('worker', 'tasks'),
                                     ('worker', 'command_registry'))
)
SELECT
    current_user::text AS login,
    (SELECT pg_catalog.has_schema_privilege(n.oid, 'USAGE')
     FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'worker') AS worker_usage,
    (SELECT pg_catalog.has_table_privilege(oid, 'SELECT') FROM rel
     WHERE nspname = 'public' AND relname = 'import_job') AS import_job_select,
    (SELECT pg_catalog.has_table_privilege(oid, 'SELECT') FROM rel
     WHERE nspname = 'worker' AND relname = 'tasks') AS tasks_select,
    (SELECT pg_catalog.has_table_privilege(oid, 'SELECT') FROM rel
     WHERE nspname = 'worker' AND relname = 'command_registry') AS registry_select,
    -- Row level security on import_job: a login that no SELECT policy lets see every row
    -- would read a silent subset (and call the system stable while others import).
    (SELECT NOT pg_catalog.row_security_active(r.oid)
            OR EXISTS (SELECT FROM pg_catalog.pg_policy AS p
                       WHERE p.polrelid = r.oid AND p.polcmd IN ('r', '*')
                         AND p.polpermissive
                         AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true'
                         AND (0::oid = ANY (p.polroles)
                              OR EXISTS (SELECT FROM unnest(p.polroles) AS pr(role)
                                         WHERE pg_catalog.pg_has_role(pr.role, 'MEMBER'))))
     FROM rel AS r WHERE r.nspname = 'public' AND r.relname = 'import_job') AS sees_all_jobs,
    -- worker_task_changed: StatBus's trigger, since 2026-03-20.
    EXISTS (SELECT FROM pg_catalog.pg_trigger AS tg
            JOIN rel ON rel.oid = tg.tgrelid AND rel.nspname = 'worker' AND rel.relname = 'tasks'
            WHERE tg.tgname = 'trg_notify_task_changed' AND tg.tgenabled <> 'D')
        AS task_changed_channel,
    -- Does this StatBus hold its import queue while a job waits for review? The same test
    -- as sql/install.sql: its worker procedure says so, else db.migration (when readable)
    -- lists 20260310132309 pause_import_queue_during_review (a second query).
    EXISTS (SELECT FROM pg_catalog.pg_proc AS p
            WHERE p.pronamespace = pg_catalog.to_regnamespace('admin')
              AND p.proname = 'import_job_process'
              AND p.prosrc ~ 'state\s*=\s*''waiting_for_review''\s+AND\s+id\s*<>')
        AS holds_queue,
    -- Else db.migration decides, when this login may read it (MIGRATION_HOLDS_QUEUE).
    coalesce((
        SELECT pg_catalog.has_schema_privilege(ns.oid, 'USAGE')
               AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
        FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS ns ON ns.oid = c.relnamespace
        WHERE ns.nspname = 'db' AND c.relname = 'migration'), false) AS migrations_readable
"""

# Asked only when PROBE found no answer in the worker procedure and may read db.migration.
MIGRATION_HOLDS_QUEUE = (
    "SELECT EXISTS (SELECT FROM db.migration WHERE version >= 20260310132309)"
)

# The channels that may announce a crossing (docs/architecture.md has which covers what).
CHANNELS = ("worker_tasks", "worker_queue_change", "worker_task_changed", "import_job")
TASK_CHANGED_CHANNEL = "worker_task_changed"
# Only while details are wanted (StatBus's progress figures).
DETAILS_CHANNELS = ("import_job_progress",)

# Columns that not every supported StatBus has are read through to_jsonb(row) (a missing
# key is null), never by name: the oldest supported StatBus (2026-03-01) has no
# worker.tasks.depth, process_start_at, process_duration_ms (duration_ms instead) or
# child_mode, and no import_job.error_count or warning_count. Only the rows shown pay it.
def optional(row: str, column: str) -> str:
    """``row``'s ``column`` as jsonb (null where this StatBus has no such column)."""
    return f"(pg_catalog.to_jsonb({row}) -> '{column}')"


# The active analytics tasks, from the cheap paths only (pending and waiting through
# StatBus's partial indexes, processing and interrupted by id). Parameter %(ids)s.
_ACTIVE_TASKS = f"""
active_tasks AS (
    SELECT t.id, t.command, t.state::text AS state, t.state AS state_order, t.parent_id,
           t.priority, t.created_at, t.scheduled_at
    FROM worker.tasks AS t
    JOIN worker.command_registry AS cr ON cr.command = t.command
    WHERE t.state = 'pending' AND cr.queue = 'analytics' AND {_DUE}
    UNION ALL
    SELECT t.id, t.command, t.state::text, t.state, t.parent_id, t.priority, t.created_at,
           t.scheduled_at
    FROM worker.tasks AS t
    JOIN worker.command_registry AS cr ON cr.command = t.command
    WHERE t.state = 'waiting' AND cr.queue = 'analytics' AND {_DUE}
    UNION ALL
    SELECT t.id, t.command, t.state::text, t.state, t.parent_id, t.priority, t.created_at,
           t.scheduled_at
    FROM worker.tasks AS t
    JOIN worker.command_registry AS cr ON cr.command = t.command
    WHERE t.id = ANY (%(ids)s::bigint[]) AND {_TRACKED} AND cr.queue = 'analytics' AND {_DUE}
)"""

# get_system_status_details()'s shape (docs/architecture.md), from plain reads. One
# statement, so one snapshot. "sql_version" is null: nothing of traystatus is installed.
# Every other field equals the installed function's on the same rows: compared field by
# field on a seeded real StatBus by tests/statbus_real/test_details_agree_real.py (as are
# WORK_SUMMARY and WORK_MARK). Change both, or that test says where they part.
DETAILS = f"""
WITH jobs AS (
    SELECT j.*,
           {_ENDED_AT} AS ended_at_guess,
           {_JOB_COUNTS} AS counts,
           j.state::text IN ({_JOB_LIST}) AS is_active,
           {_JOB_HELD} AS is_held
    FROM public.import_job AS j
), shown_jobs AS (
    SELECT j.*
    FROM jobs AS j
    WHERE j.state::text NOT IN ('finished', 'failed', 'rejected')
       OR j.ended_at_guess >= pg_catalog.now() - interval '10 minutes'
       OR (j.ended_at_guess IS NULL AND j.created_at >= pg_catalog.now() - interval '10 minutes')
), {_ACTIVE_TASKS.strip()}
SELECT jsonb_build_object(
    'system_stable', NOT EXISTS (SELECT FROM jobs WHERE counts)
                     AND NOT EXISTS (SELECT FROM active_tasks),
    'generated_at', pg_catalog.now(),
    'sql_version', NULL,
    'review', {_REVIEW},
    'import_jobs_total', (SELECT count(*) FROM shown_jobs),
    'import_jobs', coalesce((
        SELECT jsonb_agg(job ORDER BY sort_active DESC, sort_priority, sort_id)
        FROM (
            SELECT jsonb_build_object(
                       'id', j.id,
                       'slug', j.slug,
                       'description', j.description,
                       'state', j.state,
                       'phase', CASE j.state::text
                                    WHEN 'waiting_for_upload' THEN 'upload'
                                    WHEN 'upload_completed' THEN 'queued'
                                    WHEN 'approved' THEN 'queued'
                                    WHEN 'preparing_data' THEN 'preparing'
                                    WHEN 'analysing_data' THEN 'analysing'
                                    WHEN 'waiting_for_review' THEN 'review'
                                    WHEN 'processing_data' THEN 'processing'
                                    WHEN 'failed' THEN 'failed'
                                    WHEN 'rejected' THEN 'rejected'
                                    ELSE 'done' END,
                       'progress_pct', CASE j.state::text
                                    WHEN 'analysing_data' THEN coalesce(j.analysis_completed_pct, 0)
                                    WHEN 'processing_data' THEN coalesce(j.import_completed_pct, 0)
                                    WHEN 'waiting_for_review'
                                        THEN coalesce(j.analysis_completed_pct, 0)
                                    WHEN 'finished' THEN 100
                                    ELSE NULL END,
                       'rows_per_sec', CASE j.state::text
                                    WHEN 'analysing_data' THEN j.analysis_rows_per_sec
                                    WHEN 'processing_data' THEN j.import_rows_per_sec
                                    ELSE NULL END,
                       'total_rows', j.total_rows,
                       'imported_rows', j.imported_rows,
                       'analysis_completed_pct', j.analysis_completed_pct,
                       'import_completed_pct', j.import_completed_pct,
                       'current_step_code', j.current_step_code,
                       'error_count', {optional("j", "error_count")},
                       'warning_count', {optional("j", "warning_count")},
                       'error', left(j.error, 500),
                       'review', j.review,
                       'priority', j.priority,
                       'user_id', j.user_id,
                       'created_at', j.created_at,
                       'preparing_data_at', j.preparing_data_at,
                       'analysis_start_at', j.analysis_start_at,
                       'analysis_stop_at', j.analysis_stop_at,
                       'processing_start_at', j.processing_start_at,
                       'processing_stop_at', j.processing_stop_at,
                       'last_progress_update', j.last_progress_update,
                       'ended_at', CASE WHEN j.state::text IN ('finished', 'failed', 'rejected')
                                        THEN j.ended_at_guess END,
                       'active', j.is_active,
                       'held_by_review', j.is_held,
                       'needs_person', j.state::text IN ('waiting_for_upload', 'waiting_for_review')
                   ) AS job,
                   j.is_active OR j.state::text = 'waiting_for_review' AS sort_active,
                   coalesce(j.priority, 2147483647) AS sort_priority,
                   j.id AS sort_id
            FROM shown_jobs AS j
            ORDER BY sort_active DESC, sort_priority, sort_id
            LIMIT 500
        ) AS s), '[]'::jsonb),
    'analytics', jsonb_build_object(
        'active_total', (SELECT count(*) FROM active_tasks),
        'by_command', coalesce((
            SELECT jsonb_agg(jsonb_build_object('command', c.command, 'state', c.state,
                                                'count', c.n)
                             ORDER BY c.command, c.state_order)
            FROM (SELECT a.command, a.state, a.state_order, count(*) AS n
                  FROM active_tasks AS a GROUP BY a.command, a.state, a.state_order) AS c),
            '[]'::jsonb),
        'tasks_shown', (SELECT least(count(*), 50) FROM active_tasks),
        'tasks', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'id', a.id, 'command', a.command, 'state', a.state,
                       'depth', {optional("w", "depth")},
                       'parent_id', a.parent_id, 'created_at', a.created_at,
                       'process_start_at', coalesce({optional("w", "process_start_at")},
                                                   {optional("w", "processed_at")}),
                       'duration_ms', coalesce({optional("w", "process_duration_ms")},
                                              {optional("w", "duration_ms")}),
                       'scheduled_at', a.scheduled_at)
                   ORDER BY a.sort_state, a.priority NULLS LAST, a.id)
            FROM (SELECT at.*,
                         CASE at.state WHEN 'processing' THEN 0 WHEN 'waiting' THEN 1
                                       WHEN 'interrupted' THEN 2 ELSE 3 END AS sort_state
                  FROM active_tasks AS at
                  ORDER BY sort_state, at.priority NULLS LAST, at.id
                  LIMIT 50) AS a
            JOIN worker.tasks AS w ON w.id = a.id), '[]'::jsonb)
    )
)
"""

# system_work_mark(): just below the oldest active analytics task, else the newest id.
WORK_MARK = f"""
WITH {_ACTIVE_TASKS.strip()}
SELECT coalesce((SELECT min(id) - 1 FROM active_tasks),
                (SELECT max(t.id) FROM worker.tasks AS t), 0)
"""

# get_system_work_summary(after_task_id, since): parameters %(mark)s, %(since)s.
WORK_SUMMARY = f"""
WITH ended_jobs AS (
    SELECT j.id, j.slug, j.description, j.state::text AS state,
           ({optional("j", "error_count")} #>> '{{}}')::bigint AS error_count,
           ({optional("j", "warning_count")} #>> '{{}}')::bigint AS warning_count,
           left(j.error, 500) AS error,
           {_ENDED_AT} AS ended_at
    FROM public.import_job AS j
    WHERE j.state::text IN ('finished', 'failed', 'rejected')
), recent_jobs AS (
    SELECT * FROM ended_jobs WHERE ended_at >= %(since)s::timestamptz
), tasks AS (
    SELECT t.state::text AS state
    FROM worker.tasks AS t
    JOIN worker.command_registry AS cr ON cr.command = t.command
    WHERE t.id > coalesce(%(mark)s::bigint, 0)
      AND cr.queue = 'analytics'
      AND t.state::text IN ('completed', 'failed')
)
SELECT jsonb_build_object(
    'since', %(since)s::timestamptz,
    'until', pg_catalog.now(),
    'import_jobs_finished', (SELECT count(*) FROM recent_jobs WHERE state = 'finished'),
    'import_jobs_failed', (SELECT count(*) FROM recent_jobs WHERE state = 'failed'),
    'import_jobs_rejected', (SELECT count(*) FROM recent_jobs WHERE state = 'rejected'),
    'import_jobs_with_errors', (SELECT count(*) FROM recent_jobs
                                WHERE state = 'finished'
                                  AND (error IS NOT NULL OR error_count > 0)),
    'import_jobs', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'id', r.id, 'slug', r.slug, 'description', r.description,
                   'state', r.state, 'error_count', r.error_count,
                   'warning_count', r.warning_count, 'error', r.error,
                   'ended_at', r.ended_at) ORDER BY r.ended_at, r.id)
        FROM (SELECT * FROM recent_jobs ORDER BY ended_at DESC, id DESC LIMIT 20) AS r),
        '[]'::jsonb),
    'analytics_tasks_completed', (SELECT count(*) FROM tasks WHERE state = 'completed'),
    'analytics_tasks_failed', (SELECT count(*) FROM tasks WHERE state = 'failed')
)
"""
