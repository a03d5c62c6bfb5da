"""The fan-out: one state source, any number of WebSocket clients, none waiting on another.

The source (the core's monitor: one LISTEN connection) calls the hub's listeners on its
loop. The hub turns each event into one WebSocket frame, JSON-encoded and framed once,
and writes the same bytes to every client of that kind, in the same loop step: no task,
queue or timer per client. A client whose connection is behind (more than
``buffer_limit`` bytes waiting in its user-space buffer) gets nothing more written; the
newest frame goes into its one slot instead (replacing any older one), and one shared
flusher writes it when the connection has drained: a slow client never delays the
others, holds at most ``buffer_limit`` bytes plus one frame, and ends up with the newest
state, never a backlog. One still behind after ``send_timeout`` is dropped.

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

from traystatus.core.model.details import Details, WorkSummary
from traystatus.core.model.jobs import ENDING_KEYS, EndedJob
from traystatus.core.model.state import Problem, State, Status

log = logging.getLogger(__name__)


class Source(Protocol):
    """What the hub needs from the core's state source (the StateSource protocol)."""

    @property
    def status(self) -> Status: ...

    def add_listener(self, callback: Callable[[Status], None]) -> None: ...

    def add_details_listener(self, callback: Callable[[Details], None]) -> None: ...

    def add_summary_listener(self, callback: Callable[[WorkSummary], None]) -> None: ...

    def subscribe_details(self) -> None: ...

    def unsubscribe_details(self) -> None: ...


class Sink(Protocol):
    """One client connection as the hub sees it (app.py's WebSocketSink)."""

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


def import_end_json(ended: EndedJob) -> dict[str, Any]:
    """An ended import job as ``import_ended`` carries it (its owner's clients only)."""
    out = ended.to_json(tuple(k for k in ENDING_KEYS if k != "mine"))  # it is the owner's
    out["error"] = ended.error[:500] if ended.error else ended.error
    return {**out, "text": ended.text}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class Client:
    """A connected WebSocket: its sink, and the newest frame it could not take yet."""

    __slots__ = ("abort", "behind_since", "details", "latest", "sink", "user")

    def __init__(self, sink: Sink, details: bool, abort: Callable[[], None],
                 user: int | None = None) -> None:
        self.sink = sink
        self.user = user  # the StatBus user behind its credential (auth.user.id), if any
        self.details = details
        self.abort = abort
        self.latest: bytes | None = None  # the newest frame not written yet (slow client)
        self.behind_since = 0.0  # monotonic time it first could not take a frame


@dataclass
class HubOptions:
    max_clients: int = 10_000
    send_timeout: float = 10.0  # a client behind for longer than this is dropped
    flush_interval: float = 0.05  # how often slow clients' connections are looked at
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
    frames_encoded: int = 0  # one per message, whatever the number of clients
    slow_clients_dropped: int = 0
    details_http_reads: int = 0


