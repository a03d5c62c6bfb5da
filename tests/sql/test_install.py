"""install.sql / uninstall.sql: idempotent, complete, versioned; on PostgreSQL 15, 16 and 18.

Catalog snapshots compare what a person would call "the database": every function with its
source, settings, ACL and comment; every trigger with its definition; every relation with
its kind and ACL; every index definition; every constraint.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.sql.conftest import (
    ACTIVE_JOB_STATES,
    BUSY_TASK_STATES,
    HELD_JOB_STATES,
    IMPORT_JOB_STATES,
    NEEDS_2026_03,
    TASK_STATES,
    WATCHED_JOB_STATES,
    Conn,
    Listener,
    add_job,
    add_task,
    payload,
)
from traystatus._paths import sql_dir
from traystatus.core.pg.sqlfiles import EXPECTED_SQL_VERSION, installed_version
from traystatus.demo.embedded import EmbeddedPostgres

INSTALL = sql_dir() / "install.sql"
UNINSTALL = sql_dir() / "uninstall.sql"
FIXTURE = sql_dir() / "fixtures" / "statbus_schema.sql"
USER_NS = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') " \
          "AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'"
SNAPSHOT = {
    "functions": f"""
        SELECT p.oid::regprocedure::text, p.prosrc, p.proconfig::text, p.proacl::text,
               p.prosecdef, p.provolatile, p.proparallel, p.prolang::regproc::text,
               obj_description(p.oid, 'pg_proc')
        FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE {USER_NS} ORDER BY 1""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled,
               t.tgdeferrable, t.tginitdeferred
        FROM pg_trigger AS t WHERE NOT t.tgisinternal ORDER BY 1, 2""",
    "relations": f"""
        SELECT c.oid::regclass::text, c.relkind, c.relacl::text,
               CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END
        FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE {USER_NS} ORDER BY 1""",
    "constraints": f"""
        SELECT co.conrelid::regclass::text, co.conname, co.contype
        FROM pg_constraint AS co JOIN pg_namespace AS n ON n.oid = co.connamespace
        WHERE {USER_NS} ORDER BY 1, 2""",
    "comments": f"""
        SELECT d.classoid::regclass::text, d.description
        FROM pg_description AS d JOIN pg_proc AS p ON p.oid = d.objoid
        JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE {USER_NS} ORDER BY 1, 2""",
}


def snapshot(conn: Conn) -> dict[str, list[tuple[object, ...]]]:
    return {k: conn.execute(q).fetchall() for k, q in SNAPSHOT.items()}


def run_file(conn: Conn, path: Path) -> None:
    conn.execute(path.read_text())


def test_install_twice_is_a_no_op(conn: Conn, listener: Listener) -> None:
    before = snapshot(conn)
    assert len(before["triggers"]) > 10
    run_file(conn, INSTALL)
    assert snapshot(conn) == before
    # and it still works
    add_task(conn, "pending")
    assert listener.drain() == [payload(False)]


@NEEDS_2026_03
def test_uninstall_leaves_nothing_behind_and_is_safe_twice(
    db_dsn: str, bare_db_dsn: str, conn: Conn
) -> None:
    with psycopg.connect(bare_db_dsn, autocommit=True) as bare:
        expected = snapshot(bare)
        run_file(bare, UNINSTALL)  # on a database that never had it
        assert snapshot(bare) == expected
    assert snapshot(conn) != expected
    run_file(conn, UNINSTALL)
    assert snapshot(conn) == expected
    run_file(conn, UNINSTALL)
    assert snapshot(conn) == expected
    with pytest.raises(errors.UndefinedFunction):
        conn.execute("SELECT public.is_system_stable()")
    # ours is gone, StatBus's own notification still works
    ours, own = Listener(db_dsn), Listener(db_dsn, "worker_task_changed")
    task = add_task(conn, "pending")
    conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (task,))
    assert ours.drain() == []
    assert len(own.drain()) == 1
    ours.close()
    own.close()


def test_version(conn: Conn, bare_db_dsn: str) -> None:
    m = re.search(r"system_stability_sql_version\(\) RETURNS integer.*?SELECT (\d+)",
                  INSTALL.read_text(), re.S)
    assert m is not None
    assert conn.execute("SELECT public.system_stability_sql_version()").fetchone() == (
        int(m.group(1)),)
    assert int(m.group(1)) == EXPECTED_SQL_VERSION


def _installed_version(dsn: str) -> int | None:
    async def go() -> int | None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
            return await installed_version(c)
    return asyncio.run(go())


def test_not_installed_current_and_outdated_are_told_apart(db_dsn: str, bare_db_dsn: str,
                                                           conn: Conn) -> None:
    assert _installed_version(bare_db_dsn) is None
    with psycopg.connect(bare_db_dsn, autocommit=True) as bare, pytest.raises(
        errors.UndefinedFunction
    ):
        bare.execute("SELECT public.system_stability_sql_version()")
    assert _installed_version(db_dsn) == EXPECTED_SQL_VERSION
    # an older install: its version function says so
    conn.execute("CREATE OR REPLACE FUNCTION public.system_stability_sql_version() "
                 "RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE "
                 "SET search_path = pg_catalog, pg_temp AS $$ SELECT 0 $$")
    assert _installed_version(db_dsn) == 0
    run_file(conn, INSTALL)  # re-installing brings it up to date
    assert _installed_version(db_dsn) == EXPECTED_SQL_VERSION


def _quoted_lists(text: str) -> list[set[str]]:
    """Every list of quoted words: IN ('a', 'b') in sources, ARRAY['a'::t, ...] in deparsed SQL."""
    groups = re.findall(r"(?:IN|ARRAY)\s*[\(\[]((?:\s*'[a-z_]+'(?:::[\w.]+)?\s*,?)+)[\)\]]", text)
    return [set(re.findall(r"'([a-z_]+)'", g)) for g in groups]


def test_the_spelled_out_lists_of_active_states_agree(conn: Conn) -> None:
    """The generated lists: the index predicate and the trigger WHEN clauses on import_job
    watch the same states; every list of task states is the busy one; every other list of
    job states is one of the line's parts (approved, held, review, active)."""
    def texts(q: str) -> list[str]:
        return [str(r[0]) for r in conn.execute(q)]

    job_index = texts(
        "SELECT pg_get_indexdef('public.import_job_system_stability_active_idx'::regclass)")
    job_triggers = texts("SELECT pg_get_triggerdef(oid) FROM pg_trigger "
                         "WHERE tgname LIKE 'system_stability_job%' AND tgtype & 1 = 1")
    other = texts("SELECT pg_get_indexdef('worker.tasks_system_stability_active_idx'::regclass)")
    other += texts("SELECT pg_get_triggerdef(oid) FROM pg_trigger "
                   "WHERE tgname LIKE 'system_stability_task%'")
    other += texts(
        "SELECT prosrc FROM pg_proc WHERE proname IN ('is_system_stable', "
        "'system_stability_job_state_active', 'system_stability_row_in', "
        "'system_stability_row_out', 'system_stability_truncate_before', "
        "'get_analytics_tasks_in_progress', 'system_work_mark', 'system_stability_review')")
    watched = [w for t in job_index + job_triggers for w in _quoted_lists(t)]
    assert len(watched) == 1 + 4 and all(w == WATCHED_JOB_STATES for w in watched), watched
    job_lists, task_lists = [], []
    for text in other:
        for words in _quoted_lists(text):
            if words <= set(IMPORT_JOB_STATES):
                job_lists.append(words)
            elif words <= set(TASK_STATES):
                task_lists.append(words)
    parts = [ACTIVE_JOB_STATES, HELD_JOB_STATES, {"approved"}, {"waiting_for_review"},
             WATCHED_JOB_STATES]
    assert len(job_lists) >= 4 and len(task_lists) >= 10
    assert all(w in parts for w in job_lists), job_lists
    assert all(w == BUSY_TASK_STATES for w in task_lists), task_lists
    # the function version, state by state
    for state in IMPORT_JOB_STATES:
        assert conn.execute("SELECT public.system_stability_job_state_active(%s)",
                            (state,)).fetchone() == (state in ACTIVE_JOB_STATES,)


