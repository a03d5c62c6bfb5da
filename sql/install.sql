-- traystatus: system stability signals for a StatBus database.
--
-- Install, as a StatBus administrator (the owner of public.import_job and worker.tasks, or
-- a superuser):
--     psql -v ON_ERROR_STOP=1 -f sql/install.sql "<conninfo>"
-- or  traystatus install-sql --dsn "<conninfo>"
--
-- One transaction; idempotent (a second run changes nothing and fails nowhere); PostgreSQL
-- 15 to 18. No psql meta-commands, so the app can run this file through psycopg too.
-- sql/uninstall.sql removes exactly what this file adds.
--
-- What "active" means (the line that the triggers watch and is_system_stable() tests):
--   * an import job in upload_completed, approved (queued for the worker) or preparing_data,
--     analysing_data, processing_data (the worker is busy with it);
--   * an analytics-queue task in pending, processing, waiting or interrupted that is due
--     (scheduled_at is null or not in the future) - the worker's own "is there work" test.
-- Differences from the original plan (the "seed"), on purpose:
--   * failed is terminal: a failed job does not keep the system "processing" forever.
--   * waiting (a parent whose children still run) and interrupted (will run again) are busy.
--   * rejected is not counted: it is transient, the worker moves it to finished at once.
--   * the maintenance queue always holds a task scheduled 24 h ahead: it never counts, and
--     neither do future-scheduled tasks of any queue.
--   * the seed read worker.tasks.duration_ms, renamed process_duration_ms in StatBus.
--   * the seed re-ran the whole check and notified on every statement touching `state`;
--     here a notification is sent only by a statement that moved a row across the line, and
--     its payload is a hint: clients re-read is_system_stable() (protocol below).
--   * every SECURITY DEFINER function pins search_path (the seed's could be hijacked).
--
-- Notification protocol (docs/sql.md has the proof):
--   1. a client LISTENs on system_stability, THEN reads is_system_stable();
--   2. on every notification, whatever the payload, it re-reads is_system_stable().
--   Every committed transaction that moves a row across the line notifies, and NOTIFY is
--   delivered after commit, so the last change is always followed by a re-read that sees it.
--   Time alone can make a future-scheduled task due; clients re-read periodically for that.

BEGIN;

-- Serialise concurrent installs, and make "SQL outdated" checks see a whole install or none.
SELECT pg_advisory_xact_lock(hashtext('traystatus.install'));

-- Version ----------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.system_stability_sql_version() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 1 $$;
COMMENT ON FUNCTION public.system_stability_sql_version() IS
    'traystatus: version of the installed system stability SQL (sql/install.sql)';

-- The active line, in one place --------------------------------------------------------------
-- Import job states that count as work. The same list is spelled out in the partial index,
-- in is_system_stable() (so the planner can match the index) and in the trigger WHEN clauses
-- (evaluated in C without a function call): keep them in step; tests check they agree.
CREATE OR REPLACE FUNCTION public.system_stability_job_state_active(state public.import_job_state)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                     'processing_data')
$$;

-- Partial indexes: only active rows are in them, so the stability test reads a handful of
-- index entries however large import_job and worker.tasks grow.
CREATE INDEX IF NOT EXISTS import_job_system_stability_active_idx
    ON public.import_job (state)
    WHERE state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                    'processing_data');
CREATE INDEX IF NOT EXISTS tasks_system_stability_active_idx
    ON worker.tasks (command, scheduled_at)
    WHERE state IN ('pending', 'processing', 'waiting', 'interrupted');

