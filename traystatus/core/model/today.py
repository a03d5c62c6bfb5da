"""What happened today, per deployment: a short timeline for the details window.

Two inputs, one output, no I/O and no Qt here:

* what StatBus keeps (``DAY_SQL``, read by the monitor only while the details window is
  open, at most once a minute): the import jobs that ended today (finished, failed,
  rejected: how, rows, whether the job is this login's), the review holds that began today
  (``analysis_stop_at`` of a job with ``review``; ended by ``processing_start_at`` when
  approved), and the derive runs (StatBus's pipeline roots, ``collect_changes`` at depth
  0: start, end, duration) among the newest ``DAY_TASKS`` task ids - a backward walk of
  the primary key, never a scan of the 10^6 completed tasks StatBus keeps for 7 days;
* what this app saw (``SeenLog``, fed every Status): time lost to disconnection,
  StatBus's upgrades, and review holds (listed only when StatBus's record is not there:
  through a relay).

``timeline()`` merges them into ``DayEntry`` lines, oldest first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from traystatus.core.model.state import State, Status
from traystatus.core.model.upgrade import Upgrade, UpgradePhase
from traystatus.core.words.wording import format_duration, plural

DAY_TASKS = 200_000  # task ids looked back through (the estimate's bound: bench_today.py)
DAY_RUNS = 50  # derive runs read at most
DAY_JOBS = 100  # import jobs read at most
SHOWN = 30  # lines shown at most (the newest)

# When a job ended, by StatBus's own stamps: processing stopped, rejected at review (the
# state trigger stamps changes_rejected_at), else the last stamp it has.
_ENDED = ("coalesce(j.processing_stop_at, j.changes_rejected_at, j.analysis_stop_at, "
          "j.preparing_data_at, j.created_at)")

# %(since)s: the start of the local day. One round trip; jsonb so the shape is checked here.
DAY_SQL = f"""
SELECT
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'id', j.id, 'slug', j.slug, 'description', j.description, 'state', j.state::text,
            'rows', j.imported_rows, 'total_rows', j.total_rows,
            -- error_count (2026-03-08) through the row's jsonb: absent on an older StatBus
            'errors', to_jsonb(j) -> 'error_count',
            'mine', j.user_id IS NOT NULL AND j.user_id = (SELECT auth.uid()),
            'review', j.review, 'review_at', j.analysis_stop_at,
            'approved_at', j.changes_approved_at, 'rejected_at', j.changes_rejected_at,
            'ended', {_ENDED})), '[]'::jsonb)
     FROM (SELECT * FROM public.import_job AS j
            WHERE {_ENDED} >= %(since)s OR j.analysis_stop_at >= %(since)s
            ORDER BY j.id DESC LIMIT {DAY_JOBS}) AS j),
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'id', t.id, 'state', t.state::text, 'start', t.start,
            'end', t.completed_at)), '[]'::jsonb)
     FROM (SELECT t.id, t.state, t.completed_at,
                  -- process_start_at since 2026-03 (processed_at before)
                  coalesce(to_jsonb(t) ->> 'process_start_at',
                           to_jsonb(t) ->> 'processed_at') AS start
             FROM worker.tasks AS t
            WHERE t.command = 'collect_changes'
              AND t.state::text IN ('completed', 'failed', 'processing', 'waiting')
              AND (t.completed_at >= %(since)s OR t.state::text IN ('processing', 'waiting'))
              AND t.id > (SELECT coalesce(max(m.id), 0) FROM worker.tasks AS m) - {DAY_TASKS}
              -- the pipeline's root (depth since 2026-03; before, every one was a root)
              AND coalesce(to_jsonb(t) ->> 'depth', '0') = '0'
            ORDER BY t.id DESC LIMIT {DAY_RUNS}) AS t)
