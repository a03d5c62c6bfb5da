"""An import job: what StatBus's states mean, and the fields every stage of a job shares.

Pure: no I/O. StatBus's ``import_job_state``, in order: waiting_for_upload,
upload_completed, preparing_data, analysing_data, waiting_for_review, approved, rejected,
processing_data, failed, finished. This module is the one place that decides, from a
job's state (and its error columns), whether it needs a person, is queued, runs, has
ended, failed, was rejected, or has errors; everything else asks it.

The stages, one type each, every field defined once:

* ``Job``: who the job is and its state (id, slug, description, state, rows, owner);
  ``Counted`` adds what it did (imported rows, errors, warnings, the error text).
* ``ImportJob`` (core/model/details.py): a job as the details snapshot lists it, any
  state, with its phase, progress, rate and times. ``JobProgress``
  (core/model/progress.py): a running or queued job in the small progress aggregate;
  ``JobProgress.from_details`` derives one from an ``ImportJob``.
* ``EndedJob`` (here): a job that has ended, however it was learnt: the work summary's
  list, the endings ledger's row, a relay's ``import_ended``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Any

from traystatus.core.model.coerce import (
    DB_INT,
    DB_TEXT,
    DB_TIME,
    BadValue,
    get,
    mapping,
    need,
)
from traystatus.core.words.safetext import printable
from traystatus.core.words.wording import plural

PERSON_STATES = ("waiting_for_upload", "waiting_for_review")
"""Idle until a person acts (while one waits for review, StatBus holds its import queue)."""
QUEUED_STATES = ("upload_completed", "approved")
"""Waiting for the worker."""
RUNNING_STATES = ("preparing_data", "analysing_data", "processing_data")
"""The worker is on it."""
FINAL_STATES = ("finished", "failed", "rejected")
"""States StatBus never leaves: the job has ended (``rejected`` is the review's UPDATE;
nothing moves a job on from it). ``finished`` is not always success: see has_errors."""


def needs_person(state: str) -> bool:
    return state in PERSON_STATES


def is_queued(state: str) -> bool:
    return state in QUEUED_STATES


def is_running(state: str) -> bool:
    return state in RUNNING_STATES


def has_ended(state: str) -> bool:
    return state in FINAL_STATES


def has_errors(state: str, error: str | None, error_count: int) -> bool:
    """Failed, or errors recorded on it: a job with errors usually ends in ``finished``."""
    return state == "failed" or bool(error) or error_count > 0


ERROR_LINE_CHARS = 200
"""Longest first line of a job's error a notice or a row shows."""


def error_line(error: str | None, limit: int = ERROR_LINE_CHARS) -> str:
    """The first line of a job's ``error``, printable and capped; "" when there is none.

    StatBus writes the error as text or as a JSON object (``{"prepare_error": "..."}``,
    ``{"step_code": "...", "analyse_activity_batch_error": "..."}``: jsonb orders the keys
    by length, so the message is the first string under a key naming an error, else the
    first string)."""
    text = (error or "").strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            strings = [(str(k), v.strip()) for k, v in value.items()
                       if isinstance(v, str) and v.strip()]
            named = [v for k, v in strings if "error" in k.lower()]
            if named or strings:
                text = (named or [v for _, v in strings])[0]
    lines = [line for line in (printable(line, limit) for line in text.splitlines()) if line]
    return lines[0] if lines else ""


def ending_words(state: str, error: str | None, error_count: int,
                 imported_rows: int | None) -> str:
    """How a job ended, in words after its name: 'failed', 'was rejected', 'stopped with
    an error' (finished with an error of its own and nothing imported: StatBus ends a job
    whose prepare or analysis failed in ``finished``), 'finished with errors', 'finished'."""
    if state == "failed":
        return "failed"
    if state == "rejected":
        return "was rejected"
    if state == "finished" and imported_rows == 0 and error_line(error):
        return "stopped with an error"
    if has_errors(state, error, error_count):
        return "finished with errors"
    return "finished" if state == "finished" else state.replace("_", " ")


@dataclass(frozen=True)
class Job:
    """What every stage knows of an import job: who it is and its state."""

    id: int
    slug: str
    description: str | None
    state: str
    _: KW_ONLY
    total_rows: int | None = None
    user_id: int | None = None  # its owner (auth.user.id), when known

    @property
    def title(self) -> str:
        """What to call the job: its description, else its slug."""
        return self.description or self.slug or f"import job {self.id}"

    @property
    def needs_person(self) -> bool:
        return needs_person(self.state)

    @property
    def queued(self) -> bool:
        return is_queued(self.state)

    @property
    def running(self) -> bool:
        return is_running(self.state)

    @property
    def ended(self) -> bool:
        return has_ended(self.state)

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    @property
    def rejected(self) -> bool:
        """Rejected at review: final (the app rejects with an UPDATE; nothing moves it on)."""
        return self.state == "rejected"


