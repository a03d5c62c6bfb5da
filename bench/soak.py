"""The truth soak: every kind of client against a real StatBus under chaos, scored against
an independent oracle.

    .venv/bin/python bench/soak.py --minutes 10 --seed 1 [--statbus head|oldest|V] [--no-tray]

What runs (docs/soak.md has the figures and what they mean):

* **A server of our own.** StatBus's real database from the kit (tests/statbus_real/kit),
  built with ``build.sh --env --dir KIT --at 20260301000000`` into a folder of its own
  (``--kit-dir``; about 45 s the first time, cached after), because the soak restarts and
  SIGKILLs PostgreSQL: never the shared kit's server. One fresh copy of the chosen
  template, StatBus's demo settings, our SQL installed.
* **StatBus's own code paths, with random timing.** A driver uploads StatBus's demo file
  into new import jobs as the app does (some with review), approves or rejects the jobs
  waiting for review after a random delay; a worker calls ``worker.process_tasks`` per
  queue as StatBus's worker does, with random pauses (mid-run too), and on every
  reconnection ``worker.reset_abandoned_processing_tasks()`` as the worker does on start.
* **Clients**, each through a TCP proxy in front of the server: ``watch --json`` on the
  installed SQL, ``watch --json --source builtin`` (the analyst login), ``serve`` plus
  ``watch --json --relay`` (through a second proxy), and the tray app itself in a private
  desktop (Xvfb, trayer, dunst, dbus-monitor; its status from its debug log, its
  notifications from the bus).
* **The oracle**: every 100 ms, one query as superuser that re-derives the line (docs/sql.md
  "The line") from ``public.import_job`` and ``worker.tasks`` directly: never our functions.
* **Chaos at random moments**: the clients' backends terminated, PostgreSQL restarted
  (fast; hard with SIGKILL of the postmaster; once down for longer than the longest
  backoff), the proxies cut or blackholed, ``serve`` SIGSTOPped/SIGCONTed and SIGKILLed.

The score per client: windows where it said stable/processing opposite to the oracle for
longer than 2 s (the goal is 0), the longest such window, its time grey, the oracle's
processing periods it never reported, and crashes (an exit we did not cause, a traceback,
an "internal" problem).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository's tests/ and scripts/ too
    sys.path.insert(0, str(ROOT))

from tests.fix_proxy import Proxy  # noqa: E402


def _kit_script() -> Path:
    """The repository's kit (tests/statbus_real/kit); STATBUS_REAL_KIT names another build.sh."""
    if os.environ.get("STATBUS_REAL_KIT"):
        return Path(os.environ["STATBUS_REAL_KIT"])
    return ROOT / "tests" / "statbus_real" / "kit" / "build.sh"


KIT_SCRIPT = _kit_script()
OLDEST = "20260301000000"  # the oldest StatBus we support (docs/sql.md)
HOLD_MIGRATION = 20260310132309  # StatBus holds its import queue during a review from here
ADMIN_EMAIL = "test.admin@statbus.org"
ANALYST = ("analyst@statbus-real.test", "statbus-real-analyst")
WRONG_LIMIT = 2.0  # seconds a client may lag the truth
# A silent network (blackhole) or a frozen serve hides every change until the client's
# health check gives up: 15 s interval + 5 s timeout (core/watch/monitor.py); the relay's
# WebSocket heartbeat pings every 15 s and waits 7.5 s for the pong (22.5 s); plus a margin
# for a loaded machine. A wrong window that starts while a client is blind in that way (it
# has not gone grey since the silence began) is counted apart, and must end within this bound.
BLIND_LIMIT = 30.0
LONGEST_BACKOFF = 72.0  # core/watch/backoff.py: cap 60 s plus 20 % jitter
CHAOS_KINDS = ("kill_backends", "restart_fast", "restart_hard", "proxy_cut", "blackhole",
               "serve_stop", "serve_kill", "down_long")
Conn = psycopg.Connection[tuple[Any, ...]]

# The line, re-derived from StatBus's tables (docs/sql.md "The line"; statbus-facts.md):
# busy = a due analytics task that is pending/processing/waiting/interrupted, or an approved
# job, or a job queued or in the worker's hands unless a review holds the import queue.
ORACLE_SQL = """
SELECT EXISTS (
         SELECT 1 FROM worker.tasks AS t
           JOIN worker.command_registry AS c ON c.command = t.command
          WHERE c.queue = 'analytics'
            AND t.state::text IN ('pending', 'processing', 'waiting', 'interrupted')
            AND (t.scheduled_at IS NULL OR t.scheduled_at <= now()))
    OR EXISTS (SELECT 1 FROM public.import_job WHERE state::text = 'approved')
    OR (EXISTS (SELECT 1 FROM public.import_job
                 WHERE state::text IN ('upload_completed', 'preparing_data',
                                       'analysing_data', 'processing_data'))
        AND NOT (%(hold)s AND EXISTS (SELECT 1 FROM public.import_job
                                       WHERE state::text = 'waiting_for_review')))
"""
# The queues with a due task: the worker's own "is there work" test, per queue.
DUE_QUEUES_SQL = ("SELECT DISTINCT c.queue FROM worker.tasks AS t "
                  "JOIN worker.command_registry AS c ON c.command = t.command "
                  "WHERE t.state::text IN ('interrupted', 'pending', 'processing', 'waiting') "
                  "AND (t.scheduled_at IS NULL OR t.scheduled_at <= now())")