"""


@dataclass(frozen=True)
class DayEntry:
    """One line of the day: when, what kind, what to say."""

    at: datetime
    kind: str  # import | review | derive | upgrade | disconnected
    text: str
    bad: bool = False  # failed, with errors, rejected, lost time: shown marked


@dataclass
class SeenLog:
    """What the app saw: spells without a connection and StatBus's upgrades (fed every
    Status by the app; kept for the last ``keep``)."""

    keep: timedelta = timedelta(hours=36)
    lost: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    upgrades: dict[int, Upgrade] = field(default_factory=dict)
    # review holds: (names, start: StatBus's stamp or when seen, end or None while it holds)
    holds: list[tuple[str, datetime, datetime | None]] = field(default_factory=list)

    def observe(self, status: Status, now: datetime) -> None:
        down = status.state in (State.DISCONNECTED, State.ERROR) or (
            status.state is State.UPGRADING and status.problem is not None)
        open_spell = bool(self.lost) and self.lost[-1][1] is None
        if down and not open_spell:
            self.lost.append((now, None))
        elif status.state in (State.STABLE, State.PROCESSING, State.UPGRADING) and (
                open_spell and not down):
            self.lost[-1] = (self.lost[-1][0], now)
        if status.upgrade is not None:
            self.upgrades[status.upgrade.id] = status.upgrade
        if status.is_known:
            holding = bool(self.holds) and self.holds[-1][2] is None
            block = status.review
            if block is not None and not holding:
                names = ", ".join(slug or f"job {i}" for i, slug in block.waiting)
                self.holds.append((names, block.since or now, None))
            elif block is None and holding:
                names, start, _ = self.holds[-1]
                self.holds[-1] = (names, start, now)
        cut = now - self.keep
        self.lost = [s for s in self.lost if s[1] is None or s[1] >= cut]
        self.holds = [h for h in self.holds if h[2] is None or h[2] >= cut]


def _time(d: Mapping[str, Any], key: str) -> datetime | None:
    value = d.get(key)
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.utcoffset() is not None else None


def _int(d: Mapping[str, Any], key: str) -> int | None:
    value = d.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hhmm(t: datetime) -> str:
    return t.astimezone().strftime("%H:%M")


def _took(a: datetime, b: datetime) -> str:
    return format_duration(max(0.0, math.floor((b - a).total_seconds())))


def _jobs(rows: Sequence[Any], since: datetime) -> list[DayEntry]:
    out = []
    for d in rows:
        if not isinstance(d, Mapping) or _int(d, "id") is None:
            continue
        name = str(d.get("description") or d.get("slug") or f"job {d['id']}")
        whose = "your import" if d.get("mine") is True else "import"
        state = d.get("state")
        ended, rows_in = _time(d, "ended"), _int(d, "rows")
        review_at, approved_at = _time(d, "review_at"), _time(d, "approved_at")
        rejected_at = _time(d, "rejected_at")
        if d.get("review") is True and review_at is not None and review_at >= since:
            if approved_at is not None and approved_at >= review_at:
                held = f"held the imports {_took(review_at, approved_at)} (approved)"
            elif rejected_at is not None and rejected_at >= review_at:
                held = f"held the imports {_took(review_at, rejected_at)} (rejected)"
            elif state == "rejected":
                held = "rejected"
            elif state == "waiting_for_review":
                held = "still waiting"
            else:
                held = "reviewed"
            out.append(DayEntry(review_at, "review", f"Review of {name}: {held}"))
        if state not in ("finished", "failed", "rejected") or ended is None or ended < since:
            continue
        errors = _int(d, "errors") or 0
        if state == "failed":
            what, bad = f"{whose.capitalize()} {name} failed", True
        elif state == "rejected":
            what, bad = f"{whose.capitalize()} {name} was rejected at review", True
        else:
            n = plural(rows_in or 0, "row")
            what = f"{whose.capitalize()} {name} finished: {n}"
            bad = errors > 0
            if bad:
                what += f", {plural(errors, 'error')}"
        out.append(DayEntry(ended, "import", what, bad))
    return out


def _runs(rows: Sequence[Any], since: datetime, now: datetime) -> list[DayEntry]:
    out = []
    for d in rows:
        if not isinstance(d, Mapping):
            continue
        start, end = _time(d, "start"), _time(d, "end")
        if start is None:
            continue
        if d.get("state") in ("processing", "waiting"):
            out.append(DayEntry(start, "derive", f"Derive started {_hhmm(start)}, "
                                f"running for {_took(start, now)}"))
        elif end is not None and end >= since:
            how = "failed after" if d.get("state") == "failed" else "took"
            out.append(DayEntry(start, "derive", f"Derive {_hhmm(start)}–{_hhmm(end)}, "
                                f"{how} {_took(start, end)}", d.get("state") == "failed"))
    return out


def _holds(log: SeenLog, since: datetime, now: datetime) -> list[DayEntry]:
    """The review holds this app saw (when StatBus's record is not there: a relay)."""
    out = []
    for names, a, b in log.holds:
        if (b or now) < since:
            continue
        held = (f"held the imports {_took(a, b)}" if b is not None
                else f"still waiting, {_took(a, now)} so far")
        out.append(DayEntry(a, "review", f"Review of {names}: {held}"))
    return out


def _seen(log: SeenLog, since: datetime, now: datetime) -> list[DayEntry]:
    out = []
    for a, b in log.lost:
        end = b or now
        if end < since:
            continue
        a = max(a, since)
        if (end - a) < timedelta(seconds=1):
            continue
        text = (f"No connection {_hhmm(a)}–{_hhmm(end)} ({_took(a, end)} lost)" if b
                else f"No connection since {_hhmm(a)} ({_took(a, end)} so far)")
        out.append(DayEntry(a, "disconnected", text, True))
    for up in log.upgrades.values():
        start = up.started_at or up.scheduled_at
        if start is None or (up.ended_at or start) < since:
            continue
        if up.phase is UpgradePhase.SCHEDULED:
            continue
        if up.phase is UpgradePhase.RUNNING:
            text = f"StatBus upgrade started {_hhmm(start)}"
        elif up.phase is UpgradePhase.COMPLETED and up.ended_at is not None:
            text = f"StatBus upgraded {_hhmm(start)}–{_hhmm(up.ended_at)}" + (
                f" to {up.name}" if up.name else "")
        else:
            text = up.text(now)
        out.append(DayEntry(start, "upgrade", text, up.phase not in (
            UpgradePhase.RUNNING, UpgradePhase.COMPLETED)))
    return out


def timeline(row: Sequence[Any] | None, log: SeenLog | None, since: datetime,
             now: datetime) -> list[DayEntry]:
    """DAY_SQL's row (None: not read, or not readable) and what the app saw, as the day's
    lines since ``since``, oldest first, at most SHOWN (the newest)."""
    out: list[DayEntry] = []
    if row is not None and len(row) >= 2:
        jobs, runs = row[0], row[1]
        out += _jobs(jobs if isinstance(jobs, list) else [], since)
        out += _runs(runs if isinstance(runs, list) else [], since, now)
    if log is not None:
        out += _seen(log, since, now)
        if row is None:  # StatBus's record has the holds when it is there
            out += _holds(log, since, now)
    out.sort(key=lambda e: e.at)
    return out[-SHOWN:]


def day_start(now: datetime) -> datetime:
    """Midnight of ``now``'s local day (the day a person means by "today")."""
    local = now.astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Day:
    """What the monitor hands the app: DAY_SQL's row and when it was read (``row`` None:
    this StatBus or login cannot tell; the app then shows what it saw)."""

    read_at: datetime
    since: datetime
    row: tuple[Any, ...] | None


RELAY_NOTE = ("StatBus's own record of the day is not available through a relay; "
              "below is what this app saw.")
UNREADABLE_NOTE = ("This StatBus or login cannot tell the day's imports and derive runs; "
                   "below is what this app saw.")


@dataclass(frozen=True)
class DayView:
    """The day as the details window shows it: its lines and a note on what is missing."""

    entries: tuple[DayEntry, ...]
    note: str = ""


def day_view(day: Day | None, log: SeenLog | None, now: datetime,
             relay: bool = False) -> DayView:
    """The lines of ``day`` (DAY_SQL's read; None when there is none) and ``log``."""
    since = day.since if day is not None else day_start(now)
    row = day.row if day is not None else None
    note = RELAY_NOTE if relay else (UNREADABLE_NOTE if day is not None and row is None
                                     else "")
    return DayView(tuple(timeline(row, log, since, now)), note)
