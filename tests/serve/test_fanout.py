"""The fan-out over real sockets: a client that stops reading delays nobody, holds at most
its buffer and one frame, and ends up with the latest state; every message is encoded once.

The server is the real aiohttp app over a real Hub on a loopback port; the state source
is test_hub's stand-in (the database is not the point: test_serve.py has it). The stuck
client is a raw socket with a small receive buffer that completes the handshake and then
reads nothing until told to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.serve.test_hub import FakeSource
from traystatus.core.model.state import State, Status
from traystatus.serve.app import AppOptions, make_app
from traystatus.serve.auth import Authenticator
from traystatus.serve.hub import Hub, HubOptions

BIG = "x" * 8000  # a state message of ~8 KB: a few dozen fill any socket buffer


@contextlib.asynccontextmanager
async def _server(hub: Hub, options: AppOptions) -> AsyncIterator[str]:
    app = make_app(hub, Authenticator(no_auth=True), options)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _stuck_client(address: str) -> socket.socket:
    """A WebSocket client that handshakes, then reads nothing (4 KiB receive buffer)."""
    host, port = address.split(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /api/system-stability HTTP/1.1\r\nHost: {address}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)  # byte by byte: leave the frames after the head unread
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def _read_frames(s: socket.socket) -> list[str]:
    """Every text frame the socket has for us, until it stays quiet for a moment."""
    s.settimeout(1.0)
    data = b""
    try:
        while chunk := s.recv(1 << 16):
            data += chunk
    except TimeoutError:
        pass
    texts = []
    while data:
        opcode, n, start = data[0] & 0x0F, data[1] & 0x7F, 2
        if n == 126:
            n, start = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, start = int.from_bytes(data[2:10], "big"), 10
        if opcode == 1:
            texts.append(data[start:start + n].decode())
        data = data[start + n:]
    return texts


@pytest.mark.asyncio
async def test_a_client_that_stops_reading_delays_nobody_and_ends_on_the_latest_state(
) -> None:
    source = FakeSource()
    hub = Hub(source, HubOptions(send_timeout=60, flush_interval=0.02))
    # 4 KiB waiting in user space makes a client "behind" (the default is 64 KiB)
    async with _server(hub, AppOptions(buffer_limit=4096, heartbeat=3600)) as address:
        stuck = await asyncio.to_thread(_stuck_client, address)
        async with aiohttp.ClientSession() as http:
            fast = [await http.ws_connect(f"ws://{address}/api/system-stability")
                    for _ in range(3)]
            for ws in fast:
                assert json.loads((await ws.receive()).data)["stable"] is True
            assert hub.clients == 4
            encoded = hub.counters.frames_encoded

            got: list[list[str]] = [[] for _ in fast]
            n = 300  # ~2.4 MB for each client: far more than the stuck one's buffers
            for i in range(n):
                state = State.PROCESSING if i % 2 == 0 else State.STABLE
                source.emit(Status(state, message=f"m{i} {BIG}"))
                # the fast clients read every message as it comes, the stuck one none
                for ws, seen in zip(fast, got, strict=True):
                    seen.append(json.loads((await ws.receive(timeout=10)).data)["reason"])
            # Every fast client got every message, in order: none waited for the stuck one.
            assert all(seen == [f"m{i} {BIG}" for i in range(n)] for seen in got)
            assert hub.behind == 1  # the stuck one: behind, one frame in its slot
            assert hub.counters.frames_encoded - encoded == n  # once per message
            assert hub.counters.messages_replaced > 0

            # It reads again: what was in its buffers, then the latest state, no more.
            texts = await asyncio.to_thread(_read_frames, stuck)
            last = json.loads(texts[-1])
            assert last["reason"] == f"m{n - 1} {BIG}" and last["stable"] is True
            # bounded: its buffers and one frame, not the 300 messages sent meanwhile
            assert len(texts) < n
            assert hub.behind == 0 and hub.counters.slow_clients_dropped == 0
            for ws in fast:
                await ws.close()
        stuck.close()


def test_the_open_file_limit_is_raised_to_the_hard_one_and_a_low_one_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One file descriptor a client: the soft limit (often 1,024) would refuse clients
    long before --max-clients."""
    import resource

    from traystatus.serve.server import raise_fd_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 256:
        pytest.skip(f"hard open-file limit {hard}")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
        assert raise_fd_limit(100) == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert "open-file limit" not in caplog.text
        raise_fd_limit(hard + 1000)
        assert f"the open-file limit is {hard}" in caplog.text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