class Hub:
    def __init__(self, source: Source, options: HubOptions | None = None) -> None:
        self.source = source
        self.options = options or HubOptions()
        self.counters = HubCounters()
        self._status_clients: set[Client] = set()
        self._details_clients: set[Client] = set()
        self._behind: set[Client] = set()  # clients with a frame in their slot
        self._flusher: asyncio.Task[None] | None = None
        self._reserved = 0  # handshakes admitted, not yet registered (see reserve())
        self._logged_problem: tuple[object, str] | None = None
        self._details_refs = 0
        self._status_text = dumps(status_message(source.status))
        self._details_text: str | None = None
        self._status_frame_of: str | None = None  # the text _status_frame_bytes encodes
        self._status_frame_bytes = b""
        self._details_frame_of: str | None = None
        self._details_frame_bytes = b""
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
        return len(self._status_clients) + len(self._details_clients)

    @property
    def details_clients(self) -> int:
        return len(self._details_clients)

    @property
    def behind(self) -> int:
        """Clients with a frame waiting for their connection to drain."""
        return len(self._behind)

    def full(self) -> bool:
        return self.clients + self._reserved >= self.options.max_clients

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
        if self._status_clients:
            self._broadcast(self._status_frame(), details=False)

    def _on_summary(self, summary: WorkSummary) -> None:
        # A one-off message to those connected now (newcomers get the plain status): the
        # current status, so ``stable`` is in every message, plus what just finished.
        message = status_message(self.source.status)
        message["summary"] = {**summary.to_json(), "text": summary.text}
        if self._status_clients:
            self._broadcast(self._encode(dumps(message)), details=False)

    def _on_import_end(self, ended: EndedJob) -> None:
        """An import job ended: its owner's status sockets (a StatBus token of that user)
        get one message, the current status plus ``import_ended``; nobody else does."""
        if ended.user_id is None:
            return
        message = status_message(self.source.status)
        message["import_ended"] = import_end_json(ended)
        owners = [c for c in self._status_clients if c.user == ended.user_id]
        if owners:
            frame = self._encode(dumps(message))
            for client in owners:
                self._deliver(client, frame)

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
        if self._details_clients:
            self._broadcast(self._details_frame(), details=True)

    def _encode(self, text: str) -> bytes:
        self.counters.frames_encoded += 1
        return text_frame(text)

    def _broadcast(self, frame: bytes, *, details: bool) -> None:
        """Every client of the kind gets ``frame`` (encoded once for all): written at once
        to the clients whose connection keeps up; put in the slot of the others."""
        clients = self._details_clients if details else self._status_clients
        offered = sent = 0
        for client in clients:
            offered += 1
            if client.latest is None and client.sink.try_write(frame):
                sent += 1
            else:
                self._hold(client, frame)
        self.counters.messages_offered += offered
        self.counters.messages_sent += sent

    def _deliver(self, client: Client, frame: bytes) -> None:
        """One frame to one client: now if its connection keeps up, else into its slot."""
        self.counters.messages_offered += 1
        if client.latest is None and client.sink.try_write(frame):
            self.counters.messages_sent += 1
        else:
            self._hold(client, frame)

    def _hold(self, client: Client, frame: bytes) -> None:
        """A client that is behind: ``frame`` replaces what its slot held (latest only);
        the flusher writes it when the connection drains."""
        if client.latest is not None:
            self.counters.messages_replaced += 1
        else:
            client.behind_since = time.monotonic()
            self._behind.add(client)
        client.latest = frame
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="traystatus-serve-flusher")

    async def _flush(self) -> None:
        """The one task for every slow client, alive only while some client is behind:
        writes each held frame once its connection has drained; drops a client still
        behind after ``send_timeout``."""
        while self._behind:
            await asyncio.sleep(self.options.flush_interval)
            now = time.monotonic()
            for client in list(self._behind):
                frame = client.latest
                if frame is None:
                    self._behind.discard(client)
                elif client.sink.try_write(frame):
                    client.latest = None
                    self._behind.discard(client)
                    self.counters.messages_sent += 1
                elif now - client.behind_since > self.options.send_timeout:
                    self._forget(client)
                    self.counters.slow_clients_dropped += 1
                    log.info("dropping a client that was %g s behind",
                             self.options.send_timeout)
                    client.abort()

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
        receive_until_closed: Callable[[], Awaitable[object]],
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
        self.counters.clients_accepted += 1
        if details:
            self._details_clients.add(client)
            self._want_details()
            if self._details_live and self._details_text is not None:
                self._deliver(client, self._details_frame())
            # else: the subscription's first read reaches every details client
        else:
            self._status_clients.add(client)
            self._deliver(client, self._status_frame())
        try:
            await receive_until_closed()
        finally:
            self._forget(client)
            if details:
                self._drop_details()

    def _forget(self, client: Client) -> None:
        (self._details_clients if client.details else self._status_clients).discard(client)
        self._behind.discard(client)
        client.latest = None

    def _status_frame(self) -> bytes:
        """The current status as a frame, encoded once for every newcomer until it changes."""
        if self._status_frame_of is not self._status_text:
            self._status_frame_bytes = self._encode(self._status_text)
            self._status_frame_of = self._status_text
        return self._status_frame_bytes

    def _details_frame(self) -> bytes:
        text = self._details_text or ""
        if self._details_frame_of is not text:
            self._details_frame_bytes = self._encode(text)
            self._details_frame_of = text
        return self._details_frame_bytes

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
