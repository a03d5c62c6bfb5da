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

Every endpoint but ``/healthz`` wants a token (auth.py): ``Authorization: Bearer``,
``?token=`` (browsers cannot set headers on a WebSocket) or StatBus's ``statbus`` cookie.
No token or a bad one: 401 (a WebSocket handshake is refused the same way); a browser
page from an origin not allowed: 403; more clients than ``max_clients``: 503.
Tokens never reach a log line: the access log is off and refusals name the path only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from traystatus import __version__
from traystatus.serve.auth import COOKIE_NAME, Authenticator, origin_allowed
from traystatus.serve.hub import Hub, dumps

log = logging.getLogger(__name__)

STABILITY_PATH = "/api/system-stability"
DETAILS_WS_PATH = "/api/job-details"
DETAILS_HTTP_PATH = "/api/system-status-details"
HEALTH_PATH = "/healthz"

CLOSE_GOING_AWAY = 1001


@dataclass
class AppOptions:
    allow_origins: Sequence[str] = ()
    heartbeat: float = 30.0  # WebSocket ping every N s; no pong within N/2 s closes it
    max_message: int = 4096  # clients have nothing to say; bigger frames close the socket


@dataclass
class _State:
    hub: Hub
    auth: Authenticator
    options: AppOptions
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)


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


class WebSocketSink:
    """The hub's view of one aiohttp WebSocket: awaited sends, and immediate writes of a
    pre-encoded frame while the connection keeps up (its write buffer under the limit)."""

    __slots__ = ("transport", "ws")

    BUFFER_LIMIT = 64 * 1024

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        self.ws = ws
        self.transport = transport

    async def send_str(self, data: str) -> None:
        await self.ws.send_str(data)

    def try_write(self, frame: bytes) -> bool:
        t = self.transport
        if self.ws.closed or t is None or t.is_closing():
            return False
        if t.get_write_buffer_size() > self.BUFFER_LIMIT:
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


def _authorize(request: web.Request) -> web.Response | None:
    """None when the request may go on, else the refusal to send."""
    st = request.app[_KEY]
    verdict = st.auth.check(_tokens(request))
    if not verdict.ok:
        return _refuse(request, 401, verdict.reason, **{"WWW-Authenticate": "Bearer"})
    return None


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _websocket(request: web.Request, *, details: bool) -> web.StreamResponse:
    st = request.app[_KEY]
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.host, st.options.allow_origins):
        return _refuse(
            request, 403,
            f"origin {origin!r} is not allowed; the server's administrator can add it "
            "with --allow-origin",
        )
    refusal = _authorize(request)
    if refusal is not None:
        return refusal
    if st.hub.closing:
        return _refuse(request, 503, "the server is shutting down", **{"Retry-After": "5"})
    if st.hub.full():
        st.hub.counters.clients_refused += 1
        return _refuse(
            request, 503,
            f"the server already serves its maximum of {st.hub.options.max_clients} "
            "clients; try again later or use another server",
            **{"Retry-After": "30"},
        )
    ws = web.WebSocketResponse(
        heartbeat=st.options.heartbeat,
        max_msg_size=st.options.max_message,
        compress=False,
    )
    await ws.prepare(request)
    st.sockets.add(ws)
    transport = request.transport
    sink = WebSocketSink(ws, transport if isinstance(transport, asyncio.Transport) else None)

    def abort() -> None:
        if transport is not None:
            transport.abort()

    async def receive_until_closed() -> None:
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
            # Text or binary from a client: nothing to do (the protocol is one-way).

    try:
        await st.hub.serve_client(
            sink, details=details, abort=abort, receive_until_closed=receive_until_closed
        )
    finally:
        st.sockets.discard(ws)
        if not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
    return ws


async def stability(request: web.Request) -> web.StreamResponse:
    if _is_websocket(request):
        return await _websocket(request, details=False)
    refusal = _authorize(request)
    if refusal is not None:
        return refusal
    return _json(request.app[_KEY].hub.status_text)


async def job_details(request: web.Request) -> web.StreamResponse:
    if _is_websocket(request):
        return await _websocket(request, details=True)
    refusal = _authorize(request)
    if refusal is not None:
        return refusal
    return _error(
        426, f"{DETAILS_WS_PATH} is a WebSocket; for one snapshot over HTTP use "
        f"GET {DETAILS_HTTP_PATH}", Upgrade="websocket",
    )


async def status_details(request: web.Request) -> web.StreamResponse:
    refusal = _authorize(request)
    if refusal is not None:
        return refusal
    hub = request.app[_KEY].hub
    status = hub.source.status
    # Not connected to the database: say so now rather than after the read's time limit.
    text = await hub.details_text() if status.is_known else None
    if text is None:
        status = hub.source.status
        why = status.message or f"the database side is {status.state.value}"
        return _error(503, f"no details from the database right now: {why}",
                      **{"Retry-After": "5"})
    return _json(text)


async def healthz(request: web.Request) -> web.StreamResponse:
    hub = request.app[_KEY].hub
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
    refusal = _authorize(request)
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
    sockets = [ws for ws in list(st.sockets) if not ws.closed]

    async def close(ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down"), grace
            )

    if sockets:
        log.info("closing %d WebSocket client(s)", len(sockets))
        await asyncio.gather(*(close(ws) for ws in sockets))


def make_app(hub: Hub, auth: Authenticator, options: AppOptions | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[_KEY] = _State(hub, auth, options or AppOptions())
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get("/", index)
    app.router.add_get(STABILITY_PATH, stability)
    app.router.add_get(DETAILS_WS_PATH, job_details)
    app.router.add_get(DETAILS_HTTP_PATH, status_details)

    async def on_shutdown(app: web.Application) -> None:
        await close_all(app)

    app.on_shutdown.append(on_shutdown)
    return app