def log(msg: str) -> None:
    print(f"soak {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the score
Claim = bool | None  # True: processing, False: stable, None: grey (not an answer)


@dataclass
class Score:
    """One client's figures over a soak."""

    name: str
    wrong_windows: list[tuple[float, float, bool]] = field(default_factory=list)
    blind_windows: list[tuple[float, float, bool]] = field(default_factory=list)
    wrong_over_limit: int = 0
    blind_over_limit: int = 0
    longest_wrong: float = 0.0
    longest_blind: float = 0.0
    wrong_total: float = 0.0
    grey_total: float = 0.0
    longest_grey: tuple[float, float] = (0.0, 0.0)  # (start, end) of the longest grey spell
    span: float = 0.0
    periods: int = 0
    missed: list[tuple[float, float]] = field(default_factory=list)
    missed_blind: list[tuple[float, float]] = field(default_factory=list)
    missed_grey: list[tuple[float, float]] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def steps(points: Sequence[tuple[float, Claim]], t: float) -> Claim:
    """The value of a step function (sorted (time, value) points) at ``t``."""
    i = bisect.bisect_right([p[0] for p in points], t) - 1
    return points[i][1] if i >= 0 else None


def truth_periods(truth: Sequence[tuple[float, Claim]], end: float) -> list[tuple[float, float]]:
    """The oracle's processing periods, (start, end)."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for t, v in truth:
        if v and start is None:
            start = t
        elif v is False and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, end))
    return out


def score(name: str, claims: Sequence[tuple[float, Claim]],
          truth: Sequence[tuple[float, Claim]], start: float, end: float,
          limit: float = WRONG_LIMIT, min_period: float = 0.5,
          silences: Sequence[float] = ()) -> Score:
    """Compare a client's claims with the truth over [start, end].

    Both are step functions; a truth of None (the oracle could not read: the server was
    down) carries the last known value, since the tables do not change while the server is
    down. A window is wrong while the client answers (not grey) the opposite of the truth.
    A processing period (at least ``min_period`` long) is missed when the client never
    said processing between its start and ``limit`` after its end (counted apart when the
    client was grey all through it, or blind as below). A wrong window is blind
    when one of ``silences`` (a blackhole, a frozen serve) began before it or less than
    ``limit`` after its start, and the client has not gone grey since: it could not know
    yet (see BLIND_LIMIT).
    """
    s = Score(name, span=end - start)
    known: list[tuple[float, Claim]] = []
    for t, v in truth:
        if v is None:
            continue
        if not known or known[-1][1] != v:
            known.append((t, v))
    cl = sorted(claims, key=lambda p: p[0])
    times = sorted({start, end, *(t for t, _ in known if start < t < end),
                    *(t for t, _ in cl if start < t < end)})
    wrong_since: float | None = None
    wrong_claim = False
    grey_since: float | None = None
    for a, b in itertools.pairwise(times):
        c = steps(cl, a)
        v = steps(known, a)
        if c is None:
            s.grey_total += b - a
            grey_since = a if grey_since is None else grey_since
            if b - grey_since > s.longest_grey[1] - s.longest_grey[0]:
                s.longest_grey = (grey_since, b)
        else:
            grey_since = None
        is_wrong = c is not None and v is not None and c != v
        if is_wrong and wrong_since is None:
            wrong_since, wrong_claim = a, bool(c)
        if not is_wrong and wrong_since is not None:
            s.wrong_windows.append((wrong_since, a, wrong_claim))
            wrong_since = None
    if wrong_since is not None:
        s.wrong_windows.append((wrong_since, end, wrong_claim))
    def blind(a: float, b: float) -> bool:
        # the silence began before the change, or less than ``limit`` after it (the client
        # had not had its 2 s yet), and the client has not gone grey since
        return any(h <= a + limit and b > h
                   and not any(c is None for t, c in cl if h <= t <= a) for h in silences)

    windows, s.wrong_windows = s.wrong_windows, []
    for w in windows:
        a, b, _ = w
        s.wrong_total += b - a
        if blind(a, b):
            s.blind_windows.append(w)
            s.longest_blind = max(s.longest_blind, b - a)
            s.blind_over_limit += b - a > BLIND_LIMIT
            continue
        s.wrong_windows.append(w)
        s.longest_wrong = max(s.longest_wrong, b - a)
        if b - a > limit:
            s.wrong_over_limit += 1
    for a, b in truth_periods(known, end):
        if b - a < min_period or a < start:
            continue
        s.periods += 1
        said = any(
            c for t, c in cl if a <= t <= b + limit
        ) or steps(cl, a) is True
        if said:
            continue
        if steps(cl, a) is None and not any(c is not None for t, c in cl if a <= t <= b):
            s.missed_grey.append((a, b))  # grey all along: it did not claim to know
        elif blind(a, b + limit):
            s.missed_blind.append((a, b))
        else:
            s.missed.append((a, b))
    return s


# ------------------------------------------------------------------------------ the server
def kit_dir_default() -> Path:
    if os.environ.get("TRAYSTATUS_SOAK_KIT_DIR"):
        return Path(os.environ["TRAYSTATUS_SOAK_KIT_DIR"])
    if os.geteuid() == 0:  # the kit's server user cannot read root's home
        return Path("/var/cache/statbus-real-soak")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "statbus-real-soak"


def parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        m = re.fullmatch(r"export (STATBUS_REAL_\w+)='(.*)'", line.strip())
        if m:
            env[m.group(1)] = m.group(2).replace("'\\''", "'")
    return env


def _remove_dead_copies(kit_dir: Path) -> None:
    """Private copies left by soaks that were killed: removed. A live soak holds a lock on
    its copy's ``owner.lock`` for as long as it runs (its server may be down on purpose)."""
    import fcntl
    for old in kit_dir.glob("run-*"):
        with contextlib.suppress(OSError), (old / "owner.lock").open("a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a soak running now
            pid = (old / "data" / "postmaster.pid")
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid.read_text().split("\n", 1)[0]), signal.SIGKILL)
        shutil.rmtree(old, ignore_errors=True)


