"""The "StatBus built-in" source's protocol: what to LISTEN on, what to read, what to keep.

Pure (no I/O): the monitor's ``BuiltinReader`` and the tests' clients drive it.

1. LISTEN on StatBus's channels (``builtin_sql.CHANNELS``), THEN read with
   ``RULE_FULL`` (every row once: learns the tasks already processing or interrupted).
2. On every notification, whatever its payload, read again (coalesced), with ``RULE``:
   pending and waiting tasks through StatBus's partial indexes, processing and
   interrupted ones by id. ``worker_task_changed`` names the task whose state changed
   (``{"id": N, "parent_id": M}``); its id joins the tracked set, and every read keeps only
   the ids still processing or interrupted. The id is a fact about a row, not a snapshot
   of a state, so a stale or repeated notification costs one probe, never a wrong answer.
3. Payloads are hints: the answer never depends on having read every one. A payload we
   cannot use (not JSON, no integer id), or any beyond ``cap`` between two reads (a flood:
   anyone may NOTIFY; those are counted, not parsed), is information lost, and the next
   read (coalesced: at most one a window) does not depend on them: ``RULE_SINCE`` finds
   processing and interrupted tasks by the tracked ids and by a primary-key range from the
   floor, the lowest id a task can have that started since the last read without telling
   us (``TaskTracker.floor``). Its cost is the tasks above the floor, the derive in flight
   if any, not the table (bench/bench_builtin.py). Within ``floor_lag`` seconds of a
   connection's first read no floor is known yet and that read is a full one. A lost
   payload also asks for a full read, at most once per ``min_full_interval`` (30 s), for
   what the floor cannot cover (a task updated back to processing by hand).
4. ``next_due``: the earliest future ``scheduled_at`` of a pending analytics task; the
   monitor reads again when it falls due (no write announces that).

On a StatBus without ``worker_task_changed`` (before 2026-03-20) every read is a full one,
on a timer (``OLD_STATBUS_INTERVAL``) as well as on the other channels.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from traystatus.core.model.state import Problem
from traystatus.core.pg.diagnosis import Diagnosis
from traystatus.core.watch import _builtin_sql as builtin_sql

OLD_STATBUS_INTERVAL = 5.0  # seconds between timed reads without worker_task_changed
DEFAULT_CAP = 2_000  # payloads parsed between two reads; the rest are counted, not parsed
MIN_FULL_INTERVAL = 30.0  # seconds between full reads asked for by notifications
FLOOR_LAG = 5.0  # seconds of reads kept for the floor (TaskTracker.floor)
MAX_PAYLOAD_BYTES = 256  # StatBus's are about 35 bytes


@dataclass(frozen=True)
class Probe:
    """What ``builtin_sql.PROBE`` found: this login's grants and this StatBus's channels."""

    login: str
    worker_usage: bool | None  # None: no schema "worker" (not a StatBus database)
    import_job_select: bool | None  # None: no such table
    tasks_select: bool | None
    registry_select: bool | None
    sees_all_jobs: bool | None
    task_changed_channel: bool
    holds_queue: bool = True  # a review holds StatBus's import queue (since 2026-03-10)
    migrations_readable: bool = False  # ask builtin_sql.MIGRATION_HOLDS_QUEUE if not holds

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Probe:
        return cls(
            login=str(row[0]),
            worker_usage=row[1],
            import_job_select=row[2],
            tasks_select=row[3],
            registry_select=row[4],
            sees_all_jobs=row[5],
            task_changed_channel=bool(row[6]),
            holds_queue=bool(row[7]),
            migrations_readable=bool(row[8]),
        )

    @property
    def ask_migrations(self) -> bool:
        """True when ``builtin_sql.MIGRATION_HOLDS_QUEUE`` must settle ``holds_queue``."""
        return not self.holds_queue and self.migrations_readable

    def settle(self, by_migration: bool | None) -> Probe:
        """This probe with ``holds_queue`` decided: the worker procedure says so, else
        db.migration (``by_migration``, when this login may read it), else the
        worker_task_changed trigger (2026-03-20) proves a StatBus newer than the pause
        (2026-03-10)."""
        holds = self.holds_queue or bool(by_migration)
        if by_migration is None and not holds:
            holds = self.task_changed_channel
        return dataclasses.replace(self, holds_queue=holds)

    def problem(self, where: str) -> Diagnosis | None:
        """One clear sentence naming what is missing, or None when the login may read."""
        if self.worker_usage is None or self.import_job_select is None or (
            self.tasks_select is None and self.worker_usage
        ):
            return Diagnosis(
                Problem.SQL_MISSING,
                f"{where} does not look like a StatBus database (no public.import_job or "
                "worker.tasks), and traystatus's SQL is not installed. Check the database "
                "name in the connection settings.",
            )
        missing = []
        if not self.worker_usage:
            missing.append("USAGE on schema worker")
        if not self.import_job_select:
            missing.append("SELECT on public.import_job")
        if self.worker_usage and not self.tasks_select:
            missing.append("SELECT on worker.tasks")
        if self.worker_usage and not self.registry_select:
            missing.append("SELECT on worker.command_registry")
        if missing:
            return Diagnosis(
                Problem.PERMISSION,
                f"The login {self.login} may not read what traystatus needs in {where}: "
                f"it lacks {_join(missing)}. StatBus grants these to the role "
                f"authenticated: ask an administrator to run GRANT authenticated TO "
                f'"{self.login}", or to install traystatus\'s SQL (docs/sql.md).',
            )
        if self.sees_all_jobs is False:
            return Diagnosis(
                Problem.PERMISSION,
                f"The login {self.login} sees only some import jobs in {where} (row level "
                "security lets members of authenticated see all of them). Ask an "
                f'administrator to run GRANT authenticated TO "{self.login}", or to install '
                "traystatus's SQL (docs/sql.md).",
            )
        return None


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class RuleQuery(NamedTuple):
    sql: str
    params: dict[str, Any]
    full: bool
    since: bool = False  # RULE_SINCE: the tracked ids and the range above the floor


@dataclass(frozen=True)
class RuleResult:
    stable: bool
    next_due: datetime | None


class TaskTracker:
    """Ids of tasks that may be processing or interrupted, and the floor above which a
    task may have started unannounced (see the module docstring)."""

    def __init__(self, cap: int = DEFAULT_CAP,
                 min_full_interval: float = MIN_FULL_INTERVAL,
                 floor_lag: float = FLOOR_LAG) -> None:
        self.cap = cap
        self.floor_every = floor_lag
        # A full read asked for by what a notification said (a payload we cannot use, a
        # flood of ids, a queue change) comes at most this often: anyone may NOTIFY, and a
        # forged flood must not make every client scan worker.tasks twice a second.
        self.min_full_interval = min_full_interval
        self.floor_lag = floor_lag
        self._ids: set[int] = set()
        self._added: set[int] = set()  # noted since the last read began
        self._parsed = 0  # payloads parsed since the last read began (at most cap)
        self.need_full = True  # the first read of a connection is a full one
        self.lost = False  # a payload was dropped or unusable since the last read began
        self._first = True
        self._last_full: float | None = None
        # (when, floor) of the reads that kept the floor (RULE_FLOOR, RULE_SINCE,
        # RULE_FULL) since the newest one at least floor_lag older than the last: the floor
        # of a read is the lowest id it found tracked, pending or waiting, else the newest
        # id + 1.
        self._floors: list[tuple[float, int]] = []
        # Analytics tasks pending but scheduled ahead at the last read that kept the floor:
        # not under the floor, so a read after lost payloads probes them by id.
        self._scheduled: set[int] = set()
        self.unusable_payloads = 0
        self.dropped_payloads = 0  # beyond the cap: counted, not parsed
        self.holds_queue = True  # from Probe.holds_queue: the job half of the line

    def reset(self) -> None:
        """A new connection: forget everything, read everything."""
        self._ids.clear()
        self._added.clear()
        self._floors.clear()
        self._scheduled.clear()
        self._parsed = 0
        self.need_full = True
        self.lost = False
        self._first = True

    def _full_allowed(self, now: float | None) -> bool:
        if self._first or now is None or self._last_full is None:
            return True
        return now - self._last_full >= self.min_full_interval

    def full_due_in(self, now: float) -> float | None:
        """Seconds until a full read that is owed but held back may run (None: none owed)."""
        if not self.need_full or self._full_allowed(now):
            return None if not self.need_full else 0.0
        assert self._last_full is not None
        return max(0.0, self._last_full + self.min_full_interval - now)

    @property
    def ids(self) -> list[int]:
        return sorted(self._ids)

    def floor(self) -> int | None:
        """The lowest id a task that started since the last read can have without its
        payload having reached us, or None while the floors kept do not span
        ``floor_lag`` seconds (then only a full read is sure).

        Why it holds (StatBus's worker, worker.process_tasks): a task becomes processing
        only from pending or interrupted. Every read is exact (a read after lost payloads
        is this one), so one processing or interrupted at the last read is tracked. One
        pending and due at the last read F that kept the floor is at or above F's floor;
        an analytics one scheduled ahead then is probed by id (``_scheduled``). One
        queued since F was inserted either by the handler of a task then processing
        (tracked, and older than what it spawns) or by a transaction shorter than
        ``floor_lag`` (less a read's own duration), which began after the oldest read
        kept and so got an id above that read's newest. Other queues' tasks scheduled
        ahead do not count in the answer. Anything else (a task UPDATEd back to
        processing by hand, an id given explicitly, a longer transaction) is left to the
        full read a lost payload also asks for, ``min_full_interval`` later."""
        if not self._floors:
            return None
        last = self._floors[-1][0]
        if self._floors[0][0] > last - self.floor_lag:
            return None
        return min(f for _, f in self._floors)

    def note(self, payload: str) -> bool:
        """A ``worker_task_changed`` payload; False if unusable. Beyond ``cap`` payloads
        between two reads the rest are counted, not parsed (a flood costs no parsing):
        either way the next read does not depend on them (``lost``)."""
        if self._parsed >= self.cap:
            self.dropped_payloads += 1
            self.lost = True
            self.need_full = True  # the safety net, min_full_interval away
            return True
        self._parsed += 1
        task_id: Any = None
        if len(payload) <= MAX_PAYLOAD_BYTES:
            try:
                value = json.loads(payload)
            except (ValueError, RecursionError):
                value = None
            if isinstance(value, dict):
                task_id = value.get("id")
        if isinstance(task_id, bool) or not isinstance(task_id, int) or not (
            0 < task_id < 1 << 63
        ):
            self.unusable_payloads += 1
            self.lost = True
            self.need_full = True
            return False
        self._ids.add(task_id)
        self._added.add(task_id)
        return True

    def query(self, now: float | None = None) -> RuleQuery:
        """The statement for the next read, its parameters, and whether it reads every row
        (pass the query back to ``apply``). ``now`` (monotonic seconds) holds an owed full
        read back to ``min_full_interval``; None: no limit, and no floor either.

        After lost information the read is never the plain one: RULE_SINCE from the floor
        when the reads kept span ``floor_lag``, else a full read, whatever the limit (at
        most the reads of the first ``floor_lag`` seconds of a connection)."""
        self._added.clear()
        self._parsed = 0
        lost, self.lost = self.lost, False
        full = RuleQuery(builtin_sql.RULE_FULL, {"holds": self.holds_queue}, True)
        if self.need_full and self._full_allowed(now):
            return full
        if lost:
            low = self.floor() if now is not None else None
            if low is None:
                return full
            ids = sorted(self._ids | self._scheduled)
            return RuleQuery(builtin_sql.RULE_SINCE,
                             {"ids": ids, "low": low, "holds": self.holds_queue},
                             False, since=True)
        # The floor's column every floor_every seconds (it costs a look at every pending
        # row): reads that leave it out add nothing to the floors, see floor().
        stale = not self._floors or (
            now is not None and now - self._floors[-1][0] >= self.floor_every)
        sql = builtin_sql.RULE_FLOOR if stale else builtin_sql.RULE
        return RuleQuery(sql, {"ids": self.ids, "holds": self.holds_queue}, False)

    def params(self) -> dict[str, Any]:
        """Parameters of the details and work mark queries."""
        return {"ids": self.ids, "holds": self.holds_queue}

    def apply(self, row: Sequence[Any], full: bool, now: float | None = None) -> RuleResult:
        """The read's row: (stable, ids still processing/interrupted, next_due, newest,
        review) and, from a read that keeps the floor, (the lowest tracked, due pending or
        waiting id, the analytics tasks scheduled ahead)."""
        still = {int(i) for i in (row[1] or ())}
        # Ids noted while the read ran (none on one connection, but be safe) stay.
        self._ids = still | self._added
        self._added.clear()
        if full:
            self.need_full = False
            self._first = False
            self._last_full = now
        if now is not None and len(row) > 5:
            newest = int(row[3]) if row[3] is not None else 0
            lowest = int(row[5]) if row[5] is not None else newest + 1
            self._keep_floor(now, min(lowest, newest + 1))
            if len(row) > 6:
                self._scheduled = {int(i) for i in (row[6] or ())}
        return RuleResult(bool(row[0]), row[2])

    def _keep_floor(self, now: float, floor: int) -> None:
        self._floors.append((now, floor))
        # Keep the newest read at least floor_lag older than this one, and all after it.
        old = [i for i, (t, _) in enumerate(self._floors) if t <= now - self.floor_lag]
        if old:
            del self._floors[:old[-1]]