-- is_system_stable() -------------------------------------------------------------------------
-- PL/pgSQL, not SQL, on purpose: PL/pgSQL keeps its query plans for the whole session, while a
-- SQL function called from a trigger is parsed and planned again in every transaction
-- (~0.2 ms here, ten times the query itself): that was most of the triggers' cost on the
-- worker's hot path.
CREATE OR REPLACE FUNCTION public.is_system_stable() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NOT EXISTS (
               SELECT FROM public.import_job AS j
               WHERE j.state IN ('upload_completed', 'preparing_data', 'analysing_data',
                                 'approved', 'processing_data'))
       AND NOT EXISTS (
               SELECT FROM worker.tasks AS t
               JOIN worker.command_registry AS cr ON cr.command = t.command
               WHERE cr.queue = 'analytics'
                 AND t.state IN ('pending', 'processing', 'waiting', 'interrupted')
                 AND (t.scheduled_at IS NULL OR t.scheduled_at <= now()));
END;
$$;
COMMENT ON FUNCTION public.is_system_stable() IS
    'traystatus: true when no import job is queued or being worked on and no analytics task is due or running';

-- get_analytics_tasks_in_progress() ------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.get_analytics_tasks_in_progress() RETURNS SETOF json
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT json_build_object(
               'id', t.id,
               'command', t.command,
               'state', t.state,
               'created_at', t.created_at,
               'scheduled_at', t.scheduled_at,
               'process_start_at', t.process_start_at,
               'duration_ms', t.process_duration_ms,
               'parent_id', t.parent_id,
               'depth', t.depth,
               'priority', t.priority)
    FROM worker.tasks AS t
    JOIN worker.command_registry AS cr ON cr.command = t.command
    WHERE cr.queue = 'analytics'
      AND t.state IN ('pending', 'processing', 'waiting', 'interrupted')
      AND (t.scheduled_at IS NULL OR t.scheduled_at <= now())
    ORDER BY t.priority NULLS LAST, t.id
$$;
COMMENT ON FUNCTION public.get_analytics_tasks_in_progress() IS
    'traystatus: the analytics tasks that keep the system from being stable';

