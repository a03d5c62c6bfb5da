"""get_system_status_details(), get_analytics_tasks_in_progress(), the work summary and mark."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fix_db import STATBUS_REAL
from tests.sql.conftest import NEEDS_2026_03, Conn, add_job, add_task
from traystatus.core.model import jobs
from traystatus.core.pg.sqlfiles import EXPECTED_SQL_VERSION


def details(conn: Conn) -> dict[str, Any]:
    row = conn.execute("SELECT public.get_system_status_details()").fetchone()
    assert row is not None
    return row[0]


def jobs_by_slug(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["slug"]: j for j in d["import_jobs"]}


def test_empty_register(conn: Conn) -> None:
    d = details(conn)
    assert d["system_stable"] is True
    assert d["sql_version"] == EXPECTED_SQL_VERSION
    assert d["import_jobs"] == [] and d["import_jobs_total"] == 0
    assert d["analytics"] == {"active_total": 0, "by_command": [], "tasks": [], "tasks_shown": 0}


@NEEDS_2026_03
def test_phases_progress_and_rates(conn: Conn) -> None:
    cases = {
        "waiting_for_upload": ("upload", None, None),
        "upload_completed": ("queued", None, None),
        "approved": ("queued", None, None),
        "preparing_data": ("preparing", None, None),
        "analysing_data": ("analysing", 40.5, 100.25),
        "waiting_for_review": ("review", 40.5, None),
        "processing_data": ("processing", 12.25, 812.5),
        "finished": ("done", 100, None),
        "failed": ("failed", None, None),
    }
    for state in cases:
        add_job(conn, state, slug=state, total_rows=1000, imported_rows=122,
                analysis_completed_pct=40.5, analysis_rows_per_sec=100.25,
                import_completed_pct=12.25, import_rows_per_sec=812.5,
                warning_count=3, error_count=1 if state == "finished" else 0,
                processing_stop_at=None, last_progress_update="now")
    d = details(conn)
    assert d["system_stable"] is False
    got = jobs_by_slug(d)
    assert set(got) == set(cases)
    for state, (phase, pct, rate) in cases.items():
        j = got[state]
        assert (j["phase"], j["progress_pct"], j["rows_per_sec"]) == (phase, pct, rate), state
        assert j["state"] == state and j["total_rows"] == 1000 and j["imported_rows"] == 122
        assert j["warning_count"] == 3
        assert j["active"] is (phase in ("queued", "preparing", "analysing", "processing"))
        # the SQL's needs_person is the model's one rule (core/model/jobs.py)
        assert j["needs_person"] is jobs.needs_person(state), state
        for key in ("created_at", "preparing_data_at", "analysis_start_at", "analysis_stop_at",
                    "processing_start_at", "processing_stop_at", "last_progress_update",
                    "ended_at", "description", "error", "review", "priority", "user_id", "id"):
            assert key in j, key
    assert got["failed"]["error"] == "boom"
    assert got["finished"]["ended_at"] is not None and got["processing_data"]["ended_at"] is None
    # active jobs and those waiting for review first, then the rest
    order = [j["state"] for j in d["import_jobs"]]
    first_inactive = min(i for i, s in enumerate(order)
                         if s in ("waiting_for_upload", "finished", "failed"))
    assert all(s in ("waiting_for_upload", "finished", "failed") for s in order[first_inactive:])


def test_ten_minute_window_for_ended_jobs(conn: Conn) -> None:
    for minutes in (2, 9, 11, 60):
        add_job(conn, "finished", slug=f"finished_{minutes}", last_progress_update=None)
    conn.execute("UPDATE public.import_job SET processing_stop_at = now() - "
                 "(substring(slug from '[0-9]+$') || ' minutes')::interval")
    add_job(conn, "failed", slug="failed_old", preparing_data_at="2020-01-01")
    add_job(conn, "failed", slug="failed_new", preparing_data_at="now")
    add_job(conn, "waiting_for_upload", slug="old_upload", created_at="2020-01-01")
    shown = set(jobs_by_slug(details(conn)))
    assert shown == {"finished_2", "finished_9", "failed_new", "old_upload"}
    assert details(conn)["import_jobs_total"] == 4


VOLUME_ON_REAL = pytest.mark.skipif(
    STATBUS_REAL, reason="on a real StatBus every job creates its own upload and data tables: "
    "the bounds are our function's, tested on the stand-in")


@VOLUME_ON_REAL
def test_job_list_is_capped(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO public.import_job (slug, state, definition_id) "
        "SELECT 'w_' || g, 'waiting_for_upload', 1 FROM generate_series(1, 600) AS g"
    )
    add_job(conn, "processing_data", slug="busy")
    d = details(conn)
    assert d["import_jobs_total"] == 601
    assert len(d["import_jobs"]) == 500
    assert d["import_jobs"][0]["slug"] == "busy"


@NEEDS_2026_03
def test_analytics_counts_and_fifty_tasks(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO worker.tasks (command, state) "
        "SELECT 'derive_statistical_unit', 'pending' FROM generate_series(1, 57)"
    )
    running = add_task(conn, "processing", "collect_changes", process_duration_ms=1234.5)
    parent = add_task(conn, "waiting", "derive_units_phase")
    add_task(conn, "interrupted", "statistical_unit_refresh_batch", parent_id=parent, depth=1)
    add_task(conn, "completed", "derive_statistical_unit")
    add_task(conn, "pending", "derive_reports", scheduled_at="2999-01-01")
    add_task(conn, "pending", "import_job_process")
    a = details(conn)["analytics"]
    assert a["active_total"] == 60
    assert a["tasks_shown"] == 50 and len(a["tasks"]) == 50
    assert [t["state"] for t in a["tasks"][:3]] == ["processing", "waiting", "interrupted"]
    assert a["tasks"][0]["id"] == running and a["tasks"][0]["duration_ms"] == 1234.5
    assert a["tasks"][2]["parent_id"] == parent and a["tasks"][2]["depth"] == 1
    assert {(c["command"], c["state"], c["count"]) for c in a["by_command"]} == {
        ("collect_changes", "processing", 1),
        ("derive_statistical_unit", "pending", 57),
        ("derive_units_phase", "waiting", 1),
        ("statistical_unit_refresh_batch", "interrupted", 1),
    }


@VOLUME_ON_REAL
def test_size_stays_bounded_with_a_hundred_thousand_tasks(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO worker.tasks (command, state) "
        "SELECT (ARRAY['derive_statistical_unit', 'statistical_unit_refresh_batch',"
        "              'derive_statistical_history_period'])[1 + g % 3],"
        "       (ARRAY['pending', 'processing', 'completed']::worker.task_state[])[1 + g % 3] "
        "FROM generate_series(1, 120000) AS g"
    )
    conn.execute(
        "INSERT INTO public.import_job (slug, state, definition_id, processing_stop_at) "
        "SELECT 'f_' || g, 'finished', 1, now() - interval '1 day' "
        "FROM generate_series(1, 5000) AS g"
    )
    d = details(conn)
    size = len(json.dumps(d))
    assert d["analytics"]["active_total"] == 80000
    assert len(d["analytics"]["tasks"]) == 50
    assert size < 32_000, size


@NEEDS_2026_03
def test_analytics_tasks_in_progress(conn: Conn) -> None:
    a = add_task(conn, "processing", "derive_statistical_unit", priority=2,
                 process_duration_ms=5.5, process_start_at="now")
    b = add_task(conn, "pending", "collect_changes", priority=1)
    w = add_task(conn, "waiting", "derive_units_phase", priority=3)
    i = add_task(conn, "interrupted", "derive_reports", scheduled_at="2000-01-01")
    for state in ("completed", "failed"):
        add_task(conn, state, "derive_statistical_unit")
    add_task(conn, "pending", "derive_statistical_unit", scheduled_at="2999-01-01")
    add_task(conn, "pending", "import_job")
    rows = [r[0] for r in conn.execute("SELECT * FROM public.get_analytics_tasks_in_progress()")]
    assert [r["id"] for r in rows] == [b, a, w, i]  # priority, nulls last, then id
    first = rows[1]
    assert set(first) == {"id", "command", "state", "created_at", "scheduled_at",
                          "process_start_at", "duration_ms", "parent_id", "depth", "priority"}
    assert (first["command"], first["state"], first["duration_ms"]) == (
        "derive_statistical_unit", "processing", 5.5)


@NEEDS_2026_03
def test_work_mark_and_summary(conn: Conn) -> None:
    before = add_task(conn, "completed", "derive_statistical_unit")  # an older run
    root = add_task(conn, "processing", "collect_changes")  # made the system busy
    since = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    mark = conn.execute("SELECT public.system_work_mark()").fetchone()[0]  # type: ignore[index]
    assert before <= mark < root  # just below the oldest busy analytics task
    children = [add_task(conn, "pending", "derive_statistical_unit", parent_id=root)
                for _ in range(4)]
    conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = ANY(%s)",
                 (children[:3],))
    conn.execute("UPDATE worker.tasks SET state = 'failed', error = 'x' WHERE id = %s",
                 (children[3],))
    conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (root,))
    add_task(conn, "completed", "import_job")  # another queue: not counted
    ok = add_job(conn, "finished", slug="ok", processing_stop_at="now")
    add_job(conn, "finished", slug="with_errors", error_count=2, processing_stop_at="now")
    add_job(conn, "failed", slug="bad", processing_stop_at="now")
    add_job(conn, "finished", slug="earlier", processing_stop_at="2020-01-01")
    add_job(conn, "processing_data", slug="still_running")
    s = conn.execute("SELECT public.get_system_work_summary(%s, %s)", (mark, since)).fetchone()
    assert s is not None
    summary = s[0]
    assert summary["analytics_tasks_completed"] == 4  # root + 3 children
    assert summary["analytics_tasks_failed"] == 1
    assert summary["import_jobs_finished"] == 2
    assert summary["import_jobs_failed"] == 1
    assert summary["import_jobs_with_errors"] == 1
    assert {j["slug"] for j in summary["import_jobs"]} == {"ok", "with_errors", "bad"}
    assert ok in {j["id"] for j in summary["import_jobs"]}


@NEEDS_2026_03
def test_work_mark_when_idle_is_the_newest_task(conn: Conn) -> None:
    """Stable (future-scheduled work does not count): the newest id, whatever its queue."""
    add_task(conn, "pending", "derive_statistical_history", scheduled_at="2999-01-01")
    add_task(conn, "completed", "derive_statistical_unit")
    newest = add_task(conn, "completed", "import_job")
    assert conn.execute("SELECT public.system_work_mark()").fetchone() == (newest,)
