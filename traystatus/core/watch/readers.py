"""How the monitor reads one database: the ``Reader`` strategy.

A reader holds the queries and the channels of one way of learning the state from a
StatBus database; the monitor (monitor.py) owns the connection, the timing and the
listeners, and asks its reader what to LISTEN to, how to read, and what a notification
means. ``InstalledReader`` uses the functions and the ``system_stability`` channel that
``sql/install.sql`` installs.

Choosing (``choose_reader``): mode ``installed`` always takes ``InstalledReader``; mode
``builtin`` and ``auto`` are for a reader of StatBus's own channels and plain reads,
for databases where nothing is installed (``BuiltinReader``, builtin.py). In ``auto``, the
monitor connects first and then picks: installed when our SQL is present and current, else
built-in.

A reader raises ``Unusable`` (with a ``Diagnosis``) when the database cannot be watched
its way (SQL missing, outdated, no privilege); any other exception is the monitor's to
classify. Readers do no waiting of their own and keep no state across connections beyond
what they were built with.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Protocol

import psycopg

from traystatus.core.model.details import Details, DetailsError, WorkSummary
from traystatus.core.model.estimate import History
from traystatus.core.model.jobs import EndedJob
from traystatus.core.model.progress import Progress
from traystatus.core.model.state import Problem, ReviewBlock
from traystatus.core.pg.diagnosis import Diagnosis, Phase, Target, classify
from traystatus.core.pg.link import Link
from traystatus.core.pg.sqlfiles import version_problem
from traystatus.core.watch._schedule import Channel
from traystatus.core.watch._stability import Owed
from traystatus.core.watch.endings import BASELINE_SQL, ENDINGS_SQL, NEWEST_SQL, EndingsLedger
from traystatus.core.watch.options import ReaderMode

log = logging.getLogger(__name__)


STABILITY_CHANNEL = "system_stability"
PROGRESS_CHANNEL = "import_job_progress"
WORKER_STATUS_CHANNEL = "worker_status"  # StatBus's: pipeline_progress after every task


class Unusable(Exception):
    """Connected, but this database cannot be watched this way (SQL missing, outdated...)."""

    def __init__(self, diagnosis: Diagnosis) -> None:
        super().__init__(diagnosis.message)
        self.diagnosis = diagnosis


@dataclass(frozen=True)
class StableRead:
    """One stability answer, with the work mark when it was asked for and stable, and the
    review block (jobs waiting for a person's review, imports queued behind them)."""

    stable: bool
    mark: int | None = None
    review: ReviewBlock | None = None


class Reader(Protocol):
    """The queries and channels of one way of reading the database."""

    name: str  # Status.source: "installed" | "builtin"

    @property
    def channels(self) -> tuple[str, ...]:
        """LISTENed for the whole session, before the first read."""
        ...

    @property
    def details_channels(self) -> tuple[str, ...]:
        """LISTENed only while someone wants details."""
        ...

    def channel(self, name: str) -> Channel:
        """What a notification on ``name`` asks for."""
        ...

    def check_payload(self, name: str, payload: str) -> str:
        """Why a payload on ``name`` is malformed ("" when fine). Only logged, never trusted."""
        ...

    async def first_read(self, link: Link, with_mark: bool) -> StableRead:
        """The first answer of a session (after the LISTENs). Raises ``Unusable``."""
        ...

    async def read_stable(self, link: Link, with_mark: bool) -> StableRead: ...

    async def read_details(self, link: Link) -> Details | None:
        """A details snapshot; None when the answer was malformed (logged)."""
        ...

    async def read_summary(self, link: Link, owed: Owed) -> WorkSummary | None:
        """What finished since ``owed.mark``; None when it cannot be told (logged)."""
        ...

    @property
    def coalesce_window(self) -> float | None:
        """This reader's coalescing window in seconds (None: the monitor's option)."""
        ...

    @property
    def notes(self) -> tuple[str, ...]:
        """What a person should know about this way of reading (Status.note); () if none."""
        ...

    def read_within(self) -> float | None:
        """Seconds within which the next stability read is due for the reader's own
        reasons (asked after every read), or None for none."""
        ...

    @property
    def progress_channels(self) -> tuple[str, ...]:
        """LISTENed only while processing: hints that progress moved."""
        ...

    async def read_progress(self, link: Link) -> Progress | None:
        """The progress aggregate; None when this login cannot read it (logged once)."""
        ...

    async def read_history(self, link: Link) -> History | None:
        """What the estimate learns from (readers.HISTORY_SQL); None when it cannot."""
        ...

    def endings_due(self) -> bool:
        """Whether the running or queued import jobs changed since the last time this
        was asked (a job may have ended: worth an ``read_endings``)."""
        ...

    async def read_endings(self, link: Link, ledger: EndingsLedger) -> tuple[EndedJob, ...]:
        """The import jobs that ended since ``ledger``'s last read (core/watch/endings.py);
        () when this login cannot read import jobs (logged once)."""
        ...


# -- progress: the same plain query in every reader mode -----------------------------------
# Read-only, on StatBus's own tables, runnable by any login in ``authenticated``: no
# function of ours is needed. Cheap on a worker.tasks of 10^6 rows: the pipeline root is
# found through StatBus's partial index on waiting tasks, everything below it through the
# parent_id index; import_job is small. Enum values are compared as text (except the
# one that must use the partial index and has existed as long as parents have), so a
# StatBus with fewer enum labels still answers.
PROGRESS_SQL = """
SELECT
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'id', j.id, 'slug', j.slug, 'description', j.description,
            'state', j.state::text, 'total_rows', j.total_rows,
            'analysis_pct', j.analysis_completed_pct, 'import_pct', j.import_completed_pct,
            'user_id', j.user_id,
            'phase_started_at', CASE j.state::text
                WHEN 'preparing_data' THEN j.preparing_data_at
                WHEN 'analysing_data' THEN j.analysis_start_at
                WHEN 'processing_data' THEN j.processing_start_at END)
          ORDER BY j.priority NULLS LAST, j.id), '[]'::jsonb)
     FROM public.import_job AS j
    WHERE j.state::text IN ('upload_completed', 'preparing_data', 'analysing_data',
                            'approved', 'processing_data')),
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'phase', ph.command, 'state', ph.state::text, 'step', st.command,
            'total', cnt.total, 'completed', cnt.completed,
            'started_at', root.process_start_at) ORDER BY ph.id), '[]'::jsonb)
     FROM (SELECT t.id, (pg_catalog.to_jsonb(t) ->> 'process_start_at')::timestamptz
                  AS process_start_at
             FROM worker.tasks AS t
            WHERE t.state = 'waiting' AND t.command = 'collect_changes'
            ORDER BY t.id DESC LIMIT 1) AS root
     JOIN worker.tasks AS ph
       ON ph.parent_id = root.id
      AND ph.command IN ('derive_units_phase', 'derive_reports_phase')
     LEFT JOIN LATERAL (
           SELECT t.command FROM worker.tasks AS t
            WHERE t.parent_id = ph.id AND t.state::text IN ('processing', 'waiting')
            ORDER BY t.id DESC LIMIT 1) AS st ON true
     LEFT JOIN LATERAL (
           SELECT t.id FROM worker.tasks AS t
            WHERE t.parent_id = ph.id AND t.state::text IN ('processing', 'waiting')
              AND pg_catalog.to_jsonb(t) ->> 'child_mode' = 'concurrent'
            ORDER BY (pg_catalog.to_jsonb(t) ->> 'depth')::int DESC, t.id DESC
            LIMIT 1) AS cp ON true
     LEFT JOIN LATERAL (
           SELECT count(*) AS total,
                  count(*) FILTER (WHERE t.state::text IN ('completed', 'failed')) AS completed
             FROM worker.tasks AS t WHERE t.parent_id = cp.id) AS cnt ON true),
  EXISTS (SELECT 1 FROM worker.tasks AS t
           WHERE t.state = 'pending' AND t.command = 'collect_changes')
"""


# -- history: what the estimate learns from (core/model/estimate.py) -------------------------------
HISTORY_TASKS = 200_000
"""How far back (in task ids) the history looks for derive runs: the scan walks the primary
key backwards and stops at HISTORY_RUNS runs or this many tasks, whichever comes first, so
a worker.tasks of 10^6 rows costs at most this many (bench/bench_estimate.py measures it)."""
HISTORY_RUNS = 30
HISTORY_JOBS = 50
HISTORY_SQL = f"""
SELECT
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'id', j.id, 'state', j.state::text, 'rows', j.total_rows,
            'prep', j.preparing_data_at, 'a0', j.analysis_start_at, 'a1', j.analysis_stop_at,
            'p0', j.processing_start_at, 'p1', j.processing_stop_at)), '[]'::jsonb)
     FROM (SELECT * FROM public.import_job AS j
            WHERE j.state::text IN ('finished', 'failed', 'rejected')
            ORDER BY j.id DESC LIMIT {HISTORY_JOBS}) AS j),
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'id', t.id, 'state', t.state::text,
            'start', pg_catalog.to_jsonb(t) -> 'process_start_at',
            'end', t.completed_at)), '[]'::jsonb)
     FROM (SELECT t.* FROM worker.tasks AS t
            WHERE t.command = 'collect_changes'
              AND coalesce((pg_catalog.to_jsonb(t) ->> 'depth')::int,
                           CASE WHEN t.parent_id IS NULL THEN 0 END) = 0
              AND t.state::text IN ('completed', 'failed', 'processing', 'waiting')
              AND t.id > (SELECT coalesce(max(m.id), 0) FROM worker.tasks AS m)
                         - {HISTORY_TASKS}
            ORDER BY t.id DESC LIMIT {HISTORY_RUNS}) AS t),
  (SELECT coalesce(jsonb_agg(j.total_rows), '[]'::jsonb) FROM public.import_job AS j
    WHERE j.state::text = 'waiting_for_review')
"""


# The StatBus user behind this login: auth.uid() is StatBus's own (the auth.user whose
# email is current_user, the login role's name); the plain query is its body, for a
# StatBus without the function.
ME_SQL = ("SELECT auth.uid()", 'SELECT id FROM auth."user" WHERE email = current_user')
ME_RETRY = 60.0  # seconds between two "who am I" while the answer is "nobody"


# What a login or a StatBus that cannot tell progress (or endings) raises: the state still can.
_CANNOT_READ = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedObject,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.InvalidTextRepresentation,
)


