-- traystatus: remove exactly what sql/install.sql added, nothing of StatBus's own.
--     psql -v ON_ERROR_STOP=1 -f sql/uninstall.sql "<conninfo>"
-- One transaction; safe to run when nothing (or only part) is installed.

BEGIN;

SELECT pg_advisory_xact_lock(hashtext('traystatus.install'));

DROP TRIGGER IF EXISTS system_stability_job_insert ON public.import_job;
DROP TRIGGER IF EXISTS system_stability_job_update ON public.import_job;
DROP TRIGGER IF EXISTS system_stability_job_delete ON public.import_job;
DROP TRIGGER IF EXISTS system_stability_job_announce ON public.import_job;
DROP TRIGGER IF EXISTS system_stability_job_truncate ON public.import_job;
DROP TRIGGER IF EXISTS system_stability_task_insert ON worker.tasks;
DROP TRIGGER IF EXISTS system_stability_task_update ON worker.tasks;
DROP TRIGGER IF EXISTS system_stability_task_delete ON worker.tasks;
DROP TRIGGER IF EXISTS system_stability_task_announce ON worker.tasks;
DROP TRIGGER IF EXISTS system_stability_task_truncate ON worker.tasks;

DROP FUNCTION IF EXISTS public.system_stability_announce();
DROP FUNCTION IF EXISTS public.system_stability_mark_crossing();
DROP FUNCTION IF EXISTS public.get_system_work_summary(bigint, timestamptz);
DROP FUNCTION IF EXISTS public.system_work_mark();
DROP FUNCTION IF EXISTS public.get_system_status_details();
DROP FUNCTION IF EXISTS public.get_analytics_tasks_in_progress();
DROP FUNCTION IF EXISTS public.is_system_stable();
DROP FUNCTION IF EXISTS public.system_stability_job_state_active(public.import_job_state);
DROP FUNCTION IF EXISTS public.system_stability_sql_version();

DROP INDEX IF EXISTS public.import_job_system_stability_active_idx;
DROP INDEX IF EXISTS worker.tasks_system_stability_active_idx;

COMMIT;
