"""A StatBus simulator: plays the worker's writes on a stand-in database, in a loop.

The tray app must be shown against something that behaves like a busy StatBus without a
StatBus. This module writes what the real worker writes, in the same tables and columns
(docs/statbus-compat.md), so every trigger, NOTIFY and status function that
traystatus relies on fires exactly as it would in production:

* import jobs walk ``upload_completed -> preparing_data -> analysing_data -> processing_data
  -> finished`` with ``analysis_completed_pct``/``analysis_rows_per_sec`` and then
  ``imported_rows``/``import_completed_pct``/``import_rows_per_sec`` rising and
  ``last_progress_update`` set; one job stops in ``waiting_for_review`` until a person
  (simulated) approves it; one ends with errors (``finished`` with ``error`` and
  ``error_count``; every third cycle ``failed`` instead);
* every import is followed by an analytics derive run: a task tree rooted at
  ``collect_changes`` whose parents go ``pending -> processing -> waiting -> completed``
  while their children (serial or concurrent, ``parent_id``/``depth``/``child_mode`` as the
  real worker sets them) run at most ``ANALYTICS_CONCURRENCY`` at a time;
* the maintenance tasks are never touched: they stay scheduled 24 h ahead;
* quiet, stable periods separate the scenes.

No Qt here: one asyncio task and one autocommit psycopg connection (a superuser or the
StatBus owner). Each simulated worker step is one short transaction, as the real worker's
are, so listeners see a realistic stream of commits. ``speed`` divides every pause.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

log = logging.getLogger(__name__)

ANALYTICS_CONCURRENCY = 4  # worker.queue_registry default_concurrency of 'analytics'
DEFINITION_LU = "legal_unit_current_year"
DEFINITION_ES = "establishment_for_lu_current_year"

AsyncConn = psycopg.AsyncConnection[TupleRow]


def _now() -> datetime:
    return datetime.now(UTC)


# -- the analytics task tree -----------------------------------------------------------------
@dataclass
class TaskSpec:
    """One task of a derive run and the children its handler spawns.

    ``seconds``: how long the handler runs (before ``speed``). ``child_mode``: how the
    children run (``None`` for a leaf, as in worker.tasks).
    """

    command: str
    seconds: float = 0.1
    children: list[TaskSpec] = field(default_factory=list)
    child_mode: str | None = None
    payload: dict[str, object] = field(default_factory=dict)


def derive_run_spec(batches: int = 120, periods: int = 40, partitions: int = 64) -> TaskSpec:
    """The shape of one StatBus derive run: ~``batches + 2*periods + partitions + 15`` tasks.

    collect_changes
      derive_units_phase (serial)
        derive_statistical_unit (concurrent): statistical_unit_refresh_batch x batches
        statistical_unit_flush_staging, derive_used_tables
      derive_reports_phase (serial)
        derive_statistical_history (concurrent): _period x periods, then ..._reduce
        derive_statistical_unit_facet (concurrent): _partition x partitions, then ..._reduce
        derive_statistical_history_facet (concurrent): _period x periods, then ..._reduce
        derive_reports
    """

    def fan_out(parent: str, child: str, n: int, reduce: str | None) -> list[TaskSpec]:
        leaves = [
            TaskSpec(child, seconds=random.uniform(0.05, 0.25), payload={"part": i + 1})
            for i in range(n)
        ]
        first = TaskSpec(parent, seconds=0.3, children=leaves, child_mode="concurrent")
        return [first] + ([TaskSpec(reduce, seconds=0.5)] if reduce else [])

    units = TaskSpec(
        "derive_units_phase",
        seconds=0.2,
        child_mode="serial",
        children=[
            *fan_out("derive_statistical_unit", "statistical_unit_refresh_batch", batches, None),
            TaskSpec("statistical_unit_flush_staging", seconds=0.8),
            TaskSpec("derive_used_tables", seconds=0.4),
        ],
    )
    reports = TaskSpec(
        "derive_reports_phase",
        seconds=0.2,
        child_mode="serial",
        children=[
            *fan_out(
                "derive_statistical_history",
                "derive_statistical_history_period",
                periods,
                "statistical_history_reduce",
            ),
            *fan_out(
                "derive_statistical_unit_facet",
                "derive_statistical_unit_facet_partition",
                partitions,
                "statistical_unit_facet_reduce",
            ),
            *fan_out(
                "derive_statistical_history_facet",
                "derive_statistical_history_facet_period",
                periods,
                "statistical_history_facet_reduce",
            ),
            TaskSpec("derive_reports", seconds=0.1),
        ],
    )
    return TaskSpec(
        "collect_changes", seconds=0.5, child_mode="serial", children=[units, reports]
    )


def count_tasks(spec: TaskSpec) -> int:
    return 1 + sum(count_tasks(c) for c in spec.children)


@dataclass
class _Node:
    """A task the simulated worker knows about (its row id and where it stands)."""

    spec: TaskSpec
    id: int
    depth: int
    parent: _Node | None
    state: str = "pending"
    started: float = 0.0  # loop time the handler began
    children: list[_Node] = field(default_factory=list)
    index: int = 0  # position among its siblings (serial order)


# -- the simulator ---------------------------------------------------------------------------
@dataclass
class CycleReport:
    """What one cycle did, for tests and the demo's verbose output."""

    jobs: dict[str, str] = field(default_factory=dict)  # slug -> final state
    analytics_tasks: int = 0