class ProgressReading:
    """``progress_channels`` and ``read_progress`` for any reader: StatBus's own channels
    and tables, so they work with and without our installed SQL.

    It also reads which import jobs ended (``read_endings``, core/watch/endings.py: a job that
    reached a final state, never one that went to waiting_for_review), with ``mine`` when
    its ``user_id`` is the StatBus user behind the login; ``endings_due()`` says when the
    running or queued jobs changed, a hint that one may have ended."""

    _progress_broken = False
    _endings_broken = False
    _ledger_checked = False  # the ledger's newest id checked against this database
    _history_broken = False
    _me_asked = -1e18  # monotonic time of the last "who am I" (asked again after a minute
    _me: int | None = None  # while unknown: the StatBus user may be created meanwhile)
    _seen: frozenset[int] = frozenset()
    _seen_changed = False

    def endings_due(self) -> bool:
        out, self._seen_changed = self._seen_changed, False
        return out

    async def read_endings(self, link: Link, ledger: EndingsLedger) -> tuple[EndedJob, ...]:
        if self._endings_broken:
            return ()
        try:
            if ledger.started and not self._ledger_checked:
                row = await link.one(NEWEST_SQL)
                ledger.starts_over(int(row[0]) if row else 0)
            self._ledger_checked = True
            if not ledger.started:
                row = await link.one(BASELINE_SQL)
                ledger.baseline(row)
                return ()
            rows = await link.all(ENDINGS_SQL, ledger.params())
        except _CANNOT_READ as ex:
            self._endings_broken = True
            log.warning("cannot tell which imports ended: %s", str(ex).splitlines()[0])
            return ()
        return ledger.apply(rows, await self._read_me(link))

    async def _read_me(self, link: Link) -> int | None:
        now = time.monotonic()
        if self._me is None and now - self._me_asked >= ME_RETRY:
            self._me_asked = now
            for query in ME_SQL:
                try:
                    row = await link.one(query)
                except psycopg.Error as ex:
                    log.debug("who am I in StatBus: %s", str(ex).splitlines()[0])
                    continue
                self._me = row[0] if row and isinstance(row[0], int) else None
                break
        return self._me

    @property
    def progress_channels(self) -> tuple[str, ...]:
        return (PROGRESS_CHANNEL, WORKER_STATUS_CHANNEL)

    async def read_history(self, link: Link) -> History | None:
        """What the estimate learns from (bounded: HISTORY_SQL); None when this login or
        this StatBus cannot tell (logged once: the estimate then says unknown)."""
        if self._history_broken:
            return None
        try:
            row = await link.one(HISTORY_SQL)
        except _CANNOT_READ as ex:
            self._history_broken = True
            log.warning("no history for the estimate: %s", str(ex).splitlines()[0])
            return None
        if row is None:
            return None
        return History.from_rows(row[0], row[1], row[2])

    async def read_progress(self, link: Link) -> Progress | None:
        if self._progress_broken:
            return None
        try:
            row = await link.one(PROGRESS_SQL)
        except _CANNOT_READ as ex:
            # This login or this StatBus cannot tell progress: the state still can.
            self._progress_broken = True
            log.warning("no progress for this connection: %s", str(ex).splitlines()[0])
            return None
        if row is None:
            return None
        me = await self._read_me(link)
        try:
            progress = Progress.from_json(
                {"jobs": row[0], "phases": row[1], "derive_queued": row[2], "me": me}
            )
        except DetailsError as ex:
            log.warning("ignoring a malformed progress aggregate: %s", ex)
            return None
        seen = frozenset(j.id for j in progress.jobs)
        if seen != self._seen:
            self._seen, self._seen_changed = seen, True
        return progress


