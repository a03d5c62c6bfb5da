""""My imports" through a server: an import job that ends is told to its owner's sockets
(a StatBus token of that user), and to nobody else; a tray's relay client turns it into
the same EndedJob a database source gives. Real server, real PostgreSQL, real clients."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import psycopg
import pytest

from tests.serve.conftest import json_until, next_json, served, until
from tests.serve.test_credentials import current_user, make_jwt, secret_file
from tests.sql.conftest import add_job
from traystatus.core.model.jobs import EndedJob
from traystatus.core.relay.client import RelaySource
from traystatus.core.watch.options import MonitorOptions


@pytest.mark.asyncio
async def test_an_ended_import_reaches_its_owner_only(db_dsn: str, tmp_path: Path) -> None:
    secret = b"m" * 40
    role = current_user(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as c:
        rows = c.execute('INSERT INTO auth."user" (email) VALUES (%s), (%s) RETURNING id',
                         ("owner@example.org", "someone.else@example.org")).fetchall()
        me, other = (int(r[0]) for r in rows)
        job = add_job(c, "processing_data", total_rows=20_000, import_completed_pct=10,
                      description="Legal units 2026", user_id=me)

    def token(uid: int) -> str:
        return make_jwt(secret, {"role": role, "email": f"user{uid}@example.org", "uid": uid,
                                 "type": "access", "exp": time.time() + 600})

    async with served(db_dsn, tmp_path, jwt_secret_file=secret_file(tmp_path, secret)) as srv, \
            aiohttp.ClientSession() as http:
        url = f"{srv.ws_url}/api/system-stability"
        mine = await http.ws_connect(url, headers={"Authorization": f"Bearer {token(me)}"})
        theirs = await http.ws_connect(url,
                                       headers={"Authorization": f"Bearer {token(other)}"})
        shared = await http.ws_connect(url, headers=srv.headers())
        for ws in (mine, theirs, shared):
            await json_until(ws, lambda m: m["stable"] is False)
        tray = RelaySource(srv.url, MonitorOptions(backoff_initial=0.2, backoff_cap=1.0),
                           token=token(me))
        told: list[EndedJob] = []
        tray.add_import_listener(told.append)
        task = asyncio.create_task(tray.run())
        try:
            await until(lambda: tray.status.is_known, what="the tray's relay connected")
            with psycopg.connect(db_dsn, autocommit=True) as c:
                c.execute("UPDATE public.import_job SET state = 'finished', imported_rows = "
                          "20000, warning_count = 16, import_completed_pct = 100 "
                          "WHERE id = %s", (job,))
            ended = await json_until(mine, lambda m: "import_ended" in m)
            assert ended["import_ended"]["id"] == job and "stable" in ended
            assert ended["import_ended"]["text"] == "20,000 rows imported, 16 warnings"
            await until(lambda: len(told) == 1, what="the tray told")
            assert (told[0].id, told[0].mine, told[0].title, told[0].text) == (
                job, True, "Legal units 2026", "20,000 rows imported, 16 warnings")
            # the others got the state, never the import's ending
            for ws in (theirs, shared):
                await json_until(ws, lambda m: m["stable"] is True)
                with pytest.raises(TimeoutError):
                    while True:
                        assert "import_ended" not in await next_json(ws, within=1.5)
        finally:
            tray.stop()
            await asyncio.wait_for(task, 10)
        for ws in (mine, theirs, shared):
            await ws.close()