# -- psql, several server versions ---------------------------------------------------------------
DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")
SERVERS = [
    pytest.param({"version": 18}, id="pg18-embedded"),
    pytest.param({"version": 16}, id="pg16-embedded"),
    pytest.param(
        {"bin_dir": DEBIAN_15}, id="pg15-debian",
        marks=pytest.mark.skipif(not (DEBIAN_15 / "postgres").exists(),
                                 reason="Debian postgresql-15 is not installed"),
    ),
]


def _psql(server: EmbeddedPostgres, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    psql = server.bin_path / "psql"
    if not psql.exists():
        psql = Path(shutil.which("psql") or "psql")
    return subprocess.run([str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, dsn],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("kind", SERVERS)
def test_psql_install_and_uninstall_on_each_server_version(
    pg_dir: Path, kind: dict[str, Any]
) -> None:
    server = EmbeddedPostgres(pg_dir / "data", **kind)
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE statbus")
            major = admin.execute("SHOW server_version_num").fetchone()
        dsn = server.dsn("statbus")
        for f in (FIXTURE, INSTALL, INSTALL):
            proc = _psql(server, dsn, "-f", str(f))
            assert proc.returncode == 0, proc.stderr
            assert "ERROR" not in proc.stderr, proc.stderr
        with psycopg.connect(dsn, autocommit=True) as c:
            lst = Listener(dsn)
            assert c.execute("SELECT public.is_system_stable()").fetchone() == (True,)
            task = add_task(c, "pending")
            c.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (task,))
            assert lst.drain() == [payload(False), payload(True)]
            lst.close()
        for _ in range(2):
            proc = _psql(server, dsn, "-f", str(UNINSTALL))
            assert proc.returncode == 0, proc.stderr
        with psycopg.connect(dsn, autocommit=True) as c:
            left = c.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE '%system_stab%' "
                             "OR proname LIKE '%system_work%'").fetchone()
            assert left == (0,)
        assert major is not None
        expected = {"pg18-embedded": 18, "pg16-embedded": 16, "pg15-debian": 15}
        assert int(str(major[0])) // 10000 in expected.values()
    finally:
        server.destroy()


