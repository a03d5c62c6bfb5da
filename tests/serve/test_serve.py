"""``traystatus serve`` end to end: real PostgreSQL, real server, real WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import signal
import time
import uuid
from dataclasses import replace
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.fix_db import STATBUS_REAL, PgServer, count_details_calls, temporary_role
from tests.fix_proxy import Proxy
from tests.serve.conftest import (
    FAST,
    FINISH_TASKS,
    START_TASK,
    TOKEN,
    WAIT,
    ServeProcess,
    connections,
    details_calls,
    json_until,
    next_json,
    served,
    token_file,
    until,
)
from traystatus.cli.doctor import granted_functions
from traystatus.core.watch.monitor import Monitor


def _run(conn_dsn: str, *statements: str) -> None:
    with psycopg.connect(conn_dsn, autocommit=True) as c:
        for s in statements:
            c.execute(s)


# -- the status socket and the JSON endpoints ------------------------------------------------
@pytest.mark.asyncio
async def test_initial_message_then_one_per_change(db_dsn: str, tmp_path: Path) -> None:
    async with served(db_dsn, tmp_path) as srv, aiohttp.ClientSession() as http:
        await until(lambda: srv.monitor.status.is_known, what="the server knows the state")
        async with http.ws_connect(f"{srv.ws_url}/api/system-stability",
                                   headers=srv.headers()) as ws:
            first = await next_json(ws)
            assert first["stable"] is True and first["state"] == "stable"
            assert {"since", "reason", "problem"} <= set(first)

            _run(db_dsn, START_TASK)
            msg = await next_json(ws)
            assert (msg["stable"], msg["state"]) == (False, "processing")

            async with http.get(f"{srv.url}/api/system-stability",
                                headers=srv.headers()) as r:
                assert r.status == 200 and (await r.json())["stable"] is False

            _run(db_dsn, FINISH_TASKS)
            msg = await json_until(ws, lambda m: m.get("state") == "stable")
            assert msg["stable"] is True
            # then what finished in between, to those connected (stable in it too)
            done = await json_until(ws, lambda m: "summary" in m)
            assert done["stable"] is True
            assert done["summary"]["analytics_tasks_completed"] == 1
            assert "1 analytics task finished" in done["summary"]["text"]

        async with http.get(f"{srv.url}/healthz") as r:  # no token: liveness only
            assert r.status == 200 and await r.json() == {"ok": True}
        async with http.get(f"{srv.url}/healthz", headers=srv.headers()) as r:
            body = await r.json()
            assert r.status == 200 and body["database_connected"] is True
            assert body["ok"] is True


@pytest.mark.asyncio
async def test_one_database_connection_for_many_clients(db_dsn: str, tmp_path: Path) -> None:
    async with served(db_dsn, tmp_path) as srv, aiohttp.ClientSession() as http:
        sockets = [
            await http.ws_connect(f"{srv.ws_url}/api/system-stability?token={TOKEN}")
            for _ in range(20)
        ]
        details = [
            await http.ws_connect(f"{srv.ws_url}/api/job-details", headers=srv.headers())
            for _ in range(3)
        ]
        for ws in sockets:
            assert (await next_json(ws))["stable"] is True
        for ws in details:
            assert (await next_json(ws))["system_stable"] is True
        assert connections(db_dsn) == 1  # the whole server: one LISTEN connection
        _run(db_dsn, START_TASK)
        for ws in sockets:
            assert (await next_json(ws))["stable"] is False
        for ws in sockets + details:
            await ws.close()


# -- auth ----------------------------------------------------------------------------------
def _jwt(secret: bytes, claims: dict[str, object], alg: str = "HS256") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


@pytest.mark.asyncio
async def test_auth_refusals_and_acceptances(db_dsn: str, tmp_path: Path) -> None:
    secret = b"s" * 40
    secret_file = tmp_path / "jwt"
    secret_file.write_bytes(secret + b"\n")
    secret_file.chmod(0o600)
    now = int(time.time())
    # its role must exist: StatBus drops a deleted user's role, and a JWT naming a role
    # that is gone is refused (credentials.py)
    with psycopg.connect(db_dsn) as c:
        role = str(c.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
    good_jwt = _jwt(secret, {"role": role, "email": "a@example.org",
                             "type": "access", "exp": now + 600})
    bad = {
        "expired": _jwt(secret, {"email": "a@example.org", "exp": now - 5}),
        "no exp": _jwt(secret, {"email": "a@example.org"}),
        "refresh": _jwt(secret, {"type": "refresh", "exp": now + 600}),
        "wrong secret": _jwt(b"x" * 40, {"exp": now + 600}),
        "alg none": _jwt(secret, {"exp": now + 600}, alg="none").rsplit(".", 1)[0] + ".",
        "garbage": "a.b.c",
        "wrong token": "test-token-not-the-right-one",
        "huge": "x" * 100_000,
    }
    async with served(db_dsn, tmp_path, jwt_secret_file=str(secret_file),
                      allow_origins=["https://statbus.example.org"]) as srv, \
            aiohttp.ClientSession() as http:
        api = f"{srv.url}/api/system-stability"
        wsapi = f"{srv.ws_url}/api/system-stability"
        for path in ("/", "/api/system-stability", "/api/system-status-details"):
            async with http.get(f"{srv.url}{path}") as r:
                assert r.status == 401, path
        for name, token in bad.items():
            async with http.get(api, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status in (401, 400), name  # 400: a header line over 8 KiB
            with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
                await http.ws_connect(f"{wsapi}?token={token}")
            assert ex.value.status in (401, 414, 400), name
        with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
            await http.ws_connect(wsapi)
        assert ex.value.status == 401

        # accepted: shared token by header and by ?token=, StatBus JWT by header and cookie
        async with http.get(api, headers=srv.headers()) as r:
            assert r.status == 200
        async with http.get(f"{api}?token={TOKEN}") as r:
            assert r.status == 200
        async with http.get(api, headers={"Authorization": f"Bearer {good_jwt}"}) as r:
            assert r.status == 200
        async with aiohttp.ClientSession(cookies={"statbus": good_jwt}) as browser, \
                browser.ws_connect(wsapi) as ws:
            assert "stable" in await next_json(ws)

        # Origin: the server's own and the allowed one pass, others are refused
        own = srv.url
        for origin, ok in ((own, True), ("https://statbus.example.org", True),
                           ("https://evil.example.com", False), ("null", False)):
            try:
                ws = await http.ws_connect(wsapi, headers={**srv.headers(), "Origin": origin})
            except aiohttp.WSServerHandshakeError as err:
                assert not ok and err.status == 403, origin
            else:
                assert ok, origin
                await ws.close()


def test_no_auth_refused_off_loopback_and_without_tokens(db_dsn: str, tmp_path: Path) -> None:
    for args, words in (
        (["--listen", "0.0.0.0:0", "--no-auth"], "loopback"),
        (["--listen", "127.0.0.1:0"], "--token-file"),
        (["--listen", "nonsense:port"], "port"),
        (["--listen", "127.0.0.1:0", "--token-file", str(tmp_path / "missing")], "cannot read"),
    ):
        p = ServeProcess("--dsn", db_dsn, *args)
        _, err = p.proc.communicate(timeout=WAIT)
        assert p.proc.returncode == 2, (args, err)
        assert words in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err


# -- details -------------------------------------------------------------------------------
# Health checks every 0.25 s, details every 0.1 s while subscribed: ``n`` health checks
# span at least ``n - 1`` quarter seconds, i.e. more than ``2 * (n - 1)`` details intervals.
QUICK = replace(FAST, health_interval=0.25, details_interval=0.1)


async def health_checks_pass(monitor: Monitor, n: int) -> None:
    """Until the monitor has made ``n`` more health checks (every 0.25 s, QUICK): it runs
    and reads on its one connection, so a read sent before has ended."""
    target = monitor.counters.health_checks + n
    await until(lambda: monitor.counters.health_checks >= target, what=f"{n} health checks")


@pytest.mark.asyncio
async def test_details_read_only_while_a_details_socket_is_open(
    db_dsn: str, tmp_path: Path
) -> None:
    # Count calls exactly and at once (no wait for PostgreSQL's statistics flush).
    with psycopg.connect(db_dsn, autocommit=True) as c:
        count_details_calls(c)
    async with served(db_dsn, tmp_path, QUICK) as srv, aiohttp.ClientSession() as http:
        assert srv.monitor.options.details_interval < srv.monitor.options.health_interval
        status_ws = await http.ws_connect(f"{srv.ws_url}/api/system-stability",
                                          headers=srv.headers())
        await next_json(status_ws)
        _run(db_dsn, START_TASK)
        await json_until(status_ws, lambda m: m["stable"] is False)
        await health_checks_pass(srv.monitor, 2)  # processing, health checks: no details
        assert srv.monitor.counters.details_reads == 0
        assert details_calls(db_dsn) == 0

        async with http.ws_connect(f"{srv.ws_url}/api/job-details",
                                   headers=srv.headers()) as dws:
            first = await next_json(dws)
            assert first["system_stable"] is False
            assert first["analytics"]["active_total"] == 1
            _run(db_dsn, FINISH_TASKS)
            done = await json_until(dws, lambda m: m["system_stable"] is True)
            assert done["analytics"]["active_total"] == 0
            await until(lambda: details_calls(db_dsn) >= 2, what="details counted by PG")
        await until(lambda: srv.hub.details_clients == 0, what="details client gone")
        await until(lambda: srv.monitor.details_subscribers == 0, what="unsubscribed")
        await health_checks_pass(srv.monitor, 1)  # a read in flight has ended
        reads = srv.monitor.counters.details_reads
        calls = details_calls(db_dsn)
        assert calls == reads  # the database counts what the monitor says it did
        _run(db_dsn, START_TASK)  # a change: would be read if anyone were subscribed
        await json_until(status_ws, lambda m: m["stable"] is False)
        await health_checks_pass(srv.monitor, 3)  # processing, health checks: no details
        assert srv.monitor.counters.details_reads == reads
        assert details_calls(db_dsn) == calls
        await status_ws.close()


@pytest.mark.asyncio
async def test_http_details_are_cached_about_a_second(db_dsn: str, tmp_path: Path) -> None:
    async with served(db_dsn, tmp_path) as srv, aiohttp.ClientSession() as http:
        await until(lambda: srv.monitor.status.is_known, what="connected")
        url = f"{srv.url}/api/system-status-details"

        async def get() -> dict[str, object]:
            async with http.get(url, headers=srv.headers()) as r:
                assert r.status == 200
                body: dict[str, object] = await r.json()
                return body

        bodies = await asyncio.gather(*(get() for _ in range(10)))
        assert all(b["system_stable"] is True for b in bodies)
        for _ in range(10):
            await get()
        assert srv.monitor.counters.details_reads == 1  # 20 requests within ~1 s: one read
        await asyncio.sleep(1.3)
        await get()
        assert srv.monitor.counters.details_reads == 2
        # nothing keeps reading afterwards (the subscription lingers a second)
        await until(lambda: srv.monitor.details_subscribers == 0, within=5,
                    what="details unsubscribed")
        async with http.get(f"{srv.url}/api/job-details", headers=srv.headers()) as r:
            assert r.status == 426  # a WebSocket, with a pointer to the HTTP endpoint


@pytest.mark.asyncio
async def test_a_details_socket_right_after_an_http_read_gets_its_first_message(
    db_dsn: str, tmp_path: Path
) -> None:
    """Found through Caddy: the HTTP read's subscription ended and the socket's began
    before the monitor looked, so it saw no change, read nothing, and the new socket
    waited for the next change for its first message."""
    async with served(db_dsn, tmp_path) as srv, aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(f"{srv.url}/api/system-status-details",
                                headers=srv.headers()) as r:
                assert r.status == 200
            async with http.ws_connect(f"{srv.ws_url}/api/job-details",
                                       headers=srv.headers()) as ws:
                assert (await next_json(ws, within=5))["system_stable"] is True


# -- limits and keepalive ------------------------------------------------------------------
@pytest.mark.asyncio
async def test_max_clients_refused_clearly(db_dsn: str, tmp_path: Path) -> None:
    async with served(db_dsn, tmp_path, max_clients=2) as srv, aiohttp.ClientSession() as http:
        url = f"{srv.ws_url}/api/system-stability"
        a = await http.ws_connect(url, headers=srv.headers())
        b = await http.ws_connect(url, headers=srv.headers())
        with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
            await http.ws_connect(url, headers=srv.headers())
        assert ex.value.status == 503
        async with http.get(url, headers={**srv.headers()}) as r:  # plain GET still works
            assert r.status == 200
        await a.close()
        await until(lambda: srv.hub.clients == 1, what="a slot free again")
        c = await http.ws_connect(url, headers=srv.headers())
        assert "stable" in await next_json(c)
        await b.close()
        await c.close()


@pytest.mark.asyncio
async def test_a_client_that_does_not_answer_pings_is_closed(
    db_dsn: str, tmp_path: Path
) -> None:
    async with served(db_dsn, tmp_path, heartbeat=0.5) as srv, aiohttp.ClientSession() as http:
        url = f"{srv.ws_url}/api/system-stability"
        good = await http.ws_connect(url, headers=srv.headers())
        seen: list[dict[str, object]] = []

        async def read_good() -> None:  # receive() is where aiohttp's client answers pings
            async for msg in good:
                seen.append(msg.json())

        reader = asyncio.create_task(read_good())
        mute = await http.ws_connect(url, headers=srv.headers(), autoping=False)
        await until(lambda: srv.hub.clients == 2, what="two clients")
        # The mute client never reads, so never answers the server's pings.
        await until(lambda: srv.hub.clients == 1, within=10, what="the mute client dropped")
        await asyncio.sleep(1.5)  # three more heartbeats: the good one stays
        assert srv.hub.clients == 1 and not good.closed
        _run(db_dsn, START_TASK)
        await until(lambda: any(m["stable"] is False for m in seen),
                    what="the good client still gets changes")
        await good.close()
        await reader
        await mute.close()


# -- the database goes away and comes back -------------------------------------------------
@pytest.mark.asyncio
async def test_database_lost_and_back_without_client_reconnect(
    db_dsn: str, tmp_path: Path, proxy_factory: type[Proxy]
) -> None:
    if STATBUS_REAL:
        pytest.skip("the real StatBus kit listens on a Unix socket only; the proxy is TCP")
    params = psycopg.conninfo.conninfo_to_dict(db_dsn)
    proxy = proxy_factory(str(params.get("host") or "127.0.0.1"), int(str(params["port"])))
    proxy.start()
    async with served(proxy.dsn(db_dsn), tmp_path) as srv, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{srv.ws_url}/api/system-stability", headers=srv.headers())
        assert (await next_json(ws))["stable"] is True
        lost_at = time.monotonic()
        proxy.blackhole()  # the network goes silent: no FIN, no RST
        lost = await json_until(ws, lambda m: m["stable"] is None, within=10)
        # health interval 1 s + timeout 1 s (FAST); generous for a loaded machine
        assert time.monotonic() - lost_at < 6
        assert lost["state"] == "disconnected" and lost["problem"] == "stale"
        assert lost["reason"]
        async with http.get(f"{srv.url}/healthz", headers=srv.headers()) as r:
            body = await r.json()
            assert r.status == 200 and body["database_connected"] is False
        asked = time.monotonic()
        async with http.get(f"{srv.url}/api/system-status-details",
                            headers=srv.headers()) as r:
            assert r.status == 503 and "no details" in (await r.json())["error"]
        assert time.monotonic() - asked < 3  # said at once, not after the read's time limit
        proxy.cut()
        proxy.restore()
        back = await json_until(ws, lambda m: m["stable"] is True, within=WAIT)
        assert back["state"] == "stable"
        assert not ws.closed  # the same socket all along
        await ws.close()


# -- SIGTERM and several servers -----------------------------------------------------------
async def _closed(ws: aiohttp.ClientWebSocketResponse, within: float = 10) -> int:
    """Read (skipping state messages) until the server's close frame; its code."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), within)
        if msg.type is aiohttp.WSMsgType.TEXT:
            continue
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        # The frame's own code (ws.close_code may say 1006 when the server has already
        # dropped the TCP connection by the time the client sends its own close frame back).
        return int(msg.data)


