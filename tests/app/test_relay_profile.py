"""A tray profile that names a traystatus server: the real tray Controller, a real
``traystatus serve`` child process, the token in the (in-process) keychain."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from PySide6.QtWidgets import QApplication

from tests.app.conftest import MemoryKeyring, make_processing, make_stable, run, wait_until
from tests.serve.conftest import TOKEN, ServeProcess, token_file
from traystatus.app.controller import Controller
from traystatus.core.config import credentials
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
from traystatus.core.model.state import State


def _health(url: str) -> dict[str, Any]:
    """/healthz with the token: without one it says only that the server is up."""
    request = urllib.request.Request(f"{url}/healthz",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        body: dict[str, Any] = json.load(r)
    return body


def _details_clients(url: str) -> int:
    return int(_health(url)["details_clients"])


def _database_connected(url: str) -> bool:
    return bool(_health(url)["database_connected"])


def test_the_tray_watches_through_a_server_and_details_only_while_visible(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, conn: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    server = ServeProcess("--dsn", db_dsn, "--listen", "127.0.0.1:0",
                          "--token-file", token_file(tmp_path))
    try:
        url = server.wait_ready()
        credentials.store_password("srv", TOKEN)
        store = ProfileStore()
        store.put(ConnectionProfile(name="srv", relay=url), make_default=True)
        assert "srv" in store and TOKEN not in store.path.read_text()
        ctl = Controller(store, tray_available=lambda: False, use_desktop_notifier=False)

        async def scenario() -> None:
            ctl.start()
            try:
                await wait_until(lambda: ctl.window.status.state == State.STABLE)
                assert ctl.status.source == "relay"
                make_processing(conn, 2)
                await wait_until(lambda: ctl.window.status.state == State.PROCESSING)
                assert await asyncio.to_thread(_details_clients, url) == 0
                ctl.show_details()
                window = ctl.details_window
                assert window is not None
                await wait_until(lambda: window.details is not None
                                 and window.details.analytics.active_total == 2)
                assert await asyncio.to_thread(_details_clients, url) == 1
                window.close()
                for _ in range(200):
                    if await asyncio.to_thread(_details_clients, url) == 0:
                        break
                    await asyncio.sleep(0.05)
                assert await asyncio.to_thread(_details_clients, url) == 0
                make_stable(conn)
                await wait_until(lambda: ctl.window.status.state == State.STABLE)
            finally:
                await ctl.shutdown()

        run(qloop, scenario(), timeout=120)
    finally:
        server.stop()


def test_settings_shows_tests_and_saves_a_server_profile(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, tmp_path: Path,
) -> None:
    from traystatus.app.settings import SettingsDialog

    server = ServeProcess("--dsn", db_dsn, "--listen", "127.0.0.1:0",
                          "--token-file", token_file(tmp_path))
    try:
        url = server.wait_ready()
        store = ProfileStore()
        store.put(ConnectionProfile(name="srv", relay=url), make_default=True)
        dialog = SettingsDialog(store)
        dialog.load()
        assert dialog.dsn.text() == url  # the server's URL where a DSN would be

        async def scenario() -> None:
            for _ in range(300):  # the server connects to its database first
                if await asyncio.to_thread(_database_connected, url):
                    break
                await asyncio.sleep(0.05)
            dialog.password.setText("not-the-token-0123456789")
            bad = await dialog.run_check()
            assert not bad.ok and "token" in bad.detail
            dialog.password.setText(TOKEN)
            good = await dialog.run_check()
            assert good.ok and "traystatus server" in good.detail, good.detail
            dialog.dsn.setText("wss://statbus.example.org")
            assert dialog.profile().relay == "wss://statbus.example.org"
            dialog.dsn.setText("host=db dbname=statbus")
            back = dialog.profile()
            assert back.relay is None and back.dsn == "host=db dbname=statbus"

        run(qloop, scenario(), timeout=60)
        dialog.close()
        dialog.deleteLater()
    finally:
        server.stop()
