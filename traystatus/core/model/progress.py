"""How far along the work is: a small aggregate read while processing, and its words.

Pure: no I/O. The monitor reads the aggregate (``readers.read_progress``: one plain,
read-only query on StatBus's own tables, the same in every reader mode) at most once a
second while the system is processing and never while it is stable, and hands it out as
``Status.progress``. The tray's ring, its tooltip, the details window's headline and
``status --json`` all take their numbers from here, and every percentage shown is
``percent()`` of the same value: one source, one rounding.

* Import jobs: the running ones (preparing, analysing, processing), each with the
  progress of its current phase (StatBus's ``analysis_completed_pct`` while analysing,
  ``import_completed_pct`` while importing; preparing counts as 0 %), and how many are
  queued. The imports' share done is the mean of the running jobs' progress weighted by
  their rows.
* The derive pipeline, as StatBus's own ``pipeline_progress`` describes it: per phase
  (statistical units, then reports) whether it runs, its current step and the tasks
  completed of the total under the step's concurrent parent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from traystatus.core.model.coerce import (
    DB_INT,
    DB_NUMBER,
    DB_TEXT,
    forgiving,
    get,
    items,
    offset_time,
)
from traystatus.core.model.details import DetailsError, ImportJob
from traystatus.core.model.estimate import Estimate, History, estimate
from traystatus.core.model.jobs import Job
from traystatus.core.words.wording import plural

PHASE_NAMES = {"derive_units_phase": "derive", "derive_reports_phase": "reports"}
PHASE_TITLES = {"derive_units_phase": "Statistical units", "derive_reports_phase": "Reports"}


def percent(value: float | None) -> int | None:
    """The one rounding of every percentage shown: down to a whole number, 0-100.

    Down, so 99.6 % never reads as done before it is."""
    if value is None or not math.isfinite(value):
        return None
    return math.floor(max(0.0, min(100.0, value)))


_GUESS_TIME = forgiving(offset_time)
"""A time only the estimate uses: an unusable one makes the estimate say less, never the
progress fail."""


def _objects(value: Any, what: str) -> list[Mapping[str, Any]]:
    found = items(value, what)
    if not all(isinstance(v, Mapping) for v in found):
        raise DetailsError(f"{what}: expected a list of objects")
    return found


@dataclass(frozen=True, kw_only=True)
class JobProgress(Job):
    """One import job that is running or queued (core/model/jobs.py: its fields and
    states; ``from_details`` derives one from a details snapshot's ``ImportJob``)."""

    pct: float | None = None  # in the current phase; None while queued
    phase_started_at: datetime | None = None  # when its current phase began (estimate)
    held: bool = False  # held back by a job waiting for review: neither running nor queued

    @property
    def phase(self) -> str:
        return {
            "preparing_data": "preparing",
            "analysing_data": "analysing",
            "processing_data": "importing",
        }.get(self.state, "queued")

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> JobProgress:
        job_id = get(value, "id", DB_INT)
        if job_id is None:
            raise DetailsError("import job: id missing")
        state = get(value, "state", DB_TEXT) or ""
        if state == "analysing_data":
            pct = get(value, "analysis_pct", DB_NUMBER)
        elif state == "processing_data":
            pct = get(value, "import_pct", DB_NUMBER)
        else:
            pct = None
        return cls(
            id=job_id,
            slug=get(value, "slug", DB_TEXT) or "",
            description=get(value, "description", DB_TEXT),
            state=state,
            total_rows=get(value, "total_rows", DB_INT),
            pct=_phase_pct(state, pct),
            user_id=get(value, "user_id", DB_INT),
            phase_started_at=get(value, "phase_started_at", _GUESS_TIME),
        )

    @classmethod
    def from_details(cls, job: ImportJob) -> JobProgress:
        """The same job as a details snapshot tells it (its ``progress_pct`` is the same
        column of the current phase: analysis while analysing, import while importing)."""
        return cls(job.id, job.slug, job.description, job.state, total_rows=job.total_rows,
                   pct=_phase_pct(job.state, job.progress_pct), user_id=job.user_id,
                   held=job.held_by_review)


def _phase_pct(state: str, pct: float | None) -> float | None:
    """A job's progress in its current phase: preparing counts as 0 %, queued as none."""
    if state == "preparing_data":
        return 0.0
    if state not in ("analysing_data", "processing_data") or pct is None:
        return None
    return max(0.0, min(100.0, pct))


@dataclass(frozen=True)
class PhaseProgress:
    """One phase of the derive pipeline (StatBus's ``pipeline_progress`` phase)."""

    command: str  # derive_units_phase | derive_reports_phase
    state: str  # the phase root's task state
    step: str | None  # the command of the step running now
    total: int
    completed: int
    started_at: datetime | None = None  # when the derive run (its collect_changes) began

    @property
    def active(self) -> bool:
        return self.state in ("processing", "waiting")

    @property
    def pending(self) -> bool:
        return self.state in ("pending", "interrupted")

    @property
    def name(self) -> str:
        """'derive' or 'reports': the word in the tooltip."""
        return PHASE_NAMES.get(self.command, self.command.replace("_", " "))

    @property
    def title(self) -> str:
        return PHASE_TITLES.get(self.command, self.command.replace("_", " ").capitalize())

    @property
    def step_words(self) -> str:
        return (self.step or "starting").replace("_", " ")

    @property
    def pct(self) -> float | None:
        if self.total <= 0:
            return None
        return 100.0 * min(self.completed, self.total) / self.total

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PhaseProgress:
        return cls(
            command=get(value, "phase", DB_TEXT) or "",
            state=get(value, "state", DB_TEXT) or "",
            step=get(value, "step", DB_TEXT),
            total=max(0, get(value, "total", DB_INT) or 0),
            completed=max(0, get(value, "completed", DB_INT) or 0),
            started_at=get(value, "started_at", _GUESS_TIME),
        )


@dataclass(frozen=True)
class Progress:
    """The aggregate: running and queued import jobs, the pipeline's phases, and ``me``:
    the StatBus user behind this login (None when it cannot be told)."""

    jobs: tuple[JobProgress, ...] = ()
    phases: tuple[PhaseProgress, ...] = ()
    derive_queued: bool = False
    me: int | None = None
    estimate: Estimate | None = None  # when it will be stable (core/model/estimate.py)

    def estimated(self, history: History | None, now: datetime, *,
                  review_waiting: bool = False) -> Progress:
        """This aggregate with its estimate of when the register will be stable."""
        jobs = self.jobs
        phase = self.phase
        found = estimate(jobs, phase is not None, self.derive_queued or any(
            p.pending for p in self.phases), history, now, review_waiting=review_waiting,
            derive_started_at=phase.started_at if phase is not None else None)
        return replace(self, estimate=found)

    def mine(self, job: JobProgress) -> bool:
        return self.me is not None and job.user_id == self.me

    def with_jobs_from(self, jobs: Iterable[ImportJob]) -> Progress:
        """This aggregate with its import jobs as a details snapshot tells them.

        The details window draws each job's bar from its details snapshot, read at
        another moment than this aggregate; a headline from this aggregate could say
        "1 import (5 %)" beside a bar at "Importing 15 %". One snapshot per redraw: the
        jobs the details list (state and percentage) replace the aggregate's, jobs the
        details list as running or queued are added, jobs they list as no longer running
        or queued are dropped; jobs they do not list (newer than the snapshot) stay as
        they are. The pipeline's phases stay this aggregate's."""
        listed = {j.id: j for j in jobs}
        out: list[JobProgress] = []
        for job in self.jobs:
            found = listed.pop(job.id, None)
            if found is None:
                out.append(job)
            elif found.running or found.queued:
                out.append(JobProgress.from_details(found))
        out += [JobProgress.from_details(j) for j in listed.values()
                if j.running or j.queued]
        return replace(self, jobs=tuple(out))

    def held_by_review(self) -> Progress:
        """This aggregate while a review holds StatBus's import queue: every job the
        worker has not been told to import (all but ``approved``) is held, not running
        (StatBus's rule, the details' ``held_by_review``). The aggregate's query does not
        know the hold; the Status's review block does (``Status.held_progress``)."""
        return replace(self, jobs=tuple(
            j if j.held or j.state == "approved" else replace(j, held=True)
            for j in self.jobs))

    @classmethod
    def from_json(cls, value: Any) -> Progress:
        if not isinstance(value, Mapping):
            raise DetailsError("progress: expected an object")
        jobs = tuple(JobProgress.from_json(j) for j in _objects(value.get("jobs"), "jobs"))
        phases = tuple(
            PhaseProgress.from_json(p) for p in _objects(value.get("phases"), "phases")
        )
        queued = value.get("derive_queued")
        me = get(value, "me", DB_INT)
        return cls(jobs, phases, bool(queued) if isinstance(queued, bool) else False, me)

    # -- what the faces show ------------------------------------------------------------
    @property
    def running_jobs(self) -> tuple[JobProgress, ...]:
        return tuple(j for j in self.jobs if j.running and not j.held)

    @property
    def queued_jobs(self) -> tuple[JobProgress, ...]:
        return tuple(j for j in self.jobs if not j.running and not j.held)

    @property
    def held_jobs(self) -> tuple[JobProgress, ...]:
        """Jobs a review holds back: no share in the percentage, said apart."""
        return tuple(j for j in self.jobs if j.held)

    @property
    def imports_pct(self) -> float | None:
        """The running jobs' progress, weighted by their rows (None: none running)."""
        running = [j for j in self.running_jobs if j.pct is not None]
        if not running:
            return None
        weights = [max(1, j.total_rows or 1) for j in running]
        total = sum((j.pct or 0.0) * w for j, w in zip(running, weights, strict=True))
        return total / sum(weights)

    @property
    def phase(self) -> PhaseProgress | None:
        """The phase of the pipeline that runs now (units before reports)."""
        for p in self.phases:
            if p.active:
                return p
        return None

    @property
    def overall_pct(self) -> int | None:
        """The ring's number: the imports' share done while imports run, else the
        running pipeline step's tasks completed of its total."""
        if self.running_jobs:
            return percent(self.imports_pct)
        phase = self.phase
        return percent(phase.pct) if phase is not None else None

    @property
    def text(self) -> str:
        """'2 imports (42 % overall), 1 import held by a review, derive 120 of 412 tasks'
        ('' when nothing is known).

        With one import running its percentage is that job's, the one its bar shows;
        with several, "overall" says the figure is their mean weighted by rows, not any
        one job's. A held job is neither running nor queued: it waits for a person."""
        parts = []
        running = self.running_jobs
        if running:
            part = plural(len(running), "import")
            pct = percent(self.imports_pct)
            if pct is not None:
                part += f" ({pct} %)" if len(running) == 1 else f" ({pct} % overall)"
            parts.append(part)
        queued = len(self.queued_jobs)
        if queued:
            parts.append(f"{plural(queued, 'import')} queued")
        held = len(self.held_jobs)
        if held:
            parts.append(f"{plural(held, 'import')} held by a review")
        phase = self.phase
        if phase is not None:
            if phase.total:
                parts.append(f"{phase.name} {phase.completed:,} of {phase.total:,} tasks")
            else:
                parts.append(f"{phase.name}: {phase.step_words}")
        elif self.derive_queued or any(p.pending for p in self.phases):
            parts.append("derive queued")
        return ", ".join(parts)

    def to_json(self) -> dict[str, object]:
        phase = self.phase
        return {
            "overall_pct": self.overall_pct,
            "text": self.text,
            "imports_running": len(self.running_jobs),
            "imports_queued": len(self.queued_jobs),
            "imports_held": len(self.held_jobs),
            "imports_pct": percent(self.imports_pct),
            "derive": None
            if phase is None
            else {
                "phase": phase.name,
                "step": phase.step,
                "completed": phase.completed,
                "total": phase.total,
            },
            "jobs": [
                {
                    "id": j.id,
                    "slug": j.slug,
                    "state": j.state,
                    "pct": percent(j.pct),
                    "total_rows": j.total_rows,
                    "user_id": j.user_id,
                    "mine": self.mine(j),
                    "held": j.held,
                }
                for j in self.jobs
            ],
            "me": self.me,
            "estimate": self.estimate.to_json() if self.estimate is not None else None,
        }
