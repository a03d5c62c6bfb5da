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
-- Notification protocol (docs/architecture.md has the proof):
--   1. a client LISTENs on system_stability, THEN reads is_system_stable();
--   2. on every notification, whatever the payload, it re-reads is_system_stable().
--   Every committed statement that moves a row across the line notifies, and NOTIFY is
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
CREATE OR REPLACE FUNCTION public.is_system_stable() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NOT EXISTS (
               SELECT FROM public.import_job AS j
               WHERE j.state IN ('upload_completed', 'preparing_data', 'analysing_data',
                                 'approved', 'processing_data'))
       AND NOT EXISTS (
               SELECT FROM worker.tasks AS t
               JOIN worker.command_registry AS cr ON cr.command = t.command
               WHERE cr.queue = 'analytics'
                 AND t.state IN ('pending', 'processing', 'waiting', 'interrupted')
                 AND (t.scheduled_at IS NULL OR t.scheduled_at <= now()))
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
-- Cheap on a worker.tasks of 10^6 rows: tasks created after the mark are read through the
-- primary key (a range above after_task_id); import_job is small.
CREATE OR REPLACE FUNCTION public.system_work_mark() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(max(t.id), 0) FROM worker.tasks AS t $$;
COMMENT ON FUNCTION public.system_work_mark() IS
    'traystatus: a mark (the newest task id) to pass to get_system_work_summary() later';

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
-- Two parts, so that the common case costs almost nothing:
--  * ROW triggers whose WHEN clause (evaluated in C, no function call) lets through only rows
--    that may cross the line: an import job whose state moves in or out of the active set, a
--    task whose state moves in or out of the busy states or whose scheduled_at/command changes.
--    A 1,000-row "pending -> processing" or a progress update fires nothing at all. The row
--    function checks the queue and due time precisely and records "in"/"out" in a
--    transaction-local setting.
--  * STATEMENT triggers read that setting (a statement trigger's WHEN is evaluated before the
--    row triggers run, so it cannot filter on it; reading one setting costs microseconds).
--    When it is set they send one NOTIFY for the statement: {"stable": false} when a row moved in (no query needed: the writer's
--    snapshot holds an active row), else the result of is_system_stable(). They then clear
--    the setting.
-- A statement that moved nothing across sends nothing and runs no stability query.

CREATE OR REPLACE FUNCTION public.system_stability_mark_crossing() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was_active boolean := false;
    is_active boolean := false;
    mark text;
BEGIN
    IF TG_TABLE_NAME = 'import_job' THEN
        IF TG_OP <> 'INSERT' THEN
            was_active := public.system_stability_job_state_active(OLD.state);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            is_active := public.system_stability_job_state_active(NEW.state);
        END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN
            was_active := OLD.state IN ('pending', 'processing', 'waiting', 'interrupted')
                AND (OLD.scheduled_at IS NULL OR OLD.scheduled_at <= now())
                AND EXISTS (SELECT FROM worker.command_registry AS cr
                            WHERE cr.command = OLD.command AND cr.queue = 'analytics');
        END IF;
        IF TG_OP <> 'DELETE' THEN
            is_active := NEW.state IN ('pending', 'processing', 'waiting', 'interrupted')
                AND (NEW.scheduled_at IS NULL OR NEW.scheduled_at <= now())
                AND EXISTS (SELECT FROM worker.command_registry AS cr
                            WHERE cr.command = NEW.command AND cr.queue = 'analytics');
        END IF;
    END IF;

    IF was_active IS DISTINCT FROM is_active THEN
        mark := coalesce(current_setting('system_stability.crossing', true), '');
        IF is_active AND mark NOT LIKE '%in%' THEN
            PERFORM set_config('system_stability.crossing', mark || 'in', true);
        ELSIF NOT is_active AND mark NOT LIKE '%out%' THEN
            PERFORM set_config('system_stability.crossing', mark || 'out', true);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_mark_crossing() IS
    'traystatus: row trigger, records that a row crossed the active/not-active line';

CREATE OR REPLACE FUNCTION public.system_stability_announce() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mark text := coalesce(current_setting('system_stability.crossing', true), '');
    stable boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        stable := public.is_system_stable();
    ELSIF mark = '' THEN
        RETURN NULL;
    ELSIF mark LIKE '%in%' THEN
        stable := false;  -- a row just became active in this snapshot: no query needed
    ELSE
        stable := public.is_system_stable();
    END IF;
    PERFORM set_config('system_stability.crossing', '', true);
    PERFORM pg_notify('system_stability', jsonb_build_object('stable', stable)::text);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_announce() IS
    'traystatus: statement trigger, NOTIFY system_stability once for a statement that crossed the line';

-- import_job
CREATE OR REPLACE TRIGGER system_stability_job_insert
    AFTER INSERT ON public.import_job
    FOR EACH ROW
    WHEN (NEW.state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                        'processing_data'))
    EXECUTE FUNCTION public.system_stability_mark_crossing();
CREATE OR REPLACE TRIGGER system_stability_job_update
    AFTER UPDATE OF state ON public.import_job
    FOR EACH ROW
    WHEN ((OLD.state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                         'processing_data'))
          IS DISTINCT FROM
          (NEW.state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                         'processing_data')))
    EXECUTE FUNCTION public.system_stability_mark_crossing();
CREATE OR REPLACE TRIGGER system_stability_job_delete
    AFTER DELETE ON public.import_job
    FOR EACH ROW
    WHEN (OLD.state IN ('upload_completed', 'preparing_data', 'analysing_data', 'approved',
                        'processing_data'))
    EXECUTE FUNCTION public.system_stability_mark_crossing();
CREATE OR REPLACE TRIGGER system_stability_job_announce
    AFTER INSERT OR UPDATE OR DELETE ON public.import_job
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_announce();
CREATE OR REPLACE TRIGGER system_stability_job_truncate
    AFTER TRUNCATE ON public.import_job
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_announce();

-- worker.tasks
CREATE OR REPLACE TRIGGER system_stability_task_insert
    AFTER INSERT ON worker.tasks
    FOR EACH ROW
    WHEN (NEW.state IN ('pending', 'processing', 'waiting', 'interrupted'))
    EXECUTE FUNCTION public.system_stability_mark_crossing();
CREATE OR REPLACE TRIGGER system_stability_task_update
    AFTER UPDATE OF state, scheduled_at, command ON worker.tasks
    FOR EACH ROW
    WHEN ((OLD.state IN ('pending', 'processing', 'waiting', 'interrupted'))
              IS DISTINCT FROM (NEW.state IN ('pending', 'processing', 'waiting', 'interrupted'))
          OR ((NEW.state IN ('pending', 'processing', 'waiting', 'interrupted'))
              AND (OLD.scheduled_at IS DISTINCT FROM NEW.scheduled_at
                   OR OLD.command IS DISTINCT FROM NEW.command)))
    EXECUTE FUNCTION public.system_stability_mark_crossing();
CREATE OR REPLACE TRIGGER system_stability_task_delete
    AFTER DELETE ON worker.tasks
    FOR EACH ROW
    WHEN (OLD.state IN ('pending', 'processing', 'waiting', 'interrupted'))
    EXECUTE FUNCTION public.system_stability_mark_crossing();
CREATE OR REPLACE TRIGGER system_stability_task_announce
    AFTER INSERT OR UPDATE OR DELETE ON worker.tasks
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_announce();
CREATE OR REPLACE TRIGGER system_stability_task_truncate
    AFTER TRUNCATE ON worker.tasks
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_announce();

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
    public.system_stability_mark_crossing(),
    public.system_stability_announce()
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
