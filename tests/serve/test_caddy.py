"""``traystatus serve`` behind a real Caddy (Debian's ``caddy``), configured as
docs/serve.md says: the WebSocket upgrade, StatBus's ``statbus`` cookie, the page, the
seed's React hook in Chromium, and a tray's client that reconnects through the proxy
after the server restarts.

Caddy listens on 127.0.0.1 only, on a free port, with automatic HTTPS off and its admin
endpoint off: it never talks to the internet. The site block is docs/serve.md's, read
from the docs, with the test's addresses put in.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from playwright.async_api import Browser

from tests.serve.conftest import TOKEN, WAIT, ServeProcess, next_json, token_file, until
from tests.serve.test_credentials import make_jwt
from tests.serve.test_page import SEED_HOOK, browser  # noqa: F401 - the fixture
from traystatus.core.model.state import State
from traystatus.core.relay.client import RelaySource
from traystatus.core.watch.options import MonitorOptions

CADDY = shutil.which("caddy")
pytestmark = pytest.mark.skipif(
    CADDY is None and os.environ.get("CI") != "true",
    reason="caddy not installed (Debian: apt-get install caddy; .ci/apt-packages.txt)",
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "serve.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def documented_site() -> str:
    """The body of docs/serve.md's Caddy site block (the `handle` lines), as written."""
    text = DOCS.read_text()
    block = re.search(r"```caddyfile\nstatbus\.example\.org \{\n(.*?)\n\}\n```", text, re.S)
    assert block, "docs/serve.md has no caddyfile block for statbus.example.org"
    return block.group(1)


