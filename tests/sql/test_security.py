"""Who may call what, and a search_path hijack that must not work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from tests.fix_db import STATBUS_REAL, PgServer
from tests.sql.conftest import Conn, Listener, add_job, add_task, payload, stable

CALLS = [
    "SELECT public.is_system_stable()",
    "SELECT public.get_system_status_details()",
    "SELECT * FROM public.get_analytics_tasks_in_progress()",
    "SELECT public.system_work_mark()",
    "SELECT public.get_system_work_summary(0, now() - interval '1 hour')",
    "SELECT public.system_stability_sql_version()",
    "SELECT public.system_stability_next_due()",
]
OUR_FUNCTIONS = """
    SELECT p.oid::regprocedure::text, p.prosecdef, p.proconfig
    FROM pg_proc AS p
    WHERE p.pronamespace = 'public'::regnamespace
      AND (p.proname LIKE 'system_stability%%' OR p.proname IN (
           'is_system_stable', 'get_system_status_details', 'get_analytics_tasks_in_progress',
           'system_work_mark', 'get_system_work_summary'))
"""


def _as(db_dsn: str, user: str, password: str) -> str:
    return make_conninfo(db_dsn, user=user, password=password)


@pytest.fixture
def plain_role(templates: PgServer) -> Iterator[tuple[str, str]]:
    """A LOGIN role that is in none of StatBus's roles."""
    name, password = f"outsider_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with templates.admin() as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))
    yield name, password
    with templates.admin() as c:
        c.execute("SET session_replication_role = replica")  # DROP OWNED revokes: sql_saga
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_analyst_login_can_call_everything_and_listen(
    db_dsn: str, conn: Conn, login_role: tuple[str, str]
) -> None:
    with psycopg.connect(_as(db_dsn, *login_role), autocommit=True) as analyst:
        for q in CALLS:
            analyst.execute(q).fetchall()
        lst = Listener(_as(db_dsn, *login_role))
        try:
            add_task(conn, "pending")
            assert lst.drain() == [payload(False)]
        finally:
            lst.close()


def test_analyst_writes_fire_the_triggers(
    db_dsn: str, conn: Conn, login_role: tuple[str, str], listener: Listener
) -> None:
    """A regular user changing their own job: the trigger functions (EXECUTE revoked from
    PUBLIC, SECURITY DEFINER) still run, and see rows the user could not."""
    if STATBUS_REAL:  # StatBus's own regular user, made by its user_create
        login_role = ("analyst@statbus-real.test", "statbus-real-analyst")
    else:
        conn.execute('INSERT INTO auth."user" (email) VALUES (%s)', (login_role[0],))
    uid = conn.execute('SELECT id FROM auth."user" WHERE email = %s',
                       (login_role[0],)).fetchone()
    assert uid is not None
    with psycopg.connect(_as(db_dsn, *login_role), autocommit=True) as analyst:
        job = add_job(analyst, "waiting_for_upload", user_id=uid[0])
        analyst.execute("UPDATE public.import_job SET state = 'upload_completed' WHERE id = %s",
                        (job,))
        assert listener.drain() == [payload(False)]
        assert not stable(analyst)
        analyst.execute("DELETE FROM public.import_job WHERE id = %s", (job,))
        assert listener.drain() == [payload(True)]


def test_role_without_the_grant_gets_insufficient_privilege(
    db_dsn: str, plain_role: tuple[str, str]
) -> None:
    with psycopg.connect(_as(db_dsn, *plain_role), autocommit=True) as outsider:
        for q in CALLS:
            with pytest.raises(errors.InsufficientPrivilege):
                outsider.execute(q)


def test_notify_reader_is_granted(conn: Conn) -> None:
    for q in CALLS:
        fn = q.split("public.")[1].split("(")[0]
        row = conn.execute(
            "SELECT bool_and(has_function_privilege('notify_reader', p.oid, 'EXECUTE')) "
            "FROM pg_proc AS p WHERE p.proname = %s AND p.pronamespace = 'public'::regnamespace",
            (fn,),
        ).fetchone()
        assert row == (True,), fn


def test_public_has_no_execute_on_anything_of_ours(conn: Conn) -> None:
    rows = conn.execute(OUR_FUNCTIONS).fetchall()
    assert len(rows) == 17  # every function install.sql creates
    for sig, _, _ in rows:
        row = conn.execute(
            "SELECT proacl IS NULL, "  # NULL = the default ACL, which includes PUBLIC
            "       EXISTS (SELECT FROM aclexplode(proacl) AS a WHERE a.grantee = 0) "
            "FROM pg_proc WHERE oid = %s::regprocedure",
            (sig,),
        ).fetchone()
        assert row == (False, False), sig


def test_every_security_definer_function_pins_search_path(conn: Conn) -> None:
    rows = conn.execute(OUR_FUNCTIONS).fetchall()
    definers = [(sig, cfg) for sig, secdef, cfg in rows if secdef]
    assert len(definers) >= 9
    for sig, cfg in definers:
        assert cfg is not None and "search_path=pg_catalog, pg_temp" in cfg, (sig, cfg)


