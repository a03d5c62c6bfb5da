"""Run ``traystatus serve`` against a real database and talk to it with real clients.

In-process servers (``served``) for most tests: the real aiohttp site on a free loopback
port, the real Monitor. Subprocess servers (``ServeProcess``) where the process itself is
the point: SIGTERM, two servers side by side, the CLI's refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web

from tests.cli.conftest import Cli
from tests.fix_db import details_call_count
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions
from traystatus.serve.hub import Hub
from traystatus.serve.server import Running, ServeConfig, serve

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "traystatus"
TOKEN = "test-token-0123456789abcdef"
WAIT = 30.0

FAST = MonitorOptions(
    health_interval=1.0,
    health_timeout=1.0,
    connect_timeout=3.0,
    backoff_initial=0.2,
    backoff_cap=1.0,
    error_retry=1.0,
    details_interval=0.5,
)

START_TASK = "INSERT INTO worker.tasks (command, state) VALUES ('collect_changes', 'pending')"
FINISH_TASKS = (
    "UPDATE worker.tasks SET state = 'completed', completed_at = now() "
    "WHERE command = 'collect_changes' AND state <> 'completed'"
)


def token_file(tmp: Path, *tokens: str) -> str:
    path = tmp / "tokens"
    path.write_text("# test tokens\n" + "\n".join(tokens or (TOKEN,)) + "\n")
    path.chmod(0o600)
    return str(path)


@dataclass
class Served:
    url: str
    hub: Hub
    monitor: Monitor
    app: web.Application | None = None

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http"):]

    def headers(self, token: str = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def served(
    dsn: str, tmp: Path, options: MonitorOptions = FAST, wait_known: bool = True,
    **config: Any,
) -> AsyncIterator[Served]:
    """An in-process server on 127.0.0.1 (free port) for the body of the block."""
    monitor = Monitor(dsn, options)
    if "token_file" not in config:  # (not setdefault: that would write the file anyway)
        config["token_file"] = token_file(tmp)
    config.setdefault("port", 0)
    config.setdefault("credential_conninfo", dsn)
    cfg = ServeConfig(host="127.0.0.1", **config)
    loop = asyncio.get_running_loop()
    started: asyncio.Future[Running] = loop.create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(cfg, monitor, ready=started.set_result, stop=stop, handle_signals=False)
    )
    first: set[asyncio.Future[Any]] = {started, task}
    done, _ = await asyncio.wait(first, timeout=WAIT, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()  # raises what serve() raised
    running = started.result()
    if wait_known:
        await until(lambda: monitor.status.is_known, what="the server knows the state")
    try:
        yield Served(running.url, running.hub, monitor, running.app)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, WAIT) == 0


async def until(predicate: Callable[[], bool], within: float = WAIT, what: str = "it") -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise AssertionError(f"{what}: not reached within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def next_json(ws: aiohttp.ClientWebSocketResponse, within: float = WAIT) -> Any:
    msg = await asyncio.wait_for(ws.receive(), within)
    assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg!r}"
    return msg.json()


async def json_until(
    ws: aiohttp.ClientWebSocketResponse, predicate: Callable[[Any], bool], within: float = WAIT
) -> Any:
    """Messages until one satisfies ``predicate``; returns it."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching message in time")
        value = await next_json(ws, left)
        if predicate(value):
            return value


def details_calls(dsn: str) -> int:
    """How often get_system_status_details() ran in this database, exactly (after
    tests.fix_db.count_details_calls)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        return details_call_count(c)


def connections(dsn: str, application_name: str = "traystatus") -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(str(row[0]))


@pytest.fixture
def cli_env(tmp_path: Path) -> Cli:
    """The CLI tests' isolated home, config folder and test keychain (tests/cli/conftest.py)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        TRAYSTATUS_CONFIG_DIR=str(tmp_path / "config"),
        TRAYSTATUS_TEST_KEYRING=str(tmp_path / "keyring.json"),
        PYTHON_KEYRING_BACKEND="tests.cli.keyrings.FileKeyring",
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    for name in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    return Cli(env, home)


class ServeProcess:
    """``traystatus serve`` as a child process; the URL read from its one stderr line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        full_env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            [str(SCRIPT), "serve", *args],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list[str] = []
        self.url = ""

    def wait_ready(self, within: float = WAIT) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line)
            m = re.search(r"listening on (\S+)", line)
            if m:
                self.url = m.group(1)
                return self.url
        self.proc.kill()
        _, err = self.proc.communicate()
        raise AssertionError(f"serve did not start: {''.join(self.stderr_lines)}{err}")

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http"):]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)  # also closes the pipes
