"""What a job's row in the details window says, and in which tone: a pure function.

``job_label(job, now)`` reads an import job through its public fields (core/model) and
returns a ``JobLabel``: the state in words, its tone, the progress bar's text and value,
the rows line and the problems line. The details window's ``JobRow`` only renders it.

No Qt here: every state of StatBus's ``import_job_state`` (and one it does not have yet)
is checked in plain tests (tests/app/test_job_label.py). The truth rule: only a job that
really finished says so; a state this version does not know is named as it is, never
dressed up as done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from traystatus.app.palette import Tone
from traystatus.app.texts import local_hhmm
from traystatus.core.model.details import PHASE_LABELS, ImportJob
from traystatus.core.model.jobs import error_line
from traystatus.core.model.progress import percent
from traystatus.core.words.wording import format_duration, plural

STATE_WORDS = {
    "waiting_for_upload": "Waiting for upload",
    "upload_completed": "Uploaded, queued",
    "preparing_data": "Preparing data",
    "analysing_data": "Analysing data",
    "waiting_for_review": "Waiting for review",
    "approved": "Approved, queued",
    "rejected": "Rejected",
    "processing_data": "Importing data",
    "failed": "Failed",
    "finished": "Finished",
}
# StatBus's final states: the row says when the job ended.
# The progress bar names the phase its percentage belongs to.
BAR_LABELS = {"analysing": "Analysing", "processing": "Importing", "review": "Analysed",
              "done": "Done"}
# Phases with a bar (and a finished job's full one).
BAR_PHASES = ("analysing", "processing", "review", "preparing")


@dataclass(frozen=True)
class JobLabel:
    """A job's row: texts and tones, nothing about widgets."""

    state: str  # "⚠ Needs a person: waiting for review", "✓ Finished at 14:02"
    tone: Tone
    strong: bool  # the state in bold (failed; a review waiting for a person)
    bar: str | None  # the progress bar's text; None: no bar
    permille: int | None  # the bar's value, 0-1000; None: busy, no number yet
    rows: str  # "4,250 of 10,000 rows imported · 812 rows/s · ETA 14:40 (3 min)"
    problems: str  # "3 errors, 2 warnings: <the first line of the error>"
    problems_tone: Tone


def state_words(job: ImportJob, review: str | None = None) -> tuple[str, Tone, bool]:
    """The state in words, its tone and whether it is said in bold. ``review``: the job(s)
    whose review holds the queue, named in a held job's words."""
    words = STATE_WORDS.get(job.state, job.state.replace("_", " ").capitalize())
    tone, strong = Tone.PLAIN, False
    if job.needs_person and job.state == "waiting_for_review":
        words, tone, strong = "⚠ Needs a person: waiting for review", Tone.PERSON, True
    elif job.needs_person:
        words, tone = "Needs a person: waiting for upload", Tone.PERSON
    elif job.held_by_review:
        words = f"Held: waiting for the review of {review}" if review else (
            "Held: waiting for a review")
        tone = Tone.HELD
    elif job.failed:
        tone, strong = Tone.PROBLEM, True
    elif job.stopped:  # finished in StatBus, but an error stopped it: nothing imported
        words, tone = "Stopped with an error", Tone.PROBLEM
    elif job.state == "finished" and job.has_errors:
        words, tone = "Finished with errors", Tone.PROBLEM
    elif job.state == "finished":
        words, tone = "✓ Finished", Tone.STABLE
    if job.ended_at is not None and job.ended:
        words += f" at {local_hhmm(job.ended_at)}"
    return words, tone, strong


def bar(job: ImportJob) -> tuple[str | None, int | None]:
    """The progress bar's text and value (permille; None: busy), (None, None) for none.

    A job a review holds does not move: its bar stands where it stopped and says so
    ("Held · Analysing 40 %"), never busy (a moving bar would read as work going on)."""
    if job.phase not in BAR_PHASES and job.state != "finished":
        return None, None
    pct = job.progress_pct
    if job.held_by_review:
        if pct is None:
            return f"Held · {job.phase_label}", 0
        label = BAR_LABELS.get(job.phase, PHASE_LABELS.get(job.phase, job.phase))
        return f"Held · {label} {percent(pct)} %", round(pct * 10)
    if pct is None:
        return job.phase_label, None if job.phase == "preparing" else 0
    label = BAR_LABELS.get(job.phase, PHASE_LABELS.get(job.phase, job.phase))
    return f"{label} {percent(pct)} %", round(pct * 10)  # the tooltip's rounding


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def rows_text(job: ImportJob) -> str:
    """The rows part of a job's line. An ended job says what was imported, not its size:
    a job that finished with errors imported fewer rows than it had ("9,983 of 10,000
    rows imported"); "10,000 rows" there read as if all of them went in."""
    total, imported = job.total_rows, job.imported_rows
    if total is None:
        if imported is not None and job.phase in ("processing", "done", "failed"):
            return f"{_n(imported)} rows imported"
        return ""
    if job.phase == "processing" and imported is not None:
        return f"{_n(imported)} of {_n(total)} rows imported"
    if job.phase == "analysing" and job.progress_pct is not None:
        return f"{_n(round(total * job.progress_pct / 100))} of {_n(total)} rows analysed"
    if job.phase in ("done", "failed") and imported is not None:
        if imported == total:
            return f"{_n(total)} rows imported"
        return f"{_n(imported)} of {_n(total)} rows imported"
    return f"{_n(total)} rows"


def rows_line(job: ImportJob, now: datetime) -> str:
    """Rows, rate and ETA of a job, joined with ' · ' ("" when there is nothing to say)."""
    parts = []
    rows = rows_text(job)
    if rows:
        parts.append(rows)
    if job.rows_per_sec and not job.held_by_review:  # held: its last speed is not now's
        parts.append(f"{job.rows_per_sec:,.0f} rows/s")
    eta = job.eta_seconds
    if eta is not None and job.active and not job.held_by_review:  # held: waits for a person
        try:
            at = job.eta(now)
        except OverflowError:  # a rate so slow the end is past the calendar
            at = None
        parts.append(f"ETA {local_hhmm(at)} ({format_duration(eta)})" if at else "ETA unknown")
    return " · ".join(parts)


def problems_line(job: ImportJob) -> str:
    """'3 errors, 2 warnings: <the error's first line, at most 300 characters>'."""
    problems = []
    if job.error_count:
        problems.append(plural(job.error_count, "error"))
    if job.warning_count:
        problems.append(plural(job.warning_count, "warning"))
    text = ", ".join(problems)
    first = error_line(job.error, 300)
    if first:
        text = (text + ": " if text else "") + first
    return text


def job_label(job: ImportJob, now: datetime, review: str | None = None) -> JobLabel:
    """What the row of ``job`` says at ``now`` (ETA), and in which tones; ``review``:
    the job(s) waiting for review that hold it, when it is held ("lu_2026")."""
    words, tone, strong = state_words(job, review)
    text, permille = bar(job)
    return JobLabel(
        state=words,
        tone=tone,
        strong=strong,
        bar=text,
        permille=permille,
        rows=rows_line(job, now),
        problems=problems_line(job),
        problems_tone=Tone.PROBLEM if job.has_errors else Tone.WARNING,
    )