class Caddy:
    def __init__(self, tmp: Path, port: int, upstream: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        site = documented_site().replace("127.0.0.1:8765", f"127.0.0.1:{upstream}")
        config = tmp / "Caddyfile"
        config.write_text(
            "{\n\tauto_https off\n\tadmin off\n}\n"
            f"http://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n{site}\n"
            "\thandle {\n\t\trespond \"StatBus's app\" 200\n\t}\n}\n"
        )
        home = tmp / "caddy-home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
               "XDG_CONFIG_HOME": str(home / "config")}
        assert CADDY is not None
        self.proc = subprocess.Popen(
            [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                assert self.proc.stderr is not None  # stderr=PIPE
                raise AssertionError(f"caddy exited: {self.proc.stderr.read()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("caddy did not start listening")

    def stop(self) -> str:
        if self.proc.returncode is not None:
            return ""
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


class Setup:
    def __init__(self, dsn: str, tmp: Path) -> None:
        self.dsn = dsn
        self.tmp = tmp
        self.serve_port = free_port()
        self.caddy_port = free_port()
        self.secret = b"c" * 40
        secret_file = tmp / "jwt-secret"
        secret_file.write_bytes(self.secret)
        secret_file.chmod(0o600)
        self.args = ["--dsn", dsn, "--listen", f"127.0.0.1:{self.serve_port}",
                     "--token-file", token_file(tmp), "--jwt-secret-file", str(secret_file),
                     "--allow-origin", f"http://127.0.0.1:{self.caddy_port}",
                     "--health-interval", "1"]
        self.serve = self.start_serve()
        self.caddy = Caddy(tmp, self.caddy_port, self.serve_port)

    def start_serve(self) -> ServeProcess:
        p = ServeProcess(*self.args)
        p.wait_ready()
        return p

    def restart_serve(self) -> None:
        self.serve.proc.send_signal(signal.SIGTERM)
        assert self.serve.proc.wait(15) == 0
        self.serve.stop()
        time.sleep(0.5)  # a moment down: the proxy answers 502 meanwhile
        self.serve = self.start_serve()

    def cookie(self) -> str:
        with psycopg.connect(self.dsn) as c:
            role = str(c.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
        return make_jwt(self.secret, {"role": role, "email": "analyst@example.org",
                                      "type": "access", "exp": time.time() + 600})

    def close(self) -> None:
        self.serve.stop()
        self.caddy.stop()


@pytest.fixture
def setup(db_dsn: str, tmp_path: Path) -> Iterator[Setup]:
    s = Setup(db_dsn, tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.mark.asyncio
async def test_websocket_cookie_page_and_details_through_caddy(setup: Setup) -> None:
    base = setup.caddy.url
    origin = {"Origin": base}
    async with aiohttp.ClientSession(cookies={"statbus": setup.cookie()}) as browser_like:
        async with browser_like.ws_connect(f"ws://127.0.0.1:{setup.caddy_port}"
                                           "/api/system-stability", headers=origin) as ws:
            first = await next_json(ws)
            assert first["stable"] is True
        async with browser_like.get(f"{base}/api/system-status-details") as r:
            assert r.status == 200 and (await r.json())["system_stable"] is True
        async with browser_like.ws_connect(f"ws://127.0.0.1:{setup.caddy_port}"
                                           "/api/job-details", headers=origin) as ws:
            assert (await next_json(ws))["system_stable"] is True
    async with aiohttp.ClientSession() as anonymous:
        with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
            await anonymous.ws_connect(f"ws://127.0.0.1:{setup.caddy_port}"
                                       "/api/system-stability", headers=origin)
        assert ex.value.status == 401
        # a page elsewhere cannot use the analyst's cookie through the proxy either
        async with aiohttp.ClientSession(cookies={"statbus": setup.cookie()}) as other:
            with pytest.raises(aiohttp.WSServerHandshakeError) as ex:
                await other.ws_connect(f"ws://127.0.0.1:{setup.caddy_port}"
                                       "/api/system-stability",
                                       headers={"Origin": "https://evil.example"})
            assert ex.value.status == 403
        async with anonymous.get(f"{base}/traystatus/?token={TOKEN}") as r:
            assert r.status == 200 and "StatBus status" in await r.text()
            assert "Content-Security-Policy" in r.headers
        async with anonymous.get(f"{base}/") as r:  # the app's catch-all stays the app's
            assert await r.text() == "StatBus's app"


@pytest.mark.asyncio
async def test_the_seed_hook_and_our_page_in_chromium_through_caddy(
    setup: Setup, browser: Browser  # noqa: F811
) -> None:
    context = await browser.new_context()
    await context.add_cookies([{"name": "statbus", "value": setup.cookie(),
                                "url": setup.caddy.url, "httpOnly": True,
                                "sameSite": "Strict"}])
    page = await context.new_page()
    await page.goto(f"{setup.caddy.url}/")  # StatBus's app, same origin
    result = await page.evaluate(SEED_HOOK)
    assert result == {"stable": True, "status": 200, "jobs": 0, "tasks": 0,
                      "system_stable": True}
    await page.goto(f"{setup.caddy.url}/traystatus/?token={TOKEN}")
    from playwright.async_api import expect

    await expect(page.locator("#word")).to_have_text("Stable", timeout=15_000)
    await context.close()


@pytest.mark.asyncio
async def test_a_tray_client_reconnects_through_caddy_after_serve_restarts(
    setup: Setup,
) -> None:
    options = MonitorOptions(health_interval=1.0, health_timeout=1.0, connect_timeout=3.0,
                             backoff_initial=0.2, backoff_cap=1.0, error_retry=1.0)
    source = RelaySource(f"ws://127.0.0.1:{setup.caddy_port}", options, token=TOKEN)
    states: list[State] = []
    source.add_listener(lambda s: states.append(s.state))
    task = asyncio.create_task(source.run())
    try:
        await until(lambda: source.status.state is State.STABLE, what="stable via caddy")
        before = len(states)
        await asyncio.to_thread(setup.restart_serve)
        await until(lambda: any(s is not State.STABLE for s in states[before:]),
                    what="the restart seen (1001 from serve, then 502 from caddy)")
        await until(lambda: source.status.state is State.STABLE, within=WAIT,
                    what="stable again through caddy, on its own")
    finally:
        source.stop()
        await asyncio.wait_for(task, 10)
    err = setup.caddy.stop()
    assert "acme" not in err.lower() and "obtain" not in err.lower(), err  # no ACME, ever
