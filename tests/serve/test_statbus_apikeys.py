"""StatBus API keys against a real StatBus: made, revoked and orphaned as StatBus does it.

Runs where the real StatBus kit is at hand (STATBUS_REAL_DSN, a superuser conninfo);
skipped elsewhere. Each test works on a fresh copy of the kit's template database, with a
user of its own (StatBus makes a role per user, and roles belong to the whole server:
the test's user is deleted or dropped at the end). The key is made the way StatBus's web
app makes it (PostgREST calls ``public.create_api_key`` as the user's role), revoked the
way it revokes it (``public.revoke_api_key`` as the user), and the server checks it with
the least privilege docs/serve.md grants its role.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.serve.conftest import next_json, served, until
from tests.serve.test_credentials import CLOSE_UNAUTHORIZED, closed_with

DSN = os.environ.get("STATBUS_REAL_DSN")
TEMPLATE = os.environ.get("STATBUS_REAL_TEMPLATE", "statbus_template")
pytestmark = pytest.mark.skipif(not DSN, reason="no real StatBus (STATBUS_REAL_DSN)")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "serve.md"
RECHECK = 0.3


def documented_auth_grant() -> str:
    """docs/serve.md's grant for checking API keys, as written there."""
    text = DOCS.read_text()
    start = text.index("GRANT USAGE ON SCHEMA auth")
    return text[start:text.index(";", start)]


@dataclass
class StatBus:
    dsn: str  # superuser, the copy
    email: str  # the test's user
    secret_file: str
    serve_dsn: str  # a LOGIN role with docs/serve.md's grant only
    bare_dsn: str  # a LOGIN role without it

    def as_user(self, query: str, *params: object) -> tuple[object, ...]:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.email)))
            row = c.execute(query, params).fetchone()
        assert row is not None
        return tuple(row)

    def new_key(self) -> tuple[str, str]:
        """(jti, token), as StatBus's web app asks for one."""
        jti, token = self.as_user(
            "SELECT jti::text, token FROM public.create_api_key('traystatus tray', "
            "'1 day'::interval)")
        return str(jti), str(token)


@pytest.fixture
def statbus(tmp_path: Path) -> Iterator[StatBus]:
    assert DSN is not None
    suffix = uuid.uuid4().hex[:10]
    db, email = f"tsr_apikey_{suffix}", f"tray-{suffix}@example.org"
    roles = [f"serve_{suffix}", f"bare_{suffix}"]
    admin = make_conninfo(DSN, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER statbus_app "
                          "STRATEGY FILE_COPY").format(sql.Identifier(db),
                                                       sql.Identifier(TEMPLATE)))
    dsn = make_conninfo(DSN, dbname=db)
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO auth.user (email, password, statbus_role, display_name, "
                      "email_confirmed_at) VALUES (%s, %s, 'regular_user', 'Tray user', now())",
                      (email, uuid.uuid4().hex))
            secret = c.execute(
                "SELECT value FROM auth.secrets WHERE key = 'jwt_secret'").fetchone()
            assert secret is not None
            for role in roles:
                c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal("pw-" + suffix)))
                c.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(db), sql.Identifier(role)))
            grant = documented_auth_grant().replace("traystatus_serve", "{}")
            c.execute(sql.SQL(grant).format(sql.Identifier(roles[0])))
        path = tmp_path / "jwt-secret"
        path.write_text(str(secret[0]) + "\n")
        path.chmod(0o600)
        yield StatBus(
            dsn, email, str(path),
            make_conninfo(dsn, user=roles[0], password="pw-" + suffix),
            make_conninfo(dsn, user=roles[1], password="pw-" + suffix),
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(db)))
            for role in [*roles, email]:
                c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.asyncio
async def test_a_revoked_api_key_closes_its_socket_and_is_refused(
    statbus: StatBus, tmp_path: Path
) -> None:
    jti, key = statbus.new_key()
    auth = {"Authorization": f"Bearer {key}"}
    async with served(statbus.dsn, tmp_path, jwt_secret_file=statbus.secret_file,
                      credential_conninfo=statbus.serve_dsn, recheck=RECHECK) as srv, \
            aiohttp.ClientSession() as http:
        url = f"{srv.ws_url}/api/system-stability"
        ws = await http.ws_connect(url, headers=auth)
        assert "stable" in await next_json(ws)
        _, other_key = statbus.new_key()  # a second key of the same user
        other = await http.ws_connect(url, headers={"Authorization": f"Bearer {other_key}"})
        await next_json(other)

        assert statbus.as_user("SELECT public.revoke_api_key(%s::uuid)", jti) == (True,)
        revoked = time.monotonic()
        code, reason = await closed_with(ws, within=10)
        assert code == CLOSE_UNAUTHORIZED and reason == "token revoked"
        assert time.monotonic() - revoked < 8  # ttl + recheck (0.6 s), on a loaded machine
        with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
            await http.ws_connect(url, headers=auth)
        assert ex.value.status == 401
        async with http.get(f"{srv.url}/api/system-stability", headers=auth) as r:
            assert r.status == 401
        assert not other.closed  # the user's other key is still good
        await other.close()