def test_row_trigger_functions_run_as_the_writer_with_every_name_qualified(conn: Conn) -> None:
    """Issue 23: the per-row functions carry no SET clause (its save/restore on every call
    was the cost) and are SECURITY INVOKER; so every operator, function and type in them
    is schema-qualified (the hijack test below writes through them with an attacker's
    schema first). Only the hook table is open to PUBLIC, not the record."""
    rows = {sig.removeprefix("public."): (secdef, cfg)
            for sig, secdef, cfg in conn.execute(OUR_FUNCTIONS).fetchall()}
    for fn in ("system_stability_row_in()", "system_stability_row_out()"):
        assert rows[fn] == (False, None), fn
        src = conn.execute("SELECT prosrc FROM pg_proc WHERE oid = %s::regprocedure",
                           (f"public.{fn}",)).fetchone()
        assert src is not None
        body = str(src[0])
        assert "IS DISTINCT FROM" not in body and " = " not in body.replace(":= ", ""), fn
        assert "now()" not in body.replace("pg_catalog.now()", ""), fn
    assert rows["system_stability_commit_announce()"][0] is True
    privs = conn.execute(
        "SELECT c.relname, array_agg(a.privilege_type::text ORDER BY a.privilege_type) "
        "FROM pg_class AS c, aclexplode(c.relacl) AS a "
        "WHERE c.relname IN ('system_stability_commit_hook', 'system_stability_announced') "
        "  AND c.relnamespace = 'public'::regnamespace AND a.grantee = 0 GROUP BY 1"
    ).fetchall()
    assert privs == [("system_stability_commit_hook", ["DELETE", "INSERT", "SELECT"])]


ATTACK = """
    CREATE SCHEMA attacker;
    CREATE TABLE attacker.import_job (state public.import_job_state);
    CREATE SCHEMA attacker_worker;
    -- an exact-type "=" for the enum wins over pg_catalog's anyenum one, if it is visible
    CREATE FUNCTION attacker.always_false(public.import_job_state, public.import_job_state)
        RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
    CREATE OPERATOR attacker.= (LEFTARG = public.import_job_state,
                                RIGHTARG = public.import_job_state,
                                FUNCTION = attacker.always_false);
    CREATE FUNCTION attacker.always_false(worker.task_state, worker.task_state)
        RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
    CREATE OPERATOR attacker.= (LEFTARG = worker.task_state, RIGHTARG = worker.task_state,
                                FUNCTION = attacker.always_false);
    CREATE FUNCTION attacker.now() RETURNS timestamptz LANGUAGE sql
        AS $$ SELECT 'epoch'::timestamptz $$;
    CREATE FUNCTION attacker.is_system_stable() RETURNS boolean LANGUAGE sql AS 'SELECT true';
    GRANT USAGE ON SCHEMA attacker TO PUBLIC;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA attacker TO PUBLIC;
"""
# The seed's shape: SECURITY DEFINER, no pinned search_path. A control: the same attack
# must change ITS answer, or the test proves nothing.
UNPINNED = """
    CREATE FUNCTION public.unpinned_is_system_stable() RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
    BEGIN
        RETURN NOT EXISTS (SELECT FROM public.import_job AS j
                           WHERE j.state IN ('upload_completed', 'processing_data'));
    END $$;
    GRANT EXECUTE ON FUNCTION public.unpinned_is_system_stable() TO PUBLIC;
"""
HIJACK = "SET search_path = attacker, pg_catalog, public, worker"


def test_search_path_hijack_changes_nothing(
    db_dsn: str, conn: Conn, login_role: tuple[str, str], listener: Listener
) -> None:
    conn.execute(ATTACK)
    conn.execute(UNPINNED)
    add_job(conn, "processing_data")
    add_task(conn, "pending")
    listener.drain()
    with psycopg.connect(_as(db_dsn, *login_role), autocommit=True) as analyst:
        honest = [analyst.execute(q).fetchall() for q in CALLS[:3]]
        analyst.execute(HIJACK)
        assert analyst.execute("SELECT public.unpinned_is_system_stable()").fetchone() == (True,)
        analyst.execute("RESET search_path")
        assert analyst.execute("SELECT public.unpinned_is_system_stable()").fetchone() == (False,)
        analyst.execute(HIJACK)
        hijacked = [analyst.execute(q).fetchall() for q in CALLS[:3]]
        assert analyst.execute("SELECT public.is_system_stable()").fetchone() == (False,)
        # details carry generated_at = now(): compare everything else
        for h, x in zip(honest, hijacked, strict=True):
            for row_h, row_x in zip(h, x, strict=True):
                if isinstance(row_h[0], dict) and "generated_at" in row_h[0]:
                    row_h[0].pop("generated_at"), row_x[0].pop("generated_at")
                assert row_h == row_x
    # a writer with the hijacked path: the triggers still see the truth
    conn.execute(HIJACK)
    conn.execute("UPDATE public.import_job SET state = 'finished'")
    conn.execute("UPDATE worker.tasks SET state = 'completed' "
                 "WHERE command = 'derive_statistical_unit'")
    conn.execute("RESET search_path")
    assert listener.drain() == [payload(True)]  # the job alone changed nothing