@dataclass(frozen=True, kw_only=True)
class Counted(Job):
    """A job with what it did so far: rows imported, errors and warnings, the error."""

    imported_rows: int | None = None
    error_count: int = 0
    warning_count: int = 0
    error: str | None = None

    @property
    def has_errors(self) -> bool:
        return has_errors(self.state, self.error, self.error_count)

    @property
    def error_line(self) -> str:
        """The error's first line, printable and capped ("" for none): see error_line."""
        return error_line(self.error)

    @property
    def stopped(self) -> bool:
        """Finished, but an error of its own stopped it before a row was imported."""
        return self.state == "finished" and self.imported_rows == 0 and bool(self.error_line)

    @property
    def ending_words(self) -> str:
        """'failed', 'stopped with an error', 'finished with errors'...: see ending_words."""
        return ending_words(self.state, self.error, self.error_count, self.imported_rows)


SUMMARY_KEYS = ("id", "slug", "description", "state", "error_count", "warning_count",
                "error", "ended_at")
"""An ended job as get_system_work_summary() lists it (and a work summary's JSON)."""
ENDING_KEYS = ("id", "slug", "description", "state", "total_rows", "imported_rows",
               "error_count", "warning_count", "error", "user_id", "mine")
"""An ended job as the endings ledger tells it (``to_json`` / ``from_json``)."""


@dataclass(frozen=True, kw_only=True)
class EndedJob(Counted):
    """An import job that has ended: how, and (``mine``) whether it is the login's own
    (its ``user_id`` is the StatBus user behind this login, ``auth.uid()``)."""

    ended_at: datetime | None = None
    mine: bool = False

    @property
    def text(self) -> str:
        """'20,000 rows imported, 16 warnings' / the first line of the error / '<the
        first line of the error>. Nothing was imported.' (stopped) / '20,000 rows
        imported, 16 errors: <the first line of the error>'."""
        first = self.error_line
        if self.failed:
            return first or "See the import job in StatBus."
        if self.rejected:
            return "Rejected in review: nothing was imported."
        if self.stopped:
            return f"{first}{'' if first.endswith(('.', '!', '?', '…')) else '.'} " \
                "Nothing was imported."
        parts = []
        if self.imported_rows is not None:
            parts.append(f"{plural(self.imported_rows, 'row')} imported")
        if self.error_count:
            parts.append(plural(self.error_count, "error"))
        if self.warning_count:
            parts.append(plural(self.warning_count, "warning"))
        said = ", ".join(parts)
        if first:
            return f"{said}: {first}" if said else first
        return said or "Finished."

    def to_json(self, keys: tuple[str, ...] = ENDING_KEYS) -> dict[str, Any]:
        """The fields named by ``keys`` (``SUMMARY_KEYS``: a work summary's shape), times
        as ISO text; ``from_json`` reads either back."""
        out: dict[str, Any] = {}
        for key in keys:
            value = getattr(self, key)
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def from_json(cls, value: Any, *, ending: bool = False) -> EndedJob:
        """A database's (or a forwarded) ended job; ``BadValue`` for a wrong type.

        ``ending``: it must be one (a final state and an id: a forwarded ending is a hint
        from the network); a work summary's list is what its SQL says it is."""
        d: Mapping[str, Any] = mapping(value, "ended import job")
        state = get(d, "state", DB_TEXT) or ""
        if ending and (d.get("id") is None or not has_ended(state)):
            raise BadValue("import ending: an id and a final state are required")
        mine = d.get("mine")
        return cls(
            id=need(d, "id", DB_INT),
            slug=get(d, "slug", DB_TEXT) or "",
            description=get(d, "description", DB_TEXT),
            state=state,
            total_rows=get(d, "total_rows", DB_INT),
            imported_rows=get(d, "imported_rows", DB_INT),
            error_count=max(0, get(d, "error_count", DB_INT) or 0),
            warning_count=max(0, get(d, "warning_count", DB_INT) or 0),
            error=get(d, "error", DB_TEXT),
            user_id=get(d, "user_id", DB_INT),
            ended_at=get(d, "ended_at", DB_TIME),
            mine=mine if isinstance(mine, bool) else False,
        )

    @classmethod
    def from_row(cls, row: Any, me: int | None) -> EndedJob:
        """The endings ledger's row (core/watch/endings.py ``ENDINGS_SQL``); ``me``: the
        StatBus user behind this login."""
        (job_id, slug, description, state, total, imported, errors, warnings, error,
         user_id) = row
        return cls(
            id=int(job_id), slug=str(slug or ""), description=description,
            state=str(state or ""), total_rows=total, imported_rows=imported,
            error_count=int(errors or 0), warning_count=int(warnings or 0), error=error,
            user_id=user_id, mine=me is not None and user_id == me,
        )
