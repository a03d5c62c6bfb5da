"""When will the register be stable? One estimate, learned from StatBus's own history.

Pure: no I/O, no clock (``now`` is an argument). The monitor reads a small ``History``
(``readers.HISTORY_SQL``: the last finished import jobs and derive runs, bounded reads)
at most once a minute while processing, and calls ``estimate(progress, history, now)``
with every progress read; the result rides on ``Progress.estimate`` to every face.

The model, stage by stage, all of it serial as StatBus's worker runs it:

* each running import job: the rest of its current phase from its own rate (elapsed
  time over the share done) blended with how long that phase took for finished jobs of
  a similar size; then its later phases from those jobs;
* each queued job (not held by a review): all its phases from similar finished jobs;
* then derive: how long derive runs took after imports of a similar size (rows imported
  since the run before), less the time the running one has already taken.

Each stage is a ``Span`` (low, mid, high seconds) and the stages add up. A stage with
nothing to learn from (no similar finished job, no derive run in the history, a derive
taking longer than every similar one) makes the whole estimate unknown, with the reason:
never a number made up. While a job waits for review, the jobs held behind it are not
part of "stable" (StatBus is stable while they wait); what they will take once the review
is approved is ``after_review``.

Bad input (timestamps missing, stops before starts, a clock that jumped, failed or
rejected runs, phases StatBus renamed) drops the sample or widens the range; nothing here
raises on data, and no time is negative.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol

from traystatus.core.words.wording import format_duration, plural

SIMILAR = 2.0
"""A finished run is "of a similar size" when its rows are within this factor."""
MIN_SIMILAR = 1
"""Similar runs needed before a stage is estimated from them alone."""
MAX_SECONDS = 30 * 86400.0
"""Longer than any plausible run: a sample beyond it is a clock that jumped."""
OWN_RATE_FROM = 5.0
"""A job's own rate counts once it is this many percent through its phase."""
FIRST_RUN_WINDOW = 600.0
"""The oldest derive run in the history counts the rows of the jobs that ended this many
seconds before it began (StatBus starts a derive run as soon as an import ends)."""
HISTORY_MAX_AGE = 60.0
"""Seconds a History is used before it is read again (while processing only)."""


# -- the history ----------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRun:
    """A finished import job: its rows and how long each phase took (None: unknown)."""

    id: int
    rows: int
    prepare_s: float | None
    analyse_s: float | None
    process_s: float | None
    ended_at: datetime | None