# The last column: seconds until the next future-scheduled analytics task falls due (time
# alone makes it due, and no notification says so: read_within() asks for a read then).
_DUE_IN = "extract(epoch FROM public.system_stability_next_due() - now())::float8"
_READ_STABLE = (
    "SELECT s, CASE WHEN s THEN public.system_work_mark() END, "
    "public.system_stability_review(), " + _DUE_IN + " FROM public.is_system_stable() AS s"
)
# Without summary listeners the mark is not needed: the same row shape, one function less.
_READ_STABLE_NO_MARK = (
    "SELECT public.is_system_stable(), NULL::bigint, public.system_stability_review(), "
    + _DUE_IN
)
_READ_DUE_IN = "SELECT " + _DUE_IN
DUE_SLACK = 0.05
"""Seconds after a scheduled task's due moment at which it is read: the database's clock
must have passed the moment for the task to count."""
_READ_FIRST = (
    "SELECT public.system_stability_sql_version(), s, "
    "CASE WHEN s THEN public.system_work_mark() END "
    "FROM public.is_system_stable() AS s"
)
_READ_FIRST_NO_MARK = (
    "SELECT public.system_stability_sql_version(), public.is_system_stable(), NULL::bigint"
)
# Read after the version check (an older install has no system_stability_review(), and must
# be reported as outdated, not as missing).
_READ_REVIEW = "SELECT public.system_stability_review()"
_READ_VERSION = "SELECT public.system_stability_sql_version()"


