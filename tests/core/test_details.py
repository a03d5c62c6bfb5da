"""Parsing get_system_status_details() / get_system_work_summary() and what is derived."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from traystatus.core.model.details import (
    Details,
    DetailsError,
    ImportJob,
    WorkSummary,
)
from traystatus.core.words.wording import format_duration, plural

JOB = {
    "id": 1,
    "slug": "lu_2026",
    "description": "Legal units 2026",
    "state": "processing_data",
    "phase": "processing",
    "progress_pct": 42.5,
    "rows_per_sec": 812.3,
    "total_rows": 10000,
    "imported_rows": 4250,
    "error_count": 0,
    "warning_count": 3,
    "error": None,
    "review": None,
    "priority": 1,
    "user_id": 3,
    "created_at": "2026-11-28T10:00:00+00:00",
    "processing_start_at": "2026-11-28T10:01:00+00:00",
    "ended_at": None,
    "active": True,
    "needs_person": False,
}


def test_import_job_eta_from_rate_and_rows_left() -> None:
    job = ImportJob.from_json(JOB)
    assert job.rows_left == 5750
    assert job.eta_seconds == pytest.approx(5750 / 812.3)
    now = datetime(2026, 11, 28, 10, 5, tzinfo=UTC)
    eta = job.eta(now)
    assert eta is not None and 7 <= (eta - now).total_seconds() <= 8
    assert job.phase_label == "Importing 42 %"
    assert job.title == "Legal units 2026"
    assert not job.has_errors


def test_no_eta_without_a_rate_or_outside_a_working_phase() -> None:
    assert ImportJob.from_json({**JOB, "rows_per_sec": None}).eta_seconds is None
    assert ImportJob.from_json({**JOB, "rows_per_sec": 0}).eta_seconds is None
    queued = ImportJob.from_json({**JOB, "state": "approved", "phase": "queued"})
    assert queued.eta_seconds is None
    assert queued.phase_label == "Queued"


def test_finished_is_not_always_success() -> None:
    job = ImportJob.from_json(
        {**JOB, "state": "finished", "phase": "done", "error_count": 3, "active": False}
    )
    assert job.has_errors
    assert job.phase_label == "Finished with 3 errors"


def test_details_headline_and_derived_lists() -> None:
    d = Details.from_json(
        {
            "system_stable": False,
            "generated_at": "2026-11-28T10:05:00+00:00",
            "sql_version": 1,
            "import_jobs": [
                JOB,
                {
                    **JOB,
                    "id": 2,
                    "state": "waiting_for_review",
                    "phase": "review",
                    "active": False,
                    "needs_person": True,
                },
            ],
            "import_jobs_total": 2,
            "analytics": {
                "active_total": 412,
                "by_command": [
                    {"command": "derive_statistical_unit", "state": "pending", "count": 400},
                    {"command": "derive_statistical_unit", "state": "processing", "count": 4},
                    {"command": "collect_changes", "state": "waiting", "count": 8},
                ],
                "tasks": [],
                "tasks_shown": 0,
            },
        }
    )
    assert d.headline == "1 import running, 412 analytics tasks"
    assert [j.id for j in d.active_jobs] == [1]
    assert [j.id for j in d.jobs_needing_person] == [2]
    assert d.review_blocks_imports
    assert d.analytics.running == 12 and d.analytics.queued == 400
    assert list(d.analytics.by_command_totals) == ["derive_statistical_unit", "collect_changes"]


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        "x",
        {},
        {"system_stable": "yes"},
        {"system_stable": True, "import_jobs": {"id": 1}},
        {"system_stable": True, "import_jobs": [{"id": "one"}]},
        {"system_stable": True, "import_jobs": [{**JOB, "created_at": "yesterday"}]},
        {"system_stable": True, "analytics": {"by_command": [{"command": "x"}]}},
    ],
)
def test_malformed_details_raise_details_error(bad: object) -> None:
    with pytest.raises(DetailsError):
        Details.from_json(bad)


def test_summary_text_names_counts_duration_and_failures() -> None:
    s = WorkSummary.from_json(
        {
            "since": "2026-11-28T10:00:00+00:00",
            "until": "2026-11-28T10:04:12+00:00",
            "import_jobs_finished": 2,
            "import_jobs_failed": 0,
            "import_jobs_with_errors": 0,
            "import_jobs": [],
            "analytics_tasks_completed": 1412,
            "analytics_tasks_failed": 0,
        }
    )
    assert s.duration_seconds == 252
    assert s.text == "2 imports and 1,412 analytics tasks finished in 4 min 12 s"
    assert not s.needs_attention
    bad = WorkSummary.from_json(
        {"import_jobs_failed": 1, "import_jobs_with_errors": 1, "analytics_tasks_completed": 1},
        duration_seconds=3725,
    )
    assert bad.needs_attention
    assert bad.text == (
        "1 import and 1 analytics task finished in 1 h 2 min "
        "(1 import failed, 1 import with errors)"
    )


def test_format_duration() -> None:
    assert format_duration(0) == "0 s"
    assert format_duration(-3) == "0 s"
    assert format_duration(59.6) == "1 min"
    assert format_duration(252) == "4 min 12 s"
    assert format_duration(3600) == "1 h"
    assert format_duration(3900) == "1 h 5 min"


def test_plural() -> None:
    assert plural(1, "import") == "1 import"
    assert plural(0, "import") == "0 imports"
    assert plural(1412, "analytics task") == "1,412 analytics tasks"
    assert plural(2, "entry", "entries") == "2 entries"


def test_summaries_of_a_burst_merge_into_one() -> None:
    """Two runs close together become one notice: counts added, each job once, the
    duration from the first start to the last end."""
    job = {"id": 7, "slug": "lu", "state": "failed", "error": "bad"}
    first = WorkSummary.from_json(
        {"since": "2026-11-28T10:00:00+00:00", "until": "2026-11-28T10:01:00+00:00",
         "import_jobs_finished": 1, "import_jobs": [job], "analytics_tasks_completed": 10},
        duration_seconds=60,
    )
    second = WorkSummary.from_json(
        {"since": "2026-11-28T10:01:30+00:00", "until": "2026-11-28T10:02:00+00:00",
         "import_jobs_failed": 1, "import_jobs": [job], "analytics_tasks_completed": 5},
        duration_seconds=30,
    )
    both = first.merged(second)
    assert (both.import_jobs_finished, both.import_jobs_failed) == (1, 1)
    assert both.analytics_tasks_completed == 15 and len(both.import_jobs) == 1
    assert both.duration_seconds == 120
    assert both.text == (
        "2 imports and 15 analytics tasks finished in 2 min (1 import failed)"
    )


def test_parses_what_the_installed_sql_returns(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    """The real function's output (a job in every state, tasks) parses without loss."""
    conn.execute(
        """
        INSERT INTO public.import_job (slug, description, definition_id, state, total_rows,
                                       imported_rows, import_completed_pct, import_rows_per_sec,
                                       analysis_completed_pct, error, error_count, expires_at)
        SELECT 'job_' || s::text, 'Job ' || s::text, 1, s,
               1000, 100, 10, 50, 20,
               CASE WHEN s = 'failed' THEN 'boom' END, 0, now() + interval '1 day'
        FROM unnest(enum_range(NULL::public.import_job_state)) AS s
        """
    )
    conn.execute(
        "INSERT INTO worker.tasks (command, state) SELECT 'derive_statistical_unit', 'pending' "
        "FROM generate_series(1, 60)"
    )
    row = conn.execute("SELECT public.get_system_status_details()").fetchone()
    assert row is not None
    d = Details.from_json(row[0])
    assert not d.system_stable
    assert d.analytics.active_total == 60 and len(d.analytics.tasks) == 50
    by_state = {j.state: j for j in d.import_jobs}
    assert by_state["processing_data"].eta_seconds == pytest.approx(900 / 50)
    assert by_state["waiting_for_review"].needs_person
    assert by_state["failed"].has_errors and by_state["failed"].phase_label == "Failed"
    # a job waits for review: StatBus holds the others back, only the approved one goes on
    held = {"upload_completed", "preparing_data", "analysing_data", "processing_data"}
    assert {j.state for j in d.import_jobs if j.held_by_review} == held
    assert {j.state for j in d.active_jobs} == {"approved"}
    assert {j.state for j in d.import_jobs if j.active} == held | {"approved"}


