"""The Monitor: one LISTEN connection that always ends on the database's truth.

Protocol (docs/architecture.md, "Notification protocol"):

1. Connect (autocommit, connect timeout, TCP keepalives), ``LISTEN system_stability``,
   THEN read ``is_system_stable()`` together with the installed SQL version. Nothing
   committed after the LISTEN can be missed: it either is in the read or notifies.
2. On every notification, whatever its payload (a hint computed in the writer's snapshot,
   possibly stale, possibly garbage), re-read ``is_system_stable()``. Bursts are coalesced
   (coalesce.py): the first change is read at once, a burst costs one more read at the end
   of its window, and that last read comes after the last notification.
3. Every ``health_interval`` seconds without a read, read anyway, with ``health_timeout``.
   That proves the connection alive (a silently dropped network shows up as STALE within
   interval + timeout, where TCP keepalives alone take minutes) and catches a
   future-scheduled task becoming due, which no write announces.
4. On any failure: DISCONNECTED (network, server gone; backoff about 1 s doubling to
   60 s, with jitter, reset after a success) or ERROR (wrong password, SQL missing or
   outdated, no privilege, TLS: retried every ``error_retry`` seconds so a fix is picked
   up). Every reconnect reads the state again before reporting it.

One connection does everything. psycopg's ``notifies()`` holds the connection lock while
it waits, so the loop waits with ``notifies(timeout=..., stop_after=1)`` until the next
thing is due, then runs its queries on the same connection; notifications that arrive
during a query are kept by psycopg in a backlog and returned by the next ``notifies()``.
Wake-ups from outside (``stop()``, ``reconnect_now()``, a details subscriber) cancel the
wait, which is safe: no query is in flight while waiting.

A query that does not answer within ``health_timeout`` is not cancelled through libpq
(that would open a second connection through the same dead network and wait for it);
the socket is shut down instead, which makes libpq fail at once, and the connection is
reported STALE.

Details (get_system_status_details()) are read only while someone subscribed: then the
monitor also LISTENs ``import_job_progress`` and re-reads details on notifications of
either channel (coalesced) and every ``details_interval`` seconds while processing; when
the last subscriber leaves it UNLISTENs and reads nothing more.

Progress (``Status.progress``, core/model/progress.py): while processing, whoever watches, the
monitor also LISTENs StatBus's ``import_job_progress`` and ``worker_status`` and reads
the reader's small progress aggregate on notifications of any channel, at most once per
``progress_interval`` (1 s), and every ``progress_refresh`` (10 s) when nothing notifies.
At stable it UNLISTENs them and reads no progress at all.

Work summary (only while someone listens for summaries): every stable read also takes
``system_work_mark()`` (the newest task id; a PK lookup). When the state goes
stable -> processing, the mark of the last stable read and the time are kept; at
processing -> stable ``get_system_work_summary(mark, since)`` tells what finished in
between, handed to summary listeners with the duration.

Callbacks are plain callables run on the loop; an exception in one is logged, not fatal.

Where the parts live: the decisions are pure (``schedule.ReadSchedule``: what to read next
and when; ``stability.StabilityTracker``: the answer across reconnects and when a work
summary is owed; ``state.carry_since``: the ``since`` rule, a relay's too), the I/O is in
``pgio`` (connect, statements with a deadline, waiting on the socket), the queries and
channels are the ``readers.Reader``'s. This module holds the life cycle: connect, session,
failure and retry, and the listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from getpass import getuser
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import Notify
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from traystatus.core.model.estimate import History, steady
from traystatus.core.model.jobs import EndedJob
from traystatus.core.model.progress import Progress
from traystatus.core.model.review import REVIEW_WAIT_SQL, enrich
from traystatus.core.model.state import Counters, Problem, State, Status, carry_since, utcnow
from traystatus.core.model.today import DAY_SQL, Day, day_start
from traystatus.core.model.upgrade import (
    UPGRADE_CHANNEL,
    UPGRADE_SQL,
    UPGRADE_TABLE_SQL,
    Upgrade,
    UpgradeRowError,
    is_upgrade_changed,
    pick,
)
from traystatus.core.pg import link as pgio
from traystatus.core.pg.diagnosis import Diagnosis, Phase, Target, classify
from traystatus.core.pg.probe import diagnose
from traystatus.core.watch._schedule import Channel, ReadSchedule
from traystatus.core.watch._stability import StabilityTracker
from traystatus.core.watch.backoff import Backoff
from traystatus.core.watch.base import SourceBase
from traystatus.core.watch.endings import EndingsLedger, LedgerFile, ledger_key
from traystatus.core.watch.options import MonitorOptions
from traystatus.core.watch.readers import (
    MAX_PAYLOAD_BYTES,
    PROGRESS_CHANNEL,
    STABILITY_CHANNEL,
    Reader,
    StableRead,
    Unusable,
    choose_reader,
)

log = logging.getLogger(__name__)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PROGRESS_CHANNEL",
    "STABILITY_CHANNEL",
    "Counters",
    "Monitor",
    "MonitorOptions",
]

T = TypeVar("T")
NOTE_BATCH = 1000  # notifications handled between two yields to the event loop
ENDINGS_ROUNDS = 5  # ledger reads in a row while more new jobs wait (NEW_LIMIT each)
CLAIM_GRACE = 10.0  # seconds a held ledger file is waited for before one in memory starts
DAY_INTERVAL = 60.0  # seconds between two reads of the day's history (window open)
UPGRADE_MIN_INTERVAL = 1.0  # seconds between two reads of public.upgrade (a forged flood)
_UPGRADE_UNREADABLE = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.InvalidSchemaName,
)
# What a details read that this database (its version, this login) cannot answer raises:
# the details are a hint, so it costs the details, never the state or the connection.
# A lost connection (OperationalError) still goes to the reconnect.
_DETAILS_UNREADABLE = (psycopg.ProgrammingError, psycopg.DataError)


def _os_user() -> str:
    """libpq's default user name: the operating system's user ("" when none)."""
    try:
        return getuser()
    except (OSError, KeyError, ImportError):
        return ""


class _Restart(Exception):
    """reconnect_now() was called: drop this connection and connect again at once."""


class Monitor(SourceBase):
    """Watch one StatBus database; call listeners with every change of ``Status``.

    ``conninfo``: a libpq conninfo string or URI. ``connect_kwargs``: more libpq
    parameters (``password=...`` from the keychain, for instance); they win over the
    conninfo. Keepalives, connect_timeout and application_name are added unless given.
    Nothing connects before ``run()``; the constructor never touches the network.
    """

    def __init__(
        self,
        conninfo: str,
        options: MonitorOptions | None = None,
        **connect_kwargs: Any,
    ) -> None:
        self.conninfo = conninfo
        self.options = options or MonitorOptions()
        self._connect_kwargs = connect_kwargs
        # Until a reader is chosen, say what will most likely be used.
        self._source = "builtin" if self.options.reader == "builtin" else "installed"
        super().__init__(Status(State.CONNECTING, source=self._source))
        self._import_listeners: list[Callable[[EndedJob], None]] = []
        self._ledger = EndingsLedger()  # which import jobs ended: kept across reconnects
        self._ledger_file: LedgerFile | None = None
        self._ledger_claim: tuple[Path, str, str] | None = None  # folder, key, target
        self._claim_failed_at: float | None = None  # monotonic: another owner first seen
        o = self.options
        self._backoff = Backoff(o.backoff_initial, o.backoff_cap, jitter=o.backoff_jitter)
        self._failures = 0  # failures since the last session: the attempt shown to people
        self._schedule = ReadSchedule(
            o.health_interval,
            o.details_interval,
            o.coalesce_window,
            o.progress_interval,
            o.progress_refresh,
        )
        self._progress: Progress | None = None
        self._history: History | None = None  # what the estimate learns from, this connection
        self._history_at = -math.inf  # monotonic time of its last read
        self._listening: set[str] = set()
        self._tracker = StabilityTracker()
        self._note = ""  # the reader's notes, carried by STABLE/PROCESSING statuses
        self._malformed_logged_at = -1e9
        self._reading = ""  # the reader of the current session, once chosen (for messages)
        # StatBus's software upgrade (core/model/upgrade.py): the last one read, kept across a
        # disconnect (the database is down while a running upgrade backs it up).
        self._upgrade: Upgrade | None = None
        self._upgrade_table = False  # this session's StatBus has a readable public.upgrade
        self._upgrade_wanted = False  # an upgrade_changed arrived since the last read
        self._upgrade_read_at = -1e18
        self._upgrade_logged = False
        self._adopted: psycopg.AsyncConnection[Any] | None = None  # see adopt()
        # A review that waits (core/model/review.py): its jobs' rows, read once per set of
        # waiting jobs; ``None`` while this StatBus or login cannot tell.
        self._wait_key: tuple[int, ...] = ()
        self._wait_rows: list[tuple[Any, ...]] = []
        self._wait_broken = False
        # The day's history (core/model/today.py): read only while details are wanted, at most
        # once per DAY_INTERVAL, for day listeners (the details window).
        self._day_listeners: list[Callable[[Day], None]] = []
        self._day_at = -1e18
        self._day_broken = False
        self._details_problem = ""  # the last details read's failure, logged once

    # -- public API (the rest is SourceBase's) -------------------------------------------
    def add_import_listener(self, callback: Callable[[EndedJob], None]) -> None:
        """Called once per import job that ended (reached finished, failed or rejected)
        after the monitor first saw the database: also for jobs that ended while it was
        disconnected or stopped, when ``options.endings_dir`` keeps the ledger
        (core/watch/endings.py). ``EndedJob.mine``: the login's own job. Add before ``run()``."""
        self._import_listeners.append(callback)

    def add_day_listener(self, callback: Callable[[Day], None]) -> None:
        """Called with the day's history (core/model/today.py) while details are subscribed: at
        once, then at most once per DAY_INTERVAL. Add before ``run()``."""
        self._day_listeners.append(callback)

    def adopt(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Use ``conn`` (autocommit, opened with :meth:`connect_conninfo`'s conninfo) for
        the first session instead of connecting: a one-shot command whose password probe
        connected hands that connection over, so it opens one connection, not two. The
        monitor owns it from here (closes it after the session, or unused at the end of
        ``run()``). Call before ``run()``."""
        self._adopted = conn

    def connect_conninfo(self) -> str:
        """The conninfo the monitor connects with (its defaults added; no secret is
        added that the caller did not give)."""
        return self._conninfo()

    async def run(self) -> None:
        """Watch until ``stop()``. Never raises for environment errors (they become a
        Status); a cancelled task closes its connection and re-raises CancelledError."""
        self._begin_run()
        try:
            await self._open_ledger()
            await self._run()
        finally:
            ledger_file, self._ledger_file = self._ledger_file, None
            if ledger_file is not None:
                ledger_file.release()
            adopted, self._adopted = self._adopted, None
            await pgio.close(adopted, self.options.health_timeout)
            self._end_run()

    async def _open_ledger(self) -> None:
        """Claim and load the ledger file of this database and login (import listeners
        with an ``endings_dir`` only), off the loop."""
        folder = self.options.endings_dir
        if not self._import_listeners or folder is None:
            return
        try:
            params = conninfo_to_dict(self._conninfo())
        except psycopg.Error:
            return  # the run reports the bad conninfo
        where = Target.from_conninfo(self.conninfo).where
        user = str(params.get("user") or os.environ.get("PGUSER") or _os_user())
        key = ledger_key(str(params.get("host") or ""), str(params.get("port") or ""),
                         str(params.get("dbname") or ""), user)
        self._ledger_claim = (Path(folder), key, f"{user}@{where}")
        await self._claim_ledger()

    async def _claim_ledger(self) -> bool:
        """Own the ledger file if nobody else does; True when owned or none is wanted.
        Asked again before every ledger read while another watcher holds it (one being
        replaced still stops); a ledger kept in memory meanwhile gives way to the file's,
        which knows more (the policy tells a job once anyway)."""
        if self._ledger_claim is None or self._ledger_file is not None:
            return True
        claimed = await asyncio.to_thread(LedgerFile.claim, *self._ledger_claim)
        if claimed is None:
            if self._claim_failed_at is None:
                self._claim_failed_at = time.monotonic()
            return False
        saved = await asyncio.to_thread(claimed.load)
        if saved.started or not self._ledger.started:
            self._ledger = saved
        self._ledger_file = claimed
        return True

    # -- the loop ---------------------------------------------------------------------------
    def _conninfo(self) -> str:
        """The conninfo with our defaults for what the caller did not set."""
        params = conninfo_to_dict(self.conninfo)
        params.update(self._connect_kwargs)
        o = self.options
        defaults: dict[str, Any] = {
            "connect_timeout": max(1, round(o.connect_timeout)),
            "keepalives": 1,
            "keepalives_idle": o.keepalives_idle,
            "keepalives_interval": o.keepalives_interval,
            "keepalives_count": o.keepalives_count,
            "application_name": o.application_name,
        }
        for key, value in defaults.items():
            params.setdefault(key, value)
        return make_conninfo("", **params)

    def _interrupted(self) -> bool:
        return self._stopping or self._restart

    async def _run(self) -> None:
        first = True
        wake = self._wake
        assert wake is not None
        while not self._stopping:
            self._restart = False
            try:
                conninfo = self._conninfo()
            except psycopg.Error as ex:
                diag = classify(ex, self.conninfo, Phase.CONNECT)
                await self._failed(diag)
                continue
            conn, self._adopted = self._adopted, None
            if conn is not None and conn.closed:
                conn = None
            try:
                if conn is None:
                    limit = pgio.connect_limit(conninfo, self.options.connect_timeout)
                    conn = await pgio.connect(conninfo, limit, wake, self._interrupted)
            except asyncio.CancelledError:
                raise
            except Exception as ex:
                self.counters.connect_failures += 1
                diag = await diagnose(ex, conninfo, Phase.CONNECT)
                self._log_failure(diag, ex)
                await self._failed(diag)
                continue
            if conn is None:
                continue  # stop() or reconnect_now() while connecting
            self.counters.connects += 1
            if not first:
                self.counters.reconnects += 1
            first = False
            failure: Diagnosis | None = None
            try:
                await self._session(conn)
            except asyncio.CancelledError:
                raise
            except _Restart:
                log.info("reconnecting now, as asked")
                self._set_status(Status(State.CONNECTING))
            except Unusable as ex:
                failure = ex.diagnosis
                cause = ex.__cause__
                if self._reading == "builtin" and isinstance(cause, psycopg.Error):
                    # A grant revoked while watching StatBus directly: the fix is about
                    # StatBus's tables, not traystatus's functions.
                    failure = classify(cause, conninfo, Phase.QUERY, source=self._reading)
                log.info("%s: %s", failure.problem.value, failure.message)
            except pgio.Stale:
                self.counters.stale += 1
                target = Target.from_conninfo(conninfo)
                failure = Diagnosis(
                    Problem.STALE,
                    f"The server at {target.where} stopped answering (no reply within "
                    f"{self.options.health_timeout:g} s). Check the network or VPN.",
                )
                log.info("%s: %s", failure.problem.value, failure.message)
            except Exception as ex:
                failure = classify(ex, conninfo, Phase.QUERY,
                                   source=self._reading or "installed")
                self._log_failure(failure, ex)
            finally:
                # Close before waiting: no idle connection (and no LISTEN) is held on the
                # server while the monitor waits to retry.
                await pgio.close(conn, self.options.health_timeout)
            if failure is not None:
                await self._failed(failure)

    def _log_failure(self, diag: Diagnosis, ex: BaseException) -> None:
        if diag.problem is Problem.INTERNAL:
            log.error("unexpected error in the monitor", exc_info=ex)
        else:
            log.info("%s: %s [%s]", diag.problem.value, diag.message, diag.detail)

    async def _failed(self, diag: Diagnosis) -> None:
        """Report a failure and wait before the next attempt (cut short by a wake-up)."""
        self._failures += 1
        if diag.problem is Problem.INTERNAL or not diag.transient:
            self._backoff.attempt += 1
            delay = self.options.error_retry
            state = State.ERROR
        elif diag.retry_soon:
            # The server answered that it is starting up: it will take connections in a
            # moment, and the answer is owed within 2 s of that. No growing backoff, and
            # the backoff starts small again: a server that talks is not an outage, so a
            # failure after it (the restart's last moments) must not wait 2^n seconds
            # for the n "starting up" answers before it (the soak saw 160 s of grey).
            self._backoff.reset()
            delay = min(self.options.backoff_initial, 1.0)
            state = State.DISCONNECTED
        else:
            delay = self._backoff.next_delay()
            state = State.DISCONNECTED
        self._set_status(
            Status(
                state,
                problem=diag.problem,
                message=diag.full_message,
                attempt=self._failures,
                next_retry_at=utcnow() + timedelta(seconds=delay),
            )
        )
        await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds unless stop() or reconnect_now() comes first.

        Other wake-ups (a details subscriber) do not shorten it: ``next_retry_at`` was
        promised to the person watching.
        """
        wake = self._wake
        assert wake is not None
        deadline = time.monotonic() + delay
        while True:
            wake.clear()
            remaining = deadline - time.monotonic()
            if self._interrupted() or remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    # -- a connected session ----------------------------------------------------------------
    async def _session(self, conn: psycopg.AsyncConnection[Any]) -> None:
        link = pgio.Link(conn, self.options.health_timeout, self._count_query)
        self._reading = ""
        reader = await choose_reader(link, self.options.reader, self.conninfo,
                                     self.options.old_statbus_interval)
        self._source = self._reading = reader.name
        schedule = self._schedule
        schedule.set_window(reader.coalesce_window or self.options.coalesce_window)
        self._listening = set()
        self._progress = None
        self._history, self._history_at = None, -math.inf
        for channel in reader.channels if self.options.listen else ():
            await link.listen(channel)
            self._listening.add(channel)
        await self._start_upgrades(link)
        self.counters.stability_reads += 1
        first = await reader.first_read(link, bool(self._summary_listeners))
        self._note = " ".join(reader.notes)
        schedule.start(time.monotonic())
        await self._read_upgrade(link)
        await self._apply(link, reader, first)
        self._backoff.reset()
        self._failures = 0
        wake = self._wake
        assert wake is not None
        while True:
            if self._stopping:
                return
            if self._restart:
                raise _Restart()
            await self._sync_details(link, reader)
            now = time.monotonic()
            if schedule.stable_due(now):
                health = schedule.is_health_check(now)
                if health:
                    self.counters.health_checks += 1
                await self._read_stable(link, reader)
                if health:
                    # Whatever no notification told (a job that began and ended between
                    # two reads): at most a health interval late.
                    await self._read_endings(link, reader)
            processing = self._tracker.known is False
            if schedule.details_due(time.monotonic(), processing):
                await self._read_details(link, reader)
            await self._sync_progress(link, reader, processing)
            if schedule.progress_due(time.monotonic()):
                await self._read_progress(link, reader)
            upgrade_at = self._upgrade_due()
            if upgrade_at is not None and upgrade_at <= time.monotonic():
                await self._read_upgrade(link)
                await self._read_stable(link, reader)  # the state with it, at once
                upgrade_at = None
            deadline = schedule.deadline(processing)
            if upgrade_at is not None:
                deadline = min(deadline, upgrade_at)
            seconds = max(0.0, deadline - time.monotonic())
            wake.clear()
            if self._interrupted() or self._details_change_pending():
                continue
            notes = await link.wait(seconds, wake)
            now = time.monotonic()
            for start in range(0, len(notes), NOTE_BATCH):
                if start:
                    await asyncio.sleep(0)  # a flood must not hold the loop from the rest
                self._on_notify(reader, notes[start:start + NOTE_BATCH], now)

    def _count_query(self) -> None:
        self.counters.queries += 1

    def _details_change_pending(self) -> bool:
        return (self._details_refs > 0) != self._schedule.details_on

    def _on_notify(self, reader: Reader, notes: list[Notify], now: float) -> None:
        """Notifications that arrived together (at ``now``): each payload is checked, the
        schedule told once per channel (what it does with one is what it does with many)."""
        self.counters.notifications += len(notes)
        kinds: dict[str, Channel] = {}
        for note in notes:
            if (self._upgrade_table and not self._upgrade_wanted
                    and note.channel == UPGRADE_CHANNEL and is_upgrade_changed(note.payload)):
                self._upgrade_wanted = True  # a hint: public.upgrade is read, not the payload
            channel = kinds.get(note.channel)
            if channel is None:
                channel = kinds[note.channel] = reader.channel(note.channel)
                if channel is Channel.IGNORED:
                    log.debug("ignoring notifications on channel %r", note.channel)
                else:
                    self._schedule.notified(channel, now)
            if channel is Channel.IGNORED:
                continue
            problem = reader.check_payload(note.channel, note.payload)
            if problem:
                self._malformed(note, problem)

    def _malformed(self, note: Notify, problem: str) -> None:
        """Count and log a malformed payload. Nothing depends on payloads."""
        self.counters.malformed_payloads += 1
        now = time.monotonic()
        # At most one warning a minute: a broken writer should not flood the log.
        if now - self._malformed_logged_at >= 60:
            self._malformed_logged_at = now
            log.warning(
                "ignoring a malformed %s payload from backend %d: %s (%r...); "
                "re-reading the state instead",
                note.channel,
                note.pid,
                problem,
                note.payload[:80],
            )

    # -- reads ------------------------------------------------------------------------------
    async def _read_stable(self, link: pgio.Link, reader: Reader) -> None:
        self._schedule.stable_reading(time.monotonic())
        self.counters.stability_reads += 1
        answer = await reader.read_stable(link, bool(self._summary_listeners))
        await self._apply(link, reader, answer)

    async def _apply(self, link: pgio.Link, reader: Reader, answer: StableRead) -> None:
        now = time.monotonic()
        within = reader.read_within()
        self._schedule.read_by(None if within is None else now + within)
        seen = self._tracker.observe(
            answer.stable, answer.mark, utcnow(), now, bool(self._summary_listeners)
        )
        self._schedule.stable_read(now, seen.changed)
        old = self._status
        review = answer.review
        if review is not None:
            review = enrich(review, await self._review_wait(link, tuple(review.job_ids)))
        self._set_status(Status(State.STABLE if answer.stable else State.PROCESSING,
                                review=review))
        changed = (old.state, old.review) != (self._status.state, self._status.review)
        if changed:
            # A state or review change may come with an import's end (a rejection at
            # review, the closing read of a processing spell).
            await self._read_endings(link, reader)
        if seen.owed is not None:
            self.counters.summary_reads += 1
            summary = await reader.read_summary(link, seen.owed)
            if summary is not None:
                self._emit(self._summary_listeners, summary)

    async def _sync_channels(self, link: pgio.Link, reader: Reader) -> None:
        """LISTEN to exactly what is wanted now: the reader's channels, its details
        channels while details are on, its progress channels while processing. A channel
        two of them share stays LISTENed while either wants it."""
        schedule = self._schedule
        want = set(reader.channels)
        if self._upgrade_table:
            want.add(UPGRADE_CHANNEL)
        if schedule.details_on:
            want.update(reader.details_channels)
        if schedule.progress_on:
            want.update(reader.progress_channels)
        for channel in sorted(want - self._listening):
            await link.listen(channel)
            self._listening.add(channel)
        for channel in sorted(self._listening - want):
            await link.unlisten(channel)
            self._listening.discard(channel)

    async def _sync_details(self, link: pgio.Link, reader: Reader) -> None:
        want = self._details_refs > 0
        if want and not self._schedule.details_on:
            self._schedule.details_started()
            await self._sync_channels(link, reader)
        elif not want and self._schedule.details_on:
            self._day_at = -1e18  # the next window to open reads the day at once
            self._schedule.details_stopped()
            await self._sync_channels(link, reader)

    async def _sync_progress(self, link: pgio.Link, reader: Reader, processing: bool) -> None:
        """Progress exists only while processing: listen and read then, never otherwise."""
        if processing and not self._schedule.progress_on:
            self._schedule.progress_started()
            await self._sync_channels(link, reader)
        elif not processing and self._schedule.progress_on:
            self._schedule.progress_stopped()
            self._progress = None
            await self._sync_channels(link, reader)

    async def _read_progress(self, link: pgio.Link, reader: Reader) -> None:
        self._schedule.progress_reading(time.monotonic())
        self.counters.progress_reads += 1
        progress = await reader.read_progress(link)
        if reader.endings_due():
            await self._read_endings(link, reader)
        if progress is None or not self._schedule.progress_on:
            return
        if time.monotonic() - self._history_at >= self.options.history_interval:
            self._history_at = time.monotonic()
            self.counters.history_reads += 1
            self._history = await reader.read_history(link)
        now = utcnow()
        progress = progress.estimated(self._history, now,
                                      review_waiting=self._status.review is not None)
        if self._progress is not None:  # a moved estimate alone is not news every second
            progress = replace(progress, estimate=steady(self._progress.estimate,
                                                         progress.estimate, now))
        self._progress = progress
        if self._status.state is State.PROCESSING:
            self._set_status(replace(self._status, progress=progress))

    async def _read_details(self, link: pgio.Link, reader: Reader) -> None:
        self._schedule.details_reading(time.monotonic())
        self.counters.details_reads += 1
        try:
            details = await reader.read_details(link)
        except _DETAILS_UNREADABLE as ex:
            details = None
            problem = str(ex).splitlines()[0] if str(ex) else type(ex).__name__
            if problem != self._details_problem:
                self._details_problem = problem
                log.warning("no details from this database: %s", problem)
        else:
            self._details_problem = ""
        self._schedule.details_read(time.monotonic())
        if details is None or self._details_refs == 0:
            return  # malformed, or the last subscriber left while the query ran
        self._emit(self._details_listeners, details)
        if self._day_listeners and time.monotonic() - self._day_at >= DAY_INTERVAL:
            await self._read_day(link)

    async def _read_day(self, link: pgio.Link) -> None:
        """The day's history, one bounded query (DAY_SQL); None when unreadable here."""
        self._day_at = time.monotonic()
        now = utcnow()
        since = day_start(now)
        row: tuple[Any, ...] | None = None
        if not self._day_broken:
            self.counters.day_reads += 1
            try:
                row = await link.one(DAY_SQL, {"since": since})
            except (*_UPGRADE_UNREADABLE, psycopg.errors.UndefinedFunction,
                    psycopg.errors.UndefinedObject) as ex:
                self._day_broken = True
                log.warning("the day's history is not readable here: %s",
                            str(ex).splitlines()[0])
        self._emit(self._day_listeners, Day(now, since, row))

    async def _read_endings(self, link: pgio.Link, reader: Reader) -> None:
        """Tell import listeners the jobs that ended since the ledger's last read (a
        bounded query; again at once while it says more are newer), then keep the ledger.
        Told before kept: a crash in between may tell one twice, never lose one."""
        if not self._import_listeners:
            return
        if not await self._claim_ledger() and not self._ledger.started:
            assert self._claim_failed_at is not None
            if time.monotonic() - self._claim_failed_at < CLAIM_GRACE:
                return  # a watcher being replaced still holds the file: its ledger, soon
        ledger = self._ledger
        for _ in range(ENDINGS_ROUNDS):
            self.counters.endings_reads += 1
            for ended in await reader.read_endings(link, ledger):
                self._emit(self._import_listeners, ended)
            if not ledger.more:
                break
        ledger_file = self._ledger_file
        if ledger_file is not None:
            text = ledger_file.render(ledger)
            if text is not None:
                await asyncio.to_thread(ledger_file.write, text)

    async def _review_wait(self, link: pgio.Link, key: tuple[int, ...]) -> list[tuple[Any, ...]]:
        """The waiting jobs' "since" and "may this login approve" (REVIEW_WAIT_SQL): read
        when the set of waiting jobs changes, else remembered (a bounded read by state)."""
        if key == self._wait_key or self._wait_broken:
            return self._wait_rows
        try:
            rows = await link.all(REVIEW_WAIT_SQL)
        except (*_UPGRADE_UNREADABLE, psycopg.errors.UndefinedFunction,
                psycopg.errors.UndefinedObject) as ex:
            self._wait_broken = True  # StatBus without those roles or auth.uid(): as before
            log.warning("a review's waiting time is not readable here: %s",
                        str(ex).splitlines()[0])
            return []
        self._wait_key, self._wait_rows = key, rows
        return rows

    # -- StatBus's software upgrades ----------------------------------------------------------
    async def _start_upgrades(self, link: pgio.Link) -> None:
        """Does this StatBus keep ``public.upgrade``? Then LISTEN ``worker_status`` (its
        trigger's ``upgrade_changed``) before the first read, so no change is missed."""
        self._upgrade_wanted = False
        row = await link.one(UPGRADE_TABLE_SQL)
        self._upgrade_table = bool(row and row[0])
        if not self._upgrade_table:
            self._upgrade = None  # an older StatBus (or one restored to it): as before
            return
        if self.options.listen:
            await link.listen(UPGRADE_CHANNEL)
            self._listening.add(UPGRADE_CHANNEL)

    def _upgrade_due(self) -> float | None:
        """When the owed read of public.upgrade may run (monotonic), None if none is owed."""
        if not (self._upgrade_table and self._upgrade_wanted):
            return None
        return self._upgrade_read_at + UPGRADE_MIN_INTERVAL

    async def _read_upgrade(self, link: pgio.Link) -> None:
        if not self._upgrade_table:
            return
        self._upgrade_wanted = False
        self._upgrade_read_at = time.monotonic()
        self.counters.upgrade_reads += 1
        try:
            row = await link.one(UPGRADE_SQL)
        except _UPGRADE_UNREADABLE as ex:
            # This login may not read it (outside ``authenticated``): the state still can.
            self._upgrade_table = False
            self._upgrade = None
            if not self._upgrade_logged:
                self._upgrade_logged = True
                log.warning("StatBus's upgrades are not readable here: %s",
                            str(ex).splitlines()[0])
            return
        if row is None or not isinstance(row[1], list):
            return
        try:
            self._upgrade = pick(row[1], row[0])
        except UpgradeRowError as ex:
            log.warning("ignoring a malformed public.upgrade row: %s", ex)

    # -- status and callbacks ---------------------------------------------------------------
    def _set_status(self, new: Status) -> None:
        up = self._upgrade
        if new.upgrade != up:
            new = replace(new, upgrade=up)
        if up is not None and up.running and new.state in (
            State.STABLE, State.PROCESSING, State.DISCONNECTED
        ):
            # Never stable while StatBus upgrades, also while its database is down for the
            # backup (the remembered upgrade; ``problem`` keeps why it is unreachable).
            new = replace(new, state=State.UPGRADING, review=None)
        if new.source != self._source:
            new = replace(new, source=self._source)
        if new.is_known and new.note != self._note:
            new = replace(new, note=self._note)
        if new.state is not State.PROCESSING:
            self._progress = None
        if new.progress != self._progress:
            new = replace(new, progress=self._progress)
        old = self._status
        if old.same_news(new):
            return
        new = carry_since(old, new)
        self._status = new
        log.debug("status: %s", new)
        self._emit(self._listeners, new)
