"""The HTTP and WebSocket endpoints of ``traystatus serve`` (aiohttp), over a :class:`Hub`.

=============================== ======================================================
``GET /healthz``                200 while serving, JSON: is the database side connected
``GET /``                       the web indicator (page.html), token via ``?token=``
``/api/system-stability``       WebSocket: the state now, then one message per change;
                                plain GET: the state now, as JSON
``/api/job-details``            WebSocket: details now, then updates (read from the
                                database only while such a socket is open)
``GET /api/system-status-details``  details as JSON, from a read at most ~1 s old
=============================== ======================================================

Every endpoint wants a token (auth.py): ``Authorization: Bearer``, ``?token=`` (browsers
cannot set headers on a WebSocket) or StatBus's ``statbus`` cookie; ``/healthz`` without
one says only whether the server is up. No token or a bad one: 401 (a WebSocket
handshake is refused the same way); a StatBus token that cannot be checked against the
database now: 503; a browser page from an origin not allowed: 403; more clients than
``max_clients``: 503. With ``--no-auth``, a ``Host`` other than a loopback one: 403.

An open socket follows its credential: every ``recheck`` seconds (and at once when the
token file changes or on SIGHUP) each credential behind open sockets is checked again,
once however many sockets share it, and the sockets of one that no longer holds
(withdrawn from the token file, expired, an API key revoked, its user deleted) are
closed with code 4401 and a short reason.

Liveness: one task pings every socket once per ``heartbeat`` seconds, spread over that
time (a 2-byte frame written as is), and closes a socket that sent nothing, not even the
pong, since its previous ping. (aiohttp's own heartbeat keeps two timers and a task per
socket: at 10,000 sockets that alone was several % of a core while idle.)

Tokens never reach a log line: the access log is off, refusals name the path only, and
"connected" lines name the token's name or the JWT's user.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import secrets
import socket
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from traystatus import __version__
from traystatus.serve.auth import (
    COOKIE_NAME,
    Authenticator,
    Credential,
    host_is_loopback,
    origin_allowed,
)
from traystatus.serve.credentials import Answer, CredentialChecker
from traystatus.serve.guard import ConnectionGuard
from traystatus.serve.hub import Hub, dumps

log = logging.getLogger(__name__)

STABILITY_PATH = "/api/system-stability"
DETAILS_WS_PATH = "/api/job-details"
DETAILS_HTTP_PATH = "/api/system-status-details"
HEALTH_PATH = "/healthz"

CLOSE_GOING_AWAY = 1001
CLOSE_UNAUTHORIZED = 4401  # the credential no longer holds (4000-4999: the application's)


@dataclass
class AppOptions:
    allow_origins: Sequence[str] = ()
    own_origins: Sequence[str] = ()  # the server's own (from its listen address)
    heartbeat: float = 30.0  # WebSocket ping every N s; nothing back by the next closes it
    max_message: int = 4096  # clients have nothing to say; bigger frames close the socket
    # The kernel's send buffer of a WebSocket: bounded, so that a client that stops
    # reading holds this much kernel memory (Linux doubles it), not the ~4 MiB loopback
    # autotuning grants, and is seen as behind after a few messages, not thousands.
    socket_sndbuf: int = 64 * 1024
    buffer_limit: int = 64 * 1024  # bytes waiting before a client is behind
    recheck: float = 5.0  # open sockets' credentials checked again every N s


@dataclass
class _State:
    hub: Hub
    auth: Authenticator
    options: AppOptions
    checker: CredentialChecker | None = None
    guard: ConnectionGuard | None = None
    sockets: dict[web.WebSocketResponse, Socket] = field(default_factory=dict)
    # the open sockets by credential (Credential.key): each checked once a pass
    by_credential: dict[str, tuple[Credential, set[web.WebSocketResponse]]] = field(
        default_factory=dict)
    closed_for_credential: int = 0
    recheck_now: asyncio.Event = field(default_factory=asyncio.Event)


_KEY = web.AppKey("traystatus_serve", _State)

_COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _json(body: str, status: int = 200, **headers: str) -> web.Response:
    return web.Response(
        text=body,
        status=status,
        content_type="application/json",
        headers={**_COMMON_HEADERS, **headers},
    )


def _error(status: int, message: str, **headers: str) -> web.Response:
    return _json(dumps({"error": message}), status, **headers)


PING_FRAME = b"\x89\x00"  # a final, empty, unmasked ping (RFC 6455 5.5.2)


class Socket:
    """One open WebSocket as the app keeps it: its credential, and for the heartbeat when
    it last sent anything and when it was last pinged (loop time)."""

    __slots__ = ("credential", "pinged", "seen", "transport", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
                 credential: Credential, now: float) -> None:
        self.ws = ws
        self.transport = transport
        self.credential = credential
        self.seen = now
        self.pinged = 0.0


class WebSocketSink:
    """The hub's view of one aiohttp WebSocket: immediate writes of a pre-encoded frame
    while the connection keeps up (no more than ``limit`` bytes already waiting in its
    user-space buffer; the kernel's socket buffer comes before that)."""

    __slots__ = ("limit", "transport", "ws")

    BUFFER_LIMIT = 64 * 1024

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
                 limit: int = BUFFER_LIMIT) -> None:
        self.ws = ws
        self.transport = transport
        self.limit = limit

    def try_write(self, frame: bytes) -> bool:
        t = self.transport
        if t is None or t.is_closing() or self.ws.closed:
            return False
        if t.get_write_buffer_size() > self.limit:
            return False
        t.write(frame)  # one call, one whole frame: never interleaves with aiohttp's own
        return True


