"""The pure estimator (core/model/estimate.py): a fake clock, histories built as StatBus's own
rows read (readers.HISTORY_SQL), and hypothesis for bad input."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from traystatus.core.model.estimate import (
    Estimate,
    History,
    RunningJob,
    estimate,
    from_json,
    steady,
)
from traystatus.core.model.progress import JobProgress, Progress

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def running_job(rows: int | None, state: str, pct: float | None,
        started: datetime | None) -> JobProgress:
    """A running or queued job as the progress aggregate holds it (the estimator's input)."""
    return JobProgress(1, "lu", None, state, total_rows=rows, pct=pct,
                       phase_started_at=started)


def iso(t: datetime) -> str:
    return t.isoformat()


def job_row(job_id: int, rows: int, start: datetime, prep: float, ana: float, proc: float,
            state: str = "finished") -> dict[str, Any]:
    a0 = start + timedelta(seconds=prep)
    a1 = a0 + timedelta(seconds=ana)
    p1 = a1 + timedelta(seconds=proc)
    return {"id": job_id, "state": state, "rows": rows, "prep": iso(start), "a0": iso(a0),
            "a1": iso(a1), "p0": iso(a1), "p1": iso(p1)}


def runs(n: int, rows: int = 10_000, proc: float = 600.0, derive: float = 300.0,
         start: datetime = T0 - timedelta(days=2)) -> tuple[list[Any], list[Any]]:
    """n import+derive runs of ``rows`` rows, one an hour, plus the derive run before them
    (the history's first run only marks where imports start counting)."""
    jobs, derives = [], [{"id": 1, "state": "completed", "start": iso(start - timedelta(hours=1)),
                          "end": iso(start - timedelta(minutes=59))}]
    for i in range(n):
        s = start + timedelta(hours=i)
        jobs.append(job_row(100 + i, rows, s, 5, 60, proc + 10 * i))
        d0 = s + timedelta(seconds=65 + proc + 10 * i + 1)
        derives.append({"id": 1000 + i, "state": "completed", "start": iso(d0),
                        "end": iso(d0 + timedelta(seconds=derive + 20 * i))})
    return jobs, derives


def test_unknown_without_history_never_a_number() -> None:
    e = estimate([running_job(10_000, "processing_data", 2.0, T0)], False, False,
                 History(), T0)
    assert not e.known and e.at is None
    assert "no finished import" in e.how
    assert e.text() == "when stable: unknown"


def test_unknown_while_the_history_is_not_read_yet() -> None:
    e = estimate([], True, False, None, T0)
    assert not e.known


def test_three_similar_runs_give_a_range_around_the_truth() -> None:
    jobs, derives = runs(3)
    h = History.from_rows(jobs, derives, [])
    # the oldest run had no import before it: a derive of 0 rows (an edit, say)
    assert [d.rows for d in h.derives] == [0, 10_000, 10_000, 10_000]
    # halfway through importing a 10,000-row job, 300 s in: ~300 s of import, ~320 of derive
    e = estimate([running_job(10_000, "processing_data", 50.0, T0 - timedelta(seconds=300))],
                 False, False, h, T0)
    assert e.known and e.low and e.at and e.high
    assert e.low <= e.at <= e.high
    rest = (e.at - T0).total_seconds()
    assert 500 < rest < 750, rest
    assert "derive took 5 min–5 min 40 s after imports of this size this week (3 runs)" in e.how


def test_a_fresh_statbus_learns_from_its_first_run() -> None:
    """One import, one derive run, nothing before: that run counts the import's rows."""
    job = job_row(1, 23, T0 - timedelta(minutes=5), 0.1, 0.7, 3.0)
    end = datetime.fromisoformat(job["p1"])
    h = History.from_rows([job], [{"id": 53, "state": "completed",
                                   "start": iso(end - timedelta(seconds=0.3)),
                                   "end": iso(end + timedelta(seconds=0.5))}], [])
    assert [(d.rows, round(d.seconds, 1)) for d in h.derives] == [(23, 0.8)]
    e = estimate([running_job(23, "upload_completed", None, None)], False, False, h, T0)
    assert e.known and "after imports of this size this week (1 run)" in e.how


def test_running_derive_counts_its_elapsed_time_and_past_the_history_is_unknown() -> None:
    jobs, derives = runs(3, derive=300.0)
    # a job ended after the last derive: the derive now running is for its rows
    jobs.append(job_row(200, 10_000, T0 - timedelta(minutes=20), 5, 60, 600))
    h = History.from_rows(jobs, derives, [])
    assert h.rows_since_derive == 10_000
    early = estimate([], True, False, h, T0, derive_started_at=T0 - timedelta(seconds=60))
    late = estimate([], True, False, h, T0, derive_started_at=T0 - timedelta(seconds=250))
    assert early.at and late.at and early.high and late.high
    assert (late.at - T0) < (early.at - T0)
    assert (late.high - T0) < (early.high - T0)
    overdue = estimate([], True, False, h, T0, derive_started_at=T0 - timedelta(hours=2))
    assert not overdue.known and "longer than every similar run" in overdue.how


def test_failed_rejected_and_timeless_runs_are_left_out() -> None:
    jobs, derives = runs(2)
    jobs.append(job_row(300, 10_000, T0 - timedelta(days=1), 5, 60, 1, state="failed"))
    jobs.append(job_row(301, 10_000, T0 - timedelta(days=1), 5, 60, 1, state="rejected"))
    jobs.append({"id": 302, "state": "finished", "rows": 10_000})  # no timestamps
    derives.append({"id": 5000, "state": "failed", "start": iso(T0), "end": iso(T0)})
    derives.append({"id": 5001, "state": "completed", "start": None, "end": None})
    h = History.from_rows(jobs, derives, [])
    assert len(h.jobs) == 2 and h.dropped == 5
    e = estimate([running_job(10_000, "upload_completed", None, None)], False, False, h, T0)
    assert e.known and "5 failed, rejected or unusable runs left out" in e.how


def test_a_clock_that_jumped_back_drops_the_sample() -> None:
    jobs, derives = runs(3)
    # stop before start: a clock set back mid-run
    jobs.append({"id": 400, "state": "finished", "rows": 10_000, "prep": iso(T0),
                 "a0": iso(T0), "a1": iso(T0), "p0": iso(T0), "p1": iso(T0 - timedelta(hours=5))})
    h = History.from_rows(jobs, derives, [])
    assert h.dropped == 1 and len(h.jobs) == 3
    # a phase that began "in the future" (this computer's clock behind): no negative time
    e = estimate([running_job(10_000, "processing_data", 40.0, T0 + timedelta(hours=1))],
                 False, False, h, T0)
    assert e.low is not None and e.low >= T0


def test_renamed_pipeline_means_no_derive_history_so_unknown() -> None:
    jobs, _ = runs(3)
    h = History.from_rows(jobs, [], [])  # StatBus renamed collect_changes: no runs found
    e = estimate([running_job(10_000, "processing_data", 50.0, T0 - timedelta(seconds=300))],
                 False, False, h, T0)
    assert not e.known and "no derive run" in e.how


def test_other_sizes_are_scaled_with_a_wider_range() -> None:
    jobs, derives = runs(3, rows=1_000)
    h = History.from_rows(jobs, derives, [])
    similar = estimate([running_job(1_000, "upload_completed", None, None)], False, False, h, T0)
    bigger = estimate([running_job(100_000, "upload_completed", None, None)], False, False, h,
                      T0)
    assert similar.known and bigger.known
    assert similar.low and similar.high and bigger.low and bigger.high
    width = (similar.high - similar.low) / (similar.high - T0)
    width_big = (bigger.high - bigger.low) / (bigger.high - T0)
    assert width_big > width
    assert "scaled from" in bigger.how


def test_review_holds_the_queue_and_says_what_comes_after() -> None:
    jobs, derives = runs(3)
    jobs.append(job_row(200, 10_000, T0 - timedelta(minutes=20), 5, 60, 600))
    h = History.from_rows(jobs, derives, [10_000])
    e = estimate([running_job(10_000, "upload_completed", None, None)], True, False, h, T0,
                 review_waiting=True, derive_started_at=T0)
    assert e.known and e.after_review is not None
    lo, hi = e.after_review
    assert 0 < lo <= hi
    assert "once the review is approved, then about" in e.text(UTC)
    # the held job is not part of "stable": only the running derive is
    assert e.high is not None and (e.high - T0).total_seconds() < 600


def test_a_size_far_beyond_the_history_is_not_a_date_years_ahead() -> None:
    """Scaling 23-row runs to 10^9 rows overflowed the datetime (a crash, found by review)."""
    jobs, derives = runs(3, rows=23, proc=3.0, derive=1.0)
    h = History.from_rows(jobs, derives, [])
    e = estimate([running_job(10**9, "upload_completed", None, None)], False, False, h,
                 datetime(9999, 1, 1, tzinfo=UTC))
    assert not e.known and "too far to tell" in e.how
    end = estimate([running_job(23, "upload_completed", None, None)], False, False, h,
                   datetime(9999, 12, 31, 23, 59, tzinfo=UTC))
    assert not end.known


def test_text_and_json_round_trip() -> None:
    e = Estimate(T0 + timedelta(minutes=40), T0 + timedelta(minutes=25),
                 T0 + timedelta(minutes=65), "derive took ...")
    assert e.text(UTC) == "stable at about 12:40 (12:25–13:05)"
    back = from_json(e.to_json())
    assert back == e
    assert from_json({"at": iso(T0), "low": iso(T0 + timedelta(hours=1)),
                      "high": iso(T0)}) == Estimate(None, None, None, "")
    assert from_json("nonsense") is None


def test_steady_keeps_an_estimate_that_barely_moved() -> None:
    a = Estimate(T0 + timedelta(minutes=40), T0 + timedelta(minutes=30),
                 T0 + timedelta(minutes=50), "x")
    b = Estimate(T0 + timedelta(minutes=40, seconds=20), T0 + timedelta(minutes=30),
                 T0 + timedelta(minutes=50), "x")
    c = Estimate(T0 + timedelta(minutes=50), T0 + timedelta(minutes=30),
                 T0 + timedelta(minutes=60), "x")
    assert steady(a, b, T0) is a
    assert steady(a, c, T0) is c
    assert steady(None, c, T0) is c


def test_progress_carries_the_estimate_to_json() -> None:
    jobs, derives = runs(3)
    h = History.from_rows(jobs, derives, [])
    p = Progress.from_json({"jobs": [{"id": 7, "slug": "x", "state": "processing_data",
                                      "total_rows": 10_000, "import_pct": 50,
                                      "phase_started_at": iso(T0 - timedelta(seconds=300))}],
                            "phases": [], "derive_queued": False})
    out = p.estimated(h, T0).to_json()["estimate"]
    assert isinstance(out, dict) and out["known"] is True and out["at"]


# -- bad input: never a crash, never a negative time ------------------------------------------
times = st.one_of(
    st.none(), st.just("not a time"), st.just("2026-12-06T12:00:00"),  # no offset
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                 timezones=st.just(UTC)).map(iso),
    st.integers(), st.floats(allow_nan=True),
)
numbers = st.one_of(st.none(), st.integers(-10, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=3), st.booleans())
job_rows = st.fixed_dictionaries({
    "id": numbers, "state": st.sampled_from(["finished", "failed", "rejected", "odd", None]),
    "rows": numbers, "prep": times, "a0": times, "a1": times, "p0": times, "p1": times})
