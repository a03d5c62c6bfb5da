"""The real StatBus from tests/statbus_real/kit: fresh databases, a demo import, the worker.

Everything here drives StatBus the way StatBus itself does: users made by
``public.user_create`` (the kit's analyst), the demo set-up run as
``test.admin@statbus.org``, the upload by ``COPY`` into the job's upload table, and the
worker as ``cli/src/worker.cr`` runs it: per queue a serial loop of
``CALL worker.process_tasks(...)``, plus ``default_concurrency`` concurrent loops.

The kit is found as tests/statbus_real/conftest.py finds it (the ``STATBUS_REAL_*``
variables, else the in-repository ``tests/statbus_real/kit/build.sh --env``);
tests/builtin/conftest.py does that.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

Conn = psycopg.Connection[TupleRow]  # psycopg's default: a column's type is the database's

QUEUES = ("analytics", "import", "maintenance")
# The worker's own "is there work" test (cli/src/worker.cr); state compared as text so it
# also runs on a StatBus older than the 'interrupted' label.
_WORK_LEFT = """
SELECT EXISTS (SELECT FROM worker.tasks
               WHERE state::text IN ('interrupted', 'pending', 'processing', 'waiting')
                 AND (scheduled_at IS NULL OR scheduled_at <= now()))
"""


@dataclass(frozen=True)
class Kit:
    superuser_dsn: str  # database statbus
    analyst_dsn: str
    template: str
    src: Path
    bin: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Kit | None:
        """From the kit's variables (``build.sh --env``), by default the process's own."""
        env = os.environ if env is None else env
        needed = ("STATBUS_REAL_DSN", "STATBUS_REAL_ANALYST_DSN", "STATBUS_REAL_SRC",
                  "STATBUS_REAL_BIN")
        if not all(env.get(k) for k in needed):
            return None
        return cls(
            superuser_dsn=env["STATBUS_REAL_DSN"],
            analyst_dsn=env["STATBUS_REAL_ANALYST_DSN"],
            template=env.get("STATBUS_REAL_TEMPLATE") or "statbus_template",
            src=Path(env["STATBUS_REAL_SRC"]),
            bin=Path(env["STATBUS_REAL_BIN"]),
        )

    def admin(self) -> Conn:
        return psycopg.connect(self.superuser_dsn, autocommit=True)

    @contextlib.contextmanager
    def database(self, prefix: str = "ts_builtin", template: str | None = None) -> Iterator[KitDb]:
        """A fresh copy of the template (about 0.3 s), dropped afterwards."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.admin() as c:
            c.execute(sql.SQL(
                "CREATE DATABASE {} TEMPLATE {} OWNER statbus_app STRATEGY FILE_COPY"
            ).format(sql.Identifier(name), sql.Identifier(template or self.template)))
        try:
            yield KitDb(self, name)
        finally:
            with self.admin() as c:
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))