class Server:
    """A PostgreSQL of this soak's own, to break on purpose.

    The kit is built (or found cached) in ``kit_dir``; then, under the kit's own lock, its
    server is stopped and its data folder copied into a private cluster in
    ``kit_dir/run-<id>`` (a second or two) with its own socket folder. So soaks running at
    the same time never restart each other's server, and the kit stays as built.
    """

    def __init__(self, kit_dir: Path) -> None:
        self.kit = kit_dir
        proc = subprocess.run(["bash", str(KIT_SCRIPT), "--env", "--dir", str(kit_dir),
                               "--at", OLDEST],
                              capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"the soak's StatBus kit did not build in {kit_dir}: "
                               f"{proc.stderr.strip()[-1500:]}")
        self.env = parse_env(proc.stdout)
        self.bin = Path(self.env["STATBUS_REAL_BIN"])
        self.port = int(self.env["STATBUS_REAL_PORT"])
        self.src = Path(self.env["STATBUS_REAL_SRC"])
        kit_data = kit_dir / "data"
        owner = kit_data.stat().st_uid
        self.as_owner: list[str] = []
        if os.geteuid() == 0 and owner != 0:
            import pwd
            self.as_owner = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"]
        self.down = threading.Event()  # set while we hold the server down
        self.dir = kit_dir / f"run-{uuid.uuid4().hex[:8]}"
        self.data = self.dir / "data"
        self.host = str(self.dir / "run")
        with (kit_dir / ".lock").open("a") as lock:
            import fcntl
            # build.sh's own lock: no build meanwhile, and no other soak between our copy
            # and our postmaster's start (it would take the copy for a dead one)
            fcntl.flock(lock, fcntl.LOCK_EX)
            _remove_dead_copies(kit_dir)
            self.dir.mkdir()
            self._owner = (self.dir / "owner.lock").open("a")
            fcntl.flock(self._owner, fcntl.LOCK_EX)  # ours until close()
            os.chmod(self.dir, 0o755)
            (self.dir / "run").mkdir()
            self._pg_ctl(kit_data, "-m", "fast", "-w", "stop")
            subprocess.run(["cp", "-a", str(kit_data), str(self.data)], check=True)
            (self.data / "postmaster.pid").unlink(missing_ok=True)
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(f"\n# ---- the truth soak's private copy ----\n"
                           f"unix_socket_directories = '{self.host}'\n")
            if self.as_owner:
                os.chown(self.dir / "run", owner, -1)
                os.chown(self.data / "postgresql.conf", owner, -1)
            self.start()

    def close(self) -> None:
        """Stop the private cluster and remove it."""
        self.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self._owner.close()

    def dsn(self, dbname: str, user: str = "postgres", password: str | None = None) -> str:
        kw = dict(host=self.host, port=str(self.port), user=user, dbname=dbname,
                  connect_timeout="3")
        if password:
            kw["password"] = password
        return make_conninfo(**kw)

    def pg_ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self._pg_ctl(self.data, *args, timeout=timeout)

    def _pg_ctl(self, data: Path, *args: str,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_owner, str(self.bin / "pg_ctl"), "-D", str(data), *args],
            capture_output=True, text=True, timeout=timeout, check=False, cwd="/")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            p = self.pg_ctl("-l", str(Path(self.host) / "server.log"), "-w", "-t", "60", "start")
            if p.returncode == 0 or self.ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {p.stderr.strip()}")
            time.sleep(0.3)  # after a SIGKILL the old backends take a moment to go

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def restart_fast(self) -> None:
        self.down.set()
        try:
            self.pg_ctl("-m", "fast", "-w", "stop")
            self.start()
        finally:
            self.down.clear()

    def restart_hard(self) -> None:
        self.down.set()
        try:
            pid = self.postmaster_pid()
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            self.start()
        finally:
            self.down.clear()

    def down_for(self, seconds: float, stop_if: threading.Event) -> None:
        self.down.set()
        try:
            self.pg_ctl("-m", "fast", "-w", "stop")
            stop_if.wait(seconds)
            self.start()
        finally:
            self.down.clear()

    def ensure_running(self) -> None:
        if not self.ready():
            self.start()


# ------------------------------------------------------------------------------ StatBus
def connect(dsn: str, stop: threading.Event, what: str) -> Conn | None:
    """Connect, retrying while the server is down; None once ``stop`` is set."""
    while not stop.is_set():
        try:
            return psycopg.connect(dsn, autocommit=True)
        except psycopg.Error:
            stop.wait(0.3)
    return None


def as_admin(conn: Conn) -> None:
    conn.execute("CALL test.set_user_from_email(%s)", (ADMIN_EMAIL,))


_OLD_SETTINGS = """INSERT INTO settings(activity_category_standard_id, country_id)
SELECT (SELECT id FROM activity_category_standard WHERE code = 'isic_v4')
     , (SELECT id FROM public.country WHERE iso_2 = 'UN')
ON CONFLICT (only_one_setting)
DO UPDATE SET
    activity_category_standard_id = EXCLUDED.activity_category_standard_id,
    country_id = EXCLUDED.country_id;"""


def prepare(server: Server, template: str) -> str:
    """A fresh database from ``template`` with StatBus's demo settings, the worker idle and
    our SQL installed; returns its name."""
    name = f"soak_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER statbus_app STRATEGY FILE_COPY")
                  .format(sql.Identifier(name), sql.Identifier(template)))
    demo = (server.src / "samples" / "demo" / "getting-started.sql").read_text()
    with psycopg.connect(server.dsn(name), autocommit=True) as c:
        old = c.execute("SELECT to_regclass('public.region_version') IS NULL").fetchone()
    if old and old[0]:
        # before region versions (StatBus 2026-03), settings had two columns: the demo's
        # first statement as that StatBus's app ran it
        demo = re.sub(r"INSERT INTO settings\(.*?region_version_id;", _OLD_SETTINGS, demo,
                      count=1, flags=re.S)
    with psycopg.connect(server.dsn(name), autocommit=True) as c:
        old = c.execute("SELECT to_regclass('public.activity_category_enabled_custom') IS NULL"
                        ).fetchone()
    if old and old[0]:  # its name before 20260312114523
        demo = demo.replace("activity_category_enabled_custom",
                            "activity_category_available_custom")
    script = ("BEGIN;\n\\i test/setup.sql\n"
              f"CALL test.set_user_from_email('{ADMIN_EMAIL}');\n"
              f"{demo}\nCOMMIT;\n")
    p = subprocess.run([str(server.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                        server.dsn(name)], input=script, capture_output=True, text=True,
                       cwd=server.src, timeout=300, check=False,
                       env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})
    if p.returncode != 0:
        raise RuntimeError(f"StatBus's demo set-up failed: {p.stderr.strip()[-1500:]}")
    p = subprocess.run([sys.executable, "-m", "traystatus", "install-sql", "--dsn",
                        server.dsn(name)], capture_output=True, text=True, timeout=300,
                       check=False, env=_child_env({}))
    if p.returncode != 0:
        raise RuntimeError(f"install-sql failed: {p.stderr.strip()[-1500:]}")
    return name


