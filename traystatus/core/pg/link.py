"""The thin psycopg layer under the monitor: connect, query, LISTEN and wait, with deadlines.

Nothing here decides anything; every function does one kind of I/O and gives up on time:

* ``connect()``: autocommit, bounded by a limit and cut short by the caller's wake-up
  (``stop()`` must not wait for a dead server's connect timeout);
* ``Link``: one connected session. ``one()``/``all()`` run a statement with a deadline;
  a statement without an answer in time is not cancelled through libpq (that opens a
  second connection through the same dead network and waits on it): the socket is shut
  down, libpq fails at once, and ``Stale`` is raised. ``listen()``/``unlisten()``.
  ``wait(seconds, wake)`` returns notifications: what psycopg kept during queries, else
  the first batch to arrive on the socket, else nothing when ``seconds`` pass or ``wake``
  is set.

Waiting is on the socket (``loop.add_reader``), not psycopg's ``notifies(timeout=...)``,
which wakes up every 0.1 s (its wait interval) and costs an idle tray app about 0.6 % of a
core under qasync. psycopg is asked only for what is already there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import Notify, sql
from psycopg.conninfo import conninfo_to_dict

from traystatus.core.pg import connect as pgconnect

log = logging.getLogger(__name__)

Params = Sequence[Any] | Mapping[str, Any] | None


class Stale(Exception):
    """A statement got no answer within its deadline; the connection is unusable now."""


def connect_limit(conninfo: str, default_timeout: float) -> float:
    """The outer limit for one connect: twice the connect_timeout libpq uses (the
    conninfo's own when it sets one, else ``default_timeout``) plus a second."""
    try:
        seconds = float(conninfo_to_dict(conninfo).get("connect_timeout") or 0)
    except (psycopg.Error, ValueError):
        seconds = 0.0
    return max(seconds, default_timeout) * 2 + 1


async def connect(
    conninfo: str, limit: float, wake: asyncio.Event, interrupted: Callable[[], bool]
) -> psycopg.AsyncConnection[Any] | None:
    """An autocommit connection, or None when ``interrupted()`` became true first.

    libpq applies connect_timeout per host and address; ``limit`` is a safety net for
    name resolution, which psycopg does itself before libpq starts. ``wake`` is set by
    whoever changes what ``interrupted()`` says. A connect that runs out of time raises
    ``pgconnect.ConnectTimedOut`` with the seconds really waited; a refused one keeps its
    SQLSTATE (pgconnect).
    """
    started = time.monotonic()
    attempt = asyncio.ensure_future(
        asyncio.wait_for(pgconnect.AsyncConnection.connect(conninfo, autocommit=True), limit)
    )
    try:
        while not attempt.done():
            wake.clear()
            if interrupted():
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
    try:
        return attempt.result()
    except (TimeoutError, psycopg.errors.ConnectionTimeout) as ex:
        raise pgconnect.timed_out(started, conninfo) from ex


async def close(conn: psycopg.AsyncConnection[Any] | None, limit: float) -> None:
    """Close, never raising and never waiting longer than ``limit`` seconds."""
    if conn is None or conn.closed:
        return
    try:
        await asyncio.wait_for(conn.close(), limit)
    except (OSError, psycopg.Error, TimeoutError) as ex:
        log.debug("closing the connection: %s", ex)


def shutdown(conn: psycopg.AsyncConnection[Any]) -> None:
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


class Link:
    """One connected session: statements with a deadline, LISTEN, waiting for notifications.

    ``timeout``: the deadline of every statement. ``on_query``: called once per statement
    sent (the monitor counts them).
    """

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        timeout: float,
        on_query: Callable[[], None] | None = None,
    ) -> None:
        self.conn = conn
        self.timeout = timeout
        self._on_query = on_query

    async def one(self, query: str, params: Params = None) -> tuple[Any, ...] | None:
        """Run one statement; its first row, or None."""
        rows = await self._run(query, params, many=False)
        return rows[0] if rows else None

    async def all(self, query: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Run one statement; all its rows."""
        return await self._run(query, params, many=True)

    async def listen(self, channel: str) -> None:
        await self._run_sql(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    async def unlisten(self, channel: str) -> None:
        await self._run_sql(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))

    async def _run_sql(self, stmt: sql.Composed) -> None:
        await self._run(stmt.as_string(self.conn), None, many=False)

    async def _run(
        self, query: str, params: Params, many: bool
    ) -> list[tuple[Any, ...]]:
        if self._on_query is not None:
            self._on_query()
        conn = self.conn
        task = asyncio.ensure_future(_fetch(conn, query, params, many))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        except asyncio.CancelledError:
            shutdown(conn)
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        if task in done:
            return task.result()
        shutdown(conn)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, self.timeout)
        raise Stale()

    async def wait(self, seconds: float, wake: asyncio.Event) -> list[Notify]:
        """Notifications until ``seconds`` pass, or the first batch, or ``wake`` is set.

        The caller clears ``wake`` before checking its own reasons to wake up, then calls
        this; a cancelled wait is safe (no query is in flight while waiting).
        """
        collector = asyncio.ensure_future(self._collect(seconds))
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

    async def _collect(self, seconds: float) -> list[Notify]:
        out = await self._drain()
        if out or seconds <= 0:
            return out
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not readable.done():
                readable.set_result(None)

        fileno = self.conn.pgconn.socket
        loop.add_reader(fileno, on_readable)
        try:
            await asyncio.wait_for(readable, seconds)
        except TimeoutError:
            return out
        finally:
            loop.remove_reader(fileno)
        # Readable: notifications, or EOF/an error, which notifies() raises as
        # OperationalError for the caller to handle like any lost connection.
        return await self._drain()

    async def _drain(self) -> list[Notify]:
        """What psycopg holds or the socket has ready now, without waiting."""
        out: list[Notify] = []
        gen = self.conn.notifies(timeout=0)
        async with contextlib.aclosing(gen):
            async for note in gen:
                out.append(note)
        return out


async def _fetch(
    conn: psycopg.AsyncConnection[Any], query: str, params: Params, many: bool
) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query.encode(), params)
    if cur.description is None:
        return []
    if many:
        return [tuple(r) for r in await cur.fetchall()]
    row = await cur.fetchone()
    return [tuple(row)] if row is not None else []
