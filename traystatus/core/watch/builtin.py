"""``BuiltinReader``: watch an unmodified StatBus through its own channels and plain reads.

For a database where traystatus's SQL is not installed (or, in ``auto`` mode, is not
current). The protocol, and why it ends on the truth, is in builtin.py and
docs/architecture.md ("StatBus built-in"); the queries are in builtin_sql.py. This module
maps them onto the monitor's ``Reader`` strategy (readers.py):

* channels: ``worker_tasks`` and ``worker_queue_change`` (a task was queued, a command
  moved queue), ``worker_task_changed`` (a task changed state: its id), ``import_job``
  (a job row changed); ``import_job_progress`` only while details are wanted;
  ``worker_status`` only on a StatBus too old for ``worker_task_changed``;
* the first read of a connection checks what the login may read (one clear error naming
  the missing grant), then reads every row once; later reads use StatBus's partial
  indexes and the tracked ids;
* its own timing, which the monitor honours: a coalescing window of ``COALESCE_WINDOW``
  (StatBus's channels are chatty: hundreds of notifications per import), a read when a
  future-scheduled analytics task falls due, and on a StatBus without
  ``worker_task_changed`` a full read every ``OLD_STATBUS_INTERVAL`` seconds
  (``MonitorOptions.old_statbus_interval``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from traystatus.core.model.details import Details, DetailsError, WorkSummary
from traystatus.core.model.state import Problem, utcnow
from traystatus.core.pg.diagnosis import Diagnosis, Phase, Target, classify
from traystatus.core.pg.link import Link
from traystatus.core.watch import _builtin_sql as builtin_sql
from traystatus.core.watch import readers
from traystatus.core.watch._builtin_protocol import OLD_STATBUS_INTERVAL, Probe, TaskTracker
from traystatus.core.watch._schedule import Channel
from traystatus.core.watch._stability import Owed
from traystatus.core.watch.readers import StableRead, Unusable, review_block

log = logging.getLogger(__name__)

COALESCE_WINDOW = 0.6  # seconds: at most 2 re-reads in any second of a burst
WORKER_STATUS_CHANNEL = "worker_status"
QUEUE_CHANNEL = "worker_queue_change"

BUILTIN_NOTE = (
    "watching StatBus directly; an administrator can install traystatus's SQL for fewer "
    "notifications: see docs/sql.md"
)


def old_statbus_note(interval: float = OLD_STATBUS_INTERVAL) -> str:
    """What a person should know about a StatBus without ``worker_task_changed``."""
    return ("this StatBus is too old to announce task changes (worker_task_changed, added "
            f"2026-03-20): reading every {interval:g} s")


OLD_STATBUS_NOTE = old_statbus_note()


class BuiltinReader(readers.ProgressReading):
    """The ``Reader`` for StatBus's own channels and plain reads (see the module doc).

    Progress (readers.ProgressReading): the same plain aggregate as the installed reader.
    While processing only ``import_job_progress`` is added: ``worker_task_changed``
    already tells of every task that starts or ends (and an old StatBus's
    ``worker_status`` is this reader's own, never UNLISTENed by the monitor)."""

    @property
    def progress_channels(self) -> tuple[str, ...]:
        return builtin_sql.DETAILS_CHANNELS

    name = "builtin"
    coalesce_window: float | None = COALESCE_WINDOW

    def __init__(self, conninfo: str, reason: str = "",
                 old_statbus_interval: float | None = None) -> None:
        # reason: why auto mode chose this reader ("" when it was asked for or the SQL is
        # simply not installed); outdated SQL says so here, as a warning, not an error.
        # old_statbus_interval: MonitorOptions.old_statbus_interval (None: the default).
        self._conninfo = conninfo  # for messages (where), never the password
        self.old_interval = old_statbus_interval or OLD_STATBUS_INTERVAL
        self.reason = reason  # why built-in was chosen in auto mode ("" when asked for)
        self.tracker = TaskTracker()
        self.old_statbus = False
        self.probe: Probe | None = None
        self._next_due: datetime | None = None

    # -- what the monitor asks ------------------------------------------------------------
    @property
    def channels(self) -> tuple[str, ...]:
        return builtin_sql.CHANNELS

    @property
    def details_channels(self) -> tuple[str, ...]:
        return builtin_sql.DETAILS_CHANNELS

    @property
    def notes(self) -> tuple[str, ...]:
        """What a person should know about this way of watching (doctor, About, details)."""
        out = [BUILTIN_NOTE]
        if self.reason:
            out.insert(0, self.reason)
        if self.old_statbus:
            out.append(old_statbus_note(self.old_interval))
        return tuple(out)

    def channel(self, name: str) -> Channel:
        if name in builtin_sql.DETAILS_CHANNELS:
            return Channel.DETAILS
        if name in builtin_sql.CHANNELS or (self.old_statbus and name == WORKER_STATUS_CHANNEL):
            return Channel.STABILITY
        return Channel.IGNORED

    def check_payload(self, name: str, payload: str) -> str:
        """Payloads are hints, with one use: ``worker_task_changed`` names the task whose
        state changed, and the next read looks at that row (builtin.TaskTracker). An
        unusable one, or any past the tracker's cap, makes the next read one that does not
        depend on payloads (from the floor); an unusable one is reported as malformed."""
        if name == builtin_sql.TASK_CHANGED_CHANNEL:
            if not self.tracker.note(payload):
                return 'not {"id": <task id>, ...}: the next read does not rely on payloads'
        elif name == QUEUE_CHANNEL:
            self.tracker.need_full = True  # a command moved queue: look at everything once
        return ""

    def read_within(self) -> float | None:
        """Seconds within which the next stability read is due for this reader's own
        reasons (a scheduled task falls due; an old StatBus), or None."""
        out: float | None = self.old_interval if self.old_statbus else None
        held = self.tracker.full_due_in(time.monotonic())
        if held is not None:  # a full read owed, held back by the rate limit
            out = held if out is None else min(out, held)
        if self._next_due is not None:
            left = (self._next_due - utcnow()).total_seconds() + 0.05
            out = max(0.0, left) if out is None else min(out, max(0.0, left))
        return out

    # -- reads ----------------------------------------------------------------------------
    async def first_read(self, link: Link, with_mark: bool) -> StableRead:
        where = Target.from_conninfo(self._conninfo).where
        try:
            row = await link.one(builtin_sql.PROBE)
        except psycopg.Error as ex:
            diag = classify(ex, self._conninfo, Phase.QUERY)
            if diag.problem in (Problem.SQL_MISSING, Problem.PERMISSION):
                raise Unusable(diag) from ex
            raise
        assert row is not None
        probe = Probe.from_row(row)
        by_migration = None
        if probe.ask_migrations:
            held = await link.one(builtin_sql.MIGRATION_HOLDS_QUEUE)
            by_migration = bool(held and held[0])
        probe = probe.settle(by_migration)
        self.probe = probe
        wrong = probe.problem(where)
        if wrong is not None:
            raise Unusable(wrong)
        self.old_statbus = not probe.task_changed_channel
        self.tracker.reset()
        self.tracker.holds_queue = probe.holds_queue
        if self.old_statbus:
            self.tracker.min_full_interval = 0.0  # every read is a full one there
        if self.old_statbus:
            log.warning("%s: %s", where, old_statbus_note(self.old_interval))
            # Every analytics task sends a pipeline_progress here: a hint to read sooner.
            await link.listen(WORKER_STATUS_CHANNEL)
        return await self.read_stable(link, with_mark)

    async def read_stable(self, link: Link, with_mark: bool) -> StableRead:
        if self.old_statbus:
            self.tracker.need_full = True
        now = time.monotonic()
        query = self.tracker.query(now)
        try:
            row = await link.one(query.sql, query.params)
        except psycopg.errors.InsufficientPrivilege as ex:
            raise Unusable(classify(ex, self._conninfo, Phase.QUERY)) from ex
        assert row is not None
        result = self.tracker.apply(row, query.full, now)
        self._next_due = result.next_due
        mark = row[3] if with_mark and result.stable else None
        return StableRead(result.stable, int(mark) if isinstance(mark, int) else None,
                          review_block(row[4]))

    async def read_details(self, link: Link) -> Details | None:
        row = await link.one(builtin_sql.DETAILS, self.tracker.params())
        try:
            return Details.from_json(row[0] if row else None)
        except DetailsError as ex:
            log.warning("ignoring malformed status details: %s", ex)
            return None

    async def read_summary(self, link: Link, owed: Owed) -> WorkSummary | None:
        row = await link.one(
            builtin_sql.WORK_SUMMARY,
            {"mark": owed.mark, "since": owed.since},
        )
        try:
            return WorkSummary.from_json(row[0] if row else None, owed.duration)
        except DetailsError as ex:
            log.warning("ignoring a malformed work summary: %s", ex)
            return None


@dataclass(frozen=True)
class BuiltinCheck:
    """What one connection found about watching StatBus directly (doctor, Settings)."""

    problem: Diagnosis | None  # the login may not (a missing grant), or not a StatBus
    stable: bool | None  # the state now, when it could be read
    old_statbus: bool = False  # no worker_task_changed: read every OLD_STATBUS_INTERVAL s


async def check_builtin(conn: psycopg.AsyncConnection[Any], where: str) -> BuiltinCheck:
    """May this login watch StatBus directly, and what does the rule say now? One probe, at
    most one db.migration question and one full read; never raises for the database's
    answers (a failure is the ``problem``)."""
    try:
        cur = await conn.execute(builtin_sql.PROBE.encode())
        row = await cur.fetchone()
        assert row is not None
        probe = Probe.from_row(row)
        wrong = probe.problem(where)
        if wrong is not None:
            return BuiltinCheck(wrong, None)
        by_migration = None
        if probe.ask_migrations:
            cur = await conn.execute(builtin_sql.MIGRATION_HOLDS_QUEUE.encode())
            held = await cur.fetchone()
            by_migration = bool(held and held[0])
        holds = probe.settle(by_migration).holds_queue
        cur = await conn.execute(builtin_sql.RULE_FULL.encode(), {"holds": holds})
        state = await cur.fetchone()
    except psycopg.Error as ex:
        return BuiltinCheck(classify(ex, "", Phase.QUERY), None)
    return BuiltinCheck(None, bool(state and state[0]), not probe.task_changed_channel)
