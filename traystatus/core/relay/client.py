"""RelaySource: the state as a ``traystatus serve`` server tells it, over WebSocket.

The same ``StateSource`` as the database monitor, so the tray and the CLI cannot tell
them apart: a Status on every change (the server's own, with ``source="relay"``), details
while subscribed, a work summary at the end of a run.

* One WebSocket to ``<base>/api/system-stability``: the server sends the state on
  connect and one message per change. The server's ``stable: null`` states (its database
  lost, an error) are passed on (in words for this end: ask the server's administrator):
  the server reconnects to its database on its own, so the relay does not reconnect.
* Its own connection: refused or unreachable -> DISCONNECTED/UNREACHABLE, retried with
  backoff (about 1 s doubling to 60 s, with jitter); lost -> DISCONNECTED/CONNECTION_LOST;
  no pong within the heartbeat -> DISCONNECTED/STALE; token refused (401) or origin refused
  (403) or not a traystatus server (404) -> ERROR, retried every ``error_retry`` s so a fix
  is picked up; a full server (503) -> DISCONNECTED, retried with backoff.
* Every message is checked (core/relay/_messages.py) before it is believed: one that cannot be
  used (wrong types, contradictions, a binary frame, more than 4 MiB) is DISCONNECTED/
  PROTOCOL with the reason for that message, and the next usable one is answered as usual.
* Deadlines: connecting (handshake included) and the first state within
  ``connect_timeout``; after a message that cannot be used, a usable one within
  ``connect_timeout``; else DISCONNECTED and a new connection (with backoff), since the
  server sends its state on connect. A server still connecting to its database at that
  deadline is DISCONNECTED/UNREACHABLE but stays connected.
* Details: a second WebSocket to ``<base>/api/job-details``, open only while
  ``subscribe_details()`` count > 0 (the server reads details from its database only while
  such a socket is open); closed when the last subscriber leaves.
* The token goes in ``Authorization: Bearer``, never in the URL (URLs end up in logs);
  a ``?token=`` the user put in the URL is kept as given.

Imports aiohttp, so nothing imports this module unless a relay is asked for
(``source.open_source`` imports it lazily). Of the watch engine it needs only the shell
(``watch.base.SourceBase``), ``watch.backoff`` and its timing (``watch.options.MonitorOptions``:
connect_timeout, health_interval, error_retry, backoff_*); no Monitor, reader, pg or config
(tests/test_layers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from traystatus.core.model.details import Details
from traystatus.core.model.jobs import EndedJob
from traystatus.core.model.state import Problem, State, Status, carry_since, utcnow
from traystatus.core.relay._messages import ProtocolError, decode, parse_message
from traystatus.core.watch.backoff import Backoff
from traystatus.core.watch.base import SourceBase
from traystatus.core.watch.options import MonitorOptions
from traystatus.core.words.redact import redact_url
from traystatus.core.words.safetext import printable

log = logging.getLogger(__name__)

STABILITY_PATH = "/api/system-stability"
DETAILS_PATH = "/api/job-details"
MAX_MESSAGE = 4 * 1024 * 1024  # details of a busy StatBus are tens of KiB; far more is wrong

T = TypeVar("T")


class RelayError(ValueError):
    """The URL cannot name a traystatus server; the message says what to give."""


def endpoints(url: str) -> tuple[str, str, str]:
    """``(status_url, details_url, where)`` for a server's base URL.

    Accepts ws://, wss://, http:// and https:// (turned into ws/wss), with or without a
    path prefix (a server behind a proxy at /traystatus), and with the full
    /api/system-stability path too. ``where`` is scheme://host:port for messages.
    """
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise RelayError(
            f"{redact_url(url)!r} is not a traystatus server URL: give ws://HOST:PORT or "
            "wss://HOST (http:// and https:// work too)"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise RelayError(f"{redact_url(url)!r}: the port is not a number") from None
    base = parts.path.rstrip("/")
    for suffix in (STABILITY_PATH, DETAILS_PATH):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    status = urlunsplit((scheme, parts.netloc, base + STABILITY_PATH, parts.query, ""))
    details = urlunsplit((scheme, parts.netloc, base + DETAILS_PATH, parts.query, ""))
    host = parts.netloc.rsplit("@", 1)[-1]
    return status, details, f"{scheme}://{host}"


def relay_url(url: str) -> str:
    """``url`` checked and as a ws:// or wss:// URL (what ``open_source`` takes)."""
    return endpoints(url)[0]