class Workload:
    """StatBus's import and derive paths, driven as its app and worker drive them."""

    def __init__(self, dsn: str, src: Path, rng: random.Random, stop: threading.Event,
                 pace: float = 1.0) -> None:
        self.dsn = dsn
        self.csv = src / "app" / "public" / "demo" / "legal_units_demo.csv"
        self.rng = rng
        self.stop = stop
        self.pace = pace  # mean seconds between the driver's actions, scaled
        self.counts = {"imports": 0, "edits": 0, "reviews": 0, "approved": 0, "rejected": 0,
                       "worker_calls": 0, "worker_pauses": 0, "errors": 0, "resets": 0}
        self.errors: list[str] = []
        self._n = 0

    # the worker ---------------------------------------------------------------------------
    def worker(self) -> None:
        rng = random.Random(self.rng.random())
        while not self.stop.is_set():
            conn = connect(self.dsn, self.stop, "worker")
            if conn is None:
                return
            try:
                with conn:
                    conn.execute("SET application_name = 'worker'")
                    if conn.execute("SELECT to_regprocedure("
                                    "'worker.reset_abandoned_processing_tasks()')"
                                    ).fetchone() != (None,):
                        conn.execute("SELECT worker.reset_abandoned_processing_tasks()")
                        self.counts["resets"] += 1
                    modes = [r[0] for r in conn.execute(
                        "SELECT enumlabel FROM pg_enum WHERE enumtypid = "
                        "'worker.process_mode'::regtype ORDER BY enumsortorder")]
                    self._work(conn, modes, rng)
            except psycopg.OperationalError:
                continue  # the server went away (chaos): reconnect as the worker does
            except psycopg.Error as ex:
                self._error(f"worker: {ex}")
                self.stop.wait(0.5)

    def _work(self, conn: Conn, modes: list[str], rng: random.Random) -> None:
        while not self.stop.is_set():
            queues = [r[0] for r in conn.execute(DUE_QUEUES_SQL)]
            if not queues:
                self.stop.wait(0.2)
                continue
            for queue in queues:
                for mode in modes:
                    conn.execute("CALL worker.process_tasks(p_queue => %s, p_batch_size => "
                                 "%s, p_mode => %s::worker.process_mode)",
                                 (queue, rng.choice((3, 10, 10)), mode))
                    self.counts["worker_calls"] += 1
                    r = rng.random()
                    if r < 0.0015:  # a slow worker: a pause in the middle of a run
                        self.counts["worker_pauses"] += 1
                        self.stop.wait(rng.uniform(1, 4))
                    elif r < 0.05:
                        self.stop.wait(rng.uniform(0, 0.05))
                    if self.stop.is_set():
                        return

    # the app ------------------------------------------------------------------------------
    def driver(self) -> None:
        rng = random.Random(self.rng.random())
        while not self.stop.is_set():
            conn = connect(self.dsn, self.stop, "driver")
            if conn is None:
                return
            try:
                with conn:
                    while not self.stop.is_set():
                        self._act(conn, rng)
                        self.stop.wait(rng.expovariate(1 / (6 * self.pace)))
            except psycopg.OperationalError:
                continue
            except psycopg.Error as ex:
                self._error(f"driver: {ex}")
                self.stop.wait(0.5)

    def _act(self, conn: Conn, rng: random.Random) -> None:
        waiting = [r[0] for r in conn.execute(
            "SELECT id FROM public.import_job WHERE state::text = 'waiting_for_review'")]
        busy = conn.execute(ORACLE_SQL, {"hold": False}).fetchone()
        if waiting and rng.random() < 0.5:
            job = rng.choice(waiting)
            verdict = "approved" if rng.random() < 0.75 else "rejected"
            with conn.transaction():
                as_admin(conn)
                conn.execute("UPDATE public.import_job SET state = %s WHERE id = %s",
                             (verdict, job))
            self.counts[verdict] += 1
            return
        if busy and busy[0] and rng.random() < 0.85:
            return  # mostly let a run finish: stable spells between runs
        if rng.random() < 0.35:
            # an edit of a legal unit: StatBus's triggers enqueue collect_changes, and the
            # derive pipeline runs (the analytics queue) without any import
            with conn.transaction():
                as_admin(conn)
                conn.execute(
                    "UPDATE public.legal_unit SET name = CASE WHEN right(name, 1) = '.' "
                    "THEN left(name, -1) ELSE name || '.' END WHERE id = (SELECT id FROM "
                    "public.legal_unit ORDER BY random() LIMIT 1)")
            self.counts["edits"] += 1
            return
        self._n += 1
        slug = f"soak_{self._n}_{uuid.uuid4().hex[:6]}"
        review = rng.random() < 0.5
        header = self.csv.read_text(encoding="utf-8").splitlines()[0]
        with conn.transaction():
            as_admin(conn)
            row = conn.execute(
                "INSERT INTO public.import_job (definition_id, slug, time_context_ident, "
                "review) SELECT id, %s, 'r_year_curr', %s FROM public.import_definition "
                "WHERE slug = 'legal_unit_job_provided' RETURNING upload_table_name",
                (slug, review)).fetchone()
            assert row is not None
        if rng.random() < 0.5:
            self.stop.wait(rng.uniform(0, 3 * self.pace))  # a person picks the file
        with conn.transaction():
            as_admin(conn)
            with conn.cursor().copy(
                f'COPY public."{row[0]}" ({header}) FROM STDIN WITH (FORMAT csv, HEADER true)'
            ) as cp:
                cp.write(self.csv.read_bytes())
        self.counts["imports"] += 1
        self.counts["reviews"] += review

    def _error(self, what: str) -> None:
        self.counts["errors"] += 1
        if len(self.errors) < 20:
            self.errors.append(what.strip().splitlines()[0])


