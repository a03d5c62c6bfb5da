"""What is going on, in detail: the JSON of get_system_status_details() and
get_system_work_summary() as frozen dataclasses, with the derived values both faces need.

Pure: no I/O. The parser is strict about types (a wrong type raises ``DetailsError``,
which the monitor logs and skips) and lenient about absence (a missing optional key is
None), so a newer SQL that adds keys keeps working.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, ClassVar

from traystatus.core.model.coerce import (
    DB_INT,
    DB_NUMBER,
    DB_TEXT,
    DB_TIME,
    BadValue,
    boolean,
    get,
    items,
    mapping,
    need,
)
from traystatus.core.model.jobs import SUMMARY_KEYS, Counted, EndedJob
from traystatus.core.words.wording import format_duration, plural

DetailsError = BadValue
"""The JSON does not have the documented shape (docs/architecture.md): core/model/coerce.py's
error, under the name the readers catch."""


PHASE_LABELS = {
    "upload": "Waiting for upload",
    "queued": "Queued",
    "preparing": "Preparing",
    "analysing": "Analysing",
    "review": "Waiting for review",
    "processing": "Importing",
    "done": "Finished",
    "rejected": "Rejected at review",
    "failed": "Failed",
}


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _plain(value: Any) -> Any:
    """A dataclass value as JSON data: datetimes as ISO text, tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


