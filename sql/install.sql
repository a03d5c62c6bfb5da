-- traystatus: system stability signals for a StatBus database.
--
-- Install, as a StatBus administrator (the owner of public.import_job and worker.tasks, or
-- a superuser):
--     psql -v ON_ERROR_STOP=1 -f sql/install.sql "<conninfo>"
-- or  traystatus install-sql --dsn "<conninfo>"        (--check: try it and roll back)
--
-- One transaction; idempotent (a second run changes nothing and fails nowhere); PostgreSQL
-- 15 to 18; StatBus from migration 20260227102355 (its state on 2026-03-01) to today.
-- No psql meta-commands, so the app can run this file through psycopg too.
-- sql/uninstall.sql removes exactly what this file adds. docs/sql.md explains the design,
-- docs/statbus-compat.md the StatBus versions.
--
-- How this file is built (read this before changing it):
--   1. PREFLIGHT: one DO block checks that this is a StatBus database, new enough, and that
--      the role may install; otherwise it stops with one line saying what is missing.
--   2. VOCABULARY: the enum values and columns differ between StatBus versions
--      (worker.task_state has had 'interrupted' only since 20260325114130; worker.tasks'
--      process_start_at was processed_at; import_job.error_count came in 20260308184452).
--      A literal such as 'interrupted'::worker.task_state fails with 22P02 where the value
--      does not exist, and a SQL function naming a missing column fails with 42703. So no
--      object below names an enum value or an optional column directly. Objects that must
--      (index predicates, trigger WHEN clauses, the hot queries) are written as templates
--      with {{placeholders}}, expanded from pg_enum and information_schema at install time
--      by the small "expand" loop repeated in each generated block. Everything else compares
--      state::text. The vocabulary is recorded in system_stability_sql_info(), and
--      system_stability_sql_drift() tells (through `traystatus doctor`) when a later StatBus
--      has values the installed SQL does not cover: then re-run this file.
--   3. PRIVILEGES WITHOUT REVOKE: StatBus's sql_saga extension has an event trigger that
--      rejects every REVOKE in the database (while some of StatBus's own views lack explicit
--      grants, which is the case on every StatBus since 2024-06). So this file never
--      REVOKEs: our new table has no PUBLIC grant to begin with, and the functions are
--      created while the installer's default privileges withhold EXECUTE from PUBLIC
--      (ALTER DEFAULT PRIVILEGES, restored to what it was before COMMIT). EXECUTE is then
--      GRANTed to StatBus's roles, and the last block proves PUBLIC has none.
--   4. The line, the details and summary functions, the notification (triggers): separate
--      sections, each can be changed on its own.
--
-- What "processing" means (the line; docs/sql.md "The line" has the reasoning):
--   * an analytics-queue task in pending, processing, waiting or interrupted that is due
--     (scheduled_at is null or not in the future): the worker's own "is there work" test;
--   * an approved import job (the worker is about to import it);
--   * an import job in upload_completed, preparing_data, analysing_data or processing_data,
--     UNLESS another job is waiting_for_review on a StatBus that holds the import queue
--     during a review (migration 20260310132309): then the queue is held by a person, not
--     by work, and the register is stable until the review is resolved. The hold is
--     reported separately (system_stability_review()), so the user sees the truth.
--   Not processing: waiting_for_upload and waiting_for_review (a person's turn), and the
--   final states finished, failed and rejected (the app rejects with an UPDATE; nothing
--   moves a rejected job on). The maintenance queue always holds a task 24 h ahead: it
--   never counts, and neither do future-scheduled tasks of any queue.
--
-- Notification protocol (docs/sql.md has the proof):
--   1. a client LISTENs on system_stability, THEN reads is_system_stable();
--   2. on every notification, whatever the payload, it re-reads is_system_stable().
--   A committed transaction notifies when, and only when, it changes the answer (section 7:
--   the deciding transactions are serialised at COMMIT), and NOTIFY is delivered after
--   commit, so the last change is always followed by a re-read that sees it.
--   3. time alone can make a future-scheduled task due: clients read
--      system_stability_next_due() and re-read at that moment.

BEGIN;

-- Serialise concurrent installs, and make "SQL outdated" checks see a whole install or none.
SELECT pg_advisory_xact_lock(hashtext('traystatus.install'));

-- 1. Preflight ---------------------------------------------------------------------------------
DO $preflight$
DECLARE
    problems text[] := '{}';
    missing text;
    owner_name text;
    rel text;
    statbus_version bigint;
BEGIN
    -- Is this StatBus? (read from the catalog: to_regclass fails on a schema we may not use)
    SELECT string_agg(n.fullname, ', ') INTO missing
    FROM (VALUES ('public', 'import_job', 'public.import_job'), ('worker', 'tasks', 'worker.tasks'),
                 ('worker', 'command_registry', 'worker.command_registry')) AS n (nsp, rel, fullname)
    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c
                      JOIN pg_catalog.pg_namespace AS ns ON ns.oid = c.relnamespace
                      WHERE ns.nspname = n.nsp AND c.relname = n.rel);
    IF missing IS NULL THEN
        SELECT string_agg(n.fullname, ', ') INTO missing
        FROM (VALUES ('public', 'import_job_state', 'public.import_job_state'),
                     ('worker', 'task_state', 'worker.task_state')) AS n (nsp, typ, fullname)
        WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_type AS t
                          JOIN pg_catalog.pg_namespace AS ns ON ns.oid = t.typnamespace
                          WHERE ns.nspname = n.nsp AND t.typname = n.typ);
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_table',
            MESSAGE = format('traystatus: database %s is not a StatBus database (%s missing); '
                             'connect to the StatBus database and run install.sql there',
                             current_database(), missing);
    END IF;

    -- May this role install? CREATE INDEX needs ownership of the tables, CREATE TRIGGER
    -- the TRIGGER privilege, the functions and our table CREATE on schema public. Every
    -- problem is collected: the error names the first, its DETAIL all of them.
    IF NOT has_schema_privilege('worker', 'USAGE') THEN
        problems := problems || format(
            'role %s cannot install: it may not use schema worker; run install.sql as the '
            'owner of public.import_job and worker.tasks (%s) or a superuser', current_user,
            (SELECT c.relowner::regrole::text FROM pg_catalog.pg_class AS c
             WHERE c.oid = 'public.import_job'::regclass));
    END IF;
    FOREACH rel IN ARRAY ARRAY['public.import_job', 'worker.tasks'] LOOP
        SELECT c.relowner::regrole::text INTO owner_name
        FROM pg_catalog.pg_class AS c WHERE c.oid = rel::regclass;
        IF NOT pg_has_role(current_user,
                           (SELECT c.relowner FROM pg_catalog.pg_class AS c
                            WHERE c.oid = rel::regclass), 'USAGE') THEN
            problems := problems || format(
                'role %s cannot install: it does not own %s (owner: %s); run install.sql as '
                '%s or a superuser', current_user, rel, owner_name, owner_name);
        END IF;
    END LOOP;
    -- The functions run as their owner (the installer) and read the command registry.
    IF has_schema_privilege('worker', 'USAGE')
       AND NOT has_table_privilege('worker.command_registry', 'SELECT') THEN
        problems := problems || format(
            'role %s cannot install: it may not read worker.command_registry; run install.sql '
            'as the owner of public.import_job and worker.tasks or a superuser', current_user);
    END IF;
    -- (the index on worker.tasks is created in schema worker, everything else in public)
    FOREACH rel IN ARRAY ARRAY['public', 'worker'] LOOP
        IF NOT has_schema_privilege(rel, 'CREATE') THEN
            problems := problems || format(
                'role %s cannot install: it may not create objects in schema %s; run '
                'install.sql as the owner of public.import_job and worker.tasks or a superuser',
                current_user, rel);
        END IF;
    END LOOP;
    -- Functions of an earlier install can only be replaced by their owner.
    SELECT string_agg(DISTINCT p.proowner::regrole::text, ', ') INTO owner_name
    FROM pg_catalog.pg_proc AS p
    WHERE p.pronamespace = 'public'::regnamespace
      AND (p.proname LIKE 'system\_stability\_%' OR p.proname IN (
               'is_system_stable', 'get_analytics_tasks_in_progress',
               'get_system_status_details', 'system_work_mark', 'get_system_work_summary'))
      AND NOT pg_has_role(current_user, p.proowner, 'USAGE');
    IF owner_name IS NOT NULL THEN
        problems := problems || format(
            'role %s cannot install: traystatus''s functions were installed by %s; run '
            'install.sql as %s or a superuser', current_user, owner_name, owner_name);
    END IF;
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = 'traystatus: ' || problems[1],
            DETAIL = array_to_string(problems, E'\n');
    END IF;

    -- New enough? (each check names what the installed SQL reads)
    SELECT string_agg(format('%s.%s', c.tbl, c.col), ', ') INTO missing
    FROM (VALUES ('public.import_job', 'id'), ('public.import_job', 'slug'),
                 ('public.import_job', 'description'), ('public.import_job', 'state'),
                 ('public.import_job', 'priority'), ('public.import_job', 'created_at'),
                 ('public.import_job', 'total_rows'), ('public.import_job', 'imported_rows'),
                 ('public.import_job', 'analysis_completed_pct'),
                 ('public.import_job', 'import_completed_pct'),
                 ('public.import_job', 'analysis_rows_per_sec'),
                 ('public.import_job', 'import_rows_per_sec'),
                 ('public.import_job', 'current_step_code'), ('public.import_job', 'error'),
                 ('public.import_job', 'review'), ('public.import_job', 'user_id'),
                 ('public.import_job', 'preparing_data_at'),
                 ('public.import_job', 'analysis_start_at'),
                 ('public.import_job', 'analysis_stop_at'),
                 ('public.import_job', 'processing_start_at'),
                 ('public.import_job', 'processing_stop_at'),
                 ('public.import_job', 'last_progress_update'),
                 ('worker.tasks', 'id'), ('worker.tasks', 'command'), ('worker.tasks', 'state'),
                 ('worker.tasks', 'scheduled_at'), ('worker.tasks', 'priority'),
                 ('worker.tasks', 'created_at'), ('worker.tasks', 'parent_id'),
                 ('worker.command_registry', 'command'), ('worker.command_registry', 'queue'))
             AS c (tbl, col)
    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                      WHERE a.attrelid = c.tbl::regclass AND a.attname = c.col
                        AND a.attnum > 0 AND NOT a.attisdropped);
    IF missing IS NULL THEN
        SELECT string_agg(format('%s %L', v.typ, v.label), ', ') INTO missing
        FROM (VALUES ('public.import_job_state', 'waiting_for_upload'),
                     ('public.import_job_state', 'upload_completed'),
                     ('public.import_job_state', 'preparing_data'),
                     ('public.import_job_state', 'analysing_data'),
                     ('public.import_job_state', 'waiting_for_review'),
                     ('public.import_job_state', 'approved'),
                     ('public.import_job_state', 'rejected'),
                     ('public.import_job_state', 'processing_data'),
                     ('public.import_job_state', 'failed'),
                     ('public.import_job_state', 'finished'),
                     ('worker.task_state', 'pending'), ('worker.task_state', 'processing'),
                     ('worker.task_state', 'completed'), ('worker.task_state', 'failed'))
                 AS v (typ, label)
        WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_enum AS e
                          WHERE e.enumtypid = v.typ::regtype AND e.enumlabel = v.label);
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'feature_not_supported',
            MESSAGE = format('traystatus: this StatBus is older than traystatus supports (%s '
                             'missing); upgrade StatBus to migration 20260227102355 or later',
                             missing);
    END IF;
    -- (db.migration: StatBus's migration runner's table; readable by the StatBus admin)
    IF EXISTS (SELECT FROM pg_catalog.pg_class AS c
               JOIN pg_catalog.pg_namespace AS ns ON ns.oid = c.relnamespace
               WHERE ns.nspname = 'db' AND c.relname = 'migration'
                 AND has_schema_privilege(ns.oid, 'USAGE')
                 AND has_table_privilege(c.oid, 'SELECT')) THEN
        EXECUTE 'SELECT max(version) FROM db.migration' INTO statbus_version;
        IF statbus_version < 20260227102355 THEN
            RAISE WARNING 'traystatus: StatBus migration % is older than the oldest tested '
                          '(20260227102355); installing anyway, as the schema has what '
                          'traystatus reads', statbus_version;
        END IF;
    END IF;