derive_rows = st.fixed_dictionaries({
    "id": numbers,
    "state": st.sampled_from(["completed", "failed", "waiting", "processing", "pending", 3]),
    "start": times, "end": times})
running = st.builds(
    running_job, st.one_of(st.none(), st.integers(0, 10**9)),
    st.sampled_from(["preparing_data", "analysing_data", "processing_data", "upload_completed",
                     "approved", "renamed_state"]),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    st.one_of(st.none(), st.datetimes(min_value=datetime(1990, 1, 1),
                                      max_value=datetime(2100, 1, 1), timezones=st.just(UTC))))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(job_rows, max_size=8), st.none(), st.text(max_size=5)),
       st.one_of(st.lists(derive_rows, max_size=8), st.integers()),
       st.one_of(st.lists(numbers, max_size=3), st.none()),
       st.lists(running, max_size=4), st.booleans(), st.booleans(), st.booleans(),
       st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(9999, 1, 1),
                    timezones=st.just(UTC)))
def test_bad_input_never_crashes_nor_goes_negative(
        jobs: Any, derives: Any, review: Any, work: list[RunningJob], derive_running: bool,
        derive_queued: bool, review_waiting: bool, now: datetime) -> None:
    h = History.from_rows(jobs, derives, review)
    e = estimate(work, derive_running, derive_queued, h, now, review_waiting=review_waiting)
    if e.known:
        assert e.low is not None and e.at is not None and e.high is not None
        assert now <= e.low <= e.at <= e.high
    else:
        assert e.at is None and e.how
    if e.after_review is not None:
        assert 0 <= e.after_review[0] <= e.after_review[1]
    assert from_json(e.to_json()) is not None
    e.text()