class Simulator:
    """Plays StatBus work on the database at ``conninfo`` until :meth:`stop`.

    ``user_email``: the analyst the import jobs belong to (an auth.user row is created), so
    "my imports" in the app has something to show. ``speed``: 2.0 runs twice as fast.
    ``quiet``: seconds of stable calm between scenes (before ``speed``).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        speed: float = 1.0,
        user_email: str | None = None,
        quiet: float = 8.0,
        derive_shape: Callable[[], TaskSpec] = derive_run_spec,
        rows_scale: float = 1.0,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.conninfo = conninfo
        self.speed = speed
        self.user_email = user_email
        self.quiet = quiet
        self.derive_shape = derive_shape
        self.rows_scale = rows_scale
        self.on_event = on_event or (lambda msg: log.info("%s", msg))
        self.cycle = 0
        self._stop = asyncio.Event()
        self._conn: AsyncConn | None = None
        self._user_id: int | None = None
        self._defs: dict[str, int] = {}

    # -- life cycle ----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end at its next pause (call from the simulator's event loop)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self, cycles: int | None = None) -> list[CycleReport]:
        """Play ``cycles`` cycles (forever when None) or until :meth:`stop`."""
        reports: list[CycleReport] = []
        async with await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, application_name="traystatus-demo-simulator"
        ) as conn:
            self._conn = conn
            await self._prepare()
            try:
                while not self.stopping and (cycles is None or len(reports) < cycles):
                    reports.append(await self.run_cycle())
            except _Stopped:
                pass
            finally:
                self._conn = None
        return reports

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds / speed``; raise _Stopped when asked to stop meanwhile."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds / self.speed, 0.0))
        except TimeoutError:
            return
        raise _Stopped

    @property
    def conn(self) -> AsyncConn:
        assert self._conn is not None, "the simulator is not running"
        return self._conn

    async def _prepare(self) -> None:
        cur = await self.conn.execute("SELECT slug, id FROM public.import_definition")
        self._defs = {str(slug): int(i) for slug, i in await cur.fetchall()}
        if self.user_email:
            cur = await self.conn.execute(
                """INSERT INTO auth."user" (email) VALUES (%s)
                   ON CONFLICT (email) DO UPDATE SET email = excluded.email RETURNING id""",
                (self.user_email,),
            )
            row = await cur.fetchone()
            self._user_id = int(row[0]) if row else None

    # -- one cycle -----------------------------------------------------------------------
    async def run_cycle(self) -> CycleReport:
        """One round of StatBus life: three imports, each followed by a derive run."""
        self.cycle += 1
        report = CycleReport()
        n = self.cycle
        self.on_event(f"cycle {n}: quiet")
        await self._pause(self.quiet)

        slug = f"demo_{n}_legal_units"
        final, root = await self._import_job(
            slug, "Legal units 2026", DEFINITION_LU, rows=20_000, derive=self.derive_shape()
        )
        report.jobs[slug] = final
        report.analytics_tasks += await self._derive_run(root)
        await self._pause(self.quiet)

        slug = f"demo_{n}_establishments"
        final, root = await self._import_job(
            slug, "Establishments 2026 (review)", DEFINITION_ES, rows=8_000, review=True,
            derive=self.derive_shape(),
        )
        report.jobs[slug] = final
        report.analytics_tasks += await self._derive_run(root)
        await self._pause(self.quiet)

        slug = f"demo_{n}_corrections"
        final, root = await self._import_job(
            slug, "Legal unit corrections", DEFINITION_LU, rows=3_000, errors=True,
            fail=n % 3 == 0, derive=derive_run_spec(20, 8, 8),
        )
        report.jobs[slug] = final
        report.analytics_tasks += await self._derive_run(root)
        self.on_event(f"cycle {n}: done")
        return report

    # -- import jobs ---------------------------------------------------------------------
    async def _update_job(self, job_id: int, **cols: object) -> None:
        assigns = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in cols
        )
        query = sql.SQL(
            "UPDATE public.import_job SET {}, updated_at = now() WHERE id = {}"
        ).format(assigns, sql.Placeholder("job_id_"))
        await self.conn.execute(query, {**cols, "job_id_": job_id})

    async def _task(
        self, command: str, state: str, task_id: int | None = None, **cols: object
    ) -> int:
        if task_id is None:
            cur = await self.conn.execute(
                """INSERT INTO worker.tasks (command, state, priority, payload)
                   VALUES (%s, %s, %s, %s) RETURNING id""",
                (command, state, cols.get("priority"), json.dumps(cols.get("payload") or {})),
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])
        # As the worker: process_* frame the handler (which ends at "waiting" for a parent),
        # completed_at marks the whole task done (children included).
        await self.conn.execute(
            """UPDATE worker.tasks SET state = %(state)s::worker.task_state,
                   process_start_at = CASE WHEN %(state)s::text = 'processing' THEN now()
                                           ELSE process_start_at END,
                   process_stop_at = CASE WHEN %(state)s::text IN ('waiting', 'completed', 'failed')
                                          THEN coalesce(process_stop_at, now()) END,
                   process_duration_ms = CASE
                       WHEN %(state)s::text IN ('waiting', 'completed', 'failed')
                       THEN coalesce(process_duration_ms,
                                     extract(epoch FROM now() - process_start_at) * 1000) END,
                   completed_at = CASE WHEN %(state)s::text = 'completed' THEN now() END,
                   completion_duration_ms = CASE WHEN %(state)s::text = 'completed'
                       THEN extract(epoch FROM now() - process_start_at) * 1000 END,
                   error = %(error)s,
                   worker_pid = CASE WHEN %(state)s::text = 'processing' THEN pg_backend_pid()
                                     ELSE worker_pid END
               WHERE id = %(id)s""",
            {"state": state, "error": cols.get("error"), "id": task_id},
        )
        return task_id

    async def _import_job(
        self,
        slug: str,
        description: str,
        definition: str,
        *,
        rows: int,
        review: bool = False,
        errors: bool = False,
        fail: bool = False,
        derive: TaskSpec | None = None,
    ) -> tuple[str, _Node | None]:
        """Walk one import job through its states the way the worker does.

        Returns the job's end state and, when it imported rows, the root of the derive run
        its changes queued (``derive``): StatBus queues collect_changes while the import
        still runs, so the system never looks stable between the import and the derive.
        """
        rows = max(int(rows * self.rows_scale), 10)
        conn = self.conn
        cur = await conn.execute(
            """INSERT INTO public.import_job (slug, description, definition_id, user_id,
                   upload_table_name, data_table_name)
               VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
            (slug, description, self._defs[definition], self._user_id,
             f"{slug}_upload", f"{slug}_data"),
        )
        row = await cur.fetchone()
        assert row is not None
        job_id = int(row[0])
        self.on_event(f"import {slug}: waiting_for_upload")
        await self._pause(1.0)

        # The upload lands: the job is queued with a priority, and a task wakes the worker.
        await self._update_job(job_id, state="upload_completed", total_rows=rows, priority=job_id)
        task_id = await self._task("import_job", "pending", payload={"job_id": job_id},
                                   priority=job_id)
        self.on_event(f"import {slug}: upload_completed ({rows} rows)")
        await self._pause(1.0)

        await self._task("import_job", "processing", task_id)
        await self._update_job(job_id, state="preparing_data", preparing_data_at=_now(),
                               current_step_code="prepare")
        await self._pause(1.5)

        # 20 progress steps: ~10 s analysing and ~12 s processing at speed 1, so that with
        # the derive run that follows, a busy spell lasts past the tray's 30 s threshold
        # for a "Processing finished" notification.
        steps = 20
        weighted_total = rows * 4
        await self._update_job(
            job_id, state="analysing_data", analysis_start_at=_now(),
            total_analysis_steps_weighted=weighted_total, completed_analysis_steps_weighted=0,
        )
        self.on_event(f"import {slug}: analysing_data")
        analysis_steps = ("external_idents", "status", "legal_unit", "physical_location",
                          "primary_activity", "statistical_variables", "edit_info")
        n_errors = 0
        n_warnings = 0
        for i in range(1, steps + 1):
            await self._pause(0.5)
            pct = round(100.0 * i / steps, 2)
            # The rate the pace really gives (rows per step / seconds per step), +-10 %,
            # so the ETA the app derives from it comes true.
            rate = round(rows / steps / (0.5 / self.speed) * random.uniform(0.9, 1.1), 2)
            if errors:
                n_errors += random.randint(3, 12)
            n_warnings += random.randint(0, 2)
            await self._update_job(
                job_id, analysis_completed_pct=pct, analysis_rows_per_sec=rate,
                completed_analysis_steps_weighted=weighted_total * i // steps,
                current_step_code=analysis_steps[(i - 1) * len(analysis_steps) // steps],
                last_progress_update=_now(), error_count=n_errors, warning_count=n_warnings,
            )
        await self._update_job(job_id, analysis_stop_at=_now())

        if fail:
            # A failure the worker cannot recover from: failed is terminal, error required.
            await self._update_job(
                job_id, state="failed",
                error=f"{n_errors} rows failed analysis: invalid legal form code "
                      "(column legal_form_code); fix the file and upload it again",
                last_progress_update=_now(),
            )
            await self._task("import_job", "failed", task_id, error="import job failed")
            self.on_event(f"import {slug}: failed")
            return "failed", None

        if review:
            # While a job waits for review the worker holds the others back: not busy.
            await self._update_job(job_id, state="waiting_for_review", current_step_code=None)
            await self._task("import_job", "completed", task_id)
            self.on_event(f"import {slug}: waiting_for_review")
            await self._pause(6.0)
            await self._update_job(job_id, state="approved", review=True)
            task_id = await self._task("import_job", "pending", payload={"job_id": job_id},
                                       priority=job_id)
            self.on_event(f"import {slug}: approved")
            await self._pause(1.0)
            await self._task("import_job", "processing", task_id)

        await self._update_job(job_id, state="processing_data", processing_start_at=_now(),
                               imported_rows=0, import_completed_pct=0)
        self.on_event(f"import {slug}: processing_data")
        good_rows = rows - (n_errors if errors else 0)
        for i in range(1, steps + 1):
            await self._pause(0.6)
            imported = good_rows * i // steps
            await self._update_job(
                job_id, imported_rows=imported,
                import_completed_pct=round(100.0 * i / steps, 2),
                import_rows_per_sec=round(
                    rows / steps / (0.6 / self.speed) * random.uniform(0.9, 1.1), 2
                ),
                current_step_code="process", last_progress_update=_now(),
            )
        done: dict[str, object] = {
            "state": "finished", "processing_stop_at": _now(), "current_step_code": None,
            "last_progress_update": _now(),
        }
        if errors:
            done["error"] = (f"{n_errors} of {rows} rows had errors and were not imported; "
                             "see the import job's error rows")
        root = await self._start_derive(derive) if derive is not None else None
        await self._update_job(job_id, **done)
        await self._task("import_job", "completed", task_id)
        self.on_event(f"import {slug}: finished" + (f" with {n_errors} errors" if errors else ""))
        return "finished", root

    # -- analytics -----------------------------------------------------------------------
    async def _insert_task(self, spec: TaskSpec, parent: _Node | None, index: int) -> _Node:
        depth = parent.depth + 1 if parent else 0
        cur = await self.conn.execute(
            """INSERT INTO worker.tasks (command, state, priority, payload, parent_id, depth,
                   child_mode)
               VALUES (%s, 'pending', %s, %s, %s, %s, %s) RETURNING id""",
            (spec.command, 100 + depth, json.dumps({"command": spec.command, **spec.payload}),
             parent.id if parent else None, depth, spec.child_mode),
        )
        row = await cur.fetchone()
        assert row is not None
        return _Node(spec, int(row[0]), depth, parent, index=index)

    async def _start_derive(self, spec: TaskSpec) -> _Node:
        """Queue a derive run: its collect_changes root, pending."""
        self.on_event(f"analytics: derive run of {count_tasks(spec)} tasks")
        await self.conn.execute(
            "SELECT pg_notify('worker_status', %s)",
            (json.dumps({"type": "is_deriving_statistical_units", "status": True}),),
        )
        return await self._insert_task(spec, None, 0)

    async def _derive_run(self, root: _Node | None) -> int:
        """Run a queued task tree to completion; returns how many tasks it made (0: none)."""
        if root is None:
            return 0
        loop = asyncio.get_running_loop()
        nodes: list[_Node] = [root]
        tick = 0.1
        made = 1
        while root.state != "completed":
            await self._pause(tick)
            now = loop.time()
            async with self.conn.transaction():
                # 1. handlers that ran long enough finish: leaves complete, parents spawn
                for node in [n for n in nodes if n.state == "processing"]:
                    if (now - node.started) * self.speed < node.spec.seconds:
                        continue
                    if node.spec.children:
                        for i, child in enumerate(node.spec.children):
                            node.children.append(await self._insert_task(child, node, i))
                        made += len(node.spec.children)
                        nodes.extend(node.children)
                        await self._set_task_state(node, "waiting")
                    else:
                        await self._set_task_state(node, "completed")
                # 2. a waiting parent completes when its last child has (bottom-up)
                for node in sorted(nodes, key=lambda n: -n.depth):
                    if node.state == "waiting" and all(
                        c.state == "completed" for c in node.children
                    ):
                        await self._set_task_state(node, "completed")
                # 3. pick up due tasks, at most ANALYTICS_CONCURRENCY handlers at a time
                busy = sum(1 for n in nodes if n.state == "processing")
                for node in nodes:
                    if busy >= ANALYTICS_CONCURRENCY:
                        break
                    if node.state == "pending" and self._runnable(node):
                        node.started = now
                        await self._set_task_state(node, "processing")
                        busy += 1
            # Keep the in-memory list short: finished subtrees are no longer needed.
            nodes = [n for n in nodes if n.state != "completed" or n is root]
        await self.conn.execute(
            "SELECT pg_notify('worker_status', %s)",
            (json.dumps({"type": "is_deriving_statistical_units", "status": False}),),
        )
        self.on_event(f"analytics: derive run done ({made} tasks)")
        return made

    @staticmethod
    def _runnable(node: _Node) -> bool:
        """Pending and allowed to start: a serial parent's children go one after another."""
        parent = node.parent
        if parent is None:
            return True
        if parent.state != "waiting":
            return False
        if parent.spec.child_mode == "serial":
            return all(c.state == "completed" for c in parent.children[: node.index])
        return True

    async def _set_task_state(self, node: _Node, state: str) -> None:
        node.state = state
        await self._task(node.spec.command, state, node.id)


class _Stopped(Exception):
    """Raised inside the simulator when stop() was asked for; ends the loop quietly."""
