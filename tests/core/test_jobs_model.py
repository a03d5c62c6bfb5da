"""One model of an import job (core/model/jobs.py) and one set of coercers
(core/model/coerce.py): every stage answers what a state means the same way, each field
is defined once, and the database's and a relay's strictness differ only where said."""

from __future__ import annotations

import inspect
import math
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import pytest

from traystatus.core.model import coerce, jobs
from traystatus.core.model.details import ImportJob, WorkSummary
from traystatus.core.model.jobs import EndedJob, Job
from traystatus.core.model.progress import JobProgress
from traystatus.core.relay._messages import ENDED_JOB, IMPORT_ENDED, JOB, JOB_FIELDS

# StatBus's import_job_state, in its order (statbus-facts: public.import_job)
STATES = ("waiting_for_upload", "upload_completed", "preparing_data", "analysing_data",
          "waiting_for_review", "approved", "rejected", "processing_data", "failed",
          "finished")


def test_every_state_means_one_thing_and_exactly_one_kind() -> None:
    kinds = (jobs.PERSON_STATES, jobs.QUEUED_STATES, jobs.RUNNING_STATES, jobs.FINAL_STATES)
    assert sorted(s for kind in kinds for s in kind) == sorted(STATES)
    for state in STATES:
        answers = [jobs.needs_person(state), jobs.is_queued(state), jobs.is_running(state),
                   jobs.has_ended(state)]
        assert answers.count(True) == 1, state


def _stages(state: str, **kw: Any) -> list[Job]:
    """The same job at every stage that can hold it."""
    d = {"id": 7, "slug": "lu", "description": None, "state": state, "phase": "x", **kw}
    out: list[Job] = [ImportJob.from_json(d), JobProgress.from_json(d),
                      EndedJob.from_json(d)]
    return out


@pytest.mark.parametrize("state", STATES)
def test_every_stage_answers_a_state_the_same_way(state: str) -> None:
    for job in _stages(state):
        assert (job.needs_person, job.queued, job.running, job.ended, job.failed,
                job.rejected) == (
            jobs.needs_person(state), jobs.is_queued(state), jobs.is_running(state),
            jobs.has_ended(state), state == "failed", state == "rejected"), (job, state)


def test_has_errors_is_one_rule_for_a_listed_and_an_ended_job() -> None:
    cases = [("finished", None, 0, False), ("finished", "bad row", 0, True),
             ("finished", None, 3, True), ("failed", None, 0, True),
             ("rejected", None, 0, False)]
    for state, error, count, expected in cases:
        listed = ImportJob.from_json({"id": 1, "state": state, "error": error,
                                      "error_count": count})
        ended = EndedJob.from_json({"id": 1, "state": state, "error": error,
                                    "error_count": count})
        assert listed.has_errors is ended.has_errors is expected, (state, error, count)


def test_the_details_needs_person_is_the_rule_not_a_copy_of_the_json() -> None:
    """The SQL sends needs_person too (tests/sql/test_details.py checks it says the same);
    the model decides it from the state, once."""
    job = ImportJob.from_json({"id": 1, "state": "waiting_for_review", "needs_person": False})
    assert job.needs_person
    assert "needs_person" not in {f.name for f in fields(ImportJob)}


def test_each_field_is_defined_once() -> None:
    """A subclass that declared a base's field again would be a copy: the stages' own
    fields and their bases' are disjoint."""
    def own(cls: type) -> set[str]:
        return set(inspect.get_annotations(cls))

    for cls in (jobs.Counted, ImportJob, JobProgress, EndedJob):
        for base in cls.__mro__[1:]:
            if base is not object:
                assert not own(cls) & own(base), (cls.__name__, base.__name__)


def test_fields_after_the_first_four_are_keyword_only() -> None:
    """A call written for an older field order fails instead of filling the wrong field
    (JobProgress(1, 'lu', None, 'processing_data', 10_000, 42.0, None) meant pct=42)."""
    with pytest.raises(TypeError):
        old_order: tuple[Any, ...] = (1, "lu", None, "processing_data", 10_000, 42.0, None)
        JobProgress(*old_order)
    job = JobProgress(1, "lu", None, "processing_data", total_rows=10_000, pct=42.0)
    assert job.title == "lu" and job.running


def test_a_work_summary_sends_its_jobs_in_the_summary_shape() -> None:
    ended = EndedJob(7, "lu", "LU", "failed", error="x", error_count=2, total_rows=5,
                     user_id=3, mine=True, ended_at=datetime(2026, 12, 6, tzinfo=UTC))
    summary = WorkSummary(None, None, 0, 1, 0, (ended,), 0, 0, 1.0)
    [sent] = summary.to_json()["import_jobs"]
    assert tuple(sent) == jobs.SUMMARY_KEYS
    assert WorkSummary.from_json(summary.to_json()).import_jobs[0].error_count == 2


def test_the_relay_tables_pick_their_job_fields_from_one_table() -> None:
    assert tuple(ENDED_JOB) == jobs.SUMMARY_KEYS
    assert tuple(IMPORT_ENDED) == tuple(k for k in jobs.ENDING_KEYS if k != "mine")
    for table in (ENDED_JOB, IMPORT_ENDED, JOB):
        for name, row in table.items():
            if name in JOB_FIELDS:
                assert row is JOB_FIELDS[name], name