class _Refused(Exception):
    def __init__(self, status: Status) -> None:
        super().__init__(status.message)
        self.status = status


class RelaySource(SourceBase):
    """A StateSource fed by a ``traystatus serve`` server (see the module docstring)."""

    def __init__(
        self,
        url: str,
        options: MonitorOptions | None = None,
        *,
        token: str | None = None,
    ) -> None:
        self.url = url
        self.options = options or MonitorOptions()
        self._status_url, self._details_url, self.where = endpoints(url)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        super().__init__(Status(State.CONNECTING, source="relay"))
        self._details_wake: asyncio.Event | None = None
        self._said = ""  # the protocol error of the current run of bad messages
        self._details_bad = False  # the last details message could not be used
        self._backoff = Backoff(
            self.options.backoff_initial, self.options.backoff_cap,
            jitter=self.options.backoff_jitter,
        )
        self._import_listeners: list[Callable[[EndedJob], None]] = []

    def add_import_listener(self, callback: Callable[[EndedJob], None]) -> None:
        """Called once per import job of the token's StatBus user that ended (the server
        sends ``import_ended`` to that user's sockets only: ``EndedJob.mine``)."""
        self._import_listeners.append(callback)

    async def run(self) -> None:
        self._begin_run()
        self._details_wake = asyncio.Event()
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.options.connect_timeout,
            sock_connect=self.options.connect_timeout,
        )
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await self._run(session)
        finally:
            self._end_run()

    # -- the loop ---------------------------------------------------------------------------
    async def _run(self, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while not self._stopping:
            self._restart = False
            started = loop.time()
            try:
                ws = await self._connect(session, self._status_url)
            except _Refused as ex:
                self.counters.connect_failures += 1
                await self._failed(ex.status)
                continue
            if ws is None:
                continue  # stop() or reconnect_now() while connecting
            self.counters.connects += 1
            if not first:
                self.counters.reconnects += 1
            first = False
            details_task = asyncio.create_task(self._details_loop(session))
            try:
                lost = await self._session(ws, started)
            finally:
                details_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await details_task
                if not ws.closed:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), 2.0)
            if lost is not None:
                await self._failed(lost)
            elif self._restart and not self._stopping:
                self._set_status(Status(State.CONNECTING, source="relay"))

    async def _connect(
        self, session: aiohttp.ClientSession, url: str
    ) -> aiohttp.ClientWebSocketResponse | None:
        """The WebSocket, None when stop()/reconnect_now() came first; _Refused if not.

        The whole handshake (DNS, TCP, TLS, HTTP upgrade) has ``connect_timeout``: a server
        that accepts TCP and never answers must not hold a client forever."""
        limit = self.options.connect_timeout
        attempt = asyncio.ensure_future(asyncio.wait_for(
            session.ws_connect(
                url,
                headers=self._headers,
                heartbeat=self.options.health_interval,
                max_msg_size=MAX_MESSAGE,
                compress=0,
            ),
            limit,
        ))
        result = await self._until_woken(attempt)
        if result is None:
            return None
        try:
            return attempt.result()
        except aiohttp.WSServerHandshakeError as ex:
            raise _Refused(self._refusal(ex.status, ex.message)) from None
        except TimeoutError:
            raise _Refused(self._problem(
                State.DISCONNECTED, Problem.UNREACHABLE,
                f"The traystatus server at {self.where} did not complete the connection "
                f"within {limit:g} s. Retrying on its own; check the address and the network.",
            )) from None
        except (aiohttp.ClientError, OSError, ValueError) as ex:
            raise _Refused(self._problem(
                State.DISCONNECTED, Problem.UNREACHABLE,
                f"The traystatus server at {self.where} cannot be reached "
                f"({printable(_why(ex), 200)}). "
                "Retrying on its own; check the address and the network.",
            )) from None

    async def _until_woken(
        self, fut: asyncio.Future[T], until: float | None = None
    ) -> asyncio.Future[T] | None:
        """Wait for ``fut`` or a wake-up (stop, reconnect); None (fut cancelled) if woken.
        TimeoutError when the loop time ``until`` passes first (``fut`` left running)."""
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        wake.clear()
        if self._stopping or self._restart:
            wake.set()  # asked before we started waiting: do not miss it
        waker: asyncio.Future[Any] = asyncio.ensure_future(wake.wait())
        try:
            while True:
                pending: set[asyncio.Future[Any]] = {fut, waker}
                timeout = None if until is None else max(0.0, until - loop.time())
                await asyncio.wait(pending, timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
                if fut.done():
                    return fut
                if self._stopping or self._restart:
                    await _cancelled(fut)
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        res = fut.result()
                        if isinstance(res, aiohttp.ClientWebSocketResponse):
                            await res.close()
                    return None
                if until is not None and loop.time() >= until:
                    raise TimeoutError
                if waker.done():
                    wake.clear()  # a details change: not ours to handle
                    waker = asyncio.ensure_future(wake.wait())
        finally:
            waker.cancel()

    def _refusal(self, status: int, reason: str) -> Status:
        if status == 401:
            return self._problem(
                State.ERROR, Problem.AUTH_FAILED,
                f"The traystatus server at {self.where} refused the token (HTTP 401). "
                "Check --token-file (or the token stored for this profile).",
            )
        if status == 403:
            return self._problem(
                State.ERROR, Problem.PERMISSION,
                f"The traystatus server at {self.where} refused this client (HTTP 403).",
            )
        if status in (404, 405, 426) or 200 <= status < 400:
            return self._problem(
                State.ERROR, Problem.CONFIG,
                f"{self.where} did not answer as a traystatus server (HTTP {status}): "
                f"is the address right? The server's own address, e.g. ws://HOST:8765.",
            )
        return self._problem(
            State.DISCONNECTED, Problem.UNREACHABLE,
            f"The traystatus server at {self.where} is not taking clients now "
            f"(HTTP {status}{': ' + printable(reason, 100) if reason else ''}). "
            "Retrying on its own.",
        )

    def _problem(self, state: State, problem: Problem, message: str) -> Status:
        return Status(state, problem=problem, message=message, source="relay")

    async def _failed(self, status: Status) -> None:
        """Report ``status`` and wait before the next attempt (cut short by a wake-up)."""
        error = status.state is State.ERROR
        delay = self.options.error_retry if error else self._backoff.next_delay()
        attempt = self._status.attempt + 1 if not self._status.is_known else 1
        retry_at = utcnow() + _seconds(delay)
        self._set_status(Status(status.state, problem=status.problem, message=status.message,
                                attempt=attempt, next_retry_at=retry_at, source="relay"))
        wake = self._wake
        assert wake is not None
        wake.clear()
        if self._stopping or self._restart:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)

    async def _session(
        self, ws: aiohttp.ClientWebSocketResponse, started: float
    ) -> Status | None:
        """Read state messages until the socket ends (-> the Status to report) or a
        stop/reconnect (-> None).

        Deadlines, as on the database path: the first usable state within
        ``connect_timeout`` of starting to connect, and after a message that cannot be
        used, a usable one within ``connect_timeout`` again; else the connection is given
        up and made again (a server sends its state on connect). A server that says it is
        still connecting to its database is alive: after the deadline the client is grey
        with that reason and stays connected."""
        loop = asyncio.get_running_loop()
        limit = self.options.connect_timeout
        need_by: float | None = started + limit
        bad = False  # the last message could not be used
        server_connecting = False
        receive: asyncio.Future[aiohttp.WSMessage] | None = None
        try:
            while True:
                if receive is None:
                    receive = asyncio.ensure_future(ws.receive())
                try:
                    woken = await self._until_woken(receive, need_by)
                except TimeoutError:
                    need_by = None
                    if server_connecting and not bad:
                        self._set_status(self._problem(
                            State.DISCONNECTED, Problem.UNREACHABLE,
                            f"The traystatus server at {self.where} has had no answer from "
                            f"its database for {limit:g} s; it retries on its own (if this "
                            "lasts, ask its administrator).",
                        ))
                        continue
                    if bad:
                        return self._status  # the protocol error, and a fresh connection
                    self.counters.stale += 1
                    return self._problem(
                        State.DISCONNECTED, Problem.STALE,
                        f"The traystatus server at {self.where} accepted the connection but "
                        f"sent no state within {limit:g} s. Reconnecting on its own.",
                    )
                if woken is None:
                    return None
                msg = receive.result()
                receive = None
                if msg.type is aiohttp.WSMsgType.TEXT:
                    status = self._on_text(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    self._protocol_error("a binary frame (a traystatus server sends text)")
                    status = None
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                  aiohttp.WSMsgType.CLOSED):
                    why = ws.close_code
                    extra = printable(str(msg.extra), 200) if msg.extra else ""
                    text = f" (code {why}{': ' + extra if extra else ''})" if why else ""
                    return self._problem(
                        State.DISCONNECTED, Problem.CONNECTION_LOST,
                        f"The traystatus server at {self.where} closed the connection{text}. "
                        "Reconnecting on its own.",
                    )
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    error = msg.data
                    if (isinstance(error, aiohttp.WebSocketError)
                            and error.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG):
                        self.counters.malformed_payloads += 1
                        return self._protocol_status(
                            f"a message larger than {MAX_MESSAGE // (1024 * 1024)} MiB")
                    self.counters.stale += 1
                    return self._problem(
                        State.DISCONNECTED, Problem.STALE,
                        f"The traystatus server at {self.where} stopped answering "
                        f"({printable(_why(error), 200)}). Reconnecting on its own.",
                    )
                else:
                    continue  # ping, pong: aiohttp's business
                if status is None:  # a message that cannot be used
                    bad = True
                    if need_by is None:
                        need_by = loop.time() + limit
                    continue
                bad = False
                if status.state is State.CONNECTING:
                    server_connecting = True
                    if need_by is None:
                        need_by = loop.time() + limit
                else:
                    server_connecting = False
                    need_by = None
        finally:
            if receive is not None and not receive.done():
                await _cancelled(receive)

    def _on_text(self, text: str) -> Status | None:
        """Apply one state message: the Status it gave, None when it cannot be used (then
        the state is grey with the reason, and the next message is read as usual)."""
        self.counters.notifications += 1
        try:
            message = parse_message(text, where=self.where, now=utcnow())
        except ProtocolError as ex:
            self._protocol_error(str(ex))
            return None
        self._said = ""
        self.counters.stability_reads += 1
        status = message.status
        if status.is_known:
            self._backoff.reset()
        self._set_status(status, told=message.since_told)
        if message.summary_error:
            self.counters.malformed_payloads += 1
            log.warning("ignoring a work summary from %s that cannot be used: %s",
                        self.where, message.summary_error)
        elif message.summary is not None and self._summary_listeners:
            self.counters.summary_reads += 1
            self._emit(self._summary_listeners, message.summary)
        if message.import_error:
            self.counters.malformed_payloads += 1
            log.warning("ignoring an import ending from %s that cannot be used: %s",
                        self.where, message.import_error)
        elif message.import_ended is not None:
            self._emit(self._import_listeners, message.import_ended)
        return status

    def _protocol_error(self, why: str) -> None:
        """A message that cannot be used: counted, logged once (the first of a run of bad
        messages), and the state is grey with the reason (what it said may have changed the
        state, so the last one is not the truth any more)."""
        self.counters.malformed_payloads += 1
        self._set_status(self._protocol_status(why))

    def _protocol_status(self, why: str) -> Status:
        why = printable(why, 300)
        if not self._said:  # the first of a run of bad messages; a usable one ends the run
            log.warning("a message from %s cannot be used: %s", self.where, why)
        else:
            log.debug("another message from %s cannot be used: %s", self.where, why)
        self._said = why
        return self._problem(
            State.DISCONNECTED, Problem.PROTOCOL,
            f"The traystatus server at {self.where} sent a message that cannot be used: "
            f"{why}. Not trusted; if this goes on, ask its administrator.",
        )

    # -- details ----------------------------------------------------------------------------
    async def _details_loop(self, session: aiohttp.ClientSession) -> None:
        """While connected: a details socket open exactly while someone subscribed."""
        wake = self._details_wake
        assert wake is not None
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_cap,
                          jitter=self.options.backoff_jitter)
        while True:
            while self._details_refs == 0:
                wake.clear()
                await wake.wait()
            try:
                ws = await session.ws_connect(
                    self._details_url, headers=self._headers,
                    heartbeat=self.options.health_interval, max_msg_size=MAX_MESSAGE,
                    compress=0,
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as ex:
                log.info("details from %s unavailable: %s", self.where, _why(ex))
                await _sleep_or(wake, backoff.next_delay())
                continue
            try:
                while self._details_refs > 0:
                    wake.clear()
                    receive = asyncio.ensure_future(ws.receive())
                    waker = asyncio.ensure_future(wake.wait())
                    await asyncio.wait({receive, waker}, return_when=asyncio.FIRST_COMPLETED)
                    waker.cancel()
                    if not receive.done():
                        await _cancelled(receive)
                        continue  # re-check the subscriber count
                    msg = receive.result()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break  # closed or failed: open again if still wanted
                    backoff.reset()
                    self._on_details(msg.data)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2.0)
            if self._details_refs > 0:
                await _sleep_or(wake, backoff.next_delay())

    def _on_details(self, text: str) -> None:
        try:
            details = Details.from_json(decode(text))
        except ValueError as ex:  # ProtocolError and DetailsError are ValueErrors
            self.counters.malformed_payloads += 1
            # once per run of bad details (they come every few seconds while subscribed)
            log.log(logging.DEBUG if self._details_bad else logging.WARNING,
                    "ignoring details from %s that cannot be used: %s", self.where,
                    printable(str(ex), 300))
            self._details_bad = True
            return
        self._details_bad = False
        if self._details_refs == 0:
            return
        self.counters.details_reads += 1
        self._emit(self._details_listeners, details)

    # -- status and callbacks ---------------------------------------------------------------
    def _set_status(self, new: Status, *, told: bool = False) -> None:
        """``told``: ``new.since`` is the server's (its message carried one)."""
        old = self._status
        new = carry_since(old, new, told=told)
        if old.same_news(new) and old.since == new.since:
            return  # nothing new (a summary message repeats the state, for instance)
        self._status = new
        log.debug("status: %s", new)
        self._emit(self._listeners, new)

    def _set_wake(self) -> None:
        super()._set_wake()
        if self._details_wake is not None:
            self._details_wake.set()


