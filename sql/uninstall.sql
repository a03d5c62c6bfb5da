-- traystatus: remove exactly what sql/install.sql added, nothing of StatBus's own.
--     psql -v ON_ERROR_STOP=1 -f sql/uninstall.sql "<conninfo>"
-- Run it as the role that installed (or a superuser). It DROPs and never REVOKEs, so
-- StatBus's sql_saga event trigger (which rejects every REVOKE) lets it through.
-- One transaction; safe to run when nothing (or only part) is installed, and twice.
-- It also removes the objects of the first development version (statement-level triggers),
-- so it cleans up whatever any version of install.sql left.

BEGIN;

SELECT pg_advisory_xact_lock(hashtext('traystatus.install'));

-- Triggers first (they depend on the functions). DROP TRIGGER IF EXISTS still fails when the
-- TABLE is missing, which it never is on StatBus; on a database without StatBus there is
-- nothing of ours to remove, so skip the tables that are not there.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT tg.tgname, tg.tgrelid::regclass AS tbl
        FROM pg_catalog.pg_trigger AS tg
        WHERE tg.tgrelid IN (to_regclass('public.import_job'), to_regclass('worker.tasks'))
          AND tg.tgname IN (
              'system_stability_job_insert', 'system_stability_job_update',
              'system_stability_job_delete',
              -- version 1
              'system_stability_job_in_insert', 'system_stability_job_in_update',
              'system_stability_job_out_update', 'system_stability_job_out_delete',
              'system_stability_job_truncate_before', 'system_stability_job_truncate_after',
              'system_stability_task_in_insert', 'system_stability_task_in_update',
              'system_stability_task_out_update', 'system_stability_task_out_delete',
              'system_stability_task_truncate_before', 'system_stability_task_truncate_after',
              'system_stability_task_ahead_insert', 'system_stability_task_ahead_update',
              -- development version 1 (statement-level announce)
              'system_stability_job_announce',
              'system_stability_job_truncate', 'system_stability_job_truncate_mark',
              'system_stability_task_insert', 'system_stability_task_update',
              'system_stability_task_delete', 'system_stability_task_announce',
              'system_stability_task_truncate', 'system_stability_task_truncate_mark')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.tbl);
    END LOOP;
END;
$$;

-- Our commit hook table (its trigger goes with it), then the trigger functions.
DROP TABLE IF EXISTS public.system_stability_commit_hook;
DROP TABLE IF EXISTS public.system_stability_announced;
DROP FUNCTION IF EXISTS public.system_stability_commit_announce();
DROP FUNCTION IF EXISTS public.system_stability_row_in();
DROP FUNCTION IF EXISTS public.system_stability_row_out();
DROP FUNCTION IF EXISTS public.system_stability_truncate_before();
DROP FUNCTION IF EXISTS public.system_stability_truncate_after();
DROP FUNCTION IF EXISTS public.system_stability_queue_decision(boolean);
-- the first development version's trigger functions, quietly (nothing released had them)
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['public.system_stability_announce()',
                             'public.system_stability_mark_crossing()',
                             'public.system_stability_mark_truncate()'] LOOP
        IF to_regprocedure(f) IS NOT NULL THEN
            EXECUTE 'DROP FUNCTION ' || f;
        END IF;
    END LOOP;
END;
$$;
DROP FUNCTION IF EXISTS public.get_system_work_summary(bigint, timestamptz);
DROP FUNCTION IF EXISTS public.system_work_mark();
DROP FUNCTION IF EXISTS public.get_system_status_details();
DROP FUNCTION IF EXISTS public.get_analytics_tasks_in_progress();
DROP FUNCTION IF EXISTS public.system_stability_review();
DROP FUNCTION IF EXISTS public.is_system_stable();
DROP FUNCTION IF EXISTS public.system_stability_next_due();
DROP FUNCTION IF EXISTS public.system_stability_next_due_at(timestamptz);
DROP FUNCTION IF EXISTS public.system_stability_answer(timestamptz);
DO $$
BEGIN
    -- This one names a StatBus type in its signature; without the type there is nothing.
    IF to_regtype('public.import_job_state') IS NOT NULL THEN
        DROP FUNCTION IF EXISTS
            public.system_stability_job_state_active(public.import_job_state);
    END IF;
END;
$$;
DROP FUNCTION IF EXISTS public.system_stability_sql_drift();
DROP FUNCTION IF EXISTS public.system_stability_sql_info();
DROP FUNCTION IF EXISTS public.system_stability_sql_version();

DROP INDEX IF EXISTS public.import_job_system_stability_active_idx;
DROP INDEX IF EXISTS worker.tasks_system_stability_active_idx;

COMMIT;