class Oracle:
    """The truth every 100 ms, from StatBus's tables (never our functions)."""

    def __init__(self, dsn: str, stop: threading.Event, interval: float = 0.1) -> None:
        self.dsn = dsn
        self.stop = stop
        self.interval = interval
        self.samples: list[tuple[float, Claim]] = []
        self.hold = False
        self.slow = 0  # samples whose query took longer than the interval

    def run(self) -> None:
        while not self.stop.is_set():
            conn = connect(self.dsn, self.stop, "oracle")
            if conn is None:
                return
            try:
                with conn:
                    row = conn.execute("SELECT EXISTS (SELECT 1 FROM db.migration "
                                       "WHERE version = %s)", (HOLD_MIGRATION,)).fetchone()
                    self.hold = bool(row and row[0])
                    while not self.stop.is_set():
                        t0 = time.time()
                        row = conn.execute(ORACLE_SQL, {"hold": self.hold}).fetchone()
                        t1 = time.time()
                        if t1 - t0 > self.interval:
                            self.slow += 1
                        # read in a snapshot taken at the start of the statement
                        self.samples.append((t0, bool(row and row[0])))
                        self.stop.wait(max(0.0, self.interval - (t1 - t0)))
            except psycopg.Error:
                self.samples.append((time.time(), None))
                self.stop.wait(0.1)


