"""Open sockets follow their credential; nothing the tokens guard leaks without one.

Real server, real WebSocket clients, real PostgreSQL (the StatBus stand-in; the real
StatBus's API keys are tests/serve/test_statbus_apikeys.py's).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg import sql

from tests.fix_db import PgServer, temporary_role
from tests.serve.conftest import TOKEN, next_json, served, token_file, until

CLOSE_UNAUTHORIZED = 4401  # app.py: the credential no longer holds

OTHER = "other-token-0123456789abcdef"
RECHECK = 0.3


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(secret: bytes, claims: dict[str, object], header: dict[str, object] | None = None,
             raw_body: str | None = None) -> str:
    head = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(raw_body.encode() if raw_body is not None else json.dumps(claims).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def secret_file(tmp: Path, secret: bytes = b"s" * 40) -> str:
    path = tmp / "jwt-secret"
    path.write_bytes(secret + b"\n")
    path.chmod(0o600)
    return str(path)


def current_user(dsn: str) -> str:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


async def closed_with(ws: aiohttp.ClientWebSocketResponse, within: float) -> tuple[int, str]:
    """Read (skipping state messages) until the server's close frame: (code, reason)."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the socket is still open after {within} s")
        try:
            msg = await asyncio.wait_for(ws.receive(), left)
        except TimeoutError:
            continue
        if msg.type is aiohttp.WSMsgType.TEXT:
            continue
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        return int(msg.data), str(msg.extra or "")


# -- item 2 and 3: the token file ----------------------------------------------------------
NEW = "brand-new-token-0123456789abcdef"


def _withdraw(path: Path, change: str) -> None:
    """The administrator changes the token file so that TOKEN is no longer in it."""
    if change == "removed":
        path.write_text(f"{OTHER}\n")
    elif change == "empty":
        path.write_text("")
    elif change == "commented":
        path.write_text(f"# {TOKEN}\n# {OTHER}\n")
    elif change == "deleted":
        path.unlink()
    elif change == "bad line":  # one short line must not keep the old tokens alive
        path.write_text(f"short\n{NEW}\n")
    else:
        fresh = path.with_name("tokens.new")
        fresh.write_text(f"{NEW}\n")
        os.replace(fresh, path)


@pytest.mark.asyncio
@pytest.mark.parametrize("change", ["removed", "empty", "commented", "deleted", "bad line",
                                    "replaced by rename"])
async def test_a_withdrawn_token_closes_its_open_socket(
    db_dsn: str, tmp_path: Path, change: str
) -> None:
    path = Path(token_file(tmp_path, TOKEN, OTHER))
    async with served(db_dsn, tmp_path, token_file=str(path), recheck=RECHECK) as srv, \
            aiohttp.ClientSession() as http:
        url = f"{srv.ws_url}/api/system-stability"
        ws = await http.ws_connect(url, headers=srv.headers())
        other = await http.ws_connect(url, headers=srv.headers(OTHER))
        assert (await next_json(ws))["stable"] is True
        await next_json(other)
        _withdraw(path, change)
        code, reason = await closed_with(ws, within=5)
        assert code == CLOSE_UNAUTHORIZED and "withdrawn" in reason
        with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
            await http.ws_connect(url, headers=srv.headers())
        assert ex.value.status == 401
        async with http.get(url, headers=srv.headers()) as r:
            assert r.status == 401
        if change == "removed":  # the token still in the file keeps its socket
            await asyncio.sleep(3 * RECHECK)
            assert not other.closed
            await other.close()
        else:
            assert (await closed_with(other, within=5))[0] == CLOSE_UNAUTHORIZED
        if change in ("bad line", "replaced by rename"):
            async with http.get(url, headers=srv.headers(NEW)) as r:
                assert r.status == 200


@pytest.mark.asyncio
async def test_who_connected_is_logged_without_the_secret(
    db_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# named tokens\n{TOKEN} alice-laptop\n{OTHER}\n")
    path.chmod(0o600)
    caplog.set_level(logging.INFO, logger="traystatus")
    async with served(db_dsn, tmp_path, token_file=str(path)) as srv, \
            aiohttp.ClientSession() as http:
        for token in (TOKEN, OTHER):
            async with http.ws_connect(f"{srv.ws_url}/api/system-stability",
                                       headers=srv.headers(token)) as ws:
                await next_json(ws)
    text = caplog.text
    assert "connected: token:alice-laptop from 127.0.0.1" in text
    assert "connected: token:line 3 from 127.0.0.1" in text
    assert TOKEN not in text and OTHER not in text


# -- item 2: JWTs expire, their users go away ------------------------------------------------
@pytest.mark.asyncio
async def test_an_expired_jwt_closes_its_open_socket(db_dsn: str, tmp_path: Path) -> None:
    secret = b"k" * 40
    role = current_user(db_dsn)
    jwt = make_jwt(secret, {"role": role, "email": "a@example.org", "type": "access",
                            "exp": time.time() + 2.5})
    async with served(db_dsn, tmp_path, jwt_secret_file=secret_file(tmp_path, secret),
                      recheck=RECHECK) as srv, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{srv.ws_url}/api/system-stability",
                                   headers={"Authorization": f"Bearer {jwt}"})
        assert (await next_json(ws))["stable"] is True
        started = time.monotonic()
        code, reason = await closed_with(ws, within=10)
        assert code == CLOSE_UNAUTHORIZED and reason == "token expired"
        assert time.monotonic() - started < 2.5 + 2.0