END;
$preflight$;

-- 2. Vocabulary: what this StatBus has -----------------------------------------------------------
-- A jsonb map {placeholder: SQL text}, kept in a transaction-local setting for the generated
-- blocks below. Lists are quoted enum literals of the values that exist here, in enum order.
DO $vocabulary$
DECLARE
    vocab jsonb := '{}';
    job_labels text[];
    task_labels text[];
    holds boolean;
    lst record;
    col record;
BEGIN
    SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) INTO job_labels
    FROM pg_catalog.pg_enum AS e WHERE e.enumtypid = 'public.import_job_state'::regtype;
    SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) INTO task_labels
    FROM pg_catalog.pg_enum AS e WHERE e.enumtypid = 'worker.task_state'::regtype;

    FOR lst IN
        SELECT * FROM (VALUES
            -- the worker owes the job work (held while a review waits, see "the line")
            ('job_work', job_labels,
             ARRAY['upload_completed', 'preparing_data', 'analysing_data', 'processing_data']),
            -- approved: the worker proceeds with it even while another review waits
            ('job_approved', job_labels, ARRAY['approved']),
            ('job_review', job_labels, ARRAY['waiting_for_review']),
            -- every state the line looks at: a change into or out of one of these may
            -- change the answer
            ('job_watched', job_labels,
             ARRAY['upload_completed', 'preparing_data', 'analysing_data', 'waiting_for_review',
                   'approved', 'processing_data']),
            -- a task the worker still owes work ('waiting': its children still run;
            -- 'interrupted': recovered after a crash, runs again)
            ('task_busy', task_labels, ARRAY['pending', 'processing', 'waiting', 'interrupted'])
        ) AS v (name, present, wanted)
    LOOP
        vocab := vocab || jsonb_build_object(lst.name, (
            SELECT string_agg(quote_literal(w), ', ' ORDER BY array_position(lst.present, w))
            FROM unnest(lst.wanted) AS w WHERE w = ANY (lst.present)));
    END LOOP;

    -- Optional columns: the first that exists, else a typed NULL.
    FOR col IN
        SELECT * FROM (VALUES
            ('t.process_start_at', 'worker.tasks', ARRAY['process_start_at', 'processed_at'], 'timestamptz'),
            ('t.process_duration_ms', 'worker.tasks', ARRAY['process_duration_ms', 'duration_ms'], 'numeric'),
            ('t.depth', 'worker.tasks', ARRAY['depth'], 'integer'),
            ('j.error_count', 'public.import_job', ARRAY['error_count'], 'integer'),
            ('j.warning_count', 'public.import_job', ARRAY['warning_count'], 'integer'),
            ('j.changes_rejected_at', 'public.import_job', ARRAY['changes_rejected_at'], 'timestamptz')
        ) AS v (name, tbl, candidates, typ)
    LOOP
        vocab := vocab || jsonb_build_object(col.name, coalesce(
            (SELECT format('%s.%I', split_part(col.name, '.', 1), c)
             FROM unnest(col.candidates) WITH ORDINALITY AS u (c, i)
             WHERE EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                           WHERE a.attrelid = col.tbl::regclass AND a.attname = u.c
                             AND a.attnum > 0 AND NOT a.attisdropped)
             ORDER BY u.i LIMIT 1),
            format('NULL::%s', col.typ)));
    END LOOP;

    -- Does this StatBus hold the import queue while a job waits for review? (migration
    -- 20260310132309 pause_import_queue_during_review; its worker procedure says so too)
    holds := EXISTS (SELECT FROM pg_catalog.pg_proc AS p
                     WHERE p.pronamespace = to_regnamespace('admin')
                       AND p.proname = 'import_job_process'
                       AND p.prosrc ~ 'state\s*=\s*''waiting_for_review''\s+AND\s+id\s*<>');
    IF NOT holds AND EXISTS (SELECT FROM pg_catalog.pg_class AS c
                             JOIN pg_catalog.pg_namespace AS ns ON ns.oid = c.relnamespace
                             WHERE ns.nspname = 'db' AND c.relname = 'migration'
                               AND has_schema_privilege(ns.oid, 'USAGE')
                               AND has_table_privilege(c.oid, 'SELECT')) THEN
        EXECUTE 'SELECT EXISTS (SELECT FROM db.migration WHERE version >= 20260310132309)'
            INTO holds;
    END IF;
    vocab := vocab || jsonb_build_object(
        'review_holds_queue', holds::text,
        -- the job half of the line, for a job row aliased j
        'j.counts', CASE WHEN holds
            THEN '(j.state IN ({{job_approved}}) OR (j.state IN ({{job_work}}) AND NOT EXISTS (SELECT FROM public.import_job AS r WHERE r.state IN ({{job_review}}))))'
            ELSE '(j.state IN ({{job_approved}}, {{job_work}}))' END,
        'job_labels', (SELECT string_agg(quote_literal(l), ', ') FROM unnest(job_labels) AS l),
        'task_labels', (SELECT string_agg(quote_literal(l), ', ') FROM unnest(task_labels) AS l));
    PERFORM set_config('system_stability.install_vocabulary', vocab::text, true);