-- get_system_status_details() -------------------------------------------------------------------
-- One statement, so one snapshot. Bounded output: jobs that are not terminal plus those that
-- ended in the last 10 minutes (at most 500), analytics counts by command and state, and at
-- most 50 individual tasks (running ones first).
CREATE OR REPLACE FUNCTION public.get_system_status_details() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH jobs AS (
        SELECT j.*,
               greatest(j.processing_stop_at, j.analysis_stop_at, j.last_progress_update,
                        j.preparing_data_at) AS ended_at_guess
        FROM public.import_job AS j
    ), shown_jobs AS (
        SELECT j.*
        FROM jobs AS j
        WHERE j.state NOT IN ('finished', 'failed', 'rejected')
           OR j.ended_at_guess >= now() - interval '10 minutes'
           OR (j.ended_at_guess IS NULL AND j.created_at >= now() - interval '10 minutes')
    ), active_tasks AS (
        SELECT t.id, t.command, t.state, t.depth, t.parent_id, t.priority, t.created_at,
               t.process_start_at, t.process_duration_ms, t.scheduled_at
        FROM worker.tasks AS t
        JOIN worker.command_registry AS cr ON cr.command = t.command
        WHERE cr.queue = 'analytics'
          AND t.state IN ('pending', 'processing', 'waiting', 'interrupted')
          AND (t.scheduled_at IS NULL OR t.scheduled_at <= now())
    )
    SELECT jsonb_build_object(
        'system_stable', public.is_system_stable(),
        'generated_at', now(),
        'sql_version', public.system_stability_sql_version(),
        'import_jobs_total', (SELECT count(*) FROM shown_jobs),
        'import_jobs', coalesce((
            SELECT jsonb_agg(job ORDER BY sort_active DESC, sort_priority, sort_id)
            FROM (
                SELECT jsonb_build_object(
                           'id', j.id,
                           'slug', j.slug,
                           'description', j.description,
                           'state', j.state,
                           'phase', CASE j.state
                                        WHEN 'waiting_for_upload' THEN 'upload'
                                        WHEN 'upload_completed' THEN 'queued'
                                        WHEN 'approved' THEN 'queued'
                                        WHEN 'preparing_data' THEN 'preparing'
                                        WHEN 'analysing_data' THEN 'analysing'
                                        WHEN 'waiting_for_review' THEN 'review'
                                        WHEN 'processing_data' THEN 'processing'
                                        WHEN 'failed' THEN 'failed'
                                        ELSE 'done' END,
                           'progress_pct', CASE j.state
                                        WHEN 'analysing_data' THEN coalesce(j.analysis_completed_pct, 0)
                                        WHEN 'processing_data' THEN coalesce(j.import_completed_pct, 0)
                                        WHEN 'waiting_for_review' THEN coalesce(j.analysis_completed_pct, 0)
                                        WHEN 'finished' THEN 100
                                        ELSE NULL END,
                           'rows_per_sec', CASE j.state
                                        WHEN 'analysing_data' THEN j.analysis_rows_per_sec
                                        WHEN 'processing_data' THEN j.import_rows_per_sec
                                        ELSE NULL END,
                           'total_rows', j.total_rows,
                           'imported_rows', j.imported_rows,
                           'analysis_completed_pct', j.analysis_completed_pct,
                           'import_completed_pct', j.import_completed_pct,
                           'current_step_code', j.current_step_code,
                           'error_count', j.error_count,
                           'warning_count', j.warning_count,
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
                           'ended_at', CASE WHEN j.state IN ('finished', 'failed', 'rejected')
                                            THEN j.ended_at_guess END,
                           'active', public.system_stability_job_state_active(j.state),
                           'needs_person', j.state IN ('waiting_for_upload', 'waiting_for_review')
                       ) AS job,
                       public.system_stability_job_state_active(j.state)
                           OR j.state = 'waiting_for_review' AS sort_active,
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
                                 ORDER BY c.command, c.state)
                FROM (SELECT a.command, a.state, count(*) AS n
                      FROM active_tasks AS a GROUP BY a.command, a.state) AS c), '[]'::jsonb),
            'tasks_shown', (SELECT least(count(*), 50) FROM active_tasks),
            'tasks', coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                           'id', a.id, 'command', a.command, 'state', a.state, 'depth', a.depth,
                           'parent_id', a.parent_id, 'created_at', a.created_at,
                           'process_start_at', a.process_start_at,
                           'duration_ms', a.process_duration_ms,
                           'scheduled_at', a.scheduled_at)
                       ORDER BY a.sort_state, a.priority NULLS LAST, a.id)
                FROM (SELECT at.*,
                             CASE at.state WHEN 'processing' THEN 0 WHEN 'waiting' THEN 1
                                           WHEN 'interrupted' THEN 2 ELSE 3 END AS sort_state
                      FROM active_tasks AS at
                      ORDER BY sort_state, at.priority NULLS LAST, at.id
                      LIMIT 50) AS a), '[]'::jsonb)
        )
    )
$$;
COMMENT ON FUNCTION public.get_system_status_details() IS
    'traystatus: import jobs with progress and the analytics work in progress, in one snapshot';

-- Work summary: what finished since a mark ------------------------------------------------------
-- Cheap on a worker.tasks of 10^6 rows: tasks above the mark are read through the primary key
-- (a range above after_task_id); import_job is small.
-- The mark is taken when a client SEES processing start, which is after the task that started
-- it was inserted: "the newest id" would leave out exactly the tasks that made the system busy
-- (a derive run's root, everything queued before the client looked). So the mark sits just
-- below the oldest analytics task that is still busy (and at the newest id when none is):
-- the summary then covers the whole run in progress, including its tasks that had already
-- finished when the mark was taken.
CREATE OR REPLACE FUNCTION public.system_work_mark() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT min(t.id) - 1
         FROM worker.tasks AS t
         JOIN worker.command_registry AS cr ON cr.command = t.command
         WHERE cr.queue = 'analytics'
           AND t.state IN ('pending', 'processing', 'waiting', 'interrupted')
           AND (t.scheduled_at IS NULL OR t.scheduled_at <= now())),
        (SELECT max(t.id) FROM worker.tasks AS t),
        0)