@pytest.mark.asyncio
async def test_a_deleted_users_jwt_closes_its_socket_and_is_refused(
    db_dsn: str, templates: PgServer, tmp_path: Path
) -> None:
    """StatBus drops a deleted user's role; a JWT naming a role that is gone is refused."""
    secret = b"k" * 40
    name = f"user_{uuid.uuid4().hex[:8]}@example.org"
    for role, _ in temporary_role(templates, name):
        jwt = make_jwt(secret, {"role": role, "email": role, "type": "access",
                                "exp": time.time() + 600})
        async with served(db_dsn, tmp_path, jwt_secret_file=secret_file(tmp_path, secret),
                          recheck=RECHECK) as srv, aiohttp.ClientSession() as http:
            url = f"{srv.ws_url}/api/system-stability"
            ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {jwt}"})
            assert (await next_json(ws))["stable"] is True
            with templates.admin() as c:
                c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            code, reason = await closed_with(ws, within=5)
            assert code == CLOSE_UNAUTHORIZED and reason == "token revoked"
            with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
                await http.ws_connect(url, headers={"Authorization": f"Bearer {jwt}"})
            assert ex.value.status == 401
            with templates.admin() as c:  # temporary_role drops it again
                c.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))


# -- item 4: JWT strictness ------------------------------------------------------------------
@pytest.mark.asyncio
async def test_malleable_and_malformed_jwts_are_refused(db_dsn: str, tmp_path: Path) -> None:
    secret = b"k" * 40
    role = current_user(db_dsn)
    exp = int(time.time()) + 600
    claims = {"role": role, "email": "a@example.org", "type": "access", "exp": exp}
    good = make_jwt(secret, claims)
    head, body, sig = good.split(".")
    # the signature's last character carries 2 unused bits: flip one, same bytes decoded
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    twin = sig[:-1] + alphabet[last ^ 1]
    bad = {
        "padded": good + "==",
        "padded sig": f"{head}.{body}.{sig}=",
        "bangs": good + "!!",
        "non-canonical bits": f"{head}.{body}.{twin}",
        "whitespace": f"{head}.{body}.{sig[:5]} {sig[5:]}",
        "exp NaN": make_jwt(secret, {}, raw_body=json.dumps(claims).replace(str(exp), "NaN")),
        "exp Infinity": make_jwt(secret, {},
                                 raw_body=json.dumps(claims).replace(str(exp), "Infinity")),
        "exp 1e400": make_jwt(secret, {}, raw_body=json.dumps(claims).replace(str(exp),
                                                                               "1e400")),
        "exp huge int": make_jwt(secret, {**claims, "exp": 10**400}),
        "exp string": make_jwt(secret, {**claims, "exp": str(exp)}),
        "exp true": make_jwt(secret, {**claims, "exp": True}),
        "alg HS512": make_jwt(secret, claims, {"alg": "HS512", "typ": "JWT"}),
        "alg none": make_jwt(secret, claims, {"alg": "none"}).rsplit(".", 1)[0] + ".",
        "alg RS256": make_jwt(secret, claims, {"alg": "RS256", "typ": "JWT"}),
        "typ other": make_jwt(secret, claims, {"alg": "HS256", "typ": "at+jwt"}),
        "crit": make_jwt(secret, claims, {"alg": "HS256", "crit": ["x"]}),
        "header array": make_jwt(secret, claims, ["HS256"]),  # type: ignore[arg-type]  # on purpose
        "no type": make_jwt(secret, {k: v for k, v in claims.items() if k != "type"}),
        "refresh": make_jwt(secret, {**claims, "type": "refresh"}),
        "other type": make_jwt(secret, {**claims, "type": "id"}),
        "api key without jti": make_jwt(secret, {**claims, "type": "api_key"}),
        "nbf NaN": make_jwt(secret, {}, raw_body=json.dumps({**claims, "nbf": 1}).replace(
            '"nbf": 1', '"nbf": NaN')),
    }
    async with served(db_dsn, tmp_path, jwt_secret_file=secret_file(tmp_path, secret)) as srv, \
            aiohttp.ClientSession() as http:
        api = f"{srv.url}/api/system-stability"
        async with http.get(api, headers={"Authorization": f"Bearer {good}"}) as r:
            assert r.status == 200
        refused = []
        for name, token in bad.items():
            async with http.get(api, params={"token": token}) as r:
                if r.status != 401:
                    refused.append(name)
        assert refused == [], f"accepted: {refused}"