async def _cancelled(fut: asyncio.Future[Any]) -> None:
    """Cancel ``fut`` and wait until it has ended, its outcome left unread. Not ``await
    fut`` under ``suppress(BaseException)``: that would swallow a cancellation of our own
    task arriving meanwhile (``stop()`` cancels the details task), and the task would go
    on waiting for a wake-up that never comes."""
    fut.cancel()
    await asyncio.wait({fut})
    if not fut.cancelled():
        fut.exception()  # read, so that asyncio does not log it as never retrieved


async def _sleep_or(event: asyncio.Event, seconds: float) -> None:
    event.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _why(ex: object) -> str:
    """A short reason: "Connection refused", not aiohttp's whole sentence."""
    if isinstance(ex, aiohttp.ClientConnectorCertificateError):
        return f"certificate not trusted: {ex.certificate_error}"
    if isinstance(ex, aiohttp.ClientConnectorDNSError):
        return "host name not found"
    if isinstance(ex, aiohttp.ClientConnectorError) and ex.os_error.errno:
        return os.strerror(ex.os_error.errno)
    text = str(ex).strip()
    return text or type(ex).__name__


def _said(value: Any, limit: int) -> str:
    """A value a server sent, as printable text for a line of ``doctor``."""
    return printable(value if isinstance(value, str) else str(value or ""), limit)