@pytest.mark.asyncio
async def test_many_sockets_of_one_key_cost_one_check_a_pass(
    statbus: StatBus, tmp_path: Path
) -> None:
    """10,000 sockets may share a few credentials: a re-check pass asks the database once
    per credential, not once per socket, and closes all of a revoked key's sockets."""
    from traystatus.serve.app import credential_checker, recheck_sockets

    jti, key = statbus.new_key()
    _, other_key = statbus.new_key()
    async with served(statbus.dsn, tmp_path, jwt_secret_file=statbus.secret_file,
                      credential_conninfo=statbus.serve_dsn, recheck=3600.0) as srv, \
            aiohttp.ClientSession() as http:
        url = f"{srv.ws_url}/api/system-stability"
        sockets = [await http.ws_connect(url, headers={"Authorization": f"Bearer {k}"})
                   for k in [key] * 12 + [other_key] * 3]
        for ws in sockets:
            await next_json(ws)
        assert srv.app is not None
        checker = credential_checker(srv.app)
        assert checker is not None
        checker.ttl = 0.0  # no cached answer: every check asks the database
        before = checker.queries
        assert await recheck_sockets(srv.app) == 0
        assert checker.queries - before == 2  # two keys, 15 sockets

        assert statbus.as_user("SELECT public.revoke_api_key(%s::uuid)", jti) == (True,)
        before = checker.queries
        assert await recheck_sockets(srv.app) == 12
        assert checker.queries - before == 2
        for ws in sockets[:12]:
            code, reason = await closed_with(ws, within=10)
            assert code == CLOSE_UNAUTHORIZED and reason == "token revoked"
        assert not any(ws.closed for ws in sockets[12:])
        for ws in sockets[12:]:
            await ws.close()


@pytest.mark.asyncio
async def test_a_deleted_users_api_key_closes_its_socket(
    statbus: StatBus, tmp_path: Path
) -> None:
    _, key = statbus.new_key()
    auth = {"Authorization": f"Bearer {key}"}
    async with served(statbus.dsn, tmp_path, jwt_secret_file=statbus.secret_file,
                      credential_conninfo=statbus.serve_dsn, recheck=RECHECK) as srv, \
            aiohttp.ClientSession() as http:
        url = f"{srv.ws_url}/api/system-stability"
        ws = await http.ws_connect(url, headers=auth)
        assert "stable" in await next_json(ws)
        with psycopg.connect(statbus.dsn, autocommit=True) as c:  # an administrator deletes
            c.execute("DELETE FROM auth.user WHERE email = %s", (statbus.email,))
        code, reason = await closed_with(ws, within=10)
        assert code == CLOSE_UNAUTHORIZED and reason == "token revoked"
        with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
            await http.ws_connect(url, headers=auth)
        assert ex.value.status == 401


@pytest.mark.asyncio
async def test_without_the_grant_api_keys_are_refused_and_the_start_warns(
    statbus: StatBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = statbus.new_key()
    caplog.set_level(logging.WARNING, logger="traystatus")
    async with served(statbus.dsn, tmp_path, jwt_secret_file=statbus.secret_file,
                      credential_conninfo=statbus.bare_dsn, startup_grace=0.5) as srv, \
            aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
            await http.ws_connect(f"{srv.ws_url}/api/system-stability",
                                  headers={"Authorization": f"Bearer {key}"})
        assert ex.value.status == 503  # never accepted unchecked
        await until(lambda: "API keys cannot be checked" in caplog.text, within=15,
                    what="the start-up warning")
    assert "API keys cannot be checked" in caplog.text
    assert "GRANT USAGE ON SCHEMA auth" in caplog.text


def test_the_grant_is_all_the_server_role_has_in_auth(statbus: StatBus) -> None:
    """With docs/serve.md's grant the role can run StatBus's check, and read nothing."""
    with psycopg.connect(statbus.serve_dsn, autocommit=True) as c:
        c.execute("SELECT set_config('request.jwt.claims', '{\"type\": \"access\"}', false)")
        c.execute("SELECT auth.check_api_key_revocation()")
        for table in ("auth.api_key", "auth.user", "auth.secrets", "auth.refresh_session"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(f"SELECT 1 FROM {table} LIMIT 1")