$$;
COMMENT ON FUNCTION public.system_work_mark() IS
    'traystatus: a mark (just below the oldest busy analytics task) to pass to get_system_work_summary() later';

CREATE OR REPLACE FUNCTION public.get_system_work_summary(after_task_id bigint, since timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH ended_jobs AS (
        SELECT j.id, j.slug, j.description, j.state, j.error_count, j.warning_count,
               left(j.error, 500) AS error,
               greatest(j.processing_stop_at, j.analysis_stop_at, j.last_progress_update,
                        j.preparing_data_at) AS ended_at
        FROM public.import_job AS j
        WHERE j.state IN ('finished', 'failed')
    ), recent_jobs AS (
        SELECT * FROM ended_jobs WHERE ended_at >= since
    ), tasks AS (
        SELECT t.state
        FROM worker.tasks AS t
        JOIN worker.command_registry AS cr ON cr.command = t.command
        WHERE t.id > coalesce(after_task_id, 0)
          AND cr.queue = 'analytics'
          AND t.state IN ('completed', 'failed')
    )
    SELECT jsonb_build_object(
        'since', since,
        'until', now(),
        'import_jobs_finished', (SELECT count(*) FROM recent_jobs WHERE state = 'finished'),
        'import_jobs_failed', (SELECT count(*) FROM recent_jobs WHERE state = 'failed'),
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
$$;
COMMENT ON FUNCTION public.get_system_work_summary(bigint, timestamptz) IS
    'traystatus: import jobs that ended since a time and analytics tasks done since a mark';

-- The announcing triggers ----------------------------------------------------------------------
-- The line is watched row by row, and the WHEN clauses (evaluated in C, no function call) let
-- through only rows that may cross it: a 1,000-row "pending -> processing", a progress update
-- or an UPDATE touching no row fires no trigger function and runs no query at all.
--  * a row moving IN (an AFTER ROW trigger): the function checks the queue precisely and sends
--    {"stable": false} at once; no query is needed, the writer's own row is active.
--    PostgreSQL folds identical notifications of one transaction into one, so a 1,000-row
--    insert of pending analytics tasks sends one notification.
--  * a row moving OUT (an AFTER ROW trigger too): the first such row of the transaction
--    notes in a transaction-local setting that the transaction must announce, and queues ONE
--    event of a DEFERRABLE INITIALLY DEFERRED constraint trigger on our own small table
--    public.system_stability_commit_hook; at COMMIT that trigger runs is_system_stable() once,
--    as late as possible (the freshest hint the writer can give), and sends it. The
--    transaction's other rows only read the note.
--    Why not a deferred trigger on import_job / worker.tasks themselves (the first version)?
--    PostgreSQL refuses ALTER TABLE, CREATE INDEX, TRUNCATE and DROP TABLE on a table that
--    has deferred trigger events pending in the same transaction (SQLSTATE 55006, "cannot
--    ALTER TABLE "tasks" because it has pending trigger events"). StatBus migrations change
--    worker.tasks and import_job rows and then ALTER those tables in one transaction; with
--    the deferred events on StatBus's tables such a migration would fail while traystatus is
--    installed. The pending event now sits on our own table, which nothing else alters.
--  * TRUNCATE has no rows: a BEFORE TRUNCATE trigger notes whether active rows are about to
--    go (the table is locked ACCESS EXCLUSIVE, nothing changes under it) and an AFTER TRUNCATE
--    trigger announces if so.
-- Fail-safe: every trigger function catches its own errors (RAISE WARNING, then a
-- {"stable": false} hint so that clients re-read and meet the error in is_system_stable()).
-- The functions name StatBus columns and enum values in their text; if a StatBus upgrade
-- renames one (StatBus renamed worker.tasks.duration_ms in 2026-03), the failure must stay in
-- traystatus and never abort the worker's or a user's transaction. The memo checks stay
-- outside the guarded block: a 10^5-row statement enters it once, not 10^5 times.
-- The issue asked for statement-level triggers. They were the first version: every statement
-- on worker.tasks then ran a PL/pgSQL function just to find out that nothing had crossed,
-- which cost more than the whole crossing machinery on the worker's hot path
-- (docs/sql.md has the figures). Row triggers with exact WHEN clauses plus deferral give the
-- same guarantee (at least one notification, delivered at commit, for every transaction that
-- moved a row across; none for a statement that moved nothing) at a fraction of the cost.

CREATE OR REPLACE FUNCTION public.system_stability_row_in() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Once this transaction has sent {"stable": false}, PostgreSQL would fold another one into
    -- it anyway: skip the look-ups (a derive run inserts 10^5 pending tasks in one statement).
    -- Rolling back a savepoint reverts this note together with the notification it stands for.
    IF current_setting('system_stability.announced_in', true) = 'yes' THEN
        RETURN NULL;
    END IF;
    BEGIN
        -- import_job: the WHEN clause is exact. worker.tasks: it is exact about state and due
        -- time; the queue needs a look at the registry.
        IF TG_TABLE_NAME = 'tasks' THEN
            -- The WHEN clause made sure that NEW is busy and due. It counts only in the analytics
            -- queue, and (for an UPDATE) only when OLD did not count already.
            -- (One small query per test, each with one parameter, so that PL/pgSQL settles on a
            -- cached generic plan; a single big condition mixing OLD and NEW got planned anew on
            -- every call, which cost more than everything else here.)
            IF NOT EXISTS (SELECT FROM worker.command_registry AS cr
                           WHERE cr.command = NEW.command AND cr.queue = 'analytics') THEN
                RETURN NULL;
            END IF;
            IF TG_OP = 'UPDATE' THEN
                IF OLD.state IN ('pending', 'processing', 'waiting', 'interrupted')
                   AND (OLD.scheduled_at IS NULL OR OLD.scheduled_at <= now()) THEN
                    IF EXISTS (SELECT FROM worker.command_registry AS cr
                               WHERE cr.command = OLD.command AND cr.queue = 'analytics') THEN
                        RETURN NULL;
                    END IF;
                END IF;
            END IF;
        END IF;
        PERFORM pg_notify('system_stability', '{"stable": false}');
        PERFORM set_config('system_stability.announced_in', 'yes', true);
    EXCEPTION WHEN OTHERS THEN
        -- Never break StatBus's own write (see "Fail-safe" above): warn, and make listeners
        -- re-read is_system_stable(), where they meet the error themselves.
        RAISE WARNING 'traystatus: trigger % on %.% failed: % (SQLSTATE %); the change it watched goes on. Re-run sql/install.sql (or sql/uninstall.sql) after a StatBus upgrade.',
            TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
        PERFORM pg_notify('system_stability', '{"stable": false}');
    END;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_row_in() IS
    'traystatus: row trigger, NOTIFY system_stability {"stable": false} when a row became active';

-- The commit hook: an empty UNLOGGED table (no WAL) that never holds a committed row. A
-- transaction that moved a row out inserts one row and deletes it at once; the insert has
-- already queued the deferred trigger event, which runs at COMMIT (a row this transaction
-- deleted is still readable by its own AFTER trigger).
CREATE UNLOGGED TABLE IF NOT EXISTS public.system_stability_commit_hook ();
REVOKE ALL ON TABLE public.system_stability_commit_hook FROM PUBLIC;
COMMENT ON TABLE public.system_stability_commit_hook IS
    'traystatus: always empty; its deferred trigger announces system_stability at COMMIT';

CREATE OR REPLACE FUNCTION public.system_stability_row_out() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hook_row tid;
BEGIN
    IF current_setting('system_stability.announced', true) = 'out' THEN
        RETURN NULL;  -- this transaction will announce at COMMIT already
    END IF;
    BEGIN
        IF TG_TABLE_NAME = 'tasks' THEN
            -- The WHEN clause made sure that OLD was busy and due. It counted only in the
            -- analytics queue; and (for an UPDATE) NEW must not count any more.
            IF NOT EXISTS (SELECT FROM worker.command_registry AS cr
                           WHERE cr.command = OLD.command AND cr.queue = 'analytics') THEN
                RETURN NULL;
            END IF;
            IF TG_OP = 'UPDATE' THEN
                IF NEW.state IN ('pending', 'processing', 'waiting', 'interrupted')
                   AND (NEW.scheduled_at IS NULL OR NEW.scheduled_at <= now()) THEN
                    IF EXISTS (SELECT FROM worker.command_registry AS cr
                               WHERE cr.command = NEW.command AND cr.queue = 'analytics') THEN
                        RETURN NULL;
                    END IF;
                END IF;
            END IF;
        END IF;
        -- Rolling back a savepoint reverts this note together with the queued event.
        PERFORM set_config('system_stability.announced', 'out', true);
        INSERT INTO public.system_stability_commit_hook DEFAULT VALUES RETURNING ctid INTO hook_row;
        DELETE FROM public.system_stability_commit_hook WHERE ctid = hook_row;
    EXCEPTION WHEN OTHERS THEN
        -- Never break StatBus's own write (see "Fail-safe" above): warn, and make listeners
        -- re-read is_system_stable(), where they meet the error themselves.
        RAISE WARNING 'traystatus: trigger % on %.% failed: % (SQLSTATE %); the change it watched goes on. Re-run sql/install.sql (or sql/uninstall.sql) after a StatBus upgrade.',
            TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
        PERFORM pg_notify('system_stability', '{"stable": false}');
    END;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_row_out() IS
    'traystatus: row trigger, makes the transaction announce system_stability at COMMIT when a row left the active set';

CREATE OR REPLACE FUNCTION public.system_stability_commit_announce() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    BEGIN
        PERFORM pg_notify('system_stability',
                          jsonb_build_object('stable', public.is_system_stable())::text);
    EXCEPTION WHEN OTHERS THEN
        -- Never break StatBus's own write (see "Fail-safe" above): warn, and make listeners
        -- re-read is_system_stable(), where they meet the error themselves.
        RAISE WARNING 'traystatus: trigger % on %.% failed: % (SQLSTATE %); the change it watched goes on. Re-run sql/install.sql (or sql/uninstall.sql) after a StatBus upgrade.',
            TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
        PERFORM pg_notify('system_stability', '{"stable": false}');
    END;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_commit_announce() IS
    'traystatus: deferred trigger on system_stability_commit_hook, NOTIFY system_stability at COMMIT';

CREATE OR REPLACE FUNCTION public.system_stability_truncate_before() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    had_active boolean;
BEGIN
    BEGIN
        IF TG_TABLE_NAME = 'import_job' THEN
            had_active := EXISTS (
                SELECT FROM public.import_job AS j
                WHERE j.state IN ('upload_completed', 'preparing_data', 'analysing_data',
                                  'approved', 'processing_data'));
        ELSE
            had_active := EXISTS (
                SELECT FROM worker.tasks AS t
                JOIN worker.command_registry AS cr ON cr.command = t.command
                WHERE cr.queue = 'analytics'
                  AND t.state IN ('pending', 'processing', 'waiting', 'interrupted')
                  AND (t.scheduled_at IS NULL OR t.scheduled_at <= now()));
        END IF;
        IF had_active THEN
            PERFORM set_config('system_stability.truncated', 'yes', true);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        -- Never break StatBus's own write (see "Fail-safe" above): warn, and make listeners
        -- re-read is_system_stable(), where they meet the error themselves.
        RAISE WARNING 'traystatus: trigger % on %.% failed: % (SQLSTATE %); the change it watched goes on. Re-run sql/install.sql (or sql/uninstall.sql) after a StatBus upgrade.',
            TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
        PERFORM pg_notify('system_stability', '{"stable": false}');
    END;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_truncate_before() IS
    'traystatus: BEFORE TRUNCATE trigger, notes that active rows are about to be removed';

CREATE OR REPLACE FUNCTION public.system_stability_truncate_after() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('system_stability.truncated', true) = 'yes' THEN
        PERFORM set_config('system_stability.truncated', '', true);
        BEGIN
            PERFORM pg_notify('system_stability',
                              jsonb_build_object('stable', public.is_system_stable())::text);
        EXCEPTION WHEN OTHERS THEN
            -- Never break StatBus's own write (see "Fail-safe" above).
            RAISE WARNING 'traystatus: trigger % on %.% failed: % (SQLSTATE %); the change it watched goes on. Re-run sql/install.sql (or sql/uninstall.sql) after a StatBus upgrade.',
                TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
            PERFORM pg_notify('system_stability', '{"stable": false}');
        END;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_truncate_after() IS
    'traystatus: AFTER TRUNCATE trigger, NOTIFY system_stability when the TRUNCATE removed active rows';

-- import_job (WHEN clauses exact) ------------------------------------------------------------
CREATE OR REPLACE TRIGGER system_stability_job_in_insert
    AFTER INSERT ON public.import_job
    FOR EACH ROW
    WHEN (NEW.state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                        'processing_data'))
    EXECUTE FUNCTION public.system_stability_row_in();
CREATE OR REPLACE TRIGGER system_stability_job_in_update
    AFTER UPDATE OF state ON public.import_job
    FOR EACH ROW
    WHEN (NEW.state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                        'processing_data')
          AND OLD.state NOT IN ('upload_completed', 'preparing_data', 'analysing_data',
                                'approved', 'processing_data'))
    EXECUTE FUNCTION public.system_stability_row_in();
CREATE OR REPLACE TRIGGER system_stability_job_truncate_before
    BEFORE TRUNCATE ON public.import_job
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_truncate_before();
CREATE OR REPLACE TRIGGER system_stability_job_truncate_after
    AFTER TRUNCATE ON public.import_job
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_truncate_after();

-- worker.tasks (WHEN clauses exact about state and due time) -----------------------------------
CREATE OR REPLACE TRIGGER system_stability_task_in_insert
    AFTER INSERT ON worker.tasks
    FOR EACH ROW
    WHEN (NEW.state IN ('pending', 'processing', 'waiting', 'interrupted')
          AND (NEW.scheduled_at IS NULL OR NEW.scheduled_at <= now()))
    EXECUTE FUNCTION public.system_stability_row_in();
CREATE OR REPLACE TRIGGER system_stability_task_in_update
    AFTER UPDATE OF state, scheduled_at, command ON worker.tasks
    FOR EACH ROW
    WHEN (NEW.state IN ('pending', 'processing', 'waiting', 'interrupted')
          AND (NEW.scheduled_at IS NULL OR NEW.scheduled_at <= now())
          AND (OLD.state NOT IN ('pending', 'processing', 'waiting', 'interrupted')
               OR OLD.scheduled_at > now()
               OR OLD.command IS DISTINCT FROM NEW.command))
    EXECUTE FUNCTION public.system_stability_row_in();
CREATE OR REPLACE TRIGGER system_stability_task_truncate_before
    BEFORE TRUNCATE ON worker.tasks
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_truncate_before();
CREATE OR REPLACE TRIGGER system_stability_task_truncate_after
    AFTER TRUNCATE ON worker.tasks
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_truncate_after();

-- The "out" triggers: plain AFTER ROW triggers (see above for why they are not deferred).
-- A development build made them DEFERRABLE constraint triggers on the StatBus tables: drop
-- those first (CREATE OR REPLACE TRIGGER cannot replace a constraint trigger).
DO $$
DECLARE
    old record;
BEGIN
    FOR old IN
        SELECT tg.tgname, tg.tgrelid::regclass AS tbl
        FROM pg_catalog.pg_trigger AS tg
        WHERE tg.tgrelid IN ('public.import_job'::regclass, 'worker.tasks'::regclass)
          AND tg.tgname IN ('system_stability_job_out_update', 'system_stability_job_out_delete',
                            'system_stability_task_out_update', 'system_stability_task_out_delete')
          AND tg.tgconstraint <> 0
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', old.tgname, old.tbl);
    END LOOP;
END;
$$;
CREATE OR REPLACE TRIGGER system_stability_job_out_update
    AFTER UPDATE OF state ON public.import_job
    FOR EACH ROW
    WHEN (OLD.state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                        'processing_data')
          AND NEW.state NOT IN ('upload_completed', 'preparing_data', 'analysing_data',
                                'approved', 'processing_data'))
    EXECUTE FUNCTION public.system_stability_row_out();
