"""Start the tray app: ``traystatus`` with no sub-command lands in ``run_app(args)``.

``args`` has ``.dsn``, ``.profile``, ``.replace`` and ``.verbose`` (the CLI's parser).
Order of events: Qt application and qasync loop (a selector loop on Windows: psycopg's
async mode refuses the proactor loop), single-instance check (a second start shows the
first one's details window and exits 0; ``--replace`` takes over), logging to a file, then
the controller. Quit stops the monitor (closing its connection) before the loop stops,
so nothing is torn down under a running query and no traceback is printed.

When the Qt event loop stops before Quit - the X server died (Qt then leaves its loop with
"The X11 connection broke") or something called ``QApplication.exit()`` - the loop is run
once more to shut the controller down and to cancel and await every task still pending,
one line is logged, and the exit code is ``ExitCode.STOPPED`` (1) instead of a traceback.
Every way out closes the single-instance server, which removes its socket file.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from traystatus.app.controller import Controller
from traystatus.app.icons import app_icon
from traystatus.app.single import QUIT, SHOW, SingleInstance, send, server_name
from traystatus.core.config.logsetup import setup_file_logging
from traystatus.core.config.profiles import ProfileError, ProfileStore
from traystatus.core.model.exitcodes import ExitCode

log = logging.getLogger(__name__)

APP_NAME = "traystatus"
DESKTOP_FILE_NAME = "io.github.statbus.traystatus"  # packaging/linux/<this>.desktop
SHUTDOWN_TIMEOUT = 20.0  # the monitor gets 5 s of it to close its connection


def new_loop(app: QApplication) -> asyncio.AbstractEventLoop:
    """The app's asyncio loop: qasync's, with a plain thread pool as its default executor.

    qasync's own default executor (made by the first ``asyncio.to_thread``, e.g. the
    monitor's ledger file) is ten QThreads. A QThread still running when Python and Qt
    tear down - any exit that did not ``close_loop`` first: an exception on the way out,
    a script that forgot - aborts the process ("QThread: Destroyed while thread '' is
    still running", exit -6). Python threads are joined by the interpreter at exit (and
    by ``loop.close()``), never destroyed under Qt.
    """
    import qasync

    if sys.platform == "win32":
        loop = qasync.QSelectorEventLoop(app)
    else:
        loop = qasync.QEventLoop(app)
    loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="traystatus-io"))
    return loop  # type: ignore[no-any-return]


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a qasync loop and free its Qt objects now, in this (the GUI) thread.

    qasync runs ``call_later`` through ``startTimer`` on a private QObject and kills a timer
    only when it fires, also for a cancelled handle (every finished ``wait_for`` leaves
    one); ``close()`` leaves them registered. The loop is kept alive by reference cycles,
    so the cyclic GC frees it later - in whatever thread happens to allocate then (a
    psycopg/keyring worker, an executor thread). Qt then warns "QObject::~QObject: Timers
    cannot be stopped from another thread" (and a test's Qt log check fails whichever test
    runs at that moment). Deleting the loop's QObjects here ends their life in their own
    thread, with their timers.
    """
    notifiers = [
        n
        for attr in ("_read_notifiers", "_write_notifiers")
        for n in (getattr(loop, attr, None) or {}).values()
    ]
    loop.close()
    for obj in [*vars(loop).values(), *notifiers]:
        if isinstance(obj, QObject) and shiboken6.isValid(obj):
            shiboken6.delete(obj)


