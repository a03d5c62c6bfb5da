"""Realistic details snapshots for rendering and widget tests (JSON as the SQL sends it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from traystatus.core.model.details import Details
from traystatus.core.model.progress import Progress

NOW = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


def job(
    id: int,
    slug: str,
    state: str,
    phase: str,
    pct: float | None = None,
    rate: float | None = None,
    total: int | None = 10_000,
    imported: int = 0,
    errors: int = 0,
    warnings: int = 0,
    error: str | None = None,
    description: str | None = None,
    ended: datetime | None = None,
    active: bool = True,
    needs_person: bool = False,
) -> dict[str, Any]:
    return {
        "id": id, "slug": slug, "description": description, "state": state, "phase": phase,
        "progress_pct": pct, "rows_per_sec": rate, "total_rows": total, "imported_rows": imported,
        "error_count": errors, "warning_count": warnings, "error": error, "review": None,
        "priority": id, "user_id": 1, "created_at": _iso(NOW - timedelta(minutes=20)),
        "processing_start_at": None, "analysis_start_at": None,
        "last_progress_update": _iso(NOW), "ended_at": _iso(ended), "active": active,
        "needs_person": needs_person,
    }


def realistic_json() -> dict[str, Any]:
    jobs = [
        job(1, "lu_2026_q3", "processing_data", "processing", 42.5, 812.3, 48_210, 20_489,
            warnings=3, description="Legal units, 2026 Q3 (Statistics Norway upload)"),
        job(2, "es_2026_q3", "analysing_data", "analysing", 7.25, 1_905.0, 131_002,
            description="Establishments for legal units, 2026 Q3"),
        job(3, "lu_corrections_nov", "waiting_for_review", "review", 100.0, None, 812,
            description="Corrections from the November survey", active=False, needs_person=True),
        job(4, "lu_2026_q2_redo", "upload_completed", "queued", None, None, 47_990,
            description="Legal units, 2026 Q2 (re-run)"),
        job(5, "es_2026_q2", "finished", "done", 100, None, 120_400, 120_400, warnings=12,
            description="Establishments, 2026 Q2", ended=NOW - timedelta(minutes=4),
            active=False),
        job(6, "lu_typo_test", "failed", "failed", None, None, 50, errors=50,
            error="invalid input syntax for type date: \"31.02.2026\" in column birth_date",
            description="Test upload with bad dates", ended=NOW - timedelta(minutes=2),
            active=False),
    ]
    by_command = [
        {"command": "derive_statistical_unit", "state": "processing", "count": 4},
        {"command": "derive_statistical_unit", "state": "pending", "count": 380},
        {"command": "collect_changes", "state": "waiting", "count": 1},
        {"command": "derive_units_phase", "state": "waiting", "count": 1},
        {"command": "statistical_unit_refresh_batch", "state": "pending", "count": 26},
    ]
    tasks = [
        {"id": 900 + i, "command": "derive_statistical_unit", "state": "processing", "depth": 2,
         "parent_id": 3, "process_start_at": _iso(NOW - timedelta(seconds=12 + i)),
         "duration_ms": None, "scheduled_at": None}
        for i in range(4)
    ] + [
        {"id": 1000 + i, "command": "derive_statistical_unit", "state": "pending", "depth": 2,
         "parent_id": 3, "process_start_at": None, "duration_ms": None, "scheduled_at": None}
        for i in range(46)
    ]
    return {
        "system_stable": False, "generated_at": _iso(NOW), "sql_version": 1,
        "import_jobs": jobs, "import_jobs_total": len(jobs),
        "analytics": {"active_total": 412, "by_command": by_command, "tasks": tasks,
                      "tasks_shown": 50},
    }


def realistic() -> Details:
    return Details.from_json(realistic_json())


def realistic_progress() -> Progress:
    """The progress aggregate that goes with ``realistic()``: the same running and queued
    jobs, and the derive pipeline 120 of 412 tasks into its statistical-units step."""
    jobs = [
        {"id": 1, "slug": "lu_2026_q3", "state": "processing_data", "total_rows": 48_210,
         "import_pct": 42.5, "user_id": 1},
        {"id": 2, "slug": "es_2026_q3", "state": "analysing_data", "total_rows": 131_002,
         "analysis_pct": 7.25, "user_id": 2},
        {"id": 4, "slug": "lu_2026_q2_redo", "state": "upload_completed", "total_rows": 47_990,
         "user_id": 1},
    ]
    phases = [
        {"phase": "derive_units_phase", "state": "waiting", "step": "derive_statistical_unit",
         "total": 412, "completed": 120},
        {"phase": "derive_reports_phase", "state": "pending", "step": None, "total": 0,
         "completed": 0},
    ]
    return Progress.from_json({"jobs": jobs, "phases": phases, "derive_queued": False})