def _tokens(request: web.Request) -> list[str]:
    out = []
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        out.append(value.strip())
    out.extend(request.query.getall("token", []))
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie:
        out.append(cookie)
    return out


def _refuse(request: web.Request, status: int, reason: str, **headers: str) -> web.Response:
    log.info("refused %s %s from %s: %s", request.method, request.path, request.remote, reason)
    return _error(status, reason, **headers)


CANNOT_CHECK = "the token cannot be checked right now; try again in a moment"


async def _credential(request: web.Request) -> tuple[Credential | None, web.Response | None]:
    """The request's credential when it may go on, else the refusal to send."""
    st = request.app[_KEY]
    verdict = st.auth.check(_tokens(request))
    credential = verdict.credential
    if not verdict.ok or credential is None:
        return None, _refuse(request, 401, verdict.reason, **{"WWW-Authenticate": "Bearer"})
    if st.checker is not None and st.checker.needed(credential):
        answer = await st.checker.check(credential)
        if answer is Answer.REVOKED:
            log.info("refused %s %s from %s: %s revoked or its user deleted",
                     request.method, request.path, request.remote, credential.who)
            return None, _error(401, "the token is not valid (wrong, expired or revoked)",
                                **{"WWW-Authenticate": "Bearer"})
        if answer is Answer.UNKNOWN:
            return None, _refuse(request, 503, CANNOT_CHECK, **{"Retry-After": "5"})
    if st.guard is not None:
        st.guard.authenticated(request.protocol)
    return credential, None


async def _authorize(request: web.Request) -> web.Response | None:
    """None when the request may go on, else the refusal to send."""
    return (await _credential(request))[1]


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _websocket(request: web.Request, *, details: bool) -> web.StreamResponse:
    st = request.app[_KEY]
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, st.options.own_origins, st.options.allow_origins):
        # For the administrator only: which origin (behind a proxy, its public origin
        # wants --allow-origin; the server does not take it from Host).
        log.info("origin %.200r is neither the server's own (%s) nor allowed with "
                 "--allow-origin", origin, ", ".join(st.options.own_origins) or "-")
        return _refuse(
            request, 403,
            "this page's origin is not allowed; the server's administrator can add it "
            "with --allow-origin",
        )
    credential, refusal = await _credential(request)
    if refusal is not None or credential is None:
        return refusal or _error(401, "no token")
    if st.hub.closing:
        return _refuse(request, 503, "the server is shutting down", **{"Retry-After": "5"})
    if not st.hub.reserve():  # taken now: handshakes in flight count against the limit
        st.hub.counters.clients_refused += 1
        return _refuse(
            request, 503,
            "the server already serves its maximum of clients; try again later",
            **{"Retry-After": "30"},
        )
    ws = web.WebSocketResponse(
        heartbeat=None,  # the app's one heartbeat task pings every socket (module doc)
        autoping=False,  # pongs reach receive_until_closed(): the socket is alive
        max_msg_size=st.options.max_message,
        compress=False,
    )
    try:
        await ws.prepare(request)
    except BaseException:
        st.hub.release()
        raise
    loop = asyncio.get_running_loop()
    raw = request.transport
    transport = raw if isinstance(raw, asyncio.Transport) else None
    sock = Socket(ws, transport, credential, loop.time())
    raw_socket = transport.get_extra_info("socket") if transport is not None else None
    if raw_socket is not None and st.options.socket_sndbuf:
        with contextlib.suppress(OSError):
            raw_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                  st.options.socket_sndbuf)
    _add_socket(st, sock)
    log.info("connected: %s from %s to %s", credential.who, request.remote, request.path)
    sink = WebSocketSink(ws, transport, st.options.buffer_limit)

    def abort() -> None:
        if transport is not None:
            transport.abort()

    async def receive_until_closed() -> None:
        async for msg in ws:
            sock.seen = loop.time()
            if msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.ERROR:
                break
            # Pongs, text or binary from a client: nothing more (the protocol is one-way).

    try:
        await st.hub.serve_client(
            sink, details=details, abort=abort, receive_until_closed=receive_until_closed,
            reserved=True, user=credential.user_id,
        )
    finally:
        _remove_socket(st, ws)
        if not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
    return ws