def test_upgrade_from_the_record_without_a_review_part(conn: Conn, listener: Listener) -> None:
    """The previous install's record had no review column. Re-running install.sql over it
    adds the column (last, as in a fresh install: the same table), keeps the row, whose
    review part is then unknown: the next decision reads it and announces once, and the one
    after is silent again. Uninstall removes it all."""
    def columns() -> list[tuple[object, ...]]:
        return conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, attnum "
            "FROM pg_attribute WHERE attrelid = 'public.system_stability_announced'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()

    fresh = columns()
    assert [c[0] for c in fresh] == ["stable", "stable_until", "decided_at", "review"]
    before = snapshot(conn)
    conn.execute("""
        DROP TABLE public.system_stability_announced;
        CREATE UNLOGGED TABLE public.system_stability_announced (
            stable boolean,
            stable_until timestamptz,
            decided_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp());
        INSERT INTO public.system_stability_announced (stable) VALUES (true);
    """)
    run_file(conn, INSTALL)
    assert columns() == fresh and snapshot(conn) == before
    assert conn.execute("SELECT stable, review IS NULL FROM public.system_stability_announced"
                        ).fetchall() == [(True, True)]
    listener.drain()
    job = add_job(conn, "waiting_for_upload")
    conn.execute("UPDATE public.import_job SET state = 'waiting_for_review' WHERE id = %s",
                 (job,))
    assert listener.drain() == [payload(True, [job])]
    add_task(conn, "pending")
    assert listener.drain() == [payload(False, [job])]
    run_file(conn, INSTALL)  # idempotent over the upgraded table
    assert columns() == fresh
    run_file(conn, UNINSTALL)
    assert conn.execute("SELECT to_regclass('public.system_stability_announced')"
                        ).fetchone() == (None,)