# -- the coercers: a relay's strict, a database's loose ------------------------------------
def test_a_relay_s_numbers_are_strict() -> None:
    whole = coerce.integer()
    for bad in ("5", 5.0, True, -1, 2**63, None):
        with pytest.raises(coerce.BadValue):
            whole(bad, "n")
    pct = coerce.percentage()
    for bad in (100.5, -0.1, "50", math.nan):
        with pytest.raises(coerce.BadValue):
            pct(bad, "pct")
    assert pct(42, "pct") == 42.0


def test_a_database_s_numbers_are_loose_only_where_said() -> None:
    assert coerce.DB_INT("12", "n") == 12 and coerce.DB_INT(12.7, "n") == 12
    assert coerce.DB_INT(-3, "n") == -3
    assert coerce.DB_NUMBER("40.50", "pct") == 40.5
    assert coerce.DB_NUMBER("NaN", "pct") is None and coerce.DB_INT(math.inf, "n") is None
    for bad in ("many", [1], True, {"a": 1}):
        with pytest.raises(coerce.BadValue, match=r"^n: "):
            coerce.DB_INT(bad, "n")
    assert coerce.percentage(loose=True)(120, "pct") == 100.0


def test_texts_from_a_relay_are_printable_and_a_database_s_are_kept() -> None:
    raw = "bad row\n\x1b[31mline 2"
    assert coerce.text(50)(raw, "error") == "bad row line 2"
    assert coerce.DB_TEXT(raw, "error") == raw
    with pytest.raises(coerce.BadValue):
        coerce.DB_TEXT(5, "error")


def test_times_carry_an_offset_where_it_matters() -> None:
    with pytest.raises(coerce.BadValue, match="no UTC offset"):
        coerce.timestamp("2026-12-06T04:00:00", "since")
    assert coerce.timestamp("2026-12-06T05:00:00+01:00", "since") == datetime(
        2026, 12, 6, 4, tzinfo=UTC)
    guess = coerce.forgiving(coerce.offset_time)
    assert guess("2026-12-06T04:00:00", "t") is None and guess("x" * 100, "t") is None
    assert guess("2026-12-06T04:00:00+00:00", "t") == datetime(2026, 12, 6, 4, tzinfo=UTC)


# -- how an ended job is worded: an error of its own is shown, and "nothing imported" said --
PREPARE = '{"prepare_error": "invalid input syntax for type date: \\"31.02\\"\\nCONTEXT: x"}'


def _ended(state: str, **kw: Any) -> EndedJob:
    return EndedJob(5, "lu_2026", "Legal units 2026", state, **kw)


def test_a_finished_job_an_error_stopped_says_so_and_that_nothing_was_imported() -> None:
    """StatBus ends a job whose prepare or analysis failed in ``finished``, with its error
    and 0 rows: "finished with errors" and "0 rows imported" hid the cause and the loss."""
    job = _ended("finished", imported_rows=0, total_rows=1_000, error=PREPARE)
    assert job.ending_words == "stopped with an error"
    assert job.text == 'invalid input syntax for type date: "31.02". Nothing was imported.'
    assert job.stopped and job.has_errors


def test_a_finished_job_with_an_error_and_rows_keeps_finished_with_errors() -> None:
    job = _ended("finished", imported_rows=900, error_count=3,
                 error='{"process_batch_error": "deadlock detected", "context": "batch 9"}')
    assert job.ending_words == "finished with errors"
    assert job.text == "900 rows imported, 3 errors: deadlock detected"
    assert not job.stopped


def test_a_failed_job_shows_its_error_and_a_clean_one_its_rows() -> None:
    failed = _ended("failed", imported_rows=0, error="stopped by an administrator\nmore")
    assert (failed.ending_words, failed.text) == ("failed", "stopped by an administrator")
    assert _ended("failed").text == "See the import job in StatBus."
    clean = _ended("finished", imported_rows=20_000, warning_count=16)
    assert (clean.ending_words, clean.text) == ("finished", "20,000 rows imported, 16 warnings")
    rows_only = _ended("finished", imported_rows=0)  # an empty file: no error, nothing to say
    assert (rows_only.ending_words, rows_only.text) == ("finished", "0 rows imported")
    assert _ended("rejected").ending_words == "was rejected"


@pytest.mark.parametrize(("error", "line"), [
    # jsonb orders keys by length: the message is the value under a key naming an error
    ('{"step_code": "activity", "analyse_activity_batch_error": "bad code"}', "bad code"),
    ('{"context": "batch 3", "error_in_processing_batch": "no room"}', "no room"),
    ('{"note": "only text"}', "only text"),
    ("plain text\nsecond line", "plain text"),
    ("{not json", "{not json"),
    ("\x1b[2J\n\u202eevil\x07 line", "evil line"),  # escapes and controls dropped
    ("  ", ""),
    (None, ""),
])
def test_an_error_s_first_line_is_its_message_printable(error: str | None, line: str) -> None:
    assert jobs.error_line(error) == line


def test_an_error_s_first_line_is_capped() -> None:
    line = jobs.error_line("x" * 5_000)
    assert len(line) == jobs.ERROR_LINE_CHARS and line.endswith("…")
