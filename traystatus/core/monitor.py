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

Work summary (only while someone listens for summaries): every stable read also takes
``system_work_mark()`` (the newest task id; a PK lookup). When the state goes
stable -> processing, the mark of the last stable read and the time are kept; at
processing -> stable ``get_system_work_summary(mark, since)`` tells what finished in
between, handed to summary listeners with the duration.

Callbacks are plain callables run on the loop; an exception in one is logged, not fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import Notify
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from traystatus.core.backoff import Backoff
from traystatus.core.coalesce import Coalescer
from traystatus.core.details import Details, DetailsError, WorkSummary
from traystatus.core.errors import Diagnosis, Phase, Target, classify, diagnose
from traystatus.core.sqlfiles import EXPECTED_SQL_VERSION
from traystatus.core.state import Problem, State, Status, utcnow

log = logging.getLogger(__name__)

STABILITY_CHANNEL = "system_stability"
PROGRESS_CHANNEL = "import_job_progress"
MAX_PAYLOAD_BYTES = 8000  # PostgreSQL's own limit for a NOTIFY payload

T = TypeVar("T")

_READ_STABLE = (
    "SELECT s, CASE WHEN s THEN public.system_work_mark() END FROM public.is_system_stable() AS s"
)
# Without summary listeners the mark is not needed: the same row shape, one function less.
_READ_STABLE_NO_MARK = "SELECT public.is_system_stable(), NULL::bigint"
_READ_FIRST = (
    "SELECT public.system_stability_sql_version(), s, "
    "CASE WHEN s THEN public.system_work_mark() END "
    "FROM public.is_system_stable() AS s"
)


@dataclass(frozen=True)
class MonitorOptions:
    """Timing of the monitor, in seconds. The defaults suit a tray app on a laptop."""

    health_interval: float = 15.0
    health_timeout: float = 5.0
    connect_timeout: float = 10.0
    coalesce_window: float = 0.2
    backoff_initial: float = 1.0
    backoff_cap: float = 60.0
    backoff_jitter: float = 0.2
    error_retry: float = 60.0
    details_interval: float = 3.0
    keepalives_idle: int = 30
    keepalives_interval: int = 10
    keepalives_count: int = 3
    application_name: str = "traystatus"

    def __post_init__(self) -> None:
        for name in (
            "health_interval",
            "health_timeout",
            "connect_timeout",
            "backoff_initial",
            "error_retry",
            "details_interval",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"MonitorOptions.{name} must be > 0")
        if self.coalesce_window < 0 or self.backoff_cap < self.backoff_initial:
            raise ValueError("MonitorOptions: coalesce_window >= 0 and backoff_cap >= initial")


@dataclass
class Counters:
    """What the monitor did, for tests and benchmarks."""

    queries: int = 0  # every statement sent, LISTEN included
    stability_reads: int = 0
    details_reads: int = 0
    summary_reads: int = 0
    health_checks: int = 0  # stability reads made because the interval passed
    notifications: int = 0
    malformed_payloads: int = 0
    connects: int = 0  # successful connections
    connect_failures: int = 0
    reconnects: int = 0  # successful connections after the first
    stale: int = 0
    callback_errors: int = 0


class _Stale(Exception):
    """A query got no answer within health_timeout."""


class _Unusable(Exception):
    """Connected, but this database cannot be watched (SQL missing/outdated...)."""

    def __init__(self, diagnosis: Diagnosis) -> None:
        super().__init__(diagnosis.message)
        self.diagnosis = diagnosis


class _Restart(Exception):
    """reconnect_now() was called: drop this connection and connect again at once."""


@dataclass
class _WorkMark:
    mark: int
    since: datetime
    started: float  # monotonic


