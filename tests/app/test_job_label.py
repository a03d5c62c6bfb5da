"""A job's label and tone (app/joblabel.py), a pure function: every state of StatBus's
``import_job_state``, one it does not have and one from the future, checked without Qt
(no qapp fixture, no widget; tests/test_layers.py keeps the module free of Qt).

The jobs are built from the JSON the SQL sends (phase, progress and flags as
get_system_status_details() derives them from the state), read through ImportJob's
public constructor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.app.sample_data import NOW, job
from traystatus.app.joblabel import JobLabel, job_label, problems_line
from traystatus.app.palette import Tone
from traystatus.app.texts import local_hhmm
from traystatus.core.model.details import ImportJob

ENDED = NOW - timedelta(minutes=2)
AT = f" at {local_hhmm(ENDED)}"

# (state, phase as the SQL maps it, fields) -> state words, tone, bold, bar text, permille.
# Phases and progress as in sql/install.sql's get_system_status_details(); a state the SQL
# does not know gets phase 'done' there (its ELSE), which must not read as finished.
CASES: list[tuple[str, str, dict[str, Any], str, Tone, bool, str | None, int | None]] = [
    ("waiting_for_upload", "upload", dict(needs_person=True, active=False),
     "Needs a person: waiting for upload", Tone.PERSON, False, None, None),
    ("upload_completed", "queued", {},
     "Uploaded, queued", Tone.PLAIN, False, None, None),
    ("preparing_data", "preparing", {},
     "Preparing data", Tone.PLAIN, False, "Preparing", None),  # busy: no number yet
    ("analysing_data", "analysing", dict(pct=55.0, rate=900.0),
     "Analysing data", Tone.PLAIN, False, "Analysing 55 %", 550),
    ("waiting_for_review", "review", dict(pct=100.0, needs_person=True, active=False),
     "⚠ Needs a person: waiting for review", Tone.PERSON, True, "Analysed 100 %", 1000),
    ("approved", "queued", {},
     "Approved, queued", Tone.PLAIN, False, None, None),
    ("rejected", "rejected", dict(active=False, ended=ENDED),
     "Rejected" + AT, Tone.PLAIN, False, None, None),
    ("processing_data", "processing", dict(pct=12.04, rate=400.0, imported=1_204),
     "Importing data", Tone.PLAIN, False, "Importing 12 %", 120),
    ("failed", "failed", dict(active=False, errors=3, error="boom\nstack", ended=ENDED),
     "Failed" + AT, Tone.PROBLEM, True, None, None),
    ("finished", "done", dict(pct=100, imported=10_000, active=False, ended=ENDED),
     "✓ Finished" + AT, Tone.STABLE, False, "Done 100 %", 1000),
    # Not a state of import_job_state (a worker task's state): named, never "finished".
    ("interrupted", "done", dict(active=False),
     "Interrupted", Tone.PLAIN, False, None, None),
    # A state a later StatBus may add.
    ("paused_by_operator", "done", dict(active=False, ended=ENDED),
     "Paused by operator", Tone.PLAIN, False, None, None),
]


def _job(state: str, phase: str, **fields: Any) -> ImportJob:
    return ImportJob.from_json(job(7, "lu_2026", state, phase, **fields))


@pytest.mark.parametrize(("state", "phase", "fields", "words", "tone", "strong", "bar",
                          "permille"), CASES, ids=[c[0] for c in CASES])
def test_every_state_has_its_words_and_tone(
    state: str, phase: str, fields: dict[str, Any], words: str, tone: Tone, strong: bool,
    bar: str | None, permille: int | None,
) -> None:
    label = job_label(_job(state, phase, **fields), NOW)
    assert (label.state, label.tone, label.strong) == (words, tone, strong)
    assert (label.bar, label.permille) == (bar, permille)


def test_only_a_finished_job_says_finished() -> None:
    """The one promise: a false "finished" costs more than a missing word."""
    for state, phase, fields, *_ in CASES:
        label = job_label(_job(state, phase, **fields), NOW)
        if state == "finished":
            continue
        assert "Finished" not in label.state and "✓" not in label.state, state
        assert label.tone is not Tone.STABLE, state


def test_finished_with_errors_is_a_problem_and_warnings_only_are_not() -> None:
    errors = job_label(_job("finished", "done", pct=100, imported=9_000, errors=10,
                            active=False, ended=ENDED), NOW)
    assert errors == JobLabel(
        state="Finished with errors" + AT, tone=Tone.PROBLEM, strong=False,
        bar="Done 100 %", permille=1000, rows="9,000 of 10,000 rows imported",
        problems="10 errors", problems_tone=Tone.PROBLEM)
    warnings = job_label(_job("finished", "done", pct=100, imported=10_000, warnings=4,
                              active=False, ended=ENDED), NOW)
    assert (warnings.state, warnings.tone) == ("✓ Finished" + AT, Tone.STABLE)
    assert (warnings.problems, warnings.problems_tone) == ("4 warnings", Tone.WARNING)


def test_held_behind_a_review() -> None:
    data = job(4, "lu_q2", "upload_completed", "queued")
    data["held_by_review"] = True
    label = job_label(ImportJob.from_json(data), NOW, "lu_2026")
    assert (label.state, label.tone) == ("Held: waiting for the review of lu_2026", Tone.HELD)
    assert (label.bar, label.permille) == (None, None)  # queued: nothing to show yet
    # Held mid-way: it waits for a person, not for its rows: no ETA (df13c67), and its
    # last speed is not now's.
    data = job(5, "lu_q3", "analysing_data", "analysing", 40.0, 100.0)
    data["held_by_review"] = True
    label = job_label(ImportJob.from_json(data), NOW)
    assert label.state == "Held: waiting for a review"
    assert label.rows == "4,000 of 10,000 rows analysed"


# A held job in each state the worker owes work: held words, a bar that stands still where
# it stopped (never busy: permille None is a moving bar), no speed, no ETA.
HELD = [
    ("upload_completed", "queued", None, None, None),
    ("preparing_data", "preparing", None, "Held · Preparing", 0),
    ("analysing_data", "analysing", 40.0, "Held · Analysing 40 %", 400),
    ("processing_data", "processing", 25.0, "Held · Importing 25 %", 250),
]


@pytest.mark.parametrize(("state", "phase", "pct", "bar", "permille"), HELD)
def test_a_held_job_reads_held_and_stands_still(
    state: str, phase: str, pct: float | None, bar: str | None, permille: int | None
) -> None:
    data = job(7, "es_q4", state, phase, pct, 12.0, imported=2_500)
    data["held_by_review"] = True
    label = job_label(ImportJob.from_json(data), NOW, "lu_2026")
    assert (label.state, label.tone) == ("Held: waiting for the review of lu_2026", Tone.HELD)
    assert (label.bar, label.permille) == (bar, permille)
    assert "rows/s" not in label.rows and "ETA" not in label.rows, label.rows


def test_rows_rate_and_eta_of_a_running_job() -> None:
    label = job_label(_job("processing_data", "processing", pct=40.0, rate=100.0,
                           imported=4_000), NOW)
    # 6,000 rows left at 100 rows/s: 60 s from NOW
    eta = local_hhmm(NOW + timedelta(seconds=60))
    assert label.rows == f"4,000 of 10,000 rows imported · 100 rows/s · ETA {eta} (1 min)"
    assert label.problems == ""


def test_failed_job_says_its_errors_and_the_errors_first_line() -> None:
    label = job_label(_job("failed", "failed", active=False, errors=3,
                           error="  boom\nstack line", ended=ENDED), NOW)
    assert (label.problems, label.problems_tone) == ("3 errors: boom", Tone.PROBLEM)
    assert label.rows == "0 of 10,000 rows imported"


@pytest.mark.parametrize("error", ["", "   ", "\n\n", " \t\n "])
def test_a_blank_error_text_says_nothing_and_never_raises(error: str) -> None:
    """An error column of only blanks: the old widget took ``splitlines()[0]`` of it and
    the details window's render raised IndexError."""
    data = _job("failed", "failed", active=False, error=error)
    assert problems_line(data) == ""
    assert job_label(data, NOW).tone is Tone.PROBLEM  # still failed, in red


def test_an_eta_past_the_calendar_is_unknown() -> None:
    data = job(8, "slow", "processing_data", "processing", 1.0, None, 10**15)
    data["rows_per_sec"] = 1e-9
    label = job_label(ImportJob.from_json(data), NOW)
    assert label.rows.endswith("ETA unknown")


def test_a_job_an_error_stopped_says_stopped_and_why() -> None:
    """Finished in StatBus after prepare failed, 0 rows: never "Finished"."""
    label = job_label(_job("finished", "done", imported=0, active=False, ended=ENDED,
                           error='{"prepare_error": "value too long\\nCONTEXT: x"}'), NOW)
    assert (label.state, label.tone) == ("Stopped with an error" + AT, Tone.PROBLEM)
    assert label.problems == "value too long"