def test_to_json_gives_back_what_was_parsed_and_round_trips() -> None:
    from traystatus.core.model.details import Details, WorkSummary

    raw = {
        "system_stable": False, "generated_at": "2026-01-01T00:00:00+00:00", "sql_version": 1,
        "import_jobs": [{"id": 1, "slug": "a", "state": "processing_data",
                         "phase": "processing", "progress_pct": 42.5, "total_rows": 10,
                         "preparing_data_at": "2026-01-01T00:00:00+00:00", "active": True}],
        "analytics": {"active_total": 2, "by_command": [
            {"command": "derive_statistical_unit", "state": "pending", "count": 2}]},
        "a_key_from_a_newer_sql": [1, 2],
    }
    d = Details.from_json(raw)
    assert d.to_json() == raw  # every key, unmodelled ones too
    assert Details.from_json(d.to_json()) == d
    assert "_raw" not in repr(d)
    summary = WorkSummary.from_json(
        {"import_jobs_finished": 2, "analytics_tasks_completed": 1412,
         "import_jobs": [{"id": 3, "slug": "b", "state": "finished"}],
         "since": "2026-01-01T00:00:00+00:00", "until": None},
        252.0,
    )
    back = summary.to_json()
    assert back["duration_seconds"] == 252.0 and back["import_jobs"][0]["slug"] == "b"
    assert WorkSummary.from_json(back, back["duration_seconds"]) == summary