# -- item 5 and 6: nothing leaks --------------------------------------------------------------
@pytest.mark.asyncio
async def test_healthz_without_a_token_is_liveness_only(db_dsn: str, tmp_path: Path) -> None:
    async with served(db_dsn, tmp_path) as srv, aiohttp.ClientSession() as http:
        for headers in ({}, srv.headers("wrong-token-0123456789abcdef")):
            async with http.get(f"{srv.url}/healthz", headers=headers) as r:
                assert r.status == 200 and await r.json() == {"ok": True}
        async with http.get(f"{srv.url}/healthz", headers=srv.headers()) as r:
            body = await r.json()
            assert body["state"] == "stable" and body["database_connected"] is True


@pytest.mark.asyncio
async def test_clients_get_a_generic_reason_and_the_log_the_details(
    db_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's database error (host, port, the database, libpq's FATAL line) goes to
    its log; clients get the problem's class and a sentence that names none of it."""
    secret_name = f"no_such_db_{uuid.uuid4().hex[:8]}"
    params = psycopg.conninfo.conninfo_to_dict(db_dsn)
    dsn = psycopg.conninfo.make_conninfo(db_dsn, dbname=secret_name)
    caplog.set_level(logging.INFO, logger="traystatus")
    async with served(dsn, tmp_path, wait_known=False) as srv, \
            aiohttp.ClientSession() as http:
        await until(lambda: srv.monitor.status.problem is not None, what="a problem")
        seen: list[str] = []
        async with http.ws_connect(f"{srv.ws_url}/api/system-stability",
                                   headers=srv.headers()) as ws:
            msg = await next_json(ws)
            seen.append(json.dumps(msg))
            assert msg["stable"] is None and msg["problem"]
            assert "log" in msg["reason"]
        for path in ("/api/system-stability", "/api/system-status-details", "/healthz"):
            async with http.get(f"{srv.url}{path}", headers=srv.headers()) as r:
                seen.append(await r.text())
        for text in seen:
            for leak in (secret_name, str(params.get("port")), "FATAL",
                         str(params.get("user") or "postgres")):
                assert leak not in text, (leak, text)
    assert secret_name in caplog.text  # the administrator's log has it


# -- item 7: Origin and Host ---------------------------------------------------------------------
@pytest.mark.asyncio
async def test_origin_is_compared_on_scheme_host_and_port_not_trusted_from_host(
    db_dsn: str, tmp_path: Path
) -> None:
    async with served(db_dsn, tmp_path, allow_origins=["https://statbus.example.org"]) as srv, \
            aiohttp.ClientSession() as http:
        port = srv.url.rsplit(":", 1)[1]
        url = f"{srv.ws_url}/api/system-stability"
        cases = [
            (f"http://127.0.0.1:{port}", None, True),
            (f"http://localhost:{port}", None, True),
            ("https://statbus.example.org", None, True),
            ("https://statbus.example.org:443", None, True),
            ("http://statbus.example.org", None, False),  # scheme
            ("https://statbus.example.org:8443", None, False),  # port
            (f"https://127.0.0.1:{port}", None, False),
            ("http://127.0.0.1:1", None, False),
            # DNS rebinding: the attacker's name resolves to us; Host and Origin agree
            (f"http://rebind.example:{port}", f"rebind.example:{port}", False),
            ("null", None, False),
        ]
        for origin, host, ok in cases:
            headers = {**srv.headers(), "Origin": origin}
            if host:
                headers["Host"] = host
            try:
                ws = await http.ws_connect(url, headers=headers)
            except aiohttp.WSServerHandshakeError as err:
                assert not ok and err.status == 403, origin
            else:
                assert ok, origin
                await ws.close()


@pytest.mark.asyncio
async def test_no_auth_answers_only_loopback_hosts(db_dsn: str, tmp_path: Path) -> None:
    async with served(db_dsn, tmp_path, token_file=None, no_auth=True) as srv, \
            aiohttp.ClientSession() as http:
        port = srv.url.rsplit(":", 1)[1]
        for host, status in ((f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200),
                             (f"[::1]:{port}", 200), (f"rebind.example:{port}", 403),
                             ("evil.example", 403)):
            for path in ("/api/system-stability", "/"):
                async with http.get(f"{srv.url}{path}", headers={"Host": host}) as r:
                    assert r.status == status, (host, path)