class InstalledReader(ProgressReading):
    """Our installed SQL: ``is_system_stable()``, ``system_stability`` notifications,
    ``get_system_status_details()``, ``system_work_mark()`` / ``get_system_work_summary()``."""

    name = "installed"
    coalesce_window: float | None = None
    notes: tuple[str, ...] = ()

    def __init__(self, conninfo: str, version_checked: bool = False) -> None:
        self._conninfo = conninfo  # for messages (where), never the password
        self._due_at: float | None = None  # monotonic: a scheduled task falls due
        # ``auto`` read the version on this connection already (choose_reader): the first
        # read is then the plain stability read, one round trip instead of two (issue 23).
        self._version_checked = version_checked

    def read_within(self) -> float | None:
        """Just after the next scheduled analytics task falls due (the database said when,
        with the last answer); None when none is scheduled."""
        if self._due_at is None:
            return None
        return max(0.0, self._due_at - time.monotonic()) + DUE_SLACK

    def _note_due(self, due_in: object) -> None:
        self._due_at = (time.monotonic() + float(due_in)
                        if isinstance(due_in, (int, float)) else None)

    @property
    def channels(self) -> tuple[str, ...]:
        return (STABILITY_CHANNEL,)

    @property
    def details_channels(self) -> tuple[str, ...]:
        return (PROGRESS_CHANNEL,)

    def channel(self, name: str) -> Channel:
        if name == STABILITY_CHANNEL:
            return Channel.STABILITY
        if name == PROGRESS_CHANNEL:
            # StatBus's own payload; only a hint that details changed. Not parsed.
            return Channel.DETAILS
        if name == WORKER_STATUS_CHANNEL:
            return Channel.PROGRESS
        return Channel.IGNORED

    def check_payload(self, name: str, payload: str) -> str:
        if name != STABILITY_CHANNEL:
            return ""
        return stability_payload_problem(payload)

    async def first_read(self, link: Link, with_mark: bool) -> StableRead:
        """Version check and state; a wrong version is ``Unusable``."""
        if self._version_checked:
            self._version_checked = False  # a later session (a reconnect) checks again
            try:
                return await self.read_stable(link, with_mark)
            except psycopg.Error as ex:  # uninstalled since the check: as below
                diag = classify(ex, self._conninfo, Phase.QUERY)
                if diag.problem in (Problem.SQL_MISSING, Problem.PERMISSION):
                    raise Unusable(diag) from ex
                raise
        try:
            row = await link.one(_READ_FIRST if with_mark else _READ_FIRST_NO_MARK)
        except psycopg.Error as ex:
            diag = classify(ex, self._conninfo, Phase.QUERY)
            if diag.problem in (Problem.SQL_MISSING, Problem.PERMISSION):
                raise Unusable(diag) from ex
            raise
        assert row is not None
        wrong = version_problem(row[0], Target.from_conninfo(self._conninfo).where)
        if wrong is not None:
            raise Unusable(wrong.diagnosis())
        # (a second query: only a current install has system_stability_review() and
        # system_stability_next_due(), and the version had to be checked first)
        review = await link.one(_READ_REVIEW + ", " + _DUE_IN)
        self._note_due(review[1] if review else None)
        return _stable_read(row[1], row[2], review[0] if review else None)

    async def read_stable(self, link: Link, with_mark: bool) -> StableRead:
        row = await link.one(_READ_STABLE if with_mark else _READ_STABLE_NO_MARK)
        assert row is not None
        self._note_due(row[3])
        return _stable_read(row[0], row[1], row[2])

    async def read_details(self, link: Link) -> Details | None:
        row = await link.one("SELECT public.get_system_status_details()")
        try:
            return Details.from_json(row[0] if row else None)
        except DetailsError as ex:
            log.warning("ignoring malformed status details: %s", ex)
            return None

    async def read_summary(self, link: Link, owed: Owed) -> WorkSummary | None:
        try:
            row = await link.one(
                "SELECT public.get_system_work_summary(%s, %s)", (owed.mark, owed.since)
            )
        except psycopg.errors.InsufficientPrivilege as ex:
            log.warning("no work summary: %s", ex)
            return None
        try:
            return WorkSummary.from_json(row[0] if row else None, owed.duration)
        except DetailsError as ex:
            log.warning("ignoring a malformed work summary: %s", ex)
            return None