# ------------------------------------------------------------------------------ clients
def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "STATBUS_REAL_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@dataclass
class Client:
    """One client process and what it said, as (time, claim) points."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logdir: Path
    claims: list[tuple[float, Claim]] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    expected_exit: bool = False
    _stderr: IO[str] | None = None

    def start(self) -> None:
        self._stderr = (self.logdir / f"{self.name}.stderr").open("a")
        self.expected_exit = False
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with proc.stdout, (self.logdir / f"{self.name}.jsonl").open("a") as out:
            for line in proc.stdout:
                now = time.time()
                out.write(f"{now:.3f} {line}")
                try:
                    data = json.loads(line)
                    state = str(data["state"])
                except (ValueError, KeyError, TypeError):
                    self.crashes.append(f"not a JSON status line: {line.strip()[:200]}")
                    continue
                self.record(now, state, f"{data.get('problem')}: {data.get('reason')}")
        code = proc.wait()
        if not self.expected_exit:
            self.claims.append((time.time(), None))
            self.crashes.append(f"exited with code {code} (see {self.name}.stderr)")

    def record(self, now: float, state: str, problem: str | None = None) -> None:
        """One status; ERROR (a person's problem) is a misdiagnosis here: every chaos
        event of the soak is transient."""
        self.states[state] = self.states.get(state, 0) + 1
        if state == "error":
            self.errors.append(f"{datetime.fromtimestamp(now).time()} {problem}"[:300])
        claim: Claim = {"processing": True, "stable": False}.get(state)
        self.claims.append((now, claim))

    def stop(self) -> None:
        self.expected_exit = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._stderr is not None:
            self._stderr.close()

    def tracebacks(self) -> list[str]:
        text = (self.logdir / f"{self.name}.stderr").read_text(errors="replace")
        return ["Traceback in stderr"] if "Traceback" in text else []


class TrayClient(Client):
    """The tray app: its status from its debug log ("status: Status(state=...)")."""

    STATUS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) DEBUG [\w.]+: status: "
                        r"Status\(state=<State\.(\w+)")

    def start(self) -> None:
        self._stderr = (self.logdir / f"{self.name}.stderr").open("a")
        self.expected_exit = False
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._stderr,
                                     stderr=self._stderr, text=True)
        threading.Thread(target=self._tail, args=(self.proc,), daemon=True).start()

    def _tail(self, proc: subprocess.Popen[str]) -> None:
        path = Path(self.env["TRAYSTATUS_LOG_DIR"]) / "traystatus.log"
        f: IO[str] | None = None
        ino = -1
        self.tracebacks_in_log = 0
        while True:
            alive = proc.poll() is None
            if f is None and path.exists():
                f, ino = path.open(errors="replace"), path.stat().st_ino
            if f is not None:
                for line in f:
                    self._line(line)
                with contextlib.suppress(OSError):
                    if path.stat().st_ino != ino:  # rotated: the old file is read to its end
                        f.close()
                        f = None
                        continue
            if not alive:
                break
            time.sleep(0.1)
        if f is not None:
            f.close()
        if not self.expected_exit:
            self.claims.append((time.time(), None))
            self.crashes.append(f"exited with code {proc.returncode}")

    def _line(self, line: str) -> None:
        if line.startswith("Traceback") or " ERROR " in line:
            self.crashes.append(f"log: {line.strip()[:200]}")
        m = self.STATUS.match(line)
        if m:
            when = datetime.strptime(m.group(1) + "+0000", "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
            problem = re.search(r"problem=(<Problem\.\w+|None)", line)
            self.record(when, m.group(2).lower(), problem.group(1) if problem else None)

    def tracebacks(self) -> list[str]:
        return []


@dataclass
class Notified:
    when: float
    summary: str
    body: str


def bus_notifications(monitor_log: Path) -> list[Notified]:
    """Notify calls seen by dbus-monitor, with the bus's own time stamps."""
    out = []
    text = monitor_log.read_text(errors="replace") if monitor_log.exists() else ""
    for block in text.split("method call ")[1:]:
        head = block.splitlines()[0]
        if "member=Notify" not in head:
            continue
        m = re.search(r"time=([\d.]+)", head)
        strings = re.findall(r'^\s+string "((?:[^"\\]|\\.)*)"', block, re.M | re.S)
        if m and len(strings) >= 4:
            out.append(Notified(float(m.group(1)), strings[2], strings[3]))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """``traystatus serve`` on a fixed port, so a killed one can be started again."""

    def __init__(self, dsn: str, env: dict[str, str], logdir: Path) -> None:
        self.port = free_port()
        self.argv = [sys.executable, "-m", "traystatus", "serve", "--dsn", dsn, "--listen",
                     f"127.0.0.1:{self.port}", "--no-auth", "--health-interval", "5", "-v"]
        self.env = env
        self.logdir = logdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.crashes: list[str] = []
        self.expected = True
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            with (self.logdir / "serve.stderr").open("ab") as out:
                self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=out)
            self.expected = False
            threading.Thread(target=self._watch, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if proc is self.proc and not self.expected:
                self.crashes.append(f"serve exited with code {code}")

    def signal(self, sig: int) -> None:
        with self._lock:
            if sig == signal.SIGKILL:
                self.expected = True
            if self.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
        if sig == signal.SIGKILL and self.proc is not None:
            self.proc.wait()

    def stop(self) -> None:
        with self._lock:
            self.expected = True
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# ------------------------------------------------------------------------------ chaos
@dataclass
class Chaos:
    server: Server
    proxies: list[Proxy]
    serve: Serve | None
    dsn: str
    rng: random.Random
    stop: threading.Event
    kinds: tuple[str, ...]
    mean_gap: float
    events: list[tuple[float, float, str]] = field(default_factory=list)
    long_down: float = LONGEST_BACKOFF + 8

    def run(self) -> None:
        # rounds of every kind once, each round in a random order; the long outage only once,
        # and not first: the clients must have been connected
        if not self.kinds:
            return
        plan = list(self.kinds)
        self.rng.shuffle(plan)
        if "down_long" in plan:
            plan.remove("down_long")
            plan.insert(min(len(plan), 3), "down_long")
        while not self.stop.wait(self.rng.expovariate(1 / self.mean_gap)):
            if not plan:
                plan = [k for k in self.kinds if k != "down_long"]
                self.rng.shuffle(plan)
            kind = plan.pop(0)
            t0 = time.time()
            try:
                detail = self.do(kind)
            except Exception as ex:  # chaos must go on; say what failed
                detail = f"failed: {ex}"
            self.events.append((t0, time.time(), f"{kind}{detail}"))
            log(f"chaos {kind}{detail} ({time.time() - t0:.1f} s)")

    def do(self, kind: str) -> str:
        rng = self.rng
        if kind == "kill_backends":
            with psycopg.connect(self.dsn, autocommit=True) as c:
                row = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE usename = %s", (ANALYST[0],)).fetchone()
            return f": {row[0] if row else 0} backends"
        if kind == "restart_fast":
            self.server.restart_fast()
        elif kind == "restart_hard":
            self.server.restart_hard()
        elif kind == "down_long":
            self.server.down_for(self.long_down, self.stop)
            return f": {self.long_down:.0f} s"
        elif kind == "proxy_cut":
            for p in self.proxies:
                p.cut()
        elif kind == "blackhole":
            secs = rng.uniform(3, 20)
            for p in self.proxies:
                p.blackhole()
            self.stop.wait(secs)
            for p in self.proxies:
                p.restore()
            return f": {secs:.1f} s"
        elif kind == "serve_stop" and self.serve is not None:
            secs = rng.uniform(2, 15)
            self.serve.signal(signal.SIGSTOP)
            self.stop.wait(secs)
            self.serve.signal(signal.SIGCONT)
            return f": {secs:.1f} s"
        elif kind == "serve_kill" and self.serve is not None:
            self.serve.signal(signal.SIGKILL)
            self.stop.wait(rng.uniform(0.2, 3))
            self.serve.start()
        return ""


# ------------------------------------------------------------------------------ the run
@dataclass
class Config:
    minutes: float = 10.0
    seed: int = 1
    statbus: str = "head"  # head, oldest, or a version built with --at
    kit_dir: Path = field(default_factory=kit_dir_default)
    chaos: tuple[str, ...] = CHAOS_KINDS
    mean_gap: float = 15.0  # seconds between chaos events, on average
    tray: bool = True
    pace: float = 1.0
    workdir: Path | None = None
    keep: bool = False


@dataclass
class Result:
    config: Config
    scores: list[Score]
    truth: list[tuple[float, Claim]]
    events: list[tuple[float, float, str]]
    notifications: list[Notified]
    false_finished: list[Notified]
    workload: dict[str, int]
    workload_errors: list[str]
    oracle_slow: int
    flips: int
    start: float
    end: float
    workdir: Path
    load: tuple[float, float, float]

    @property
    def ok(self) -> bool:
        return all(s.wrong_over_limit == 0 and s.blind_over_limit == 0 and not s.crashes
                   and not s.errors for s in self.scores) and not self.false_finished


def template_for(server: Server, statbus: str) -> str:
    base = server.env.get("STATBUS_REAL_TEMPLATE", "statbus_template")
    if statbus == "head":
        return base
    return f"{base}_{OLDEST if statbus == 'oldest' else statbus}"


@contextlib.contextmanager
def _desktop(root: Path) -> Iterator[Any]:
    from scripts.virtual_desktop import Desktop
    (root / "desktop").mkdir(parents=True, exist_ok=True)
    d = Desktop(root / "desktop", root / "desktop-artifacts")
    try:
        d.start()
        yield d
    finally:
        d.close()


def run(cfg: Config, progress: Callable[[str], None] = log) -> Result:
    rng = random.Random(cfg.seed)
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="traystatus-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    progress(f"kit in {cfg.kit_dir} (workdir {workdir})")
    server = Server(cfg.kit_dir)
    progress(f"private server in {server.dir}")
    try:
        return _run(cfg, server, workdir, rng, progress)
    finally:
        if cfg.keep:  # renamed: a later soak removes only run-* copies no soak holds
            server.pg_ctl("-m", "fast", "-w", "stop")
            kept = server.dir.with_name(server.dir.name.replace("run-", "kept-"))
            server.dir.rename(kept)
            progress(f"kept the server's data in {kept / 'data'}")
        else:
            server.close()


def _run(cfg: Config, server: Server, workdir: Path, rng: random.Random,
         progress: Callable[[str], None]) -> Result:
    dbname = prepare(server, template_for(server, cfg.statbus))
    progress(f"database {dbname} from {template_for(server, cfg.statbus)} ready")
    su = server.dsn(dbname)
    stop = threading.Event()
    db_proxy = Proxy(server.host, server.port).start()
    client_dsn = db_proxy.dsn(make_conninfo(user=ANALYST[0], dbname=dbname,
                                            connect_timeout="5"))
    home = workdir / "home"
    (home / "runtime").mkdir(parents=True, exist_ok=True)
    os.chmod(home / "runtime", 0o700)
    base_env = _child_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
                           "XDG_DATA_HOME": str(home / "data"),
                           "XDG_CACHE_HOME": str(home / "cache"),
                           "XDG_RUNTIME_DIR": str(home / "runtime"),
                           "PGPASSWORD": ANALYST[1], "TZ": "UTC",
                           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    py = [sys.executable, "-m", "traystatus"]
    serve = Serve(client_dsn, base_env, workdir)
    ws_proxy = Proxy("127.0.0.1", serve.port).start()
    clients = [
        # -v: every retry and its reason on stderr (the JSON lines print changes only)
        Client("installed", [*py, "watch", "--json", "-v", "--source", "installed", "--dsn",
                             client_dsn], base_env, workdir),
        Client("builtin", [*py, "watch", "--json", "-v", "--source", "builtin", "--dsn",
                           client_dsn], base_env, workdir),
        Client("relay", [*py, "watch", "--json", "-v", "--relay",
                         f"ws://127.0.0.1:{ws_proxy.port}"], base_env, workdir),
    ]
    oracle = Oracle(su, stop)
    workload = Workload(su, server.src, rng, stop, cfg.pace)
    chaos = Chaos(server, [db_proxy, ws_proxy], serve, server.dsn("postgres"), rng, stop,
                  cfg.chaos, cfg.mean_gap)
    threads = [threading.Thread(target=f, daemon=True, name=n) for n, f in (
        ("oracle", oracle.run), ("worker", workload.worker), ("driver", workload.driver))]
    desktop_cm: contextlib.AbstractContextManager[Any] = (
        _desktop(workdir) if cfg.tray else contextlib.nullcontext())
    notifications: list[Notified] = []
    try:
        with desktop_cm as desktop:
            if desktop is not None:
                tray_env = desktop.full_env(**{k: v for k, v in base_env.items()
                                               if k not in ("XDG_RUNTIME_DIR",)})
                tray_env["TRAYSTATUS_LOG_DIR"] = str(workdir / "tray-log")
                clients.append(TrayClient("tray", [*py, "-vv", "--dsn", client_dsn],
                                          tray_env, workdir))
            threads[0].start()
            serve.start()
            for c in clients:
                c.start()
            time.sleep(3)  # everyone connected and stable before the work starts
            start = time.time()
            for t in threads[1:]:
                t.start()
            chaos_thread = threading.Thread(target=chaos.run, daemon=True, name="chaos")
            chaos_thread.start()
            end_at = start + cfg.minutes * 60
            while time.time() < end_at:
                time.sleep(min(30.0, max(0.1, end_at - time.time())))
                flips = len(truth_periods([s for s in oracle.samples if s[1] is not None],
                                          time.time()))
                progress(f"{(time.time() - start) / 60:.1f} min: {flips} processing periods, "
                         f"{len(chaos.events)} chaos events, workload {workload.counts}")
            stop.set()
            chaos_thread.join(LONGEST_BACKOFF + 60)
            server.ensure_running()
            end = time.time()
            # the clients' answers to the truth as it ended (they get WRONG_LIMIT to catch up)
            time.sleep(WRONG_LIMIT)
            for t in threads:
                t.join(30)
            if desktop is not None:
                notifications = bus_notifications(desktop.monitor_log)
            for c in clients:
                c.stop()
            serve.stop()
    finally:
        stop.set()
        for c in clients:
            c.stop()
        serve.stop()
        db_proxy.stop()
        ws_proxy.stop()
    truth = list(oracle.samples)
    with (workdir / "truth.log").open("w") as f:
        last: object = "-"
        for at, v in truth:
            if v != last:
                f.write(f"{at:.3f} {datetime.fromtimestamp(at).isoformat()} "
                        f"{ {True: 'processing', False: 'stable', None: 'unreadable'}[v]}\n")
                last = v
    with (workdir / "chaos.log").open("w") as f:
        for t0, t1, what in chaos.events:
            f.write(f"{t0:.3f} {datetime.fromtimestamp(t0).isoformat()} {t1 - t0:.1f}s {what}\n")
    scores = []
    for c in clients:
        silent = [t0 for t0, _, what in chaos.events if what.startswith("blackhole")
                  or (c.name == "relay" and what.startswith("serve_stop"))]
        s = score(c.name, c.claims, truth, start, end, silences=silent)
        s.crashes = [*c.crashes, *c.tracebacks()]
        s.errors = list(c.errors)
        if c.name == "relay":
            s.crashes += serve.crashes
        scores.append(s)
    known = [p for p in truth if p[1] is not None]
    # a "finished" while the work had gone on for 2 s and goes on for 2 s more
    false_finished = [n for n in notifications if n.summary == "Processing finished"
                      and _processing_throughout(known, n.when - WRONG_LIMIT,
                                                 n.when + WRONG_LIMIT)]
    return Result(cfg, scores, truth, chaos.events, notifications, false_finished,
                  dict(workload.counts), workload.errors, oracle.slow,
                  len(truth_periods(known, end)), start, end, workdir, os.getloadavg())


def _processing_throughout(known: list[tuple[float, Claim]], a: float, b: float) -> bool:
    return steps(known, a) is True and all(v for t, v in known if a <= t <= b)


# ------------------------------------------------------------------------------ report
def report(r: Result) -> str:
    lines = []
    dur = r.end - r.start
    kinds: dict[str, int] = {}
    for _, _, what in r.events:
        k = what.split(":")[0].split("failed")[0]
        kinds[k] = kinds.get(k, 0) + 1
    lines.append(f"truth soak: StatBus {r.config.statbus}, seed {r.config.seed}, "
                 f"{dur / 60:.1f} min, {r.flips} processing periods (truth flips), "
                 f"load average {r.load[0]:.1f}/{r.load[1]:.1f}/{r.load[2]:.1f} "
                 f"on {os.cpu_count()} cores")
    lines.append("chaos: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    lines.append("workload: " + ", ".join(f"{k} {v}" for k, v in r.workload.items()))
    if r.workload_errors:
        lines.append("workload errors: " + "; ".join(r.workload_errors[:5]))
    lines.append(f"oracle: {len(r.truth)} samples, {r.oracle_slow} slower than 100 ms")
    lines.append("")
    head = (f"{'client':<10} {'wrong>2s':>8} {'longest':>8} {'blind':>6} {'longest':>8} "
            f"{'wrong s':>8} {'grey s':>8} {'grey %':>7} {'max grey':>8} {'periods':>8} "
            f"{'missed':>7} "
            f"{'grey':>5} {'blind':>6} {'errors':>6} {'crashes':>8}")
    lines.append(head)
    lines.append("-" * len(head))
    for s in r.scores:
        lines.append(f"{s.name:<10} {s.wrong_over_limit:>8} {s.longest_wrong:>8.1f} "
                     f"{len(s.blind_windows):>6} {s.longest_blind:>8.1f} "
                     f"{s.wrong_total:>8.1f} {s.grey_total:>8.1f} "
                     f"{100 * s.grey_total / max(s.span, 1e-9):>7.1f} "
                     f"{s.longest_grey[1] - s.longest_grey[0]:>8.1f} {s.periods:>8} "
                     f"{len(s.missed):>7} {len(s.missed_grey):>5} {len(s.missed_blind):>6} "
                     f"{len(s.errors):>6} {len(s.crashes):>8}")
    lines.append("(wrong>2s, longest: windows saying the opposite of the truth, not blind; "
                 "blind, longest: wrong windows while a silent network or a frozen serve hid "
                 f"the change, which must end within {BLIND_LIMIT:.0f} s)")
    lines.append("")
    for s in r.scores:
        for a, b, claim in [*s.wrong_windows, *s.blind_windows]:
            blind = (a, b, claim) in s.blind_windows
            if b - a > (BLIND_LIMIT if blind else WRONG_LIMIT) or (blind and b - a > 2):
                near = [w for t0, t1, w in r.events if t0 - 30 <= a <= t1 + 90]
                lines.append(f"{'BLIND' if blind else 'WRONG'} {s.name}: said "
                             f"{'processing' if claim else 'stable'} for {b - a:.1f} s from "
                             f"+{a - r.start:.1f} s ({datetime.fromtimestamp(a).time()}); "
                             f"chaos near: {'; '.join(near) or 'none'}")
        for a, b in s.missed:
            lines.append(f"MISSED {s.name}: processing +{a - r.start:.1f}..+{b - r.start:.1f} s")
        for a, b in s.missed_grey:
            lines.append(f"MISSED (grey) {s.name}: processing +{a - r.start:.1f}.."
                         f"+{b - r.start:.1f} s")
        for a, b in s.missed_blind:
            lines.append(f"MISSED (blind) {s.name}: processing +{a - r.start:.1f}.."
                         f"+{b - r.start:.1f} s")
        a, b = s.longest_grey
        near = [w for t0, t1, w in r.events if a - 5 <= t1 and t0 <= b]
        if b - a > LONGEST_BACKOFF and not any(w.startswith("down_long") for w in near):
            lines.append(f"GREY {s.name}: {b - a:.1f} s from +{a - r.start:.1f} s "
                         f"({datetime.fromtimestamp(a).time()}), longer than the longest "
                         f"backoff; chaos meanwhile: {'; '.join(near) or 'none'}")
        for e in s.errors[:5]:
            lines.append(f"ERROR {s.name}: {e}")
        for c in s.crashes[:5]:
            lines.append(f"CRASH {s.name}: {c}")
    if r.config.tray:
        fin = sum(n.summary == "Processing finished" for n in r.notifications)
        lines.append(f"tray notifications: {len(r.notifications)} ({fin} 'Processing "
                     f"finished'), false 'finished' (truth processing from {WRONG_LIMIT:.0f} s "
                     f"before it to {WRONG_LIMIT:.0f} s after): {len(r.false_finished)}")
    lines.append(f"logs: {r.workdir}")
    lines.append("RESULT: " + ("PASS" if r.ok else "FAIL"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--statbus", default="head",
                    help="head (newest), oldest (20260301000000), or a version built with --at")
    ap.add_argument("--kit-dir", type=Path, default=kit_dir_default(),
                    help="the soak's own StatBus kit (never the shared one: it is restarted)")
    ap.add_argument("--chaos", default=",".join(CHAOS_KINDS),
                    help=f"comma-separated kinds among {','.join(CHAOS_KINDS)} ('' for none)")
    ap.add_argument("--mean-gap", type=float, default=15.0,
                    help="mean seconds between chaos events")
    ap.add_argument("--no-tray", action="store_true", help="leave the tray app out")
    ap.add_argument("--pace", type=float, default=1.0,
                    help="scale of the time between the driver's actions")
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs here")
    ap.add_argument("--keep", action="store_true",
                    help="keep the soak's private server (stopped) and its data")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    a = ap.parse_args(argv)
    kinds = tuple(k for k in a.chaos.split(",") if k)
    bad = [k for k in kinds if k not in CHAOS_KINDS]
    if bad:
        ap.error(f"unknown chaos kind {', '.join(bad)}: choose among {', '.join(CHAOS_KINDS)}")
    if not KIT_SCRIPT.exists():
        print(f"soak: the real StatBus kit is not at {KIT_SCRIPT}", file=sys.stderr)
        return 2
    cfg = Config(minutes=a.minutes, seed=a.seed, statbus=a.statbus, kit_dir=a.kit_dir,
                 chaos=kinds, mean_gap=a.mean_gap, tray=not a.no_tray, pace=a.pace,
                 workdir=a.workdir, keep=a.keep)
    # SIGTERM/SIGHUP end the soak as Ctrl-C does: clients, serve, desktop and the private
    # server are stopped on the way out, never left behind
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: sys.exit(128 + n))
    r = run(cfg)
    print(report(r), flush=True)
    if a.json:
        a.json.write_text(json.dumps({
            "statbus": cfg.statbus, "seed": cfg.seed, "minutes": (r.end - r.start) / 60,
            "flips": r.flips, "events": r.events, "workload": r.workload,
            "scores": [{"client": s.name, "wrong_over_2s": s.wrong_over_limit,
                        "longest_wrong": s.longest_wrong, "grey_s": s.grey_total,
                        "periods": s.periods, "missed": len(s.missed),
                        "missed_blind": len(s.missed_blind), "missed_grey": len(s.missed_grey),
                        "blind": len(s.blind_windows),
                        "longest_blind": s.longest_blind,
                        "errors": s.errors, "crashes": s.crashes} for s in r.scores]},
                       indent=1))
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