async def stability(request: web.Request) -> web.StreamResponse:
    if _is_websocket(request):
        return await _websocket(request, details=False)
    refusal = await _authorize(request)
    if refusal is not None:
        return refusal
    return _json(request.app[_KEY].hub.status_text)


async def job_details(request: web.Request) -> web.StreamResponse:
    if _is_websocket(request):
        return await _websocket(request, details=True)
    refusal = await _authorize(request)
    if refusal is not None:
        return refusal
    return _error(
        426, f"{DETAILS_WS_PATH} is a WebSocket; for one snapshot over HTTP use "
        f"GET {DETAILS_HTTP_PATH}", Upgrade="websocket",
    )


async def status_details(request: web.Request) -> web.StreamResponse:
    refusal = await _authorize(request)
    if refusal is not None:
        return refusal
    hub = request.app[_KEY].hub
    status = hub.source.status
    # Not connected to the database: say so now rather than after the read's time limit.
    text = await hub.details_text() if status.is_known else None
    if text is None:
        status = hub.source.status
        problem = status.problem.value if status.problem else status.state.value
        return _error(503, f"no details from the database right now ({problem})",
                      **{"Retry-After": "5"})
    return _json(text)


async def healthz(request: web.Request) -> web.StreamResponse:
    """Liveness for anyone (``{"ok": true}``); the rest only with a valid token: the
    state is what the tokens guard."""
    st = request.app[_KEY]
    hub = st.hub
    if not _tokens(request) or (await _credential(request))[0] is None:
        return _json(dumps({"ok": not hub.closing}), 503 if hub.closing else 200)
    status = hub.source.status
    body = {
        "ok": not hub.closing,
        "version": __version__,
        "database": "connected" if status.is_known else status.state.value,
        "database_connected": status.is_known,
        "state": status.state.value,
        "problem": status.problem.value if status.problem else None,
        "clients": hub.clients,
        "details_clients": hub.details_clients,
    }
    return _json(dumps(body), 503 if hub.closing else 200)


_PAGE: str | None = None


def _page_template() -> str:
    global _PAGE
    if _PAGE is None:
        _PAGE = (
            importlib.resources.files("traystatus.serve")
            .joinpath("page.html")
            .read_text(encoding="utf-8")
        )
    return _PAGE


async def index(request: web.Request) -> web.StreamResponse:
    refusal = await _authorize(request)
    if refusal is not None:
        if request.headers.get("Accept", "").startswith("application/json"):
            return refusal
        body = (
            "<!doctype html><meta charset=utf-8><title>traystatus: token needed</title>"
            "<p>This StatBus status page needs a token: open it as "
            "<code>/?token=&lt;your token&gt;</code> (ask the administrator of this "
            "server for one).</p>"
        )
        return web.Response(
            text=body, status=401, content_type="text/html",
            headers={**_COMMON_HEADERS, "WWW-Authenticate": "Bearer"},
        )
    nonce = secrets.token_urlsafe(16)
    html = _page_template().replace("{{NONCE}}", nonce)
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return web.Response(
        text=html, content_type="text/html",
        headers={**_COMMON_HEADERS, "Content-Security-Policy": csp},
    )


async def close_all(app: web.Application, grace: float = 5.0) -> None:
    """Close frames (1001, going away) to every WebSocket client, in parallel."""
    st = app[_KEY]
    st.hub.closing = True
    sockets = [ws for ws in list(st.sockets.keys()) if not ws.closed]

    async def close(ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down"), grace
            )

    if sockets:
        log.info("closing %d WebSocket client(s)", len(sockets))
        await asyncio.gather(*(close(ws) for ws in sockets))


def _add_socket(st: _State, sock: Socket) -> None:
    st.sockets[sock.ws] = sock
    key = sock.credential.key
    entry = st.by_credential.get(key)
    if entry is None:
        st.by_credential[key] = (sock.credential, {sock.ws})
    else:
        entry[1].add(sock.ws)


def _remove_socket(st: _State, ws: web.WebSocketResponse) -> None:
    sock = st.sockets.pop(ws, None)
    if sock is None:
        return
    key = sock.credential.key
    entry = st.by_credential.get(key)
    if entry is not None:
        entry[1].discard(ws)
        if not entry[1]:
            del st.by_credential[key]