def _stable_read(stable: object, mark: object, review: object = None) -> StableRead:
    ok = bool(stable)
    return StableRead(ok, int(mark) if ok and isinstance(mark, int) else None,
                      review_block(review))


def review_block(value: object) -> ReviewBlock | None:
    """``system_stability_review()``'s jsonb as a ReviewBlock (None: no job waits)."""
    if not isinstance(value, dict):
        return None
    waiting = tuple(
        (int(job["id"]), str(job.get("slug") or ""))
        for job in value.get("jobs") or []
        if isinstance(job, dict) and isinstance(job.get("id"), int)
    )
    if not waiting:
        return None
    queued = value.get("queued_behind")
    return ReviewBlock(waiting, queued if isinstance(queued, int) and queued > 0 else 0)


def stability_payload_problem(payload: str) -> str:
    """Why a ``system_stability`` payload is not ``{"stable": true|false}`` ("" if it is)."""
    if len(payload.encode("utf-8", "replace")) > MAX_PAYLOAD_BYTES:
        return f"oversized ({len(payload)} characters)"
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(value, dict) or not isinstance(value.get("stable"), bool):
        return 'not {"stable": true|false}'
    return ""


MAX_PAYLOAD_BYTES = 8000  # PostgreSQL's own limit for a NOTIFY payload

# -- choosing -------------------------------------------------------------------------------
async def choose_reader(link: Link, mode: ReaderMode, conninfo: str,
                        old_statbus_interval: float | None = None) -> Reader:
    """The reader for this connection. ``auto`` asks the database whether our SQL is there
    and current (one round trip). ``old_statbus_interval``: the built-in reader's timed
    reads on a StatBus without ``worker_task_changed`` (None: its default)."""
    # builtin.py builds on this module (ProgressReading, Reader): imported when chosen.
    from traystatus.core.watch.builtin import BuiltinReader

    def builtin(reason: str) -> Reader:
        return BuiltinReader(conninfo, reason, old_statbus_interval)

    if mode == "installed":
        return InstalledReader(conninfo)
    if mode == "builtin":
        return builtin("")
    try:
        row = await link.one(_READ_VERSION)
    except (psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName):
        row = None
    except psycopg.errors.InsufficientPrivilege:
        row = (None,)
    version = row[0] if row else None
    wrong = version_problem(version, Target.from_conninfo(conninfo).where)
    if wrong is None:
        return InstalledReader(conninfo, version_checked=True)
    if version is None:
        log.info("traystatus's SQL is not installed: reading StatBus directly")
        return builtin("")
    # Installed but outdated (or newer than this app): a warning, not a red cross.
    log.warning("%s Reading StatBus directly meanwhile.", wrong.message)
    return builtin(f"{wrong.message} Meanwhile traystatus reads StatBus directly.")