def run_app(args: Any) -> int:
    """Run the tray app until Quit; the exit code for the shell."""
    dsn: str | None = getattr(args, "dsn", None)
    profile: str | None = getattr(args, "profile", None)
    source: str | None = getattr(args, "source", None)  # --source: installed|builtin|auto
    replace: bool = bool(getattr(args, "replace", False))
    verbose = int(getattr(args, "verbose", 0) or 0)

    # argv[0] becomes the instance part of the X window class (WM_CLASS); whatever script
    # started us (the demo's launcher, python -m), it must read "traystatus", which the
    # desktop entries name in StartupWMClass.
    app = QApplication.instance() or QApplication([APP_NAME])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)  # the class part of WM_CLASS
    app.setApplicationDisplayName("StatBus status")
    app.setDesktopFileName(DESKTOP_FILE_NAME)  # Wayland app id: the menu entry's name
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
    except (OSError, RuntimeError) as ex:  # RuntimeError: no home folder to find it in
        print(f"traystatus: cannot write the log file ({ex}); logging to stderr", file=sys.stderr)

    try:
        store = ProfileStore()
    except ProfileError as ex:
        print(f"traystatus: {ex}", file=sys.stderr)
        return ExitCode.USAGE

    loop = new_loop(app)
    asyncio.set_event_loop(loop)
    single = SingleInstance(name)
    try:
        code = _serve(loop, single, store, profile, dsn, source)
    finally:
        single.close()  # idempotent; removes the socket file whatever way we leave
        _cancel_pending(loop)
        close_loop(loop)
    log.info("traystatus tray app stopped (exit code %d)", code)
    return code


def _serve(
    loop: asyncio.AbstractEventLoop,
    single: SingleInstance,
    store: ProfileStore,
    profile: str | None,
    dsn: str | None,
    source: str | None = None,
) -> int:
    """Listen, run the controller until Quit (or until the loop is stopped from outside)."""
    if not single.listen():
        log.warning("cannot listen on %s; single-instance hand-over is off", single.name)
    controller = Controller(store, profile=profile, dsn=dsn, source=source)
    done = asyncio.Event()
    quitting: list[asyncio.Future[None]] = []

    def request_quit() -> None:
        if not quitting:
            quitting.append(loop.create_task(_quit(controller, single, done)))

    controller.quitRequested.connect(request_quit)
    single.quitRequested.connect(request_quit)
    single.showRequested.connect(controller.show_details)
    if sys.platform != "win32":
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, request_quit)
    QTimer.singleShot(0, controller.start)
    main = loop.create_task(done.wait())
    code = 0
    try:
        loop.run_until_complete(main)
    except KeyboardInterrupt:  # Windows: no signal handler, Ctrl-C arrives here
        code = ExitCode.INTERRUPTED
    except RuntimeError:
        if main.done():
            raise  # not qasync's "stopped before Future completed": a real bug
        code = ExitCode.STOPPED
        message = (
            "the Qt event loop stopped before Quit (the display connection was lost, "
            "or the app was told to quit from outside); shutting down"
        )
        log.error(message)
        print(f"traystatus: {message}", file=sys.stderr)
    if not done.is_set():
        request_quit()
        _run_to_end(loop, asyncio.wait_for(asyncio.shield(quitting[0]), SHUTDOWN_TIMEOUT))
    return code


def _run_to_end(loop: asyncio.AbstractEventLoop, aw: Awaitable[object], attempts: int = 3) -> None:
    """Run ``aw`` to its end even if the loop is stopped again (a dead X connection makes
    Qt leave its loop once per pending X event); errors are logged, never raised."""
    future = asyncio.ensure_future(aw, loop=loop)
    for _ in range(attempts):
        try:
            loop.run_until_complete(future)
            return
        except RuntimeError:
            if future.done():
                break
        except (Exception, asyncio.CancelledError):
            break
    if not future.done():
        future.cancel()
    elif not future.cancelled() and future.exception() is not None:
        log.warning("shutdown did not finish cleanly: %s", future.exception())


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every task still pending on ``loop`` and let each finish its ``finally``."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not pending:
        return
    log.debug("cancelling %d pending task(s)", len(pending))
    for task in pending:
        task.cancel()
    _run_to_end(loop, asyncio.gather(*pending, return_exceptions=True))


async def _quit(controller: Controller, single: SingleInstance, done: asyncio.Event) -> None:
    single.close()
    try:
        await controller.shutdown()
    except Exception:  # a bug: log it, but still quit
        log.exception("error while shutting down")
    done.set()


__all__ = ["QUIT", "close_loop", "new_loop", "run_app"]