END;
$vocabulary$;

-- 3. Privileges, part one: functions created from here on are not executable by PUBLIC -------
-- (ALTER DEFAULT PRIVILEGES is not a REVOKE to sql_saga's event trigger. Restored in part two.)
DO $privileges$
BEGIN
    -- The installer's global default for functions: none recorded means PUBLIC may EXECUTE.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_default_acl AS d
                   WHERE d.defaclrole = current_user::regrole AND d.defaclnamespace = 0
                     AND d.defaclobjtype = 'f')
       OR EXISTS (SELECT FROM pg_catalog.pg_default_acl AS d,
                              aclexplode(d.defaclacl) AS a
                  WHERE d.defaclrole = current_user::regrole AND d.defaclnamespace = 0
                    AND d.defaclobjtype = 'f' AND a.grantee = 0
                    AND a.privilege_type = 'EXECUTE') THEN
        ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
        PERFORM set_config('system_stability.install_restore_global', 'yes', true);
    END IF;
    -- A default for schema public can only add grants: withhold a PUBLIC one there too.
    IF EXISTS (SELECT FROM pg_catalog.pg_default_acl AS d, aclexplode(d.defaclacl) AS a
               WHERE d.defaclrole = current_user::regrole
                 AND d.defaclnamespace = 'public'::regnamespace
                 AND d.defaclobjtype = 'f' AND a.grantee = 0
                 AND a.privilege_type = 'EXECUTE') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
        PERFORM set_config('system_stability.install_restore_public', 'yes', true);
    END IF;
END;
$privileges$;

-- 4. Version and what was installed -------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.system_stability_sql_version() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 2 $$;
COMMENT ON FUNCTION public.system_stability_sql_version() IS
    'traystatus: version of the installed system stability SQL (sql/install.sql)';

DO $generate$
DECLARE
    vocab jsonb := current_setting('system_stability.install_vocabulary')::jsonb;
    body text := $sql$
-- What this install saw: the enum values present and whether StatBus holds its import queue
-- during a review. Compared with the database as it is now by system_stability_sql_drift().
CREATE OR REPLACE FUNCTION public.system_stability_sql_info() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'version', public.system_stability_sql_version(),
        'import_job_state', jsonb_build_array({{job_labels}}),
        'task_state', jsonb_build_array({{task_labels}}),
        'review_holds_queue', {{review_holds_queue}})
$$;
COMMENT ON FUNCTION public.system_stability_sql_info() IS
    'traystatus: the StatBus vocabulary (enum values, review hold) the installed SQL was generated for';
$sql$;
    k text;
BEGIN
    -- expand: nested placeholders first ({{j.counts}} holds others), then the rest
    FOR i IN 1..2 LOOP
        FOR k IN SELECT jsonb_object_keys(vocab) LOOP
            body := replace(body, '{{' || k || '}}', vocab ->> k);
        END LOOP;
    END LOOP;
    IF body ~ '\{\{' THEN
        RAISE EXCEPTION 'traystatus: install.sql: unknown placeholder in %', substring(body FROM '\{\{[^}]*\}\}');
    END IF;
    EXECUTE body;
END;
$generate$;

CREATE OR REPLACE FUNCTION public.system_stability_sql_drift() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    info jsonb := public.system_stability_sql_info();
    problems jsonb := '[]';
    holds boolean;
    r record;
BEGIN
    -- Enum values present now that the install did not see (a StatBus upgrade added them).
    FOR r IN
        SELECT t.key, e.enumlabel::text AS label, t.typ
        FROM (VALUES ('import_job_state', 'public.import_job_state'),
                     ('task_state', 'worker.task_state')) AS t (key, typ)
        JOIN pg_catalog.pg_enum AS e ON e.enumtypid = to_regtype(t.typ)
        WHERE NOT (info -> t.key) ? e.enumlabel::text
        ORDER BY t.key, e.enumsortorder
    LOOP
        problems := problems || jsonb_build_array(format(
            '%s has the value %L, which the installed traystatus SQL does not cover: re-run install.sql',
            r.typ, r.label));
    END LOOP;
    holds := EXISTS (SELECT FROM pg_catalog.pg_proc AS p
                     WHERE p.pronamespace = to_regnamespace('admin')
                       AND p.proname = 'import_job_process'
                       AND p.prosrc ~ 'state\s*=\s*''waiting_for_review''\s+AND\s+id\s*<>');
    IF holds AND NOT (info ->> 'review_holds_queue')::boolean THEN
        problems := problems || jsonb_build_array(
            'StatBus now holds its import queue during a review, which the installed traystatus SQL does not know: re-run install.sql');
    END IF;
    RETURN problems;
END;
$$;
COMMENT ON FUNCTION public.system_stability_sql_drift() IS
    'traystatus: what the installed SQL does not cover in this StatBus (empty when current); re-run install.sql to fix';

-- 5. The line -------------------------------------------------------------------------------------
DO $generate$
DECLARE
    vocab jsonb := current_setting('system_stability.install_vocabulary')::jsonb;
    body text := $sql$
-- Import job states the worker owes work to (approved or not; whether a review holds them is
-- decided in is_system_stable()). The details function uses it per job.
CREATE OR REPLACE FUNCTION public.system_stability_job_state_active(state public.import_job_state)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT state IN ({{job_approved}}, {{job_work}})
$$;

-- Partial indexes: only the rows the line looks at are in them, so the stability test reads a
-- handful of index entries however large import_job and worker.tasks grow.
-- The predicate depends on the enum values present: an install after a StatBus upgrade that
-- added one rebuilds the index (its comment records what it was built for).
DO $$
DECLARE
    want text;
BEGIN
    want := 'traystatus: import_job rows watched by system stability: ' || {{job_watched_text}};
    IF obj_description(to_regclass('public.import_job_system_stability_active_idx'), 'pg_class')
       IS DISTINCT FROM want THEN
        DROP INDEX IF EXISTS public.import_job_system_stability_active_idx;
        CREATE INDEX import_job_system_stability_active_idx ON public.import_job (state)
            WHERE state IN ({{job_watched}});
        EXECUTE format('COMMENT ON INDEX public.import_job_system_stability_active_idx IS %L', want);
    END IF;
    want := 'traystatus: busy worker.tasks rows: ' || {{task_busy_text}};
    IF obj_description(to_regclass('worker.tasks_system_stability_active_idx'), 'pg_class')
       IS DISTINCT FROM want THEN
        DROP INDEX IF EXISTS worker.tasks_system_stability_active_idx;
        CREATE INDEX tasks_system_stability_active_idx ON worker.tasks (command, scheduled_at)
            WHERE state IN ({{task_busy}});
        EXECUTE format('COMMENT ON INDEX worker.tasks_system_stability_active_idx IS %L', want);
    END IF;
END;
$$;

