"""``traystatus serve`` under misuse and in operation: slow request heads, handshake
storms, signals, a database it cannot use, silly options. Real servers, real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import aiohttp
import psycopg
import pytest

from tests.serve.conftest import (
    TOKEN,
    ServeProcess,
    connections,
    next_json,
    served,
    token_file,
)
from tests.serve.test_credentials import CLOSE_UNAUTHORIZED, OTHER, closed_with


async def _slow_head(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that starts a request head and never finishes it (slowloris)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
    await writer.drain()
    return reader, writer


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float | None:
    """Seconds until the server closed the connection, or None if it did not."""
    start = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return None
    except ConnectionError:
        return time.monotonic() - start
    assert b"200 OK" not in data
    return time.monotonic() - start


@pytest.mark.asyncio
async def test_slow_request_heads_are_cut_and_unauthenticated_connections_limited(
    db_dsn: str, tmp_path: Path
) -> None:
    async with served(db_dsn, tmp_path, header_timeout=1.0,
                      max_unauthenticated_per_address=5, max_unauthenticated=100) as srv, \
            aiohttp.ClientSession() as http:
        port = int(srv.url.rsplit(":", 1)[1])
        ws = await http.ws_connect(f"{srv.ws_url}/api/system-stability",
                                   headers=srv.headers())
        await next_json(ws)
        conns = [await _slow_head(port) for _ in range(5)]
        extra = [await _slow_head(port) for _ in range(3)]
        for reader, _ in extra:  # over the per-address limit: closed at once
            assert await _closed_within(reader, 0.5) is not None
        started = time.monotonic()
        for reader, writer in conns:  # the others: when the head time is up
            writer.write(b"a")
            assert await _closed_within(reader, 5.0) is not None
        assert time.monotonic() - started < 4.0
        # the authenticated socket is not a request head in progress: still served
        assert not ws.closed
        async with http.get(f"{srv.url}/api/system-stability", headers=srv.headers()) as r:
            assert r.status == 200
        for _, writer in conns + extra:
            writer.close()
        await ws.close()


@pytest.mark.asyncio
async def test_concurrent_handshakes_do_not_overshoot_max_clients(
    db_dsn: str, tmp_path: Path
) -> None:
    async with served(db_dsn, tmp_path, max_clients=3) as srv, \
            aiohttp.ClientSession() as http:
        url = f"{srv.ws_url}/api/system-stability"

        async def attempt() -> aiohttp.ClientWebSocketResponse | int:
            try:
                return await http.ws_connect(url, headers=srv.headers())
            except aiohttp.WSServerHandshakeError as ex:
                return ex.status

        results = await asyncio.gather(*(attempt() for _ in range(30)))
        sockets = [r for r in results if not isinstance(r, int)]
        assert len(sockets) == 3 and srv.hub.clients == 3
        assert sorted(set(r for r in results if isinstance(r, int))) == [503]
        for ws in sockets:
            await ws.close()


@pytest.mark.asyncio
async def test_sighup_rereads_the_token_file_and_keeps_serving(
    db_dsn: str, tmp_path: Path
) -> None:
    path = Path(token_file(tmp_path, TOKEN, OTHER))
    p = ServeProcess("--dsn", db_dsn, "--listen", "127.0.0.1:0", "--token-file", str(path),
                     "--recheck-interval", "3600")
    try:
        await asyncio.to_thread(p.wait_ready)
        async with aiohttp.ClientSession() as http:
            url = f"{p.ws_url}/api/system-stability"
            ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {TOKEN}"})
            other = await http.ws_connect(url, headers={"Authorization": f"Bearer {OTHER}"})
            await next_json(ws)
            await next_json(other)
            # Withdraw TOKEN so that only a re-read can tell: same size, same times, same
            # inode (a hand edit restored with touch -r); then SIGHUP.
            _rewrite_in_place(path, TOKEN, "x" * len(TOKEN))
            p.proc.send_signal(signal.SIGHUP)
            code, reason = await closed_with(ws, within=5)
            assert code == CLOSE_UNAUTHORIZED and reason == "token withdrawn"
            assert p.proc.poll() is None  # still running
            assert not other.closed
            await other.close()
    finally:
        p.stop()


def _rewrite_in_place(path: Path, old: str, new: str) -> None:
    st = path.stat()
    text = path.read_text().replace(old, new)
    with path.open("r+") as f:
        f.write(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_database_it_cannot_use_is_a_warning_at_start(db_dsn: str, tmp_path: Path) -> None:
    dsn = psycopg.conninfo.make_conninfo(db_dsn, dbname="no_such_database_here")
    p = ServeProcess("--dsn", dsn, "--listen", "127.0.0.1:0",
                     "--token-file", token_file(tmp_path))
    try:
        p.wait_ready()
        assert p.proc.stderr is not None
        timer = threading.Timer(20.0, p.proc.kill)  # no warning at all: readline ends
        timer.start()
        lines: list[str] = []
        try:
            while line := p.proc.stderr.readline():
                lines.append(line)
                if "WARNING" in line:
                    break
        finally:
            timer.cancel()
        text = "".join(lines)
        assert "WARNING" in text and "no_such_database_here" in text, text
    finally:
        p.stop()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_tiny_health_interval_is_clamped(db_dsn: str, tmp_path: Path) -> None:
    p = ServeProcess("--dsn", db_dsn, "--listen", "127.0.0.1:0",
                     "--token-file", token_file(tmp_path), "--health-interval", "1e-9")
    try:
        p.wait_ready()
        assert any("--health-interval 1e-09 is out of range; using 1" in line
                   for line in p.stderr_lines), p.stderr_lines
        # Connected (its one session in pg_stat_activity), then settled: the first reads
        # and LISTENs of the session are not idle time.
        deadline = time.monotonic() + 30
        while connections(db_dsn) != 1:
            assert time.monotonic() < deadline, "serve did not connect within 30 s"
            time.sleep(0.05)
        time.sleep(0.5)
        before, start = _cpu_seconds(p.proc.pid), time.monotonic()
        time.sleep(3.0)
        share = (_cpu_seconds(p.proc.pid) - before) / (time.monotonic() - start)
        assert share < 0.2, f"{share:.0%} of a core while idle"
    finally:
        p.stop()