def read_token_file(path: str) -> str:
    """The first token in a token file (one per line, # comments); RelayError if none."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as ex:
        raise RelayError(f"cannot read the token file {path}: {ex}") from None
    for line in lines:
        token = line.strip()
        if token and not token.startswith("#"):
            return token
    raise RelayError(f"{path} holds no token (one per line)")


async def server_checks(url: str, token: str | None, within: float = 10.0) -> list[Any]:
    """``doctor`` for a profile that names a server: reachable, token accepted, and the
    server's own database. A list of ``checks.CheckResult``; never raises."""
    from traystatus.core.model.checks import CheckResult, Level

    status_url, _, where = endpoints(url)
    http_url = "http" + status_url[2:] if status_url.startswith("ws") else status_url
    base = http_url[: http_url.index(STABILITY_PATH)]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out: list[Any] = []
    limit = aiohttp.ClientTimeout(total=within)
    try:
        async with aiohttp.ClientSession(timeout=limit) as http:
            # with the token: without one, /healthz says only that the server is up
            async with http.get(f"{base}/healthz", headers=headers) as r:
                health = await r.json(content_type=None) if r.status in (200, 503) else None
            if not isinstance(health, dict):
                out.append(CheckResult(
                    "server reachable", Level.FAIL,
                    f"{where} answered HTTP {r.status} on /healthz: not a traystatus server",
                    "check the profile's relay URL (the server's own address)"))
                return out
            out.append(CheckResult(
                "server reachable", Level.OK,
                f"traystatus serve {_said(health.get('version', '?'), 40)} at {where}"))
            async with http.get(http_url, headers=headers) as r:
                body = await r.json(content_type=None) if r.status == 200 else None
                refused = r.status
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as ex:
        out.append(CheckResult(
            "server reachable", Level.FAIL, f"cannot reach {where} ({_why(ex)})",
            "check the URL, the network, and that `traystatus serve` runs there",
            Problem.UNREACHABLE))
        return out
    if not isinstance(body, dict):
        fix = ("store the server's token: traystatus profile add NAME --relay URL "
               "--password-stdin" if refused == 401 else "ask the server's administrator")
        out.append(CheckResult("token", Level.FAIL,
                               f"the server refused this client (HTTP {refused})", fix,
                               Problem.AUTH_FAILED if refused == 401 else Problem.PERMISSION))
        return out
    out.append(CheckResult("token", Level.OK, "accepted"))
    if health.get("database_connected"):
        out.append(CheckResult("server's database", Level.OK,
                               f"connected ({_said(body.get('state'), 40)})"))
    else:
        out.append(CheckResult(
            "server's database", Level.FAIL,
            f"{_said(body.get('state'), 40)}: {_said(body.get('reason'), 300) or 'not connected'}",
            "the server's administrator: see its log and `traystatus doctor` on that machine"))
    return out