-- is_system_stable(). PL/pgSQL, not SQL, on purpose: PL/pgSQL keeps its query plans for the
-- whole session, while a SQL function called from a trigger is parsed and planned again in
-- every transaction (~0.2 ms here, ten times the query itself): that was most of the
-- triggers' cost on the worker's hot path.
-- system_stability_answer(at) is the answer at a given moment: the commit-time decision asks
-- it at clock_timestamp(), clients through is_system_stable() at now().
CREATE OR REPLACE FUNCTION public.system_stability_answer(at_time timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NOT EXISTS (
               SELECT FROM public.import_job AS j
               WHERE {{j.counts}})
       AND NOT EXISTS (
               SELECT FROM worker.tasks AS t
               JOIN worker.command_registry AS cr ON cr.command = t.command
               WHERE cr.queue = 'analytics'
                 AND t.state IN ({{task_busy}})
                 AND (t.scheduled_at IS NULL OR t.scheduled_at <= at_time));
END;
$$;
COMMENT ON FUNCTION public.system_stability_answer(timestamptz) IS
    'traystatus: is_system_stable() at a given moment (the commit-time decision asks it)';

CREATE OR REPLACE FUNCTION public.is_system_stable() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN public.system_stability_answer(now());
END;
$$;
COMMENT ON FUNCTION public.is_system_stable() IS
    'traystatus: true when no import job is queued or being worked on (a queue held by a review does not count) and no analytics task is due or running';

-- When the next future-scheduled analytics task falls due after a given moment (NULL: none).
-- Time alone makes such a task due, without any write and so without any notification:
-- clients read system_stability_next_due() with the answer and re-read at that moment.
CREATE OR REPLACE FUNCTION public.system_stability_next_due_at(at_time timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT min(t.scheduled_at)
            FROM worker.tasks AS t
            JOIN worker.command_registry AS cr ON cr.command = t.command
            WHERE cr.queue = 'analytics'
              AND t.state IN ({{task_busy}})
              AND t.scheduled_at > at_time);
END;
$$;
COMMENT ON FUNCTION public.system_stability_next_due_at(timestamptz) IS
    'traystatus: when the next future-scheduled analytics task falls due after a moment, or NULL';

CREATE OR REPLACE FUNCTION public.system_stability_next_due() RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN public.system_stability_next_due_at(now());
END;
$$;
COMMENT ON FUNCTION public.system_stability_next_due() IS
    'traystatus: when the next future-scheduled analytics task falls due (re-read is_system_stable() then), or NULL';

-- The review block: which jobs wait for a person's review and how many imports wait behind
-- them. NULL when no job waits. Cheap (the partial index holds these rows), so a client reads
-- it together with is_system_stable().
CREATE OR REPLACE FUNCTION public.system_stability_review() RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    jobs jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('id', j.id, 'slug', j.slug,
                                        'description', j.description)
                     ORDER BY j.id)
    INTO jobs
    FROM public.import_job AS j WHERE j.state IN ({{job_review}});
    IF jobs IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object(
        'jobs', jobs,
        'holds_queue', {{review_holds_queue}},
        'queued_behind', CASE WHEN {{review_holds_queue}} THEN
            (SELECT count(*) FROM public.import_job AS j WHERE j.state IN ({{job_work}}))
            ELSE 0 END);
END;
$$;
COMMENT ON FUNCTION public.system_stability_review() IS
    'traystatus: the import jobs waiting for review and how many imports the review holds back (NULL when none waits)';

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
               'process_start_at', {{t.process_start_at}},
               'duration_ms', {{t.process_duration_ms}},
               'parent_id', t.parent_id,
               'depth', {{t.depth}},
               'priority', t.priority)
    FROM worker.tasks AS t
    JOIN worker.command_registry AS cr ON cr.command = t.command
    WHERE cr.queue = 'analytics'
      AND t.state IN ({{task_busy}})
      AND (t.scheduled_at IS NULL OR t.scheduled_at <= now())
    ORDER BY t.priority NULLS LAST, t.id
$$;
COMMENT ON FUNCTION public.get_analytics_tasks_in_progress() IS
    'traystatus: the analytics tasks that keep the system from being stable';
$sql$;
    k text;
BEGIN
    vocab := vocab || jsonb_build_object(
        'job_watched_text', quote_literal(vocab ->> 'job_watched'),
        'task_busy_text', quote_literal(vocab ->> 'task_busy'));
    FOR i IN 1..2 LOOP
        FOR k IN SELECT jsonb_object_keys(vocab) LOOP
            body := replace(body, '{{' || k || '}}', vocab ->> k);
        END LOOP;
    END LOOP;
    IF body ~ '\{\{' THEN
        RAISE EXCEPTION 'traystatus: install.sql: unknown placeholder in %', substring(body FROM '\{\{[^}]*\}\}');
    END IF;
    EXECUTE body;
END;
$generate$;

-- 6. Details and the work summary --------------------------------------------------------------
-- These compare state::text, so they name no enum value; optional columns are placeholders.
DO $generate$
DECLARE
    vocab jsonb := current_setting('system_stability.install_vocabulary')::jsonb;
    body text := $sql$
-- get_system_status_details(): one statement, so one snapshot. Bounded output: jobs that are
-- not terminal plus those that ended in the last 10 minutes (at most 500), analytics counts by
-- command and state, and at most 50 individual tasks (running ones first).
CREATE OR REPLACE FUNCTION public.get_system_status_details() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH jobs AS (
        SELECT j.*, j.state::text AS state_text,
               {{j.error_count}} AS error_count_, {{j.warning_count}} AS warning_count_,
               greatest(j.processing_stop_at, j.analysis_stop_at, j.last_progress_update,
                        j.preparing_data_at, {{j.changes_rejected_at}}) AS ended_at_guess
        FROM public.import_job AS j
    ), shown_jobs AS (
        SELECT j.*
        FROM jobs AS j
        WHERE j.state_text NOT IN ('finished', 'failed', 'rejected')
           OR j.ended_at_guess >= now() - interval '10 minutes'
           OR (j.ended_at_guess IS NULL AND j.created_at >= now() - interval '10 minutes')
    ), active_tasks AS (
        SELECT t.id, t.command, t.state, t.state::text AS state_text, {{t.depth}} AS depth,
               t.parent_id, t.priority, t.created_at,
               {{t.process_start_at}} AS process_start_at,
               {{t.process_duration_ms}} AS process_duration_ms, t.scheduled_at
        FROM worker.tasks AS t
        JOIN worker.command_registry AS cr ON cr.command = t.command
        WHERE cr.queue = 'analytics'
          AND t.state IN ({{task_busy}})
          AND (t.scheduled_at IS NULL OR t.scheduled_at <= now())
    ), review AS (
        SELECT public.system_stability_review() AS block
    )
    SELECT jsonb_build_object(
        'system_stable', public.is_system_stable(),
        'generated_at', now(),
        'sql_version', public.system_stability_sql_version(),
        'review', (SELECT block FROM review),
        'import_jobs_total', (SELECT count(*) FROM shown_jobs),
        'import_jobs', coalesce((
            SELECT jsonb_agg(job ORDER BY sort_active DESC, sort_priority, sort_id)
            FROM (
                SELECT jsonb_build_object(
                           'id', j.id,
                           'slug', j.slug,
                           'description', j.description,
                           'state', j.state,
                           'phase', CASE j.state_text
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
                           'progress_pct', CASE j.state_text
                                        WHEN 'analysing_data' THEN coalesce(j.analysis_completed_pct, 0)
                                        WHEN 'processing_data' THEN coalesce(j.import_completed_pct, 0)
                                        WHEN 'waiting_for_review' THEN coalesce(j.analysis_completed_pct, 0)
                                        WHEN 'finished' THEN 100
                                        ELSE NULL END,
                           'rows_per_sec', CASE j.state_text
                                        WHEN 'analysing_data' THEN j.analysis_rows_per_sec
                                        WHEN 'processing_data' THEN j.import_rows_per_sec
                                        ELSE NULL END,
                           'total_rows', j.total_rows,
                           'imported_rows', j.imported_rows,
                           'analysis_completed_pct', j.analysis_completed_pct,
                           'import_completed_pct', j.import_completed_pct,
                           'current_step_code', j.current_step_code,
                           'error_count', j.error_count_,
                           'warning_count', j.warning_count_,
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
                           'ended_at', CASE WHEN j.state_text IN ('finished', 'failed', 'rejected')
                                            THEN j.ended_at_guess END,
                           'active', public.system_stability_job_state_active(j.state),
                           -- queued or mid-way, but held back while another job waits for review
                           'held_by_review', j.state_text <> 'approved'
                                             AND public.system_stability_job_state_active(j.state)
                                             AND coalesce(((SELECT block FROM review) ->> 'holds_queue')::boolean, false),
                           'needs_person', j.state_text IN ('waiting_for_upload', 'waiting_for_review')
                       ) AS job,
                       public.system_stability_job_state_active(j.state)
                           OR j.state_text = 'waiting_for_review' AS sort_active,
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
                             CASE at.state_text WHEN 'processing' THEN 0 WHEN 'waiting' THEN 1
                                                WHEN 'interrupted' THEN 2 ELSE 3 END AS sort_state
                      FROM active_tasks AS at
                      ORDER BY sort_state, at.priority NULLS LAST, at.id
                      LIMIT 50) AS a), '[]'::jsonb)
        )
    )
$$;
COMMENT ON FUNCTION public.get_system_status_details() IS
    'traystatus: import jobs with progress, the review block and the analytics work in progress, in one snapshot';

-- Work summary: what finished since a mark. Cheap on a worker.tasks of 10^6 rows: tasks above
-- the mark are read through the primary key (a range above after_task_id); import_job is small.
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
           AND t.state IN ({{task_busy}})
           AND (t.scheduled_at IS NULL OR t.scheduled_at <= now())),
        (SELECT max(t.id) FROM worker.tasks AS t),
        0)
