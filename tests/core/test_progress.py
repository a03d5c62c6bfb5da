"""Progress at a glance, without a database: the aggregate's words and numbers (one
rounding), and the schedule's promise: at most one read a second while processing, none
while stable."""

from __future__ import annotations

import pytest

from traystatus.core.model.details import DetailsError
from traystatus.core.model.progress import Progress, percent
from traystatus.core.watch._schedule import Channel, ReadSchedule


def job(i: int, state: str, rows: int | None = 1000, a: float = 0, p: float = 0,
        user: int | None = None) -> dict[str, object]:
    return {"id": i, "slug": f"job-{i}", "description": None, "state": state,
            "total_rows": rows, "analysis_pct": a, "import_pct": p, "user_id": user}


def phase(cmd: str, state: str, step: str | None, total: int, done: int) -> dict[str, object]:
    return {"phase": cmd, "state": state, "step": step, "total": total, "completed": done}


def test_the_tooltip_words_of_the_issue() -> None:
    p = Progress.from_json({
        "jobs": [job(1, "processing_data", 1000, p=40.0), job(2, "analysing_data", 1000, a=44.9)],
        "phases": [phase("derive_units_phase", "waiting", "derive_statistical_unit", 412, 120)],
        "derive_queued": False,
    })
    assert p.text == "2 imports (42 % overall), derive 120 of 412 tasks"
    assert p.overall_pct == 42  # imports run: the ring shows their share
    assert p.to_json()["overall_pct"] == 42 and p.to_json()["imports_pct"] == 42


def test_the_ring_follows_the_pipeline_when_no_import_runs() -> None:
    p = Progress.from_json({
        "jobs": [job(3, "upload_completed")],
        "phases": [phase("derive_units_phase", "completed", None, 0, 0),
                   phase("derive_reports_phase", "waiting", "derive_statistical_history", 8, 3)],
    })
    assert p.text == "1 import queued, reports 3 of 8 tasks"
    assert p.overall_pct == 37  # 37.5 rounds down, like every percentage shown


def test_rows_weigh_the_imports_share() -> None:
    p = Progress.from_json({"jobs": [job(1, "processing_data", 9000, p=100.0),
                                     job(2, "preparing_data", 1000)]})
    assert p.imports_pct == pytest.approx(90.0)
    assert p.text == "2 imports (90 % overall)"


def test_one_rounding_never_says_done_too_early() -> None:
    assert percent(99.99) == 99 and percent(100.0) == 100 and percent(-3) == 0
    assert percent(None) is None and percent(float("nan")) is None


def test_a_pipeline_without_counts_names_its_step_and_a_queued_one_says_so() -> None:
    assert Progress.from_json(
        {"phases": [phase("derive_units_phase", "waiting", "collect_changes", 0, 0)]}
    ).text == "derive: collect changes"
    assert Progress.from_json({"derive_queued": True}).text == "derive queued"
    assert Progress.from_json({}).text == "" and Progress.from_json({}).overall_pct is None


@pytest.mark.parametrize("bad", [[], {"jobs": [{"id": "x"}]}, {"phases": [1]},
                                 {"jobs": [{"id": 1, "total_rows": True}]}])
def test_malformed_aggregates_are_refused(bad: object) -> None:
    with pytest.raises(DetailsError):
        Progress.from_json(bad)


def reads_over(s: ReadSchedule, seconds: float, notes_per_s: int, start: float) -> int:
    """Drive the schedule as the monitor does: notifications, due reads, a fake clock."""
    reads, now, step = 0, start, 1.0 / max(1, notes_per_s)
    while now < start + seconds:
        if notes_per_s:
            s.notified(Channel.PROGRESS, now)
        if s.progress_due(now):
            s.progress_reading(now)
            reads += 1
        now += step if notes_per_s else 0.05
    return reads


def test_a_storm_costs_at_most_one_read_a_second_and_stable_costs_none() -> None:
    s = ReadSchedule(15.0, 3.0, 0.2, progress_interval=1.0, progress_refresh=10.0)
    s.start(0.0)
    # Stable: 3,600 worker_status notifications in a minute, not one progress read.
    assert reads_over(s, 60.0, 60, start=0.0) == 0
    s.progress_started()
    # Processing: the same storm costs one read a second.
    assert 59 <= reads_over(s, 60.0, 60, start=100.0) <= 61
    # Processing with no notifications: one read every 10 s keeps it fresh.
    assert 6 <= reads_over(s, 60.0, 0, start=200.0) <= 7
    s.progress_stopped()
    assert reads_over(s, 60.0, 60, start=300.0) == 0


def test_the_wait_ends_when_the_next_progress_read_is_allowed() -> None:
    s = ReadSchedule(15.0, 3.0, 0.2, progress_interval=1.0, progress_refresh=10.0)
    s.start(0.0)
    s.progress_started()
    assert s.progress_due(0.0)
    s.progress_reading(0.0)
    assert s.deadline(processing=True) == 10.0  # nothing new: the refresh
    s.notified(Channel.PROGRESS, 0.3)
    assert not s.progress_due(0.3) and s.deadline(processing=True) == 1.0
    assert s.progress_due(1.0)


def test_a_review_hold_is_said_as_held_in_the_status_json() -> None:
    """While a job waits for review and StatBus holds its queue, the aggregate's jobs that
    are not approved are held: ``status --json`` (and the relay) does not count them as
    importing, nor in the percentage (Status.held_progress)."""
    from datetime import UTC, datetime
    from typing import Any

    from traystatus.core.model.state import ReviewBlock, State, Status

    p = Progress.from_json({"jobs": [
        {"id": 1, "slug": "lu", "state": "processing_data", "total_rows": 100,
         "import_pct": 42.0},
        {"id": 2, "slug": "es", "state": "approved", "total_rows": 100},
    ], "phases": [], "derive_queued": False})
    now = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)
    held: Any = Status(State.PROCESSING, since=now, progress=p, review=ReviewBlock(
        ((3, "lu_2026"),), queued_behind=1)).to_json()["progress"]
    assert held is not None
    assert (held["text"], held["overall_pct"], held["imports_running"],
            held["imports_held"]) == ("1 import queued, 1 import held by a review", None, 0, 1)
    assert [j["held"] for j in held["jobs"]] == [True, False]  # approved: not held
    free: Any = Status(State.PROCESSING, since=now, progress=p).to_json()["progress"]
    assert free is not None
    assert (free["text"], free["overall_pct"]) == ("1 import (42 %), 1 import queued", 42)
