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
token file changes or on SIGHUP) each socket's credential is checked again, and one that
no longer holds (withdrawn from the token file, expired, an API key revoked, its user
deleted) is closed with code 4401 and a short reason.

Tokens never reach a log line: the access log is off, refusals name the path only, and
"connected" lines name the token's name or the JWT's user.
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
    heartbeat: float = 30.0  # WebSocket ping every N s; no pong within N/2 s closes it
    max_message: int = 4096  # clients have nothing to say; bigger frames close the socket
    recheck: float = 5.0  # open sockets' credentials checked again every N s


@dataclass
class _State:
    hub: Hub
    auth: Authenticator
    options: AppOptions
    checker: CredentialChecker | None = None
    guard: ConnectionGuard | None = None
    sockets: weakref.WeakKeyDictionary[web.WebSocketResponse, Credential] = field(
        default_factory=weakref.WeakKeyDictionary)
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
        heartbeat=st.options.heartbeat,
        max_msg_size=st.options.max_message,
        compress=False,
    )
    try:
        await ws.prepare(request)
    except BaseException:
        st.hub.release()
        raise
    st.sockets[ws] = credential
    log.info("connected: %s from %s to %s", credential.who, request.remote, request.path)
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
            sink, details=details, abort=abort, receive_until_closed=receive_until_closed,
            reserved=True, user=credential.user_id,
        )
    finally:
        st.sockets.pop(ws, None)
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


async def _close_unauthorized(st: _State, ws: web.WebSocketResponse, why: str,
                              who: str) -> None:
    st.sockets.pop(ws, None)
    st.closed_for_credential += 1
    log.info("closing the socket of %s: %s", who, why)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=CLOSE_UNAUTHORIZED, message=why.encode()), 2.0)


def credential_checker(app: web.Application) -> CredentialChecker | None:
    """The app's database checker of StatBus tokens (None without a JWT secret)."""
    return app[_KEY].checker


async def recheck_sockets(app: web.Application) -> int:
    """Check every open socket's credential again; close those that no longer hold.
    Returns how many were closed."""
    st = app[_KEY]
    if st.auth.tokens is not None:
        st.auth.tokens.refresh()
    closing = []
    for ws, credential in list(st.sockets.items()):
        if ws.closed:
            continue
        why = st.auth.still_valid(credential)
        if (why is None and st.checker is not None and st.checker.needed(credential)
                and await st.checker.check(credential) is Answer.REVOKED):
            why = "token revoked"
        if why is not None:
            closing.append(_close_unauthorized(st, ws, why, credential.who))
    await asyncio.gather(*closing)
    return len(closing)


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
        task = asyncio.create_task(_recheck_forever(app), name="traystatus-serve-recheck")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def on_shutdown(app: web.Application) -> None:
        await close_all(app)

    app.cleanup_ctx.append(recheck)
    app.on_shutdown.append(on_shutdown)
    return app