@pytest.mark.asyncio
async def test_sigterm_sends_close_frames_and_exits_0(db_dsn: str, tmp_path: Path) -> None:
    p = ServeProcess("--dsn", db_dsn, "--listen", "127.0.0.1:0",
                     "--token-file", token_file(tmp_path))
    try:
        await asyncio.to_thread(p.wait_ready)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{p.ws_url}/api/system-stability?token={TOKEN}")
            dws = await http.ws_connect(f"{p.ws_url}/api/job-details?token={TOKEN}")
            await json_until(ws, lambda m: m["stable"] is True)
            assert connections(db_dsn) == 1
            p.proc.send_signal(signal.SIGTERM)
            for sock in (ws, dws):
                assert await _closed(sock) == 1001
        assert await asyncio.to_thread(p.proc.wait, 15) == 0
        await until(lambda: connections(db_dsn) == 0, within=10, what="DB connection closed")
    finally:
        p.stop()


@pytest.mark.asyncio
async def test_two_servers_share_nothing_and_serve_clients_spread_over_both(
    db_dsn: str, tmp_path: Path
) -> None:
    tokens = token_file(tmp_path)
    procs = [ServeProcess("--dsn", db_dsn, "--listen", "127.0.0.1:0", "--token-file", tokens)
             for _ in range(2)]
    try:
        urls = [await asyncio.to_thread(p.wait_ready) for p in procs]
        async with aiohttp.ClientSession() as http:
            clients = [
                await http.ws_connect(f"{'ws' + urls[i % 2][4:]}/api/system-stability",
                                      headers={"Authorization": f"Bearer {TOKEN}"})
                for i in range(10)
            ]
            for ws in clients:
                await json_until(ws, lambda m: m["stable"] is True)
            assert connections(db_dsn) == 2  # one LISTEN per server
            _run(db_dsn, START_TASK)
            for ws in clients:
                await json_until(ws, lambda m: m["stable"] is False)
            procs[0].proc.send_signal(signal.SIGTERM)  # one goes away; the other goes on
            assert await asyncio.to_thread(procs[0].proc.wait, 15) == 0
            _run(db_dsn, FINISH_TASKS)
            for i, ws in enumerate(clients):
                if i % 2 == 1:
                    await json_until(ws, lambda m: m["stable"] is True)
                else:
                    await _closed(ws)
            for ws in clients:
                await ws.close()
    finally:
        for p in procs:
            p.stop()