@dataclass
class _Flags:
    read_stable: bool = False
    read_details: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Monitor:
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
        self.counters = Counters()
        self._status = Status(State.CONNECTING)
        self._listeners: list[Callable[[Status], None]] = []
        self._details_listeners: list[Callable[[Details], None]] = []
        self._summary_listeners: list[Callable[[WorkSummary], None]] = []
        self._details_refs = 0
        self._details_listening = False
        self._last_details: Details | None = None
        self._stopping = False
        self._restart = False
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._backoff = Backoff(
            self.options.backoff_initial,
            self.options.backoff_cap,
            jitter=self.options.backoff_jitter,
        )
        self._stable_coalescer = Coalescer(self.options.coalesce_window)
        self._details_coalescer = Coalescer(self.options.coalesce_window)
        self._known: bool | None = None  # last stability read, across reconnects
        self._last_mark: int | None = None  # work mark of the last stable read
        self._work: _WorkMark | None = None
        self._malformed_logged_at = -1e9

    # -- public API -------------------------------------------------------------------------
    @property
    def status(self) -> Status:
        return self._status

    @property
    def details_snapshot(self) -> Details | None:
        """The last details read (None before the first, or when nobody subscribed)."""
        return self._last_details

    @property
    def details_subscribers(self) -> int:
        return self._details_refs

    def add_listener(self, callback: Callable[[Status], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[Status], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def add_details_listener(self, callback: Callable[[Details], None]) -> None:
        self._details_listeners.append(callback)

    def remove_details_listener(self, callback: Callable[[Details], None]) -> None:
        with contextlib.suppress(ValueError):
            self._details_listeners.remove(callback)

    def add_summary_listener(self, callback: Callable[[WorkSummary], None]) -> None:
        self._summary_listeners.append(callback)

    def remove_summary_listener(self, callback: Callable[[WorkSummary], None]) -> None:
        with contextlib.suppress(ValueError):
            self._summary_listeners.remove(callback)

    def stop(self) -> None:
        """Ask ``run()`` to close its connection and return. Safe from any thread."""
        self._stopping = True
        self._poke()

    def reconnect_now(self) -> None:
        """Drop the current connection (if any) or cut the retry wait short, and connect."""
        self._restart = True
        self._poke()

    def subscribe_details(self) -> None:
        """One more party wants details (refcounted); the first one starts them."""
        self._details_refs += 1
        if self._details_refs == 1:
            self._poke()

    def unsubscribe_details(self) -> None:
        """One party less; when none is left, UNLISTEN and read no more details."""
        if self._details_refs == 0:
            log.warning("unsubscribe_details() without subscribe_details(): ignored")
            return
        self._details_refs -= 1
        if self._details_refs == 0:
            self._last_details = None
            self._poke()

    @contextlib.asynccontextmanager
    async def details(self) -> AsyncIterator[Monitor]:
        """``async with monitor.details():`` details flow while inside the block."""
        self.subscribe_details()
        try:
            yield self
        finally:
            self.unsubscribe_details()

    async def run(self) -> None:
        """Watch until ``stop()``. Never raises for environment errors (they become a
        Status); a cancelled task closes its connection and re-raises CancelledError."""
        if self._running:
            raise RuntimeError("Monitor.run() is already running")
        self._running = True
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            await self._run()
        finally:
            self._running = False

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

    async def _run(self) -> None:
        first = True
        while not self._stopping:
            self._restart = False
            try:
                conninfo = self._conninfo()
            except psycopg.Error as ex:
                diag = classify(ex, self.conninfo, Phase.CONNECT)
                await self._failed(diag)
                continue
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await self._connect(conninfo)
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
            except _Unusable as ex:
                failure = ex.diagnosis
                log.info("%s: %s", failure.problem.value, failure.message)
            except _Stale:
                self.counters.stale += 1
                target = Target.from_conninfo(conninfo)
                failure = Diagnosis(
                    Problem.STALE,
                    f"The server at {target.where} stopped answering (no reply within "
                    f"{self.options.health_timeout:g} s). Reconnecting on its own; check "
                    "the network or VPN.",
                )
                log.info("%s: %s", failure.problem.value, failure.message)
            except Exception as ex:
                failure = classify(ex, conninfo, Phase.QUERY)
                self._log_failure(failure, ex)
            finally:
                # Close before waiting: no idle connection (and no LISTEN) is held on the
                # server while the monitor waits to retry.
                await self._close(conn)
            if failure is not None:
                await self._failed(failure)

    async def _connect(self, conninfo: str) -> psycopg.AsyncConnection[Any] | None:
        """Connect, or return None when stop() or reconnect_now() came first.

        libpq applies connect_timeout per host and address; the outer limit is a safety
        net for name resolution, which psycopg does itself before libpq starts. Waiting
        is cut short by stop(), so a tray app quits at once even against a dead server.
        """
        limit = self.options.connect_timeout * 2 + 1
        wake = self._wake
        assert wake is not None
        attempt = asyncio.ensure_future(
            asyncio.wait_for(psycopg.AsyncConnection.connect(conninfo, autocommit=True), limit)
        )
        try:
            while not attempt.done():
                wake.clear()
                if self._stopping or self._restart:
                    break
                waker = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait({attempt, waker}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waker.cancel()
        finally:
            if not attempt.done():
                attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await attempt
        if attempt.cancelled():
            return None
        return attempt.result()

    async def _close(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        if conn is None or conn.closed:
            return
        try:
            await asyncio.wait_for(conn.close(), self.options.health_timeout)
        except (OSError, psycopg.Error, TimeoutError) as ex:
            log.debug("closing the connection: %s", ex)

    def _log_failure(self, diag: Diagnosis, ex: BaseException) -> None:
        if diag.problem is Problem.INTERNAL:
            log.error("unexpected error in the monitor", exc_info=ex)
        else:
            log.info("%s: %s [%s]", diag.problem.value, diag.message, diag.detail)

    async def _failed(self, diag: Diagnosis) -> None:
        """Report a failure and wait before the next attempt (cut short by a wake-up)."""
        if diag.problem is Problem.INTERNAL or not diag.transient:
            self._backoff.attempt += 1
            delay = self.options.error_retry
            state = State.ERROR
        else:
            delay = self._backoff.next_delay()
            state = State.DISCONNECTED
        message = diag.full_message
        self._set_status(
            Status(
                state,
                problem=diag.problem,
                message=message,
                attempt=self._backoff.attempt,
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
            if self._stopping or self._restart or remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    # -- a connected session ----------------------------------------------------------------
    async def _session(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._details_listening = False
        self._stable_coalescer.reset()
        self._details_coalescer.reset()
        await self._execute(conn, f"LISTEN {STABILITY_CHANNEL}")
        await self._first_read(conn)
        self._backoff.reset()
        next_health = time.monotonic() + self.options.health_interval
        next_details = 0.0
        flags = _Flags()
        while True:
            if self._stopping:
                return
            if self._restart:
                raise _Restart()
            await self._sync_details(conn, flags)
            now = time.monotonic()
            if flags.read_stable or self._stable_coalescer.due(now) or now >= next_health:
                if now >= next_health and not flags.read_stable:
                    self.counters.health_checks += 1
                flags.read_stable = False
                await self._read_stable(conn)
                next_health = time.monotonic() + self.options.health_interval
            if self._details_listening:
                now = time.monotonic()
                periodic = self._known is False and now >= next_details
                if flags.read_details or self._details_coalescer.due(now) or periodic:
                    flags.read_details = False
                    await self._read_details(conn)
                    next_details = time.monotonic() + self.options.details_interval
            deadline = next_health
            for c in (self._stable_coalescer, self._details_coalescer):
                d = c.deadline()
                if d is not None:
                    deadline = min(deadline, d)
            if self._details_listening and self._known is False:
                deadline = min(deadline, next_details)
            notes = await self._wait(conn, max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            for note in notes:
                self._on_notify(note, now, flags)

    async def _wait(self, conn: psycopg.AsyncConnection[Any], seconds: float) -> list[Notify]:
        """Notifications until ``seconds`` pass, or the first batch, or a wake-up."""
        wake = self._wake
        assert wake is not None
        wake.clear()
        if self._stopping or self._restart or self._details_change_pending():
            return []
        collector = asyncio.ensure_future(self._collect(conn, seconds))
        waker = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({collector, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            if not collector.done():
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collector
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError()
        if collector.cancelled():
            return []
        return collector.result()

    @staticmethod
    async def _collect(conn: psycopg.AsyncConnection[Any], seconds: float) -> list[Notify]:
        """Notifications until ``seconds`` pass or the first batch arrives.

        ``notifies(timeout=...)`` wakes up every 0.1 s while it waits (psycopg's wait
        interval), which costs an idle tray app about 0.6 % of a core under qasync. So
        the long wait is on the socket itself (``add_reader``: no wake-up until data
        or the deadline), and psycopg is asked only for what is already there: first
        the backlog it kept during queries, then what the socket holds.
        """
        out = await Monitor._drain(conn)
        if out or seconds <= 0:
            return out
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not readable.done():
                readable.set_result(None)

        fileno = conn.pgconn.socket
        loop.add_reader(fileno, on_readable)
        try:
            await asyncio.wait_for(readable, seconds)
        except TimeoutError:
            return out
        finally:
            loop.remove_reader(fileno)
        # Readable: notifications, or EOF/an error, which notifies() raises as
        # OperationalError for the caller to handle like any lost connection.
        return await Monitor._drain(conn)

    @staticmethod
    async def _drain(conn: psycopg.AsyncConnection[Any]) -> list[Notify]:
        """What psycopg holds or the socket has ready now, without waiting."""
        out: list[Notify] = []
        gen = conn.notifies(timeout=0)
        async with contextlib.aclosing(gen):
            async for note in gen:
                out.append(note)
        return out

    def _details_change_pending(self) -> bool:
        return (self._details_refs > 0) != self._details_listening

    def _on_notify(self, note: Notify, now: float, flags: _Flags) -> None:
        self.counters.notifications += 1
        if note.channel == STABILITY_CHANNEL:
            self._check_payload(note)
            if self._stable_coalescer.notify(now):
                flags.read_stable = True
            if self._details_listening and self._details_coalescer.notify(now):
                flags.read_details = True
        elif note.channel == PROGRESS_CHANNEL:
            # StatBus's own payload; only a hint that details changed. Not parsed.
            if self._details_listening and self._details_coalescer.notify(now):
                flags.read_details = True
        else:
            log.debug("ignoring a notification on channel %r", note.channel)

    def _check_payload(self, note: Notify) -> None:
        """Log a payload that is not ``{"stable": true|false}``. Nothing depends on it."""
        payload = note.payload
        problem = ""
        if len(payload.encode("utf-8", "replace")) > MAX_PAYLOAD_BYTES:
            problem = f"oversized ({len(payload)} characters)"
        else:
            try:
                value = json.loads(payload)
            except (ValueError, RecursionError):
                problem = "not JSON"
            else:
                if not isinstance(value, dict) or not isinstance(value.get("stable"), bool):
                    problem = 'not {"stable": true|false}'
        if problem:
            self.counters.malformed_payloads += 1
            now = time.monotonic()
            # At most one warning a minute: a broken writer should not flood the log.
            if now - self._malformed_logged_at >= 60:
                self._malformed_logged_at = now
                log.warning(
                    "ignoring a malformed %s payload from backend %d: %s (%r...); "
                    "re-reading the state instead",
                    STABILITY_CHANNEL,
                    note.pid,
                    problem,
                    payload[:80],
                )

    # -- queries ----------------------------------------------------------------------------
    async def _execute(
        self, conn: psycopg.AsyncConnection[Any], query: str, params: Sequence[Any] | None = None
    ) -> tuple[Any, ...] | None:
        """Run one statement with the health timeout; return its first row, if any."""
        self.counters.queries += 1
        task = asyncio.ensure_future(self._fetch(conn, query, params))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.options.health_timeout)
        except asyncio.CancelledError:
            _shutdown(conn)
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        if task in done:
            return task.result()
        # No answer in time. Cancelling through libpq would open a new connection over
        # the same silent network and wait for it; shutting the socket down makes libpq
        # fail now, and the connection is dropped anyway.
        _shutdown(conn)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, self.options.health_timeout)
        raise _Stale()

    @staticmethod
    async def _fetch(
        conn: psycopg.AsyncConnection[Any], query: str, params: Sequence[Any] | None
    ) -> tuple[Any, ...] | None:
        cur = await conn.execute(query.encode(), params)
        if cur.description is None:
            return None
        row = await cur.fetchone()
        return tuple(row) if row is not None else None

    async def _first_read(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Version check and state in one round trip; a wrong version is an ERROR."""
        target = Target.from_conninfo(self.conninfo)
        try:
            row = await self._execute(conn, _READ_FIRST)
        except psycopg.Error as ex:
            diag = classify(ex, self.conninfo, Phase.QUERY)
            if diag.problem in (Problem.SQL_MISSING, Problem.PERMISSION):
                raise _Unusable(diag) from ex
            raise
        assert row is not None
        version = row[0]
        if version != EXPECTED_SQL_VERSION:
            if isinstance(version, int) and version > EXPECTED_SQL_VERSION:
                problem = Problem.SQL_NEWER
                fix = "Update traystatus to a version that knows this SQL."
            else:
                problem = Problem.SQL_OUTDATED
                fix = "Ask a StatBus administrator to run `traystatus install-sql` again."
            raise _Unusable(
                Diagnosis(
                    problem,
                    f"The traystatus SQL in {target.where} is version {version}; this "
                    f"traystatus expects version {EXPECTED_SQL_VERSION}. {fix}",
                )
            )
        self.counters.stability_reads += 1
        await self._apply_stability(conn, bool(row[1]), row[2])

    async def _read_stable(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._stable_coalescer.mark_read(time.monotonic())
        self.counters.stability_reads += 1
        query = _READ_STABLE if self._summary_listeners else _READ_STABLE_NO_MARK
        row = await self._execute(conn, query)
        assert row is not None
        stable = bool(row[0])
        self._stable_coalescer.result(stable != self._known)
        await self._apply_stability(conn, stable, row[1])

    async def _apply_stability(
        self, conn: psycopg.AsyncConnection[Any], stable: bool, mark: Any
    ) -> None:
        previous = self._known
        self._known = stable
        if stable:
            self._last_mark = int(mark) if mark is not None else None
        if previous is True and not stable and self._last_mark is not None:
            self._work = _WorkMark(self._last_mark, utcnow(), time.monotonic())
        self._set_status(Status(State.STABLE if stable else State.PROCESSING))
        if previous is False and stable and self._work is not None and self._summary_listeners:
            work, self._work = self._work, None
            await self._read_summary(conn, work)

    async def _read_summary(self, conn: psycopg.AsyncConnection[Any], work: _WorkMark) -> None:
        duration = time.monotonic() - work.started
        self.counters.summary_reads += 1
        try:
            row = await self._execute(
                conn,
                "SELECT public.get_system_work_summary(%s, %s)",
                (work.mark, work.since),
            )
        except psycopg.errors.InsufficientPrivilege as ex:
            log.warning("no work summary: %s", ex)
            return
        try:
            summary = WorkSummary.from_json(row[0] if row else None, duration)
        except DetailsError as ex:
            log.warning("ignoring a malformed work summary: %s", ex)
            return
        self._emit(self._summary_listeners, summary)

    async def _sync_details(self, conn: psycopg.AsyncConnection[Any], flags: _Flags) -> None:
        want = self._details_refs > 0
        if want and not self._details_listening:
            await self._execute(conn, f"LISTEN {PROGRESS_CHANNEL}")
            self._details_listening = True
            self._details_coalescer.reset()
            flags.read_details = True
        elif not want and self._details_listening:
            await self._execute(conn, f"UNLISTEN {PROGRESS_CHANNEL}")
            self._details_listening = False
            self._details_coalescer.reset()
            flags.read_details = False

    async def _read_details(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._details_coalescer.mark_read(time.monotonic())
        self.counters.details_reads += 1
        row = await self._execute(conn, "SELECT public.get_system_status_details()")
        try:
            details = Details.from_json(row[0] if row else None)
        except DetailsError as ex:
            log.warning("ignoring malformed status details: %s", ex)
            return
        if self._details_refs == 0:
            return  # the last subscriber left while the query ran
        self._last_details = details
        self._emit(self._details_listeners, details)

    # -- status and callbacks ---------------------------------------------------------------
    def _set_status(self, new: Status) -> None:
        old = self._status
        if (old.state, old.problem, old.message, old.attempt, old.next_retry_at) == (
            new.state,
            new.problem,
            new.message,
            new.attempt,
            new.next_retry_at,
        ):
            return
        if old.state is new.state:
            # Still disconnected (or still in error), maybe for another reason now: the
            # trouble began when the state did. "since" is what the tray's grace period
            # and "disconnected for 5 min" are measured from.
            new = replace(new, since=old.since)
        self._status = new
        log.debug("status: %s", new)
        self._emit(self._listeners, new)

    def _emit(self, listeners: list[Callable[[T], None]], value: T) -> None:
        for callback in list(listeners):
            try:
                callback(value)
            except Exception:
                self.counters.callback_errors += 1
                log.exception("a monitor listener raised; ignored")

    def _poke(self) -> None:
        """Wake the loop, from its own thread or another one."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        if threading.get_ident() == getattr(loop, "_thread_id", None):
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)


def _shutdown(conn: psycopg.AsyncConnection[Any]) -> None:
    """Shut the connection's socket down so libpq's pending read fails immediately."""
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()