CREATE OR REPLACE TRIGGER system_stability_job_out_delete
    AFTER DELETE ON public.import_job
    FOR EACH ROW
    WHEN (OLD.state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                        'processing_data'))
    EXECUTE FUNCTION public.system_stability_row_out();
CREATE OR REPLACE TRIGGER system_stability_task_out_update
    AFTER UPDATE OF state, scheduled_at, command ON worker.tasks
    FOR EACH ROW
    WHEN (OLD.state IN ('pending', 'processing', 'waiting', 'interrupted')
          AND (OLD.scheduled_at IS NULL OR OLD.scheduled_at <= now())
          AND (NEW.state NOT IN ('pending', 'processing', 'waiting', 'interrupted')
               OR NEW.scheduled_at > now()
               OR OLD.command IS DISTINCT FROM NEW.command))
    EXECUTE FUNCTION public.system_stability_row_out();
CREATE OR REPLACE TRIGGER system_stability_task_out_delete
    AFTER DELETE ON worker.tasks
    FOR EACH ROW
    WHEN (OLD.state IN ('pending', 'processing', 'waiting', 'interrupted')
          AND (OLD.scheduled_at IS NULL OR OLD.scheduled_at <= now()))
    EXECUTE FUNCTION public.system_stability_row_out();

-- The commit-time announcer. CREATE OR REPLACE does not work for constraint triggers: create
-- it only when missing. (A later version that changes it must drop it first.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger
                   WHERE tgrelid = 'public.system_stability_commit_hook'::regclass
                     AND tgname = 'system_stability_commit') THEN
        CREATE CONSTRAINT TRIGGER system_stability_commit
            AFTER INSERT ON public.system_stability_commit_hook
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION public.system_stability_commit_announce();
    END IF;
END;
$$;

-- Privileges ----------------------------------------------------------------------------------
-- Functions are executable by PUBLIC by default: take that away, then grant the StatBus roles
-- that exist (a login role reaches them through membership in authenticated).
REVOKE ALL ON FUNCTION
    public.system_stability_sql_version(),
    public.system_stability_job_state_active(public.import_job_state),
    public.is_system_stable(),
    public.get_analytics_tasks_in_progress(),
    public.get_system_status_details(),
    public.system_work_mark(),
    public.get_system_work_summary(bigint, timestamptz),
    public.system_stability_row_in(),
    public.system_stability_row_out(),
    public.system_stability_commit_announce(),
    public.system_stability_truncate_before(),
    public.system_stability_truncate_after()
FROM PUBLIC;

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['authenticated', 'notify_reader'] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format(
                'GRANT EXECUTE ON FUNCTION public.system_stability_sql_version(), '
                'public.system_stability_job_state_active(public.import_job_state), '
                'public.is_system_stable(), public.get_analytics_tasks_in_progress(), '
                'public.get_system_status_details(), public.system_work_mark(), '
                'public.get_system_work_summary(bigint, timestamptz) TO %I', r);
        END IF;
    END LOOP;
END;
$$;

COMMIT;