@dataclass(frozen=True)
class DeriveRun:
    """A completed derive run (a collect_changes root) and the rows imported before it."""

    id: int
    started_at: datetime
    ended_at: datetime
    rows: int

    @property
    def seconds(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class History:
    """What StatBus's own tables say about earlier runs (a week at most: StatBus keeps
    completed tasks 7 days). ``rows_since_derive``: rows of jobs that ended after the
    last completed derive run (their derive is still to come or running now).
    ``review_rows``: the rows of the jobs waiting for review. ``derive_started_at``: when
    the derive run in progress started (None: none runs)."""

    jobs: tuple[JobRun, ...] = ()  # in the order they ended
    derives: tuple[DeriveRun, ...] = ()  # in the order they ended
    rows_since_derive: int = 0
    review_rows: tuple[int, ...] = ()
    derive_started_at: datetime | None = None
    dropped: int = 0  # samples left out: failed, rejected, without or with impossible times

    @classmethod
    def from_rows(cls, jobs: Any, derives: Any, review: Any) -> History:
        """From the three columns of ``readers.HISTORY_SQL`` (lists of objects); anything
        malformed is dropped and counted, never raised."""
        dropped = 0
        runs: list[JobRun] = []
        ends: list[tuple[datetime, int]] = []  # when each finished job ended, its rows
        for j in _objects(jobs):
            if j.get("state") != "finished":
                dropped += 1
                continue
            rows = _count(j.get("rows"))
            prep, a0, a1 = _when(j.get("prep")), _when(j.get("a0")), _when(j.get("a1"))
            p0, p1 = _when(j.get("p0")), _when(j.get("p1"))
            job_id = _count(j.get("id"))
            if rows is None or job_id is None or p1 is None:
                dropped += 1
                continue
            ends.append((p1, rows))
            run = JobRun(job_id, rows, _between(prep, a0), _between(a0, a1),
                         _between(p0, p1), p1)
            if run.process_s is None:
                dropped += 1
                continue
            runs.append(run)
        completed: list[tuple[int, datetime, datetime]] = []
        running_since: datetime | None = None
        for t in _objects(derives):
            start, end, task_id = _when(t.get("start")), _when(t.get("end")), _count(t.get("id"))
            state = t.get("state")
            if state in ("processing", "waiting"):
                if start is not None and (running_since is None or start > running_since):
                    running_since = start
                continue
            if state != "completed" or task_id is None or _between(start, end) is None:
                dropped += 1
                continue
            assert start is not None and end is not None
            completed.append((task_id, start, end))
        completed.sort(key=lambda c: c[2])
        derive_runs: list[DeriveRun] = []
        previous: datetime | None = None
        for task_id, start, end in completed:
            # The rows of the jobs that ended since the run before; for the oldest run in
            # the history (its predecessor unseen), those that ended just before it began.
            after = previous or start - timedelta(seconds=FIRST_RUN_WINDOW)
            rows = sum(r for at, r in ends if after < at <= end)
            derive_runs.append(DeriveRun(task_id, start, end, rows))
            previous = end
        since = sum(r for at, r in ends if previous is None or at > previous)
        review_rows = tuple(r for r in (_count(v) for v in _list(review)) if r is not None)
        runs.sort(key=lambda j: (j.ended_at or datetime.min.replace(tzinfo=UTC), j.id))
        return cls(tuple(runs), tuple(derive_runs), since, review_rows, running_since, dropped)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _objects(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in _list(value) if isinstance(v, Mapping)]


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0 or value > 2**63:
        return None
    return int(value)


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if when.utcoffset() is None:
        return None  # without an offset the time is ambiguous: not a sample
    return when


def _between(start: datetime | None, stop: datetime | None) -> float | None:
    """Seconds from start to stop; None when either is missing or the span is impossible
    (negative: a clock that jumped back; beyond MAX_SECONDS: one that jumped ahead)."""
    if start is None or stop is None:
        return None
    seconds = (stop - start).total_seconds()
    return seconds if 0.0 <= seconds <= MAX_SECONDS else None


# -- spans ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """Seconds still to go: low <= mid <= high, all >= 0."""

    low: float
    mid: float
    high: float

    @classmethod
    def of(cls, low: float, mid: float, high: float) -> Span:
        lo = max(0.0, low)
        hi = max(lo, high)
        return cls(lo, min(max(mid, lo), hi), hi)

    def __add__(self, other: Span) -> Span:
        return Span(self.low + other.low, self.mid + other.mid, self.high + other.high)

    def widened(self, factor: float) -> Span:
        return Span.of(self.low / factor, self.mid, self.high * factor)


ZERO = Span(0.0, 0.0, 0.0)


class Unknown(Exception):
    """A stage with nothing to learn from; ``str()`` says why, for a person."""


def _learned(samples: Sequence[tuple[int, float]], rows: int, what: str) -> tuple[Span, int]:
    """How long ``what`` takes for ``rows`` rows, from (rows, seconds) samples: the similar
    ones' range (low to high, median in between), widened by how few they are; without
    similar ones, the others' seconds per row scaled, widened twice. Unknown without any."""
    similar = [s for r, s in samples if _similar(r, rows)]
    if len(similar) >= MIN_SIMILAR:
        mid = statistics.median(similar)
        trend = _trend(similar)
        if trend is not None:
            mid = trend  # StatBus's runs grow as its register grows: follow the week's trend
        span = Span.of(min(min(similar), mid), mid, max(max(similar), mid))
        return span.widened(1.0 + 0.5 / math.sqrt(len(similar))), len(similar)
    rates = [s / r for r, s in samples if r > 0]
    if rates and rows > 0:
        span = Span.of(min(rates) * rows, statistics.median(rates) * rows, max(rates) * rows)
        return span.widened(2.0), 0
    raise Unknown(f"no finished {what} of a similar size in the history yet")


TREND_RUNS = 3


def _trend(seconds: Sequence[float]) -> float | None:
    """The next run's duration on the straight line through the last TREND_RUNS runs (in
    the order they ran), kept within half the shortest and twice the longest of them; None
    with fewer runs."""
    last = list(seconds[-TREND_RUNS:])
    if len(last) < TREND_RUNS:
        return None
    n = len(last)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(last)
    slope = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(last)) / sum(
        (i - mean_x) ** 2 for i in range(n))
    guess = mean_y + slope * (n - mean_x)
    return min(max(guess, min(last) / 2), max(last) * 2)