$$;
COMMENT ON FUNCTION public.system_work_mark() IS
    'traystatus: a mark (just below the oldest busy analytics task) to pass to get_system_work_summary() later';

-- Rejected jobs are final (the app rejects with an UPDATE and nothing moves them on): they
-- are reported with the finished and failed ones.
CREATE OR REPLACE FUNCTION public.get_system_work_summary(after_task_id bigint, since timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH ended_jobs AS (
        SELECT j.id, j.slug, j.description, j.state::text AS state,
               {{j.error_count}} AS error_count, {{j.warning_count}} AS warning_count,
               left(j.error, 500) AS error,
               greatest(j.processing_stop_at, j.analysis_stop_at, j.last_progress_update,
                        j.preparing_data_at, {{j.changes_rejected_at}}) AS ended_at
        FROM public.import_job AS j
        WHERE j.state::text IN ('finished', 'failed', 'rejected')
    ), recent_jobs AS (
        SELECT * FROM ended_jobs WHERE ended_at >= since
    ), tasks AS (
        SELECT t.state::text AS state
        FROM worker.tasks AS t
        JOIN worker.command_registry AS cr ON cr.command = t.command
        WHERE t.id > coalesce(after_task_id, 0)
          AND cr.queue = 'analytics'
          AND t.state::text IN ('completed', 'failed')
    )
    SELECT jsonb_build_object(
        'since', since,
        'until', now(),
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
$$;
COMMENT ON FUNCTION public.get_system_work_summary(bigint, timestamptz) IS
    'traystatus: import jobs that ended (finished, failed, rejected) since a time and analytics tasks done since a mark';
$sql$;
    k text;
BEGIN
    FOR i IN 1..2 LOOP
        FOR k IN SELECT jsonb_object_keys(vocab) LOOP
            body := replace(body, '{{' || k || '}}', vocab ->> k);
        END LOOP;
    END LOOP;
    IF body ~ '\{\{' THEN
        RAISE EXCEPTION 'traystatus: install.sql: unknown placeholder in %', substring(body FROM '\{\{[^}]*\}\}');
    END IF;
    EXECUTE body;
END;
$generate$;

-- 7. The notification ---------------------------------------------------------------------------
-- The announcement: one NOTIFY per change of the answer ------------------------------------------
-- A notification is sent when, and only when, a committed transaction changes the answer of
-- is_system_stable() as seen after it commits; its payload is that answer. docs/sql.md has the
-- argument; in short:
--  * Row triggers whose WHEN clauses (evaluated in C, no function call) let through only rows
--    that may change the answer (a task moving into or out of the busy set; an import job
--    moving into, out of or between the watched states, since a review can hold other jobs)
--    mark the transaction as "crossing": the first such row queues ONE
--    event of a DEFERRABLE INITIALLY DEFERRED constraint trigger on our own always-empty table
--    public.system_stability_commit_hook (insert a row and delete it at once; the event
--    stays). A 1,000-row "pending -> processing", a progress update or an UPDATE touching no
--    row fires no trigger function and runs no query at all.
--  * At COMMIT that trigger makes the decision, serialised among crossing transactions by a
--    transaction-level advisory lock held until the transaction ends: it reads what was last
--    announced (public.system_stability_announced) and the fresh answer (a new READ COMMITTED
--    snapshot taken after the lock, so it sees every earlier decision's commit), notifies only
--    when they differ, and records the new answer. Record and NOTIFY are both transactional:
--    a transaction that aborts after deciding (another deferred trigger failing after ours)
--    takes both back, so the record never claims an announcement that was not made.
--    Transactions that cross nothing never take the lock.
--  * Why the deferred event sits on our own table, not on import_job / worker.tasks:
--    PostgreSQL refuses ALTER TABLE, CREATE INDEX, TRUNCATE and DROP TABLE on a table that has
--    deferred trigger events pending in the same transaction (SQLSTATE 55006). StatBus
--    migrations change worker.tasks and import_job rows and then ALTER those tables in one
--    transaction; nothing else ever alters our table.
--  * REPEATABLE READ and SERIALIZABLE writers cannot see a fresh snapshot: they take the same
--    lock (an advisory lock never causes a serialization failure), always notify, and insert an
--    "unknown" row into the record (an INSERT never conflicts), so that the next decision
--    announces whatever it finds. SERIALIZABLE ones read nothing (a read would add predicate
--    locks and could make StatBus's transaction fail).
--  * No deadlock through our lock: before waiting for it, a deciding transaction locks the
--    tables it will read (ACCESS SHARE, which only an ACCESS EXCLUSIVE holder - DDL, TRUNCATE -
--    blocks); while holding it, it takes no other lock. StatBus has no initially deferred
--    triggers that would run after ours at COMMIT. sql_saga's temporal_merge runs
--    SET CONSTRAINTS ALL IMMEDIATE inside a function, which fires pending deferred events early:
--    the hook sees that in its call stack, defers itself again and queues a new event, so that
--    the lock is still taken only at COMMIT.
--  * TRUNCATE has no rows: a BEFORE TRUNCATE trigger queues the decision when active rows are
--    about to go.
--  * Time: a future-scheduled analytics task falls due without any write. The record keeps the
--    moment the next one falls due (stable_until); clients read it too
--    (system_stability_next_due()) and re-read at that moment. A transaction that schedules an
--    analytics task into the future while the system is stable announces the new moment
--    ({"stable": true}), so clients learn it (StatBus never schedules analytics tasks ahead).
-- Fail-safe: every trigger function catches its own errors (RAISE WARNING, then a
-- {"stable": false} hint and an "unknown" record so that clients re-read and meet the error in
-- is_system_stable()). The functions name StatBus columns and enum values in their text; if a
-- StatBus upgrade renames one, the failure must stay in traystatus and never abort the
-- worker's or a user's transaction. The memo checks stay outside the guarded blocks: a
-- 10^5-row statement enters them once, not 10^5 times.

-- The commit hook: an empty UNLOGGED table (no WAL) that never holds a committed row.
CREATE UNLOGGED TABLE IF NOT EXISTS public.system_stability_commit_hook ();
COMMENT ON TABLE public.system_stability_commit_hook IS
    'traystatus: always empty; its deferred trigger decides at COMMIT whether to NOTIFY system_stability';
-- The row trigger functions run as the writer (SECURITY INVOKER, see section 7): whoever
-- moves a watched row queues the decision by inserting a row here and deleting it at once.
-- Safe for PUBLIC: no committed row ever exists to read or delete, and a row inserted by
-- hand only queues a decision, which announces the truth or nothing (anyone may NOTIFY the
-- channel anyway). docs/sql.md "Privileges of the row triggers".
GRANT SELECT, INSERT, DELETE ON public.system_stability_commit_hook TO PUBLIC;

-- What was last announced: the answer is the boolean AND the review block (what a client
-- shows). One row after a decision; no row, more than one row or a NULL `stable` mean
-- "unknown" (the next decision announces); a NULL `review` means the review part is unknown
-- (the next decision reads it and announces). `review` is the review block's fingerprint:
-- {"jobs": [ids waiting for review], "queued_behind": n}, or JSON null when no job waits.
-- UNLOGGED: a crash empties it, which also means "unknown" (clients reconnect and read anyway).
CREATE UNLOGGED TABLE IF NOT EXISTS public.system_stability_announced (
    stable boolean,
    stable_until timestamptz,
    decided_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    review jsonb
);
-- Upgrade from an install whose record had no review part (the column comes last either way,
-- so a fresh install and an upgraded one have the same table). Its rows then say "review
-- unknown": the next decision reads the review block and announces once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute
                   WHERE attrelid = 'public.system_stability_announced'::regclass
                     AND attname = 'review' AND attnum > 0 AND NOT attisdropped) THEN
        ALTER TABLE public.system_stability_announced ADD COLUMN review jsonb;
    END IF;
END;
$$;
COMMENT ON TABLE public.system_stability_announced IS
    'traystatus: the answer last announced on system_stability, the boolean and the review block (written at COMMIT under an advisory lock)';

DO $generate$
DECLARE
    vocab jsonb := current_setting('system_stability.install_vocabulary')::jsonb;
    body text := $sql$
-- The per-row trigger functions are SECURITY INVOKER and have no pinned search_path
-- (issue 23: a SET clause makes every call save and restore the GUC state, the largest
-- single cost of a crossing transaction). Instead, everything they name is
-- schema-qualified, operators and types included (OPERATOR(pg_catalog.=), pg_catalog.now(),
-- pg_catalog.tid), so no object on the writer's search_path can change what they do (the
-- hijack test writes with an attacker's schema first). What they need as the writer:
-- INSERT, SELECT and DELETE on the always-empty system_stability_commit_hook (granted to
-- PUBLIC below; docs/sql.md says why that is safe) and SELECT on worker.command_registry
-- (every role that may write worker.tasks has it; if not, the guard below queues a full
-- decision instead). The once-per-transaction decision stays SECURITY DEFINER.
CREATE OR REPLACE FUNCTION public.system_stability_row_in() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    hook_row pg_catalog.tid;
    failed boolean := false;
BEGIN
    -- Already queued in this transaction: nothing to add (a derive run inserts 10^5 pending
    -- tasks in one statement).
    -- With an argument ('ahead': an analytics task scheduled into the future), the decision
    -- must read the fresh answer and the next due moment, as for a row that left.
    IF TG_NARGS OPERATOR(pg_catalog.=) 0 THEN
        IF pg_catalog.current_setting('system_stability.queued', true)
               OPERATOR(pg_catalog.=) 'yes' THEN
            RETURN NULL;
        END IF;
    ELSIF pg_catalog.current_setting('system_stability.out', true)
              OPERATOR(pg_catalog.=) ANY (ARRAY['yes', 'job']) THEN
        RETURN NULL;
    END IF;
    BEGIN
        -- import_job: the WHEN clause is exact. worker.tasks: it is exact about state and due
        -- time; the queue needs a look at the registry.
        IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'tasks' THEN
            -- The WHEN clause made sure that NEW is busy and due. It counts only in the analytics
            -- queue, and (for an UPDATE) only when OLD did not count already.
            -- (One small query per test, each with one parameter, so that PL/pgSQL settles on a
            -- cached generic plan; a single big condition mixing OLD and NEW got planned anew on
            -- every call, which cost more than everything else here.)
            IF NOT EXISTS (SELECT FROM worker.command_registry AS cr
                           WHERE cr.command OPERATOR(pg_catalog.=) NEW.command
                             AND cr.queue OPERATOR(pg_catalog.=) 'analytics') THEN
                RETURN NULL;
            END IF;
            IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
                IF OLD.state OPERATOR(pg_catalog.=) ANY (ARRAY[{{task_busy}}]::worker.task_state[])
                   AND (OLD.scheduled_at IS NULL
                        OR OLD.scheduled_at OPERATOR(pg_catalog.<=) pg_catalog.now()) THEN
                    IF EXISTS (SELECT FROM worker.command_registry AS cr
                               WHERE cr.command OPERATOR(pg_catalog.=) OLD.command
                                 AND cr.queue OPERATOR(pg_catalog.=) 'analytics') THEN
                        RETURN NULL;
                    END IF;
                END IF;
            END IF;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        -- Never break StatBus's own write (see "Fail-safe" above): warn, make listeners
        -- re-read is_system_stable(), where they meet the error themselves, and queue a
        -- decision that reads the fresh answer (the row may have crossed).
        RAISE WARNING 'traystatus: trigger % on %.% failed: % (SQLSTATE %); the change it watched goes on. Re-run sql/install.sql (or sql/uninstall.sql) after a StatBus upgrade.',
            TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
        PERFORM pg_catalog.pg_notify('system_stability', '{"stable": false}');
        failed := true;
    END;
    -- (outside the guarded block: its subtransaction would otherwise get an XID of its own
    -- for the hook row, in every crossing transaction)
    IF TG_NARGS OPERATOR(pg_catalog.>) 0 OR failed THEN
        PERFORM pg_catalog.set_config('system_stability.out', 'yes', true);
    END IF;
    -- Queue the commit-time decision once per transaction (rolling back a savepoint
    -- reverts these notes together with the queued event).
    IF (pg_catalog.current_setting('system_stability.queued', true)
            OPERATOR(pg_catalog.=) 'yes') IS NOT TRUE THEN
        PERFORM pg_catalog.set_config('system_stability.queued', 'yes', true);
        INSERT INTO public.system_stability_commit_hook DEFAULT VALUES
            RETURNING ctid INTO hook_row;
        DELETE FROM public.system_stability_commit_hook
        WHERE ctid OPERATOR(pg_catalog.=) hook_row;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_row_in() IS
    'traystatus: row trigger, queues the commit-time announcement decision when a row became active (or an analytics task was scheduled ahead)';

CREATE OR REPLACE FUNCTION public.system_stability_row_out() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    hook_row pg_catalog.tid;
    noted pg_catalog.text := pg_catalog.current_setting('system_stability.out', true);
BEGIN
    -- 'yes': a row moved out; 'job': an import job moved (the decision also reads the review
    -- block then). Either way this transaction decides at COMMIT already, with a fresh read.
    IF noted OPERATOR(pg_catalog.=) 'job'
       OR (noted OPERATOR(pg_catalog.=) 'yes' AND TG_TABLE_NAME OPERATOR(pg_catalog.=) 'tasks') THEN
        RETURN NULL;
    END IF;
    BEGIN
        IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'tasks' THEN
            -- The WHEN clause made sure that OLD was busy and due. It counted only in the
            -- analytics queue; and (for an UPDATE) NEW must not count any more.
            IF NOT EXISTS (SELECT FROM worker.command_registry AS cr
                           WHERE cr.command OPERATOR(pg_catalog.=) OLD.command
                             AND cr.queue OPERATOR(pg_catalog.=) 'analytics') THEN
                RETURN NULL;
            END IF;
            IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
                IF NEW.state OPERATOR(pg_catalog.=) ANY (ARRAY[{{task_busy}}]::worker.task_state[])
                   AND (NEW.scheduled_at IS NULL
                        OR NEW.scheduled_at OPERATOR(pg_catalog.<=) pg_catalog.now()) THEN
                    IF EXISTS (SELECT FROM worker.command_registry AS cr
                               WHERE cr.command OPERATOR(pg_catalog.=) NEW.command
                                 AND cr.queue OPERATOR(pg_catalog.=) 'analytics') THEN
                        RETURN NULL;
                    END IF;
                END IF;
            END IF;
        END IF;
        -- import_job: the WHEN clause let through a change that may change the answer either
        -- way (a review can hold other jobs): the decision reads the fresh answer.
    EXCEPTION WHEN OTHERS THEN
        -- Never break StatBus's own write (see "Fail-safe" above): warn, make listeners
        -- re-read is_system_stable(), where they meet the error themselves, and decide
        -- with a fresh read (below).
        RAISE WARNING 'traystatus: trigger % on %.% failed: % (SQLSTATE %); the change it watched goes on. Re-run sql/install.sql (or sql/uninstall.sql) after a StatBus upgrade.',
            TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
        PERFORM pg_catalog.pg_notify('system_stability', '{"stable": false}');
    END;
    -- (outside the guarded block: its subtransaction would otherwise get an XID of its own
    -- for the hook row, in every crossing transaction)
    PERFORM pg_catalog.set_config('system_stability.out',
                                  CASE WHEN TG_TABLE_NAME OPERATOR(pg_catalog.=) 'tasks'
                                       THEN 'yes' ELSE 'job' END, true);
    -- Queue the commit-time decision once per transaction (rolling back a savepoint
    -- reverts these notes together with the queued event).
    IF (pg_catalog.current_setting('system_stability.queued', true)
            OPERATOR(pg_catalog.=) 'yes') IS NOT TRUE THEN
        PERFORM pg_catalog.set_config('system_stability.queued', 'yes', true);
        INSERT INTO public.system_stability_commit_hook DEFAULT VALUES
            RETURNING ctid INTO hook_row;
        DELETE FROM public.system_stability_commit_hook
        WHERE ctid OPERATOR(pg_catalog.=) hook_row;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_row_out() IS
    'traystatus: row trigger, queues the commit-time announcement decision (with a fresh read) when a row left the active set';

-- The decision, at COMMIT. Serialised by the advisory lock (1953724787, 1) ('tsys', 1; the
-- two-key form never meets StatBus's one-key advisory locks).
CREATE OR REPLACE FUNCTION public.system_stability_commit_announce() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stack text;
    noted text;
    moved_out boolean;
    job_moved boolean;
    isolation text;
    n integer;
    rec_stable boolean;
    rec_until timestamptz;
    rec_review jsonb;
    at_time timestamptz;
    believed boolean;
    believed_review jsonb;
    fresh boolean;
    fresh_until timestamptz;
    fresh_review jsonb;
    readable boolean;
    note jsonb;
    hook_row tid;
BEGIN
    -- Fired early by SET CONSTRAINTS ... IMMEDIATE run inside a function (sql_saga's
    -- temporal_merge does this in the middle of an import)? Then this is not the COMMIT: defer
    -- ourselves again and queue a new event, so that the lock is taken only at COMMIT.
    GET DIAGNOSTICS stack = PG_CONTEXT;
    IF stack ILIKE '%statement "set constraints%' THEN
        SET CONSTRAINTS public.system_stability_commit DEFERRED;
        INSERT INTO public.system_stability_commit_hook DEFAULT VALUES RETURNING ctid INTO hook_row;
        DELETE FROM public.system_stability_commit_hook WHERE ctid = hook_row;
        RETURN NULL;
    END IF;
    -- 'yes': a row left the busy set; 'job': an import job moved (the review block may have
    -- changed too); neither: only rows moved in.
    noted := current_setting('system_stability.out', true);
    moved_out := coalesce(noted IN ('yes', 'job'), false);
    job_moved := coalesce(noted = 'job', false);
    -- A later crossing in this transaction (possible only after a top-level SET CONSTRAINTS)
    -- queues a new decision.
    PERFORM set_config('system_stability.queued', '', true);
    PERFORM set_config('system_stability.out', '', true);
    isolation := current_setting('transaction_isolation');
    BEGIN
        IF moved_out THEN
            -- Lock what we will read BEFORE waiting for our lock (see "No deadlock" above).
            -- (a statement over the three tables takes their ACCESS SHARE locks when it
            -- starts, like LOCK TABLE but from a cached plan: cheaper on the hot path)
            PERFORM FROM public.import_job, worker.tasks, worker.command_registry WHERE false;
        END IF;
        PERFORM pg_advisory_xact_lock(1953724787, 1);
        IF isolation <> 'read committed' THEN
            -- Our snapshot predates the lock: no fresh answer. Announce whatever it is, and tell
            -- the next decision that the record no longer knows what clients were told.
            -- (Always insert: this snapshot may be older than the last decision, so it cannot
            -- tell whether an "unknown" row is still there. The next READ COMMITTED decision
            -- deletes them all.)
            INSERT INTO public.system_stability_announced (stable) VALUES (NULL);
            IF moved_out AND isolation = 'repeatable read' THEN
                fresh := public.is_system_stable();  -- this snapshot's answer: a hint
            ELSE
                fresh := false;
            END IF;
            PERFORM pg_notify('system_stability', jsonb_build_object('stable', fresh)::text);
            RETURN NULL;
        END IF;
        -- READ COMMITTED: every statement from here on takes a new snapshot, after the lock.
        SELECT count(*), bool_and(a.stable), min(a.stable_until), (array_agg(a.review))[1]
        INTO n, rec_stable, rec_until, rec_review
        FROM public.system_stability_announced AS a;
        at_time := clock_timestamp();
        IF n = 1 AND NOT coalesce(rec_stable AND at_time >= rec_until, false) THEN
            -- Once the next scheduled task has fallen due, clients have re-read and hold
            -- whatever was true at that moment (the task may have gone since): unknown.
            believed := rec_stable;
        END IF;
        IF n = 1 THEN
            believed_review := rec_review;  -- (time changes nothing in the review block)
        END IF;
        -- The review block changes only with import job rows, and every transaction that
        -- moves a watched job decides here ('job'). So a transaction that moved only tasks
        -- carries the recorded review part over without reading it: the hot path reads
        -- nothing more. It is read when a job moved, or when the record does not know it.
        IF job_moved OR believed_review IS NULL THEN
            readable := moved_out;  -- import_job was locked before our lock (see above)
            IF NOT readable THEN
                -- Only rows moved in, so import_job is not locked yet, and waiting for it
                -- while holding our lock could deadlock with a DDL transaction waiting for
                -- ours: take it only if free at once, else leave the review part unknown.
                BEGIN
                    LOCK TABLE public.import_job IN ACCESS SHARE MODE NOWAIT;
                    readable := true;
                EXCEPTION WHEN lock_not_available THEN
                    readable := false;
                END;
            END IF;
            IF readable THEN
                -- the fingerprint of system_stability_review(): the ids waiting, the count held
                SELECT CASE WHEN count(*) = 0 THEN 'null'::jsonb ELSE jsonb_build_object(
                           'jobs', jsonb_agg(j.id ORDER BY j.id),
                           'queued_behind', CASE WHEN {{review_holds_queue}} THEN
                               (SELECT count(*) FROM public.import_job AS q
                                WHERE q.state IN ({{job_work}})) ELSE 0 END) END
                INTO fresh_review
                FROM public.import_job AS j WHERE j.state IN ({{job_review}});
            END IF;
        ELSE
            fresh_review := believed_review;
        END IF;
        IF moved_out THEN
            -- system_stability_answer(at_time), inlined (one SECURITY DEFINER call less)
            fresh := NOT EXISTS (
                         SELECT FROM public.import_job AS j
                         WHERE {{j.counts}})
                 AND NOT EXISTS (
                         SELECT FROM worker.tasks AS t
                         JOIN worker.command_registry AS cr ON cr.command = t.command
                         WHERE cr.queue = 'analytics'
                           AND t.state IN ({{task_busy}})
                           AND (t.scheduled_at IS NULL OR t.scheduled_at <= at_time));
        ELSE
            fresh := false;  -- a row of ours moved in and none moved out: it is active now
        END IF;
        IF fresh THEN
            fresh_until := public.system_stability_next_due_at(at_time);
        END IF;
        IF fresh IS DISTINCT FROM believed
           OR (fresh AND fresh_until < coalesce(rec_until, 'infinity'))
           OR fresh_review IS NULL OR believed_review IS NULL
           OR fresh_review IS DISTINCT FROM believed_review THEN
            -- {"stable": <bool>}, plus "review" (the fingerprint) while a job waits for
            -- review; older clients ignore it, and every client re-reads anyway.
            note := jsonb_build_object('stable', fresh);
            IF jsonb_typeof(fresh_review) = 'object' THEN
                note := note || jsonb_build_object('review', fresh_review);
                IF octet_length(note::text) > 7000 THEN  -- NOTIFY's limit is 8000 bytes
                    note := jsonb_build_object('stable', fresh);
                END IF;
            END IF;
            PERFORM pg_notify('system_stability', note::text);
        END IF;
        IF n <> 1 OR rec_stable IS DISTINCT FROM fresh OR rec_until IS DISTINCT FROM fresh_until
           OR rec_review IS DISTINCT FROM fresh_review THEN
            IF n = 1 THEN
                UPDATE public.system_stability_announced
                SET stable = fresh, stable_until = fresh_until, review = fresh_review,
                    decided_at = at_time;
            ELSE
                DELETE FROM public.system_stability_announced;
                INSERT INTO public.system_stability_announced
                    (stable, stable_until, review, decided_at)
                VALUES (fresh, fresh_until, fresh_review, at_time);
            END IF;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        -- Never break StatBus's own write (see "Fail-safe" above): warn, make listeners re-read,
        -- and leave a record that makes the next decision announce.
        RAISE WARNING 'traystatus: trigger % on %.% failed: % (SQLSTATE %); the change it watched goes on. Re-run sql/install.sql (or sql/uninstall.sql) after a StatBus upgrade.',
            TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME, SQLERRM, SQLSTATE;
        PERFORM pg_notify('system_stability', '{"stable": false}');
        BEGIN
            INSERT INTO public.system_stability_announced (stable) VALUES (NULL);
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- the notification above is what matters
        END;
    END;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION public.system_stability_commit_announce() IS
    'traystatus: deferred trigger on system_stability_commit_hook, at COMMIT: NOTIFY system_stability when the answer changed';

CREATE OR REPLACE FUNCTION public.system_stability_truncate_before() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    had_active boolean;
    hook_row tid;
BEGIN
    BEGIN
        IF TG_TABLE_NAME = 'import_job' THEN
            had_active := EXISTS (
                SELECT FROM public.import_job AS j WHERE j.state IN ({{job_watched}}));
        ELSE
            had_active := EXISTS (
                SELECT FROM worker.tasks AS t
                JOIN worker.command_registry AS cr ON cr.command = t.command
                WHERE cr.queue = 'analytics'
                  AND t.state IN ({{task_busy}}));
        END IF;
        IF had_active THEN
            IF TG_TABLE_NAME = 'import_job' THEN
                PERFORM set_config('system_stability.out', 'job', true);
            ELSIF current_setting('system_stability.out', true) IS DISTINCT FROM 'job' THEN
                PERFORM set_config('system_stability.out', 'yes', true);
            END IF;
        -- Queue the commit-time decision once per transaction (rolling back a savepoint
        -- reverts these notes together with the queued event).
        IF current_setting('system_stability.queued', true) IS DISTINCT FROM 'yes' THEN
            PERFORM set_config('system_stability.queued', 'yes', true);
            INSERT INTO public.system_stability_commit_hook DEFAULT VALUES
                RETURNING ctid INTO hook_row;
            DELETE FROM public.system_stability_commit_hook WHERE ctid = hook_row;
        END IF;
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
    'traystatus: BEFORE TRUNCATE trigger, queues the commit-time announcement decision when active rows are about to go';

-- Triggers of earlier versions that this one does not have (version 1 had separate in/out
-- triggers on import_job; a development build had DEFERRABLE constraint triggers, which
-- CREATE OR REPLACE TRIGGER cannot replace): drop them.
DO $$
DECLARE
    old record;
BEGIN
    FOR old IN
        SELECT tg.tgname, tg.tgrelid::regclass AS tbl
        FROM pg_catalog.pg_trigger AS tg
        WHERE tg.tgrelid IN ('public.import_job'::regclass, 'worker.tasks'::regclass)
          AND tg.tgname LIKE 'system\_stability\_%'
          AND (tg.tgconstraint <> 0 OR tg.tgname NOT IN (
                   'system_stability_job_insert', 'system_stability_job_update',
                   'system_stability_job_delete', 'system_stability_job_truncate_before',
                   'system_stability_task_in_insert', 'system_stability_task_in_update',
                   'system_stability_task_ahead_insert', 'system_stability_task_ahead_update',
                   'system_stability_task_out_update', 'system_stability_task_out_delete',
                   'system_stability_task_truncate_before'))
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', old.tgname, old.tbl);
    END LOOP;
END;
$$;

-- import_job: every change into, out of or between the watched states announces at COMMIT.
-- (A handful of state changes per import: the cost is nil.)
CREATE OR REPLACE TRIGGER system_stability_job_insert
    AFTER INSERT ON public.import_job
    FOR EACH ROW
    WHEN (NEW.state IN ({{job_watched}}))
    EXECUTE FUNCTION public.system_stability_row_out();
CREATE OR REPLACE TRIGGER system_stability_job_update
    AFTER UPDATE OF state ON public.import_job
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          AND (OLD.state IN ({{job_watched}}) OR NEW.state IN ({{job_watched}})))
    EXECUTE FUNCTION public.system_stability_row_out();
CREATE OR REPLACE TRIGGER system_stability_job_delete
    AFTER DELETE ON public.import_job
    FOR EACH ROW
    WHEN (OLD.state IN ({{job_watched}}))
    EXECUTE FUNCTION public.system_stability_row_out();
CREATE OR REPLACE TRIGGER system_stability_job_truncate_before
    BEFORE TRUNCATE ON public.import_job
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_truncate_before();

-- worker.tasks (WHEN clauses exact about state and due time)
CREATE OR REPLACE TRIGGER system_stability_task_in_insert
    AFTER INSERT ON worker.tasks
    FOR EACH ROW
    WHEN (NEW.state IN ({{task_busy}})
          AND (NEW.scheduled_at IS NULL OR NEW.scheduled_at <= now()))
    EXECUTE FUNCTION public.system_stability_row_in();
CREATE OR REPLACE TRIGGER system_stability_task_in_update
    AFTER UPDATE OF state, scheduled_at, command ON worker.tasks
    FOR EACH ROW
    WHEN (NEW.state IN ({{task_busy}})
          AND (NEW.scheduled_at IS NULL OR NEW.scheduled_at <= now())
          AND (OLD.state NOT IN ({{task_busy}})
               OR OLD.scheduled_at > now()
               OR OLD.command IS DISTINCT FROM NEW.command))
    EXECUTE FUNCTION public.system_stability_row_in();
-- An analytics task scheduled into the future while nothing else runs: the decision records
-- (and announces) the moment it falls due. (StatBus schedules only maintenance tasks ahead:
-- the function returns after one registry look-up for those, once a day.)
CREATE OR REPLACE TRIGGER system_stability_task_ahead_insert
    AFTER INSERT ON worker.tasks
    FOR EACH ROW
    WHEN (NEW.state IN ({{task_busy}})
          AND NEW.scheduled_at > now())
    EXECUTE FUNCTION public.system_stability_row_in('ahead');
CREATE OR REPLACE TRIGGER system_stability_task_ahead_update
    AFTER UPDATE OF state, scheduled_at, command ON worker.tasks
    FOR EACH ROW
    WHEN (NEW.state IN ({{task_busy}})
          AND NEW.scheduled_at > now()
          AND (OLD.state NOT IN ({{task_busy}})
               OR OLD.scheduled_at IS DISTINCT FROM NEW.scheduled_at
               OR OLD.command IS DISTINCT FROM NEW.command))
    EXECUTE FUNCTION public.system_stability_row_in('ahead');
CREATE OR REPLACE TRIGGER system_stability_task_out_update
    AFTER UPDATE OF state, scheduled_at, command ON worker.tasks
    FOR EACH ROW
    WHEN (OLD.state IN ({{task_busy}})
          AND (OLD.scheduled_at IS NULL OR OLD.scheduled_at <= now())
          AND (NEW.state NOT IN ({{task_busy}})
               OR NEW.scheduled_at > now()
               OR OLD.command IS DISTINCT FROM NEW.command))
    EXECUTE FUNCTION public.system_stability_row_out();
CREATE OR REPLACE TRIGGER system_stability_task_out_delete
    AFTER DELETE ON worker.tasks
    FOR EACH ROW
    WHEN (OLD.state IN ({{task_busy}})
          AND (OLD.scheduled_at IS NULL OR OLD.scheduled_at <= now()))
    EXECUTE FUNCTION public.system_stability_row_out();
CREATE OR REPLACE TRIGGER system_stability_task_truncate_before
    BEFORE TRUNCATE ON worker.tasks
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.system_stability_truncate_before();
$sql$;
    k text;
BEGIN
    FOR i IN 1..2 LOOP
        FOR k IN SELECT jsonb_object_keys(vocab) LOOP
            body := replace(body, '{{' || k || '}}', vocab ->> k);
        END LOOP;
    END LOOP;
    IF body ~ '\{\{' THEN
        RAISE EXCEPTION 'traystatus: install.sql: unknown placeholder in %', substring(body FROM '\{\{[^}]*\}\}');
    END IF;
    EXECUTE body;
END;
$generate$;

-- Version 1 announced after TRUNCATE; the decision now runs at COMMIT (the DO block above
-- dropped its triggers).
DROP FUNCTION IF EXISTS public.system_stability_truncate_after();
DROP FUNCTION IF EXISTS public.system_stability_queue_decision(boolean);

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

-- 8. Privileges, part two ---------------------------------------------------------------------
-- Restore the installer's default privileges as they were, GRANT EXECUTE on the functions a
-- client calls to the StatBus roles that exist (every StatBus login is a member of
-- authenticated; notify_reader is StatBus's role for listeners), and prove that PUBLIC has
-- EXECUTE on none of ours. Trigger functions need no grant: triggers run them.
DO $privileges$
DECLARE
    r text;
    leaked text;
BEGIN
    IF current_setting('system_stability.install_restore_global', true) = 'yes' THEN
        ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
    END IF;
    IF current_setting('system_stability.install_restore_public', true) = 'yes' THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
    END IF;
    FOREACH r IN ARRAY ARRAY['authenticated', 'notify_reader'] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format(
                'GRANT EXECUTE ON FUNCTION public.system_stability_sql_version(), '
                'public.system_stability_sql_info(), public.system_stability_sql_drift(), '
                'public.system_stability_job_state_active(public.import_job_state), '
                'public.is_system_stable(), public.system_stability_review(), '
                'public.get_analytics_tasks_in_progress(), '
                'public.get_system_status_details(), public.system_work_mark(), '
                'public.get_system_work_summary(bigint, timestamptz), '
                'public.system_stability_next_due() TO %I', r);
        END IF;
    END LOOP;
    SELECT string_agg(p.oid::regprocedure::text, ', ') INTO leaked
    FROM pg_catalog.pg_proc AS p,
         aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
    WHERE p.pronamespace = 'public'::regnamespace
      AND (p.proname LIKE 'system\_stability\_%' OR p.proname IN (
               'is_system_stable', 'get_analytics_tasks_in_progress',
               'get_system_status_details', 'system_work_mark', 'get_system_work_summary'))
      AND a.grantee = 0 AND a.privilege_type = 'EXECUTE';
    IF leaked IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('traystatus: PUBLIC may execute %s (granted outside install.sql); '
                             'run uninstall.sql, then install.sql', leaked);
    END IF;
END;
$privileges$;

COMMIT;