def test_runs_that_grow_each_time_are_followed_not_averaged() -> None:
    """On the real kit a 50-row import's derive took 50, 75, 80 s in turn (the register
    grows): the next is expected on that line (about 95 s), not at their median (75 s)."""
    jobs, derives = [], [{"id": 1, "state": "completed", "start": iso(T0 - timedelta(hours=9)),
                          "end": iso(T0 - timedelta(hours=9) + timedelta(seconds=1))}]
    for i, seconds in enumerate((50.0, 75.0, 80.0)):
        s = T0 - timedelta(hours=8 - i)
        jobs.append(job_row(10 + i, 50, s, 0.0, 2.0, 10.0))
        d0 = s + timedelta(seconds=13)
        derives.append({"id": 100 + i, "state": "completed", "start": iso(d0),
                        "end": iso(d0 + timedelta(seconds=seconds))})
    h = History.from_rows(list(reversed(jobs)), derives, [])  # newest first, as read
    assert [j.id for j in h.jobs] == [10, 11, 12]
    e = estimate([], False, True, replace(h, rows_since_derive=50), T0)
    assert e.at is not None and e.low is not None and e.high is not None
    assert 90 <= (e.at - T0).total_seconds() <= 100
    assert (e.low - T0).total_seconds() <= 50 and (e.high - T0).total_seconds() >= 95