@dataclass
class KitDb:
    kit: Kit
    name: str

    @property
    def dsn(self) -> str:
        """Superuser, this database."""
        return make_conninfo(self.kit.superuser_dsn, dbname=self.name)

    @property
    def analyst_dsn(self) -> str:
        """The kit's analyst (made with public.user_create, regular_user), this database."""
        return make_conninfo(self.kit.analyst_dsn, dbname=self.name)

    def connect(self) -> Conn:
        return psycopg.connect(self.dsn, autocommit=True)

    def psql(self, script: str, cwd: Path | None = None) -> None:
        """Run psql text (meta-commands allowed) in one transaction, stop on error."""
        params = conninfo_to_dict(self.dsn)
        env = dict(os.environ, PGHOST=str(params.get("host", "")),
                   PGPORT=str(params.get("port", "")), PGUSER=str(params.get("user", "")),
                   PGDATABASE=self.name)
        subprocess.run(
            [str(self.kit.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", "-"],
            input=script, text=True, env=env, cwd=cwd or self.kit.src, check=True,
            capture_output=True, timeout=300,
        )

    def setup_demo(self) -> None:
        """test/setup.sql then samples/demo/getting-started.sql, as test.admin (README)."""
        from tests.statbus_real.statbus import setup_sql_lock

        with setup_sql_lock(self.kit.superuser_dsn):
            self._setup_demo()

    def _setup_demo(self) -> None:
        self.psql(
            "\\i test/setup.sql\n"
            "CALL test.set_user_from_email('test.admin@statbus.org');\n"
            "\\i samples/demo/getting-started.sql\n"
        )

    def start_import(self, csv_name: str = "legal_units_demo.csv",
                     definition: str = "legal_unit_job_provided",
                     review: bool = False) -> tuple[int, str]:
        """Create an import job and COPY the demo file into its upload table."""
        slug = f"import_{uuid.uuid4().hex[:8]}"
        path = self.kit.src / "app" / "public" / "demo" / csv_name
        text = path.read_text()
        header = next(csv.reader(io.StringIO(text)))
        with self.connect() as c, c.transaction():
            c.execute("CALL test.set_user_from_email('test.admin@statbus.org')")
            row = c.execute(
                "INSERT INTO public.import_job (definition_id, slug, time_context_ident, review) "
                "SELECT id, %s, 'r_year_curr', %s FROM public.import_definition "
                "WHERE slug = %s RETURNING id, upload_table_name",
                (slug, review, definition),
            ).fetchone()
            assert row is not None, f"no import definition {definition}"
            job_id, upload = int(row[0]), str(row[1])
            cols = sql.SQL(", ").join(sql.Identifier(h) for h in header)
            copy = sql.SQL("COPY public.{} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
                sql.Identifier(upload), cols)
            with c.cursor().copy(copy) as cp:
                cp.write(text)
        return job_id, slug


@dataclass
class Worker:
    """StatBus's worker, as cli/src/worker.cr runs it, in threads.

    ``step_pause``: sleep between process_tasks calls (a batch size of 1 then makes the
    run slow enough to watch). ``on_batch``: called after each call, from the loop's thread.
    """

    dsn: str
    batch_size: int = 10
    step_pause: float = 0.0
    concurrency: int = 4
    on_batch: Callable[[str], None] | None = None
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for q in QUEUES:
            self._spawn(q, "serial")
        for _ in range(self.concurrency):
            self._spawn("analytics", "concurrent")

    def _spawn(self, queue: str, mode: str) -> None:
        t = threading.Thread(target=self._loop, args=(queue, mode), daemon=True,
                             name=f"worker-{queue}-{mode}")
        self._threads.append(t)
        t.start()

    def _loop(self, queue: str, mode: str) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name="worker-test") as c:
                while not self._stop.is_set():
                    c.execute(
                        "CALL worker.process_tasks(p_queue => %s, p_batch_size => %s, "
                        "p_mode => %s::worker.process_mode)",
                        (queue, self.batch_size, mode),
                    )
                    if self.on_batch is not None:
                        self.on_batch(queue)
                    time.sleep(self.step_pause or 0.05)
        except BaseException as ex:  # reported by stop()
            self.errors.append(ex)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        if self.errors:
            raise self.errors[0]

    def wait_idle(self, conn: Conn, timeout: float = 300) -> None:
        """Until no task is due or running (the worker's own test), twice in a row."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            if self.errors:
                raise self.errors[0]
            row = conn.execute(_WORK_LEFT).fetchone()
            quiet = 0 if row and row[0] else quiet + 1
            if quiet >= 3:
                return
            time.sleep(0.2)
        raise TimeoutError("StatBus's worker did not go idle")

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def work_left(conn: Conn) -> bool:
    row = conn.execute(_WORK_LEFT).fetchone()
    return bool(row and row[0])


def step_worker(conn: Conn) -> None:
    """One task of each queue, as the worker would pick it (serial, then one concurrent
    analytics child), each call its own transactions. Between two calls the database is
    quiescent: nobody else writes."""
    for queue in QUEUES:
        conn.execute(
            "CALL worker.process_tasks(p_queue => %s, p_batch_size => 1, "
            "p_mode => 'serial'::worker.process_mode)",
            (queue,),
        )
    conn.execute(
        "CALL worker.process_tasks(p_queue => 'analytics', p_batch_size => 1, "
        "p_mode => 'concurrent'::worker.process_mode)"
    )
