"""The fan-out: one state source, any number of WebSocket clients, none waiting on another.

The source (the core's monitor: one LISTEN connection) calls the hub's listeners on its
loop. The hub turns each event into one JSON text, computed once, and offers it to every
client of that kind. A client is a slot holding only the latest text and a writer task
that sends whatever is in the slot: a slow or stuck client makes its own writer wait
(TCP back-pressure) while the others go on, and when it catches up it gets the newest
state, never a backlog. A send that takes longer than ``send_timeout`` drops that client.

Details are reference-counted: the first details client (or an HTTP request for details)
subscribes the source, which only then reads details from the database; a moment
(``details_linger``) after the last one leaves, the hub unsubscribes it and the reads stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from traystatus.core.details import Details, WorkSummary
from traystatus.core.progress import ImportEnd
from traystatus.core.state import Problem, State, Status

log = logging.getLogger(__name__)


class Source(Protocol):
    """What the hub needs from the core's state source (the StateSource protocol)."""

    @property
    def status(self) -> Status: ...

    @property
    def details_snapshot(self) -> Details | None: ...

    def add_listener(self, callback: Callable[[Status], None]) -> None: ...

    def add_details_listener(self, callback: Callable[[Details], None]) -> None: ...

    def add_summary_listener(self, callback: Callable[[WorkSummary], None]) -> None: ...

    def subscribe_details(self) -> None: ...

    def unsubscribe_details(self) -> None: ...


class Sink(Protocol):
    """One client connection as the hub sees it (app.py's WebSocketSink)."""

    async def send_str(self, data: str) -> None:
        """Send one text message, waiting for the client's TCP window when it is full."""

    def try_write(self, frame: bytes) -> bool:
        """Write an encoded frame now if the connection takes it without queueing much;
        False (nothing written) when the connection is slow, closing or closed."""


def text_frame(text: str) -> bytes:
    """A final, unmasked WebSocket text frame (RFC 6455 5.2), as a server sends it.
    The same bytes go to every client, so a broadcast encodes once."""
    payload = text.encode("utf-8")
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


def stable_of(status: Status) -> bool | None:
    """``stable`` as the seed's clients read it: null while the server cannot know."""
    if status.state is State.STABLE:
        return True
    if status.state is State.PROCESSING:
        return False
    return None


# What a client is told when the server cannot know the state: the problem's class and
# one generic sentence. The core's own message (host, port, socket path, the server's
# login, libpq's FATAL line) goes to the server's log only (Hub._on_status).
PUBLIC_REASONS = {
    Problem.UNREACHABLE: "The server cannot reach the database.",
    Problem.CONNECTION_LOST: "The server lost its database connection; reconnecting.",
    Problem.STALE: "The database stopped answering the server; reconnecting.",
    Problem.AUTH_FAILED: "The server cannot log in to the database.",
    Problem.TLS: "The server's encrypted connection to the database failed.",
    Problem.SQL_MISSING: "The database lacks the SQL the server needs.",
    Problem.SQL_OUTDATED: "The database's traystatus SQL is older than the server needs.",
    Problem.SQL_NEWER: "The database's traystatus SQL is newer than the server knows.",
    Problem.PERMISSION: "The server's database role lacks a privilege it needs.",
    Problem.NO_PASSWORD: "The server has no database password.",
    Problem.CONFIG: "The server's database settings are not usable.",
    Problem.INTERNAL: "The server hit an internal error.",
}
LOG_HINT = " Its administrator finds the details in the server's log."


def public_reason(status: Status) -> str:
    """The reason a client may see: generic while the state is unknown, else the core's
    (empty for stable/processing)."""
    if status.is_known or (status.state is State.UPGRADING and status.problem is None):
        return status.message
    if status.state is State.UPGRADING:
        return "StatBus's database is down for its upgrade; the server reconnects on its own."
    if status.problem is None:
        return "The server is connecting to the database."
    return PUBLIC_REASONS.get(status.problem, "The server cannot read the state.") + LOG_HINT


def status_message(status: Status) -> dict[str, Any]:
    """What ``/api/system-stability`` sends: ``stable`` first, then the core's Status JSON
    (its ``reason`` made generic while the state is unknown: :func:`public_reason`)."""
    return {"stable": stable_of(status), **status.to_json(), "reason": public_reason(status)}


def details_message(details: Details) -> dict[str, Any]:
    """What ``/api/job-details`` sends: get_system_status_details()'s JSON, plus the
    seed's ``analytics_tasks`` (the active tasks' list) so its React modal reads it too."""
    out = details.to_json()
    analytics = out.get("analytics")
    tasks = analytics.get("tasks") if isinstance(analytics, dict) else None
    out.setdefault("analytics_tasks", tasks if isinstance(tasks, list) else [])
    return out