async def _close_unauthorized(st: _State, ws: web.WebSocketResponse, why: str,
                              who: str) -> None:
    _remove_socket(st, ws)
    st.closed_for_credential += 1
    log.info("closing the socket of %s: %s", who, why)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=CLOSE_UNAUTHORIZED, message=why.encode()), 2.0)


def credential_checker(app: web.Application) -> CredentialChecker | None:
    """The app's database checker of StatBus tokens (None without a JWT secret)."""
    return app[_KEY].checker


async def recheck_sockets(app: web.Application) -> int:
    """Check every credential behind open sockets again (once each, however many sockets
    share it); close the sockets of those that no longer hold. Returns how many were
    closed."""
    st = app[_KEY]
    if st.auth.tokens is not None:
        st.auth.tokens.refresh()
    closing: list[Coroutine[Any, Any, None]] = []
    for credential, sockets in list(st.by_credential.values()):
        why = st.auth.still_valid(credential)
        if (why is None and st.checker is not None and st.checker.needed(credential)
                and await st.checker.check(credential) is Answer.REVOKED):
            why = "token revoked"
        if why is not None:
            closing.extend(_close_unauthorized(st, ws, why, credential.who)
                           for ws in list(sockets) if not ws.closed)
    await asyncio.gather(*closing)
    return len(closing)


async def _heartbeat_forever(app: web.Application) -> None:
    """Ping every socket once per ``heartbeat`` seconds, in slices spread over that time
    (at most one a second: never one burst of 10,000 pings and pongs); close a socket
    that sent nothing since its previous ping."""
    st = app[_KEY]
    interval = st.options.heartbeat
    loop = asyncio.get_running_loop()
    slices = max(1, int(interval))
    while True:
        sockets = list(st.sockets.values())
        if not sockets:
            await asyncio.sleep(interval)
            continue
        size = -(-len(sockets) // slices)
        for start in range(0, len(sockets), size):
            now = loop.time()
            for sock in sockets[start:start + size]:
                t = sock.transport
                if t is None or t.is_closing() or sock.ws.closed:
                    continue
                if sock.pinged and sock.seen < sock.pinged:
                    log.info("closing the socket of %s: no pong within %g s",
                             sock.credential.who, now - sock.pinged)
                    t.abort()
                    continue
                sock.pinged = now
                t.write(PING_FRAME)
            await asyncio.sleep(interval / slices)


async def _recheck_forever(app: web.Application) -> None:
    st = app[_KEY]
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(st.recheck_now.wait(), st.options.recheck)
        st.recheck_now.clear()
        try:
            await recheck_sockets(app)
        except Exception:  # a bug here must not end the checking for good
            log.exception("checking the open sockets' credentials failed")


def reload_credentials(app: web.Application) -> None:
    """SIGHUP: read the token file again now and check every open socket."""
    st = app[_KEY]
    if st.auth.tokens is not None:
        st.auth.tokens.refresh(force=True)
        log.warning("SIGHUP: token file %s read again: %d token(s)",
                    st.auth.tokens.path, len(st.auth.tokens))
    st.recheck_now.set()


@web.middleware
async def _loopback_host_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """``--no-auth``: answer only requests addressed to a loopback Host. Another name that
    resolves to 127.0.0.1 is DNS rebinding: a web page reading the state as its own."""
    if not host_is_loopback(request.host):
        return _refuse(request, 403, "this server answers only requests to localhost")
    response: web.StreamResponse = await handler(request)
    return response


def make_app(
    hub: Hub,
    auth: Authenticator,
    options: AppOptions | None = None,
    *,
    checker: CredentialChecker | None = None,
    guard: ConnectionGuard | None = None,
) -> web.Application:
    middlewares = [_loopback_host_only] if auth.no_auth else []
    app = web.Application(client_max_size=64 * 1024, middlewares=middlewares)
    app[_KEY] = _State(hub, auth, options or AppOptions(), checker, guard)
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get("/", index)
    app.router.add_get(STABILITY_PATH, stability)
    app.router.add_get(DETAILS_WS_PATH, job_details)
    app.router.add_get(DETAILS_HTTP_PATH, status_details)

    async def recheck(app: web.Application) -> Any:
        tasks = [
            asyncio.create_task(_recheck_forever(app), name="traystatus-serve-recheck"),
            asyncio.create_task(_heartbeat_forever(app), name="traystatus-serve-heartbeat"),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def on_shutdown(app: web.Application) -> None:
        await close_all(app)

    app.cleanup_ctx.append(recheck)
    app.on_shutdown.append(on_shutdown)
    return app

