"""The stand-in as an older StatBus (before March 2026): no 'interrupted' in worker.task_state,
worker.tasks with processed_at / duration_ms and no depth, no review hold. install.sql must
install there (no 22P02 on a missing enum value, no 42703 on a missing column), and after an
upgrade that adds the value, doctor's drift check says so until install.sql runs again.
(The real older StatBus databases are tested in tests/statbus_real.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.fix_db import FIXTURE_SCHEMA, INSTALL_SQL, PgServer
from tests.sql.conftest import Conn


def _old_fixture() -> str:
    text = FIXTURE_SCHEMA.read_text()
    replacements = [
        ("('pending', 'processing', 'interrupted', 'waiting', 'completed', 'failed')",
         "('pending', 'processing', 'waiting', 'completed', 'failed')"),
        ("    process_start_at timestamptz,\n", "    processed_at timestamptz,\n"),
        ("    process_duration_ms numeric,\n", "    duration_ms numeric,\n"),
        ("    depth integer NOT NULL DEFAULT 0,\n", ""),
        ("CREATE INDEX idx_tasks_depth ON worker.tasks (depth) WHERE state = 'waiting';\n", ""),
        ("    (20260310132309, '20260310132309_pause_import_queue_during_review.up.sql',\n"
         "     'pause_import_queue_during_review', 0),\n"
         "    (20260714100527, '20260714100527_stand_in_head.up.sql', 'stand_in_head', 0);",
         "    (20260227102355, '20260227102355_stand_in_old.up.sql', 'stand_in_old', 0);"),
    ]
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture
def old_db(pg_server: PgServer) -> Iterator[str]:
    name = f"t_old_{uuid.uuid4().hex[:10]}"
    with pg_server.admin() as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(pg_server.dsn(name), autocommit=True) as c:
            c.execute(_old_fixture())
        yield pg_server.dsn(name)
    finally:
        with pg_server.admin() as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def _one(conn: Conn, q: str) -> object:
    row = conn.execute(q).fetchone()
    assert row is not None
    return row[0]


def test_install_on_an_older_statbus_then_its_upgrade(old_db: str) -> None:
    with psycopg.connect(old_db, autocommit=True) as c:
        c.execute(INSTALL_SQL.read_text())
        c.execute(INSTALL_SQL.read_text())
        info = _one(c, "SELECT public.system_stability_sql_info()")
        assert isinstance(info, dict)
        assert "interrupted" not in info["task_state"]
        assert info["review_holds_queue"] is False
        assert _one(c, "SELECT public.system_stability_sql_drift()") == []
        # the line works, and the details read the older column names
        task = _one(c, "INSERT INTO worker.tasks (command, state, processed_at, duration_ms) "
                       "VALUES ('derive_statistical_unit', 'processing', now(), 12) "
                       "RETURNING id")
        assert _one(c, "SELECT public.is_system_stable()") is False
        shown = _one(c, "SELECT public.get_system_status_details() -> 'analytics' -> 'tasks' "
                        "-> 0")
        assert isinstance(shown, dict)
        assert (shown["id"], shown["duration_ms"], shown["depth"]) == (task, 12, None)
        assert shown["process_start_at"] is not None
        # no review hold on this StatBus: a job behind a review still counts
        c.execute("INSERT INTO public.import_job (slug, state, definition_id) VALUES "
                  "('r', 'waiting_for_review', 1), ('q', 'upload_completed', 1)")
        c.execute("DELETE FROM worker.tasks WHERE id = %s", (task,))
        assert _one(c, "SELECT public.is_system_stable()") is False
        block = _one(c, "SELECT public.system_stability_review()")
        assert isinstance(block, dict)
        assert (block["holds_queue"], block["queued_behind"]) == (False, 0)
        c.execute("DELETE FROM public.import_job")
        # the upgrade adds 'interrupted': reported until install.sql runs again
        c.execute("ALTER TYPE worker.task_state ADD VALUE 'interrupted' AFTER 'processing'")
        drift = _one(c, "SELECT public.system_stability_sql_drift()")
        assert isinstance(drift, list) and len(drift) == 1 and "'interrupted'" in drift[0]
        c.execute("INSERT INTO worker.tasks (command, state) "
                  "VALUES ('derive_statistical_unit', 'interrupted')")
        assert _one(c, "SELECT public.is_system_stable()") is True  # not covered yet
        c.execute(INSTALL_SQL.read_text())
        assert _one(c, "SELECT public.system_stability_sql_drift()") == []
        assert _one(c, "SELECT public.is_system_stable()") is False  # now it counts