def import_end_json(ended: ImportEnd) -> dict[str, Any]:
    """An ended import job as ``import_ended`` carries it (its owner's clients only)."""
    return {
        "id": ended.id, "slug": ended.slug, "description": ended.description,
        "state": ended.state, "total_rows": ended.total_rows,
        "imported_rows": ended.imported_rows, "error_count": ended.error_count,
        "warning_count": ended.warning_count,
        "error": ended.error[:500] if ended.error else ended.error,
        "user_id": ended.user_id, "text": ended.text,
    }


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class Client:
    """A connected WebSocket: the latest text not yet sent, and the task sending it."""

    __slots__ = ("abort", "details", "event", "latest", "sending", "sink", "task", "user")

    def __init__(self, sink: Sink, details: bool, abort: Callable[[], None],
                 user: int | None = None) -> None:
        self.sink = sink
        self.user = user  # the StatBus user behind its credential (auth.user.id), if any
        self.details = details
        self.abort = abort
        self.latest: str | None = None
        self.sending = False  # the writer task is inside a send (waiting on a slow client)
        self.event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return self.latest is None and not self.sending

    def offer(self, text: str) -> None:
        self.latest = text  # replaces what the writer has not sent yet: latest only
        self.event.set()


@dataclass
class HubOptions:
    max_clients: int = 10_000
    send_timeout: float = 10.0  # a client that takes longer for one message is dropped
    details_cache: float = 1.0  # HTTP details: served from a read at most this old
    details_wait: float = 10.0  # HTTP details: how long to wait for a read
    details_linger: float = 1.0  # the source stays subscribed this long after the last


@dataclass
class HubCounters:
    clients_accepted: int = 0
    clients_refused: int = 0
    messages_offered: int = 0
    messages_sent: int = 0
    messages_replaced: int = 0  # overwritten in a slow client's slot before being sent
    slow_clients_dropped: int = 0
    details_http_reads: int = 0