# -- the database role the server needs ------------------------------------------------------
DOCS = Path(__file__).resolve().parents[2] / "docs" / "serve.md"


def _docs_grant() -> str:
    """docs/serve.md's GRANT for the server's role, as written there."""
    text = DOCS.read_text()
    start = text.index("GRANT EXECUTE ON FUNCTION")
    return text[start:text.index(";", start)]


def test_the_documented_grant_is_install_sqls() -> None:
    documented = set(re.findall(r"public\.\w+\([^)]*\)", _docs_grant()))
    assert documented == set(granted_functions())


@pytest.mark.asyncio
async def test_a_role_with_execute_on_our_functions_only_is_enough(
    db_dsn: str, templates: PgServer, tmp_path: Path
) -> None:
    """docs/serve.md's role: LOGIN, EXECUTE on our functions, no table, no other role."""
    name = f"serve_{uuid.uuid4().hex[:8]}"
    for role, password in temporary_role(templates, name):
        grant = _docs_grant().replace("TO traystatus_serve", "TO {}")
        _run(db_dsn, sql.SQL(grant).format(sql.Identifier(role)).as_string(None))
        dsn = make_conninfo(db_dsn, user=role, password=password)
        with psycopg.connect(dsn) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT count(*) FROM public.import_job")  # really nothing else
        async with served(dsn, tmp_path) as srv, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{srv.ws_url}/api/system-stability",
                                       headers=srv.headers())
            assert (await next_json(ws))["stable"] is True
            _run(db_dsn, START_TASK)
            await json_until(ws, lambda m: m["stable"] is False)
            async with http.get(f"{srv.url}/api/system-status-details",
                                headers=srv.headers()) as r:
                assert r.status == 200
                assert (await r.json())["analytics"]["active_total"] == 1
            _run(db_dsn, FINISH_TASKS)
            await json_until(ws, lambda m: m["stable"] is True)
            await ws.close()
        # its grants in this database go before the role can (DROP OWNED revokes them, which
        # StatBus's sql_saga event trigger rejects: clean up with event triggers off)
        _run(db_dsn, "SET session_replication_role = replica",
             sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)).as_string(None))