def _similar(a: int, b: int) -> bool:
    if a == 0 or b == 0:
        return a == b
    return max(a, b) / min(a, b) <= SIMILAR


def _rest(expected: Span, elapsed: float, what: str) -> Span:
    """What is left of a stage expected to take ``expected`` that has run ``elapsed``.
    Past its high end the history did not foresee this run: unknown."""
    elapsed = max(0.0, elapsed)  # a clock that jumped back: count from now
    if elapsed > expected.high:
        raise Unknown(f"{what} is taking longer than every similar run this week")
    return Span.of(expected.low - elapsed,
                   max(expected.mid - elapsed, (expected.high - elapsed) / 2),
                   expected.high - elapsed)


# -- the estimate ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """When the register will be stable: ``at`` (the likeliest) between ``low`` and
    ``high``, or unknown (all three None) with ``how`` saying why. ``how`` also says how
    a known one was reached. ``after_review``: seconds (low, high) the work held behind a
    review will take once it is approved (None: no review, or not known)."""

    at: datetime | None
    low: datetime | None
    high: datetime | None
    how: str
    after_review: tuple[float, float] | None = None

    @property
    def known(self) -> bool:
        return self.at is not None

    def text(self, tz: tzinfo | None = None) -> str:
        """'stable at about 14:40 (14:25–15:05)' or 'when stable: unknown', in ``tz`` (the
        local zone by default); plus the review's share when there is one."""
        if self.at is None or self.low is None or self.high is None:
            line = "when stable: unknown"
        else:
            at, lo, hi = (t.astimezone(tz) for t in (self.at, self.low, self.high))
            line = f"stable at about {_clock(at)}"
            if _clock(lo) != _clock(hi):
                line += f" ({_clock(lo)}–{_clock(hi)})"
        if self.after_review is not None:
            lo_s, hi_s = self.after_review
            line += (f"; once the review is approved, then about "
                     f"{format_duration(lo_s)}–{format_duration(hi_s)}")
        return line

    def to_json(self) -> dict[str, object]:
        return {
            "known": self.known,
            "at": _iso(self.at),
            "low": _iso(self.low),
            "high": _iso(self.high),
            "how": self.how,
            "after_review": list(self.after_review) if self.after_review else None,
            "text": self.text(UTC),
        }


def _clock(when: datetime) -> str:
    return when.strftime("%H:%M")