class Hub:
    def __init__(self, source: Source, options: HubOptions | None = None) -> None:
        self.source = source
        self.options = options or HubOptions()
        self.counters = HubCounters()
        self._clients: set[Client] = set()
        self._reserved = 0  # handshakes admitted, not yet registered (see reserve())
        self._logged_problem: tuple[object, str] | None = None
        self._details_refs = 0
        self._status_text = dumps(status_message(source.status))
        self._details_text: str | None = None
        self._details_at = -1e9  # monotonic time of the last details read
        self._details_live = False  # the last read belongs to the current subscription
        self._source_subscribed = False
        self._release: asyncio.TimerHandle | None = None  # a pending unsubscribe
        self._details_waiters: list[asyncio.Future[str]] = []
        self.closing = False
        source.add_listener(self._on_status)
        source.add_details_listener(self._on_details)
        source.add_summary_listener(self._on_summary)
        add_import_listener = getattr(source, "add_import_listener", None)
        if add_import_listener is not None:  # database sources tell ended imports
            add_import_listener(self._on_import_end)

    # -- counts -----------------------------------------------------------------------------
    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def details_clients(self) -> int:
        return sum(1 for c in self._clients if c.details)

    def full(self) -> bool:
        return len(self._clients) + self._reserved >= self.options.max_clients

    def reserve(self) -> bool:
        """Take a client slot before the WebSocket handshake completes (False: none left).
        Checked and taken in one step, so concurrent handshakes cannot overshoot
        ``max_clients``; ``serve_client()`` turns it into the client, else ``release()``."""
        if self.full():
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        self._reserved = max(0, self._reserved - 1)

    # -- source events ----------------------------------------------------------------------
    def _on_status(self, status: Status) -> None:
        if not status.is_known and status.message:
            seen = (status.problem, status.message)
            if seen != self._logged_problem:
                self._logged_problem = seen
                log.warning("database: %s", status.message)  # clients get a generic reason
        elif status.is_known:
            self._logged_problem = None
        self._status_text = dumps(status_message(status))
        self._broadcast(self._status_text, details=False)

    def _on_summary(self, summary: WorkSummary) -> None:
        # A one-off message to those connected now (newcomers get the plain status): the
        # current status, so ``stable`` is in every message, plus what just finished.
        message = status_message(self.source.status)
        message["summary"] = {**summary.to_json(), "text": summary.text}
        self._broadcast(dumps(message), details=False)

    def _on_import_end(self, ended: ImportEnd) -> None:
        """An import job ended: its owner's status sockets (a StatBus token of that user)
        get one message, the current status plus ``import_ended``; nobody else does."""
        if ended.user_id is None:
            return
        message = status_message(self.source.status)
        message["import_ended"] = import_end_json(ended)
        text = dumps(message)
        for client in self._clients:
            if client.details or client.user != ended.user_id:
                continue
            self.counters.messages_offered += 1
            if client.idle and client.sink.try_write(text_frame(text)):
                self.counters.messages_sent += 1
                continue
            client.offer(text)

    def _on_details(self, details: Details) -> None:
        if not self._source_subscribed:
            return  # read for a subscription that has just ended
        self._details_text = dumps(details_message(details))
        self._details_at = time.monotonic()
        self._details_live = True
        waiters, self._details_waiters = self._details_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(self._details_text)
        self._broadcast(self._details_text, details=True)

    def _broadcast(self, text: str, *, details: bool) -> None:
        """Every client of the kind gets ``text``: written at once (one frame encoded for
        all) to clients whose connection keeps up; put in the slot of the others, whose
        writer sends it when their connection drains (replacing any older one there)."""
        frame: bytes | None = None
        for client in self._clients:
            if client.details is not details:
                continue
            self.counters.messages_offered += 1
            if client.idle:
                if frame is None:
                    frame = text_frame(text)
                if client.sink.try_write(frame):
                    self.counters.messages_sent += 1
                    continue
            if client.latest is not None:
                self.counters.messages_replaced += 1
            client.offer(text)

    # -- details refcount -------------------------------------------------------------------
    def _want_details(self) -> None:
        self._details_refs += 1
        if self._details_refs != 1:
            return
        if self._release is not None:
            # The source never stopped: what it read meanwhile is current.
            self._release.cancel()
            self._release = None
        elif not self._source_subscribed:
            self._details_live = False
            self._source_subscribed = True
            self.source.subscribe_details()

    def _drop_details(self) -> None:
        """The last details party leaving unsubscribes the source a moment later
        (``details_linger``): a socket opened right after an HTTP read, or as another
        closes, keeps the subscription and its current details. (Unsubscribing and
        subscribing again at once can leave the source with nothing new to read, and the
        new client with no first message.)"""
        self._details_refs -= 1
        if self._details_refs == 0 and self._release is None:
            loop = asyncio.get_running_loop()
            self._release = loop.call_later(self.options.details_linger,
                                            self._release_source)

    def _release_source(self) -> None:
        self._release = None
        if self._details_refs == 0 and self._source_subscribed:
            self._source_subscribed = False
            self.source.unsubscribe_details()
            self._details_live = False  # nobody keeps it current any more

    # -- clients ----------------------------------------------------------------------------
    @property
    def status_text(self) -> str:
        return self._status_text

    async def serve_client(
        self,
        sink: Sink,
        *,
        details: bool,
        abort: Callable[[], None],
        receive_until_closed: Callable[[], Awaitable[None]],
        reserved: bool = False,
        user: int | None = None,
    ) -> None:
        """Register a connected client, send it the current state and every change until
        ``receive_until_closed()`` returns (the peer closed, or the server closes it).
        ``reserved``: the slot was taken with ``reserve()``; ``user``: the StatBus user
        behind the client's credential (its import endings reach it)."""
        client = Client(sink, details, abort, user)
        if reserved:
            self.release()
        self._clients.add(client)
        self.counters.clients_accepted += 1
        if details:
            self._want_details()
            if self._details_live and self._details_text is not None:
                client.offer(self._details_text)
            # else: the subscription's first read reaches every details client
        else:
            client.offer(self._status_text)
        client.task = asyncio.create_task(self._write(client), name="traystatus-serve-writer")
        try:
            await receive_until_closed()
        finally:
            self._clients.discard(client)
            if details:
                self._drop_details()
            client.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await client.task

    async def _write(self, client: Client) -> None:
        while True:
            await client.event.wait()
            client.event.clear()
            text, client.latest = client.latest, None
            if text is None:
                continue
            client.sending = True
            try:
                async with asyncio.timeout(self.options.send_timeout):
                    await client.sink.send_str(text)
            except TimeoutError:
                self.counters.slow_clients_dropped += 1
                log.info("dropping a client that took over %g s to take one message",
                         self.options.send_timeout)
                client.abort()
                return
            except (ConnectionError, RuntimeError) as ex:
                # The connection is unusable: end it, so serve_client() unregisters the
                # client now rather than when (if ever) its reader notices.
                log.debug("client gone while sending: %s", ex)
                client.abort()
                return
            finally:
                client.sending = False
            self.counters.messages_sent += 1

    # -- HTTP details -----------------------------------------------------------------------
    async def details_text(self) -> str | None:
        """Details JSON for an HTTP request: a read at most ``details_cache`` s old, or the
        live snapshot while details sockets keep one current; else one read now (shared
        by concurrent requests). None when no read came within ``details_wait``."""
        live = self._details_live
        fresh = time.monotonic() - self._details_at <= self.options.details_cache
        if self._details_text is not None and (live or fresh):
            return self._details_text
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        self._details_waiters.append(fut)
        first = len(self._details_waiters) == 1
        if first:
            self.counters.details_http_reads += 1
        self._want_details()
        try:
            async with asyncio.timeout(self.options.details_wait):
                return await asyncio.shield(fut)
        except TimeoutError:
            return None
        finally:
            self._drop_details()
            with contextlib.suppress(ValueError):
                self._details_waiters.remove(fut)
