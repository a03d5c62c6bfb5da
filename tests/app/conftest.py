"""Fixtures for the tray app tests: offscreen Qt, a qasync loop, an in-memory keychain,
a private config folder, and helpers that move the test database between states."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import

import asyncio
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import psycopg
import pytest
from keyring.backend import KeyringBackend
from PySide6.QtCore import QCoreApplication, QEvent, QTimer
from PySide6.QtWidgets import QApplication

from traystatus.app.main import close_loop
from traystatus.app.notifications import NotificationSender
from traystatus.app.notify_policy import Notice
from traystatus.app.settings import SettingsDialog
from traystatus.app.tray import CLOCK, TrayIcon

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def publish_doc_image(png: Path, name: str) -> None:
    """Copy a rendered PNG into docs/images/, only when asked.

    With TRAYSTATUS_UPDATE_DOC_IMAGES=1 the render tests refresh the README's pictures;
    otherwise they leave the work tree clean (the PNGs stay in test-artifacts/).
    """
    if os.environ.get("TRAYSTATUS_UPDATE_DOC_IMAGES") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, DOC_IMAGES / name)


class MemoryKeyring(KeyringBackend):
    """A keychain that lives in this process only (tests never touch a real one)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.store.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    old = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    try:
        yield kr
    finally:
        keyring.set_keyring(old)


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "config"
    monkeypatch.setenv("TRAYSTATUS_CONFIG_DIR", str(d))
    monkeypatch.setenv("TRAYSTATUS_LOG_DIR", str(tmp_path / "logs"))
    return d


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    """A qasync loop: asyncio and Qt events in one loop, as in the app."""
    import qasync

    # As in the app: closing the last window must not quit (and so stop the loop).
    qapp.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        # Let finished tasks' callbacks run, then close without stopping the QApplication.
        loop.run_until_complete(asyncio.sleep(0))
        close_loop(loop)  # its Qt timers die here, not in whatever thread GC runs next
        asyncio.set_event_loop(None)
        del loop
        free_qt_garbage()


@pytest.fixture(autouse=True)
def _qt_objects_die_in_the_gui_thread() -> Iterator[None]:
    """Every tray test ends with its Qt garbage freed here (see free_qt_garbage)."""
    yield
    if QCoreApplication.instance() is not None:
        free_qt_garbage()


def free_qt_garbage() -> None:
    """End the life of this test's Qt objects in the GUI thread: run pending deleteLater()
    calls and collect reference cycles now. Left to the cyclic GC, a QObject would be freed
    in any thread that allocates at that moment (a later test's proxy or executor thread),
    and Qt warns "Timers cannot be stopped from another thread" into that test."""
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


class Delivered(list[Notice]):
    """The notices a sender delivered, in order, from its ``delivered`` signal (create
    it right after the sender or the Controller); ``routes``: "server", or where the fallback
    showed it: "balloon" (the tray's), "window" (the status window's list), "fallback" (a
    fallback that names no route)."""

    def __init__(self, sender: NotificationSender) -> None:
        super().__init__()
        self.routes: list[str] = []
        sender.delivered.connect(self._got)

    def _got(self, notice: Notice, route: str) -> None:
        self.append(notice)
        self.routes.append(route)


def menu_texts(tray: TrayIcon) -> list[str]:
    """The tray menu's entries as a person reads them (the icon's context menu, via Qt)."""
    return [a.text() for a in tray.tray.contextMenu().actions() if not a.isSeparator()]


def ticking(tray: TrayIcon) -> bool:
    """Whether the tray's tooltip clock runs (its QTimer, found through Qt by name)."""
    timer = tray.findChild(QTimer, CLOCK)
    assert timer is not None
    return timer.isActive()


async def save(dialog: SettingsDialog) -> bool:
    """What Save does, awaited: True when everything was saved, the keychain part too
    (``saving`` is the keychain write in flight, as the dialog itself tracks it)."""
    if not dialog.save():
        return False
    return await dialog.saving if dialog.saving is not None else True


def run(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float = 60) -> Any:
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def wait_until(pred: Callable[[], bool], within: float = 30, step: float = 0.02) -> None:
    """Poll ``pred`` on the running loop (Qt events flow meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(step)


# -- moving the test database between states ---------------------------------------------
def make_processing(conn: psycopg.Connection[Any], n: int = 1) -> list[int]:
    """Queue ``n`` due analytics tasks: the system is processing. Announced on
    ``worker_tasks`` as StatBus's enqueue functions do (no trigger announces an INSERT): a
    built-in source sees it at once, not at its next health check (15 s by default)."""
    cur = conn.execute(
        "INSERT INTO worker.tasks (command, state) "
        "SELECT 'derive_statistical_unit', 'pending' FROM generate_series(1, %s) RETURNING id",
        (n,),
    )
    ids = [int(r[0]) for r in cur.fetchall()]
    conn.execute("SELECT pg_notify('worker_tasks', 'analytics')")
    return ids


def make_stable(conn: psycopg.Connection[Any]) -> None:
    """Complete every busy analytics task: the system is stable."""
    conn.execute(
        "UPDATE worker.tasks SET state = 'completed', completed_at = now() "
        "WHERE state IN ('pending', 'processing', 'waiting', 'interrupted') "
        "AND command <> 'task_cleanup' AND command <> 'import_job_cleanup'"
    )


def add_job(
    conn: psycopg.Connection[Any], slug: str, state: str = "processing_data", **cols: Any
) -> int:
    names = ["slug", "state", "definition_id", *cols]
    values = [slug, state, 1, *cols.values()]
    placeholders = ", ".join(["%s"] * len(values))
    cur = conn.execute(
        f"INSERT INTO public.import_job ({', '.join(names)}) VALUES ({placeholders}) RETURNING id",
        values,
    )
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


# The offscreen platform cannot do a few window-manager things and says so with a Qt
# warning; that is the platform's limit, not our bug. Everything else still fails a test.
OFFSCREEN_LIMITS = (
    r"This plugin does not support "
    r"(propagateSizeHints|raise|grabbing the keyboard|requestActivate)"
    # Showing a QSystemTrayIcon on a platform without a tray (offscreen):
    r"|No such signal QPlatformNativeInterface::systemTrayWindowChanged"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.qt_log_ignore(OFFSCREEN_LIMITS))