def _iso(when: datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when is not None else None


class RunningJob(Protocol):
    """What the estimator needs of a running or queued import job: its rows, state, share
    done of its current phase and when that phase began. ``progress.JobProgress`` is one
    (the running stage's one type, core/model/jobs.py); this names what is read of it."""

    @property
    def total_rows(self) -> int | None: ...
    @property
    def state(self) -> str: ...
    @property
    def pct(self) -> float | None: ...
    @property
    def phase_started_at(self) -> datetime | None: ...


PHASES = {"preparing_data": 0, "analysing_data": 1, "processing_data": 2}
"""A job's phases in order; a queued job has all three ahead."""


def _job_stages(history: History) -> tuple[list[tuple[int, float]], ...]:
    prep = [(j.rows, j.prepare_s) for j in history.jobs if j.prepare_s is not None]
    ana = [(j.rows, j.analyse_s) for j in history.jobs if j.analyse_s is not None]
    proc = [(j.rows, j.process_s) for j in history.jobs if j.process_s is not None]
    return prep, ana, proc


def _job_rest(job: RunningJob, history: History, now: datetime, *,
              from_start: bool = False) -> Span:
    """The rest of a job's phases; ``from_start``: all three ahead (a job held behind a
    review, whatever it did before)."""
    rows = job.total_rows
    if rows is None:
        raise Unknown("an import job has no row count yet")
    samples = _job_stages(history)
    names = ("preparing", "analysis", "import")
    current = None if from_start else PHASES.get(job.state)
    total = ZERO
    first = 0 if current is None else current
    for phase in range(first, 3):
        if phase == current:
            total = total + _current_phase(job, rows, samples[phase], names[phase], now)
        else:
            expected, _ = _learned(samples[phase], rows, f"import {names[phase]}")
            total = total + expected
    return total


def _current_phase(job: RunningJob, rows: int, samples: Sequence[tuple[int, float]],
                   name: str, now: datetime) -> Span:
    """The rest of the phase a job is in: its own rate once it is far enough along,
    blended with the history's; either alone when the other is missing."""
    elapsed = None
    if job.phase_started_at is not None:
        elapsed = (now - job.phase_started_at).total_seconds()
        if not 0.0 <= elapsed <= MAX_SECONDS:
            elapsed = None  # a clock that jumped: the job's own time says nothing
    own: Span | None = None
    pct = job.pct if job.pct is not None and math.isfinite(job.pct) else None
    if elapsed is not None and pct is not None and OWN_RATE_FROM <= pct < 100.0:
        rest = elapsed * (100.0 - pct) / pct
        spread = 0.5 * (100.0 - pct) / 100.0 + 0.1  # wider the earlier in the phase
        own = Span.of(rest * (1 - spread), rest, rest * (1 + spread))
    elif pct is not None and pct >= 100.0:
        own = ZERO
    learned: Span | None = None
    try:
        expected, _ = _learned(samples, rows, f"import {name}")
        learned = _rest(expected, elapsed or 0.0, f"this import's {name}")
    except Unknown:
        if own is None:
            raise
    if own is None:
        assert learned is not None
        return learned
    if learned is None:
        return own
    w = (pct or 0.0) / 100.0  # trust the job's own rate more the further it is
    return Span.of(min(own.low, learned.low) if w < 0.5 else own.low,
                   w * own.mid + (1 - w) * learned.mid,
                   max(own.high, learned.high) if w < 0.5 else own.high)


def _derive_rest(rows: int, history: History, now: datetime, running: bool,
                 started_at: datetime | None) -> tuple[Span, str]:
    samples = [(d.rows, d.seconds) for d in history.derives]
    if not samples:
        raise Unknown("no derive run in the history yet (StatBus keeps a week)")
    expected, n = _learned(samples, rows, "derive run")
    similar = [d.seconds for d in history.derives if _similar(d.rows, rows)]
    if similar:
        how = (f"derive took {format_duration(min(similar))}–{format_duration(max(similar))}"
               f" after imports of this size this week ({plural(n, 'run')})")
    else:
        how = f"derive scaled from {plural(len(samples), 'run')} of other sizes this week"
    started_at = started_at or history.derive_started_at
    if running and started_at is not None:
        elapsed = (now - started_at).total_seconds()
        if not 0.0 <= elapsed <= MAX_SECONDS:
            return expected.widened(1.5), how + "; the clock jumped, range widened"
        return _rest(expected, elapsed, "this derive run"), how
    return expected, how


def estimate(jobs: Iterable[RunningJob], derive_running: bool, derive_queued: bool,
             history: History | None, now: datetime, *, review_waiting: bool = False,
             derive_started_at: datetime | None = None) -> Estimate:
    """When the register will be stable, from the work in progress and the history.

    ``jobs``: the running and queued import jobs (progress order: running first, then
    the queue in StatBus's priority order). ``derive_running``/``derive_queued``: a derive
    phase runs / a collect_changes task waits. ``review_waiting``: a job waits for review
    (StatBus holds the queued imports behind it). ``derive_started_at``: when the running
    derive run began (progress reads it every second; the history's is a minute old)."""
    if history is None:
        return Estimate(None, None, None, "reading StatBus's history")
    jobs = list(jobs)
    running = [j for j in jobs if j.state in PHASES]
    queued = [j for j in jobs if j.state not in PHASES]
    # While a job waits for review, StatBus holds the queue ("upload_completed") behind it;
    # an approved job (the reviewed one, or one approved before) still runs.
    held = [j for j in queued if review_waiting and j.state != "approved"]
    ahead = running + [j for j in queued if j not in held]
    try:
        total = ZERO
        for job in ahead:
            total = total + _job_rest(job, history, now)
        rows = history.rows_since_derive + sum(j.total_rows or 0 for j in ahead)
        if not (ahead or derive_running or derive_queued):
            raise Unknown("no import or derive runs: other analytics tasks, nothing to learn"
                          " from")
        part, how = _derive_rest(rows, history, now, derive_running and not ahead,
                                 derive_started_at)
        total = total + part
        if total.high > MAX_SECONDS:
            raise Unknown("more than a month ahead by the history: too far to tell")
    except Unknown as ex:
        after = _after_review(held, history, review_waiting, now)
        return Estimate(None, None, None, str(ex), after)
    if history.dropped:
        how += f"; {history.dropped} failed, rejected or unusable runs left out"
    try:
        at, low, high = (_whole(now + timedelta(seconds=s))
                         for s in (total.mid, total.low, total.high))
    except OverflowError:  # a clock at the end of the calendar
        return Estimate(None, None, None, "this computer's clock is out of range")
    return Estimate(at=at, low=low, high=high, how=how,
                    after_review=_after_review(held, history, review_waiting, now))


def _whole(when: datetime) -> datetime:
    """Up to the whole second: what every face and the relay carry (never before now)."""
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when


def _after_review(held: Sequence[RunningJob], history: History, review_waiting: bool,
                  now: datetime) -> tuple[float, float] | None:
    """Seconds the work behind a review takes once it is approved: the reviewed jobs'
    import, the held jobs, then derive. None when no review waits or nothing is known."""
    if not review_waiting:
        return None
    try:
        _, _, proc = _job_stages(history)
        total = ZERO
        for rows in history.review_rows:
            expected, _ = _learned(proc, rows, "import")
            total = total + expected
        for job in held:
            total = total + _job_rest(job, history, now, from_start=True)
        rows = sum(history.review_rows) + sum(j.total_rows or 0 for j in held)
        derive, _ = _learned([(d.rows, d.seconds) for d in history.derives], rows,
                             "derive run")
        total = total + derive
    except Unknown:
        return None
    if total.high > MAX_SECONDS:
        return None
    return (total.low, total.high)


def from_json(value: Any) -> Estimate | None:
    """``Estimate.to_json()`` back (relay); None for what is not one (a hint: dropped)."""
    if not isinstance(value, Mapping):
        return None
    at, low, high = (_when(value.get(k)) for k in ("at", "low", "high"))
    how = value.get("how")
    how = how if isinstance(how, str) else ""
    after = value.get("after_review")
    after_review: tuple[float, float] | None = None
    if isinstance(after, list) and len(after) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and 0 <= v <= MAX_SECONDS for v in after):
        after_review = (float(min(after)), float(max(after)))
    if at is None or low is None or high is None or not low <= at <= high:
        return Estimate(None, None, None, how, after_review)
    return Estimate(at, low, high, how, after_review)


STEADY = 0.05
"""An estimate that moved less than this share of the time left (or 5 s) is kept as it
was: the faces are not told of a new estimate every second."""


def steady(old: Estimate | None, new: Estimate | None, now: datetime) -> Estimate | None:
    """``old`` when ``new`` tells nothing a person would notice, else ``new``."""
    if old is None or new is None or old.how != new.how or old.after_review != new.after_review:
        return new
    pairs = ((old.at, new.at), (old.low, new.low), (old.high, new.high))
    for a, b in pairs:
        if a is None or b is None:
            if a is not b:
                return new
            continue
        slack = max(5.0, STEADY * max(0.0, (b - now).total_seconds()))
        if abs((a - b).total_seconds()) > slack:
            return new
    return old
