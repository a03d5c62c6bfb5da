"""Start the tray app: ``traystatus`` with no sub-command lands in ``run_app(args)``.

``args`` has ``.dsn``, ``.profile``, ``.replace`` and ``.verbose`` (the CLI's parser).
Order of events: Qt application and qasync loop (a selector loop on Windows: psycopg's
async mode refuses the proactor loop), single-instance check (a second start shows the
first one's details window and exits 0; ``--replace`` takes over), logging to a file, then
the controller. Quit stops the monitor (closing its connection) before the loop stops,
so nothing is torn down under a running query and no traceback is printed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from traystatus.app.controller import Controller
from traystatus.app.icons import app_icon
from traystatus.app.single import QUIT, SHOW, SingleInstance, send, server_name
from traystatus.core.logsetup import setup_file_logging
from traystatus.core.profiles import ProfileError, ProfileStore

log = logging.getLogger(__name__)


def _new_loop(app: QApplication) -> asyncio.AbstractEventLoop:
    import qasync

    if sys.platform == "win32":
        return qasync.QSelectorEventLoop(app)  # type: ignore[no-any-return]
    return qasync.QEventLoop(app)  # type: ignore[no-any-return]


def run_app(args: Any) -> int:
    """Run the tray app until Quit; the exit code for the shell."""
    dsn: str | None = getattr(args, "dsn", None)
    profile: str | None = getattr(args, "profile", None)
    replace: bool = bool(getattr(args, "replace", False))
    verbose = int(getattr(args, "verbose", 0) or 0)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("traystatus")
    app.setApplicationDisplayName("StatBus status")
    app.setDesktopFileName("traystatus")
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)

    name = server_name(profile if not dsn else f"dsn:{dsn}")
    if not replace and send(name, SHOW):
        print("traystatus is already running; showed its details window.", file=sys.stderr)
        return 0
    if replace and send(name, QUIT):
        # Give the old instance time to stop its monitor and release the name.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and send(name, b"ping\n", 200):
            time.sleep(0.2)

    try:
        logfile = setup_file_logging(debug=verbose > 1)
        log.info("traystatus tray app starting; log file %s", logfile)
    except OSError as ex:
        print(f"traystatus: cannot write the log file ({ex}); logging to stderr", file=sys.stderr)

    try:
        store = ProfileStore()
    except ProfileError as ex:
        print(f"traystatus: {ex}", file=sys.stderr)
        return 2

    loop = _new_loop(app)
    asyncio.set_event_loop(loop)
    single = SingleInstance(name)
    if not single.listen():
        log.warning("cannot listen on %s; single-instance hand-over is off", name)
    controller = Controller(store, profile=profile, dsn=dsn)
    done = asyncio.Event()
    quitting: list[asyncio.Future[None]] = []

    def request_quit() -> None:
        if not quitting:
            quitting.append(asyncio.ensure_future(_quit(controller, single, done)))

    controller.quitRequested.connect(request_quit)
    single.quitRequested.connect(request_quit)
    single.showRequested.connect(controller.show_details)
    if sys.platform != "win32":
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, request_quit)
    QTimer.singleShot(0, controller.start)
    try:
        loop.run_until_complete(done.wait())
    except KeyboardInterrupt:
        return 130
    finally:
        loop.close()
    log.info("traystatus tray app stopped")
    return 0


async def _quit(controller: Controller, single: SingleInstance, done: asyncio.Event) -> None:
    single.close()
    try:
        await controller.shutdown()
    except Exception:  # a bug: log it, but still quit
        log.exception("error while shutting down")
    done.set()


__all__ = ["QUIT", "run_app"]