# -- import jobs ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ImportJob(Counted):
    """A job as the details snapshot lists it (any state; core/model/jobs.py has the
    fields every stage shares and what its state means)."""

    phase: str = ""
    progress_pct: float | None = None
    rows_per_sec: float | None = None
    review: bool | None = None
    priority: int | None = None
    created_at: datetime | None = None
    processing_start_at: datetime | None = None
    analysis_start_at: datetime | None = None
    last_progress_update: datetime | None = None
    ended_at: datetime | None = None
    active: bool = False
    # queued or mid-way, but held back while another job waits for review (StatBus holds its
    # import queue then): not running, though the worker owes it work
    held_by_review: bool = False

    @classmethod
    def from_json(cls, value: Any) -> ImportJob:
        d = mapping(value, "import job")
        return cls(
            id=need(d, "id", DB_INT),
            slug=get(d, "slug", DB_TEXT) or "",
            description=get(d, "description", DB_TEXT),
            state=get(d, "state", DB_TEXT) or "",
            phase=get(d, "phase", DB_TEXT) or "",
            progress_pct=get(d, "progress_pct", DB_NUMBER),
            rows_per_sec=get(d, "rows_per_sec", DB_NUMBER),
            total_rows=get(d, "total_rows", DB_INT),
            imported_rows=get(d, "imported_rows", DB_INT),
            error_count=get(d, "error_count", DB_INT) or 0,
            warning_count=get(d, "warning_count", DB_INT) or 0,
            error=get(d, "error", DB_TEXT),
            review=get(d, "review", boolean),
            priority=get(d, "priority", DB_INT),
            user_id=get(d, "user_id", DB_INT),
            created_at=get(d, "created_at", DB_TIME),
            processing_start_at=get(d, "processing_start_at", DB_TIME),
            analysis_start_at=get(d, "analysis_start_at", DB_TIME),
            last_progress_update=get(d, "last_progress_update", DB_TIME),
            ended_at=get(d, "ended_at", DB_TIME),
            active=bool(get(d, "active", boolean)),
            held_by_review=bool(get(d, "held_by_review", boolean)),
        )

    @property
    def phase_label(self) -> str:
        """'Importing 42 %', 'Analysing 7 %', 'Queued', 'Finished with 3 errors'..."""
        label = PHASE_LABELS.get(self.phase, self.phase.replace("_", " ").capitalize())
        if self.phase in ("analysing", "processing") and self.progress_pct is not None:
            return f"{label} {math.floor(max(0.0, min(100.0, self.progress_pct)))} %"
        if self.phase == "done" and self.stopped:
            return "Stopped with an error"  # prepare or analysis failed: nothing imported
        if self.phase == "done" and self.has_errors:
            n = self.error_count
            return f"{label} with {plural(n, 'error')}" if n else f"{label} with errors"
        return label

    @property
    def rows_left(self) -> int | None:
        """Rows still to go in the current phase, from the progress percentage."""
        if self.total_rows is None or self.progress_pct is None:
            return None
        if self.phase not in ("analysing", "processing"):
            return None
        left = self.total_rows * (100.0 - self.progress_pct) / 100.0
        return max(0, math.ceil(left))

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until the current phase ends at the current rate; None when unknown."""
        left = self.rows_left
        if left is None or not self.rows_per_sec or self.rows_per_sec <= 0:
            return None
        return left / self.rows_per_sec

    def eta(self, now: datetime) -> datetime | None:
        seconds = self.eta_seconds
        return None if seconds is None else now + timedelta(seconds=seconds)


# -- analytics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnalyticsTask:
    id: int
    command: str
    state: str
    depth: int
    parent_id: int | None
    process_start_at: datetime | None
    duration_ms: float | None
    scheduled_at: datetime | None

    @classmethod
    def from_json(cls, value: Any) -> AnalyticsTask:
        d = mapping(value, "analytics task")
        return cls(
            id=need(d, "id", DB_INT),
            command=get(d, "command", DB_TEXT) or "",
            state=get(d, "state", DB_TEXT) or "",
            depth=get(d, "depth", DB_INT) or 0,
            parent_id=get(d, "parent_id", DB_INT),
            process_start_at=get(d, "process_start_at", DB_TIME),
            duration_ms=get(d, "duration_ms", DB_NUMBER),
            scheduled_at=get(d, "scheduled_at", DB_TIME),
        )


@dataclass(frozen=True)
class CommandCount:
    command: str
    state: str
    count: int


@dataclass(frozen=True)
class AnalyticsSummary:
    active_total: int
    by_command: tuple[CommandCount, ...]
    tasks: tuple[AnalyticsTask, ...]
    tasks_shown: int

    @classmethod
    def from_json(cls, value: Any) -> AnalyticsSummary:
        if value is None:
            return cls(0, (), (), 0)
        d = mapping(value, "analytics")
        by_command = []
        for item in items(d.get("by_command"), "analytics.by_command"):
            c = mapping(item, "analytics.by_command item")
            by_command.append(
                CommandCount(get(c, "command", DB_TEXT) or "", get(c, "state", DB_TEXT) or "",
                             need(c, "count", DB_INT))
            )
        tasks = tuple(
            AnalyticsTask.from_json(t) for t in items(d.get("tasks"), "analytics.tasks")
        )
        return cls(
            active_total=get(d, "active_total", DB_INT) or 0,
            by_command=tuple(by_command),
            tasks=tasks,
            tasks_shown=_or(get(d, "tasks_shown", DB_INT), len(tasks)),
        )

    def count_in(self, state: str) -> int:
        return sum(c.count for c in self.by_command if c.state == state)

    @property
    def running(self) -> int:
        """Tasks a worker is executing now (processing) or whose children run (waiting)."""
        return self.count_in("processing") + self.count_in("waiting")

    @property
    def queued(self) -> int:
        return self.count_in("pending") + self.count_in("interrupted")

    @property
    def by_command_totals(self) -> dict[str, int]:
        """Active tasks per command, largest first."""
        totals: dict[str, int] = {}
        for c in self.by_command:
            totals[c.command] = totals.get(c.command, 0) + c.count
        return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


# -- the snapshot ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Details:
    system_stable: bool
    generated_at: datetime | None
    sql_version: int | None
    import_jobs: tuple[ImportJob, ...]
    import_jobs_total: int
    analytics: AnalyticsSummary
    # The JSON this was parsed from (not a field: equality, repr and asdict ignore it).
    _raw: ClassVar[Mapping[str, Any] | None] = None

    @classmethod
    def from_json(cls, value: Any) -> Details:
        d = mapping(value, "details")
        stable = get(d, "system_stable", boolean)
        if stable is None:
            raise DetailsError("system_stable: missing")
        jobs = tuple(ImportJob.from_json(j) for j in items(d.get("import_jobs"), "import_jobs"))
        details = cls(
            system_stable=stable,
            generated_at=get(d, "generated_at", DB_TIME),
            sql_version=get(d, "sql_version", DB_INT),
            import_jobs=jobs,
            import_jobs_total=_or(get(d, "import_jobs_total", DB_INT), len(jobs)),
            analytics=AnalyticsSummary.from_json(d.get("analytics")),
        )
        object.__setattr__(details, "_raw", d)
        return details

    def to_json(self) -> dict[str, Any]:
        """The shape of get_system_status_details(): the JSON it was read from, all keys
        kept (a newer SQL's too), or, for a value built in code, its fields."""
        if self._raw is not None:
            return dict(self._raw)
        out: dict[str, Any] = _plain(self)
        return out

    @property
    def active_jobs(self) -> tuple[ImportJob, ...]:
        """Jobs the worker is on or about to start (not those a review holds back)."""
        return tuple(j for j in self.import_jobs if j.active and not j.held_by_review)

    @property
    def jobs_needing_person(self) -> tuple[ImportJob, ...]:
        return tuple(j for j in self.import_jobs if j.needs_person)

    @property
    def review_blocks_imports(self) -> bool:
        """While any job waits for review, StatBus's worker holds back the other imports."""
        return any(j.state == "waiting_for_review" for j in self.import_jobs)

    @property
    def headline(self) -> str:
        """One line: '2 imports running, 412 analytics tasks' or 'Stable'."""
        parts = []
        n_jobs = len(self.active_jobs)
        if n_jobs:
            parts.append(f"{plural(n_jobs, 'import')} running")
        if self.analytics.active_total:
            parts.append(plural(self.analytics.active_total, "analytics task"))
        if not parts:
            return "Stable" if self.system_stable else "Processing"
        return ", ".join(parts)


# -- work summary ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkSummary:
    """What finished between the stable -> processing and processing -> stable edges."""

    since: datetime | None
    until: datetime | None
    import_jobs_finished: int
    import_jobs_failed: int
    import_jobs_with_errors: int
    import_jobs: tuple[EndedJob, ...]
    analytics_tasks_completed: int
    analytics_tasks_failed: int
    duration_seconds: float
    import_jobs_rejected: int = 0

    @classmethod
    def from_json(cls, value: Any, duration_seconds: float | None = None) -> WorkSummary:
        d = mapping(value, "work summary")
        since, until = get(d, "since", DB_TIME), get(d, "until", DB_TIME)
        if duration_seconds is None:
            duration_seconds = (until - since).total_seconds() if since and until else 0.0
        return cls(
            since=since,
            until=until,
            import_jobs_finished=get(d, "import_jobs_finished", DB_INT) or 0,
            import_jobs_failed=get(d, "import_jobs_failed", DB_INT) or 0,
            import_jobs_with_errors=get(d, "import_jobs_with_errors", DB_INT) or 0,
            import_jobs=tuple(
                EndedJob.from_json(j) for j in items(d.get("import_jobs"), "import_jobs")
            ),
            analytics_tasks_completed=get(d, "analytics_tasks_completed", DB_INT) or 0,
            analytics_tasks_failed=get(d, "analytics_tasks_failed", DB_INT) or 0,
            duration_seconds=max(0.0, duration_seconds),
            import_jobs_rejected=get(d, "import_jobs_rejected", DB_INT) or 0,
        )

    def to_json(self) -> dict[str, Any]:
        """get_system_work_summary()'s shape plus ``duration_seconds``; from_json reads it."""
        out: dict[str, Any] = _plain(self)
        out["import_jobs"] = [j.to_json(SUMMARY_KEYS) for j in self.import_jobs]
        return out

    @property
    def imports_ended(self) -> int:
        return self.import_jobs_finished + self.import_jobs_failed + self.import_jobs_rejected

    @property
    def needs_attention(self) -> bool:
        """Something failed or finished with errors: the notification should say so."""
        return bool(
            self.import_jobs_failed or self.import_jobs_with_errors or self.analytics_tasks_failed
        )

    @property
    def text(self) -> str:
        """'2 imports and 1,412 analytics tasks finished in 4 min 12 s' (+ what failed)."""
        parts = []
        if self.imports_ended:
            parts.append(plural(self.imports_ended, "import"))
        if self.analytics_tasks_completed:
            parts.append(plural(self.analytics_tasks_completed, "analytics task"))
        what = " and ".join(parts) if parts else "Work"
        text = f"{what} finished in {format_duration(self.duration_seconds)}"
        problems = []
        if self.import_jobs_failed:
            problems.append(plural(self.import_jobs_failed, "import") + " failed")
        if self.import_jobs_with_errors:
            problems.append(plural(self.import_jobs_with_errors, "import") + " with errors")
        if self.import_jobs_rejected:
            problems.append(plural(self.import_jobs_rejected, "import") + " rejected at review")
        if self.analytics_tasks_failed:
            problems.append(plural(self.analytics_tasks_failed, "analytics task") + " failed")
        if problems:
            text += " (" + ", ".join(problems) + ")"
        return text

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.duration_seconds)

    def merged(self, later: WorkSummary) -> WorkSummary:
        """This run and a ``later`` one as one: counts added, jobs once each, the duration
        from the first start to the last end (so a pause in between counts too)."""
        seen = {j.id for j in self.import_jobs}
        duration = self.duration_seconds + later.duration_seconds
        if self.until is not None and later.until is not None:
            start = min(
                self.until - self.duration, later.until - later.duration
            )
            duration = (max(self.until, later.until) - start).total_seconds()
        since = min((t for t in (self.since, later.since) if t is not None), default=None)
        until = max((t for t in (self.until, later.until) if t is not None), default=None)
        return WorkSummary(
            since=since,
            until=until,
            import_jobs_finished=self.import_jobs_finished + later.import_jobs_finished,
            import_jobs_failed=self.import_jobs_failed + later.import_jobs_failed,
            import_jobs_with_errors=self.import_jobs_with_errors + later.import_jobs_with_errors,
            import_jobs=self.import_jobs
            + tuple(j for j in later.import_jobs if j.id not in seen),
            analytics_tasks_completed=self.analytics_tasks_completed
            + later.analytics_tasks_completed,
            analytics_tasks_failed=self.analytics_tasks_failed + later.analytics_tasks_failed,
            duration_seconds=max(0.0, duration),
            import_jobs_rejected=self.import_jobs_rejected + later.import_jobs_rejected,
        )
