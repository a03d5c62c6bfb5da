"""Which import jobs ended: a ledger that tells each ending once, across reconnects and
restarts.

An import ends when its job reaches a state StatBus never leaves: ``finished``, ``failed``
or ``rejected`` (``import_job_state``; ``rejected`` is set by the app's review UPDATE and
nothing moves the job on). A job that leaves the worker's "running or queued" set for
``waiting_for_review`` has NOT ended: the review notice speaks of it, and its ending comes
later.

The ledger remembers, per watched database and login:

* ``after``: the highest job id seen (None: never read; the first read takes a baseline, so
  nothing that ended before the app first saw the database is announced);
* ``open``: the ids of jobs seen in a state that is not final (they may still end);
* ``gaps``: ids the id sequence skipped when newer ids were seen (a job whose inserting
  transaction had not committed yet, or a rolled-back one), looked for until a deadline.

Each read (``ENDINGS_SQL``) is bounded: the open jobs (at most ``OPEN_CAP``) by primary key
and at most ``NEW_LIMIT`` jobs newer than ``after``. A job seen open and now final, or
first seen already final, ended: told once, then forgotten. A job that disappears (StatBus's
``import_job_cleanup`` deletes expired jobs) is forgotten silently.

Persistence (``LedgerFile``): one JSON file per database and login in the config folder,
written atomically (temporary file, fsync, rename), owned by one monitor at a time through
an advisory lock; a second claimant keeps its ledger in memory only. Pure state here; the
monitor runs the query and decides when (core/watch/monitor.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from traystatus.core.model.jobs import FINAL_STATES, EndedJob

log = logging.getLogger(__name__)

OPEN_CAP = 500  # open jobs remembered (the newest; abandoned uploads expire in StatBus)
NEW_LIMIT = 200  # newer jobs read per query; more are read by the next query
GAP_CAP = 50  # ids a single jump of the sequence may leave to look for
GAP_TTL = 600.0  # seconds an id the sequence skipped is looked for
FORMAT = 1

_COLUMNS = ("j.id, j.slug, j.description, j.state::text, j.total_rows, j.imported_rows, "
            "(pg_catalog.to_jsonb(j) ->> 'error_count')::int, "
            "(pg_catalog.to_jsonb(j) ->> 'warning_count')::int, j.error, j.user_id")
BASELINE_SQL = (
    "SELECT coalesce((SELECT max(id) FROM public.import_job), 0), "
    "coalesce((SELECT array_agg(o.id) FROM (SELECT j.id FROM public.import_job AS j "
    "WHERE j.state::text NOT IN ('finished', 'failed', 'rejected') "
    f"ORDER BY j.id DESC LIMIT {OPEN_CAP}) AS o), '{{}}')"
)
# Once per connection: a database restored or recreated starts its ids again below the
# ledger's newest (the ledger would wait for ids that never come): start from now then.
NEWEST_SQL = "SELECT coalesce((SELECT max(id) FROM public.import_job), 0)"
ENDINGS_SQL = (
    f"(SELECT {_COLUMNS} FROM public.import_job AS j WHERE j.id = ANY(%(ids)s)) "
    f"UNION ALL (SELECT {_COLUMNS} FROM public.import_job AS j WHERE j.id > %(after)s "
    "ORDER BY j.id LIMIT %(limit)s)"
)


ENDINGS_ENV = "TRAYSTATUS_ENDINGS_DIR"  # the demo keeps its ledgers in its own folder


def endings_dir() -> str | None:
    """The folder of the ledger files: ``import-endings`` in the config folder, or
    ``$TRAYSTATUS_ENDINGS_DIR`` (None, logged, when there is no config folder: endings are
    then told for this run only)."""
    from traystatus.core.config.profiles import ProfileError, config_dir

    if override := os.environ.get(ENDINGS_ENV):
        return override
    try:
        return str(config_dir() / "import-endings")
    except ProfileError as ex:
        log.warning("%s", ex)
        return None


class LedgerError(ValueError):
    """A ledger file that cannot be used (the ledger starts again from a baseline)."""


@dataclass
class EndingsLedger:
    """What the last read knew about import jobs (see the module doc)."""

    after: int | None = None
    open: set[int] = field(default_factory=set)
    gaps: dict[int, float] = field(default_factory=dict)  # id -> wall-clock deadline
    more: bool = False  # the last read hit NEW_LIMIT: read again

    @property
    def started(self) -> bool:
        return self.after is not None

    def params(self) -> dict[str, Any]:
        return {"ids": sorted(self.open | set(self.gaps)), "after": self.after or 0,
                "limit": NEW_LIMIT}

    def baseline(self, row: Any) -> None:
        """The first read of a database: the newest id and the open jobs, none told."""
        newest, open_ids = row
        self.after = int(newest or 0)
        self.open = {int(i) for i in open_ids or ()}
        self.gaps = {}
        self.more = False

    def starts_over(self, newest: int) -> bool:
        """True (and the ledger forgotten: a baseline next) when the database's newest
        job id is below the ledger's: restored from an older backup, or recreated."""
        if self.after is None or newest >= self.after:
            return False
        log.info("the database's import jobs start below the last one seen (%d < %d): "
                 "it was restored or recreated; telling endings from now on", newest,
                 self.after)
        self.after, self.open, self.gaps, self.more = None, set(), {}, False
        return True

    def apply(self, rows: list[Any], me: int | None, now: float | None = None,
              ) -> tuple[EndedJob, ...]:
        """Fold one ``ENDINGS_SQL`` answer in; the jobs that ended since the last, in id
        order, each once."""
        assert self.after is not None, "baseline() first"
        now = time.time() if now is None else now
        by_id = {int(r[0]): r for r in rows}
        ended: list[EndedJob] = []
        for job_id in sorted(self.open):
            row = by_id.get(job_id)
            if row is None:
                self.open.discard(job_id)  # deleted (expired, cleaned up)
            elif str(row[3]) in FINAL_STATES:
                self.open.discard(job_id)
                ended.append(EndedJob.from_row(row, me))
        for job_id in sorted(self.gaps):
            row = by_id.get(job_id)
            if row is not None:
                del self.gaps[job_id]
                self._first_sight(row, me, ended)
            elif self.gaps[job_id] <= now:
                del self.gaps[job_id]  # never committed: a rolled-back insert
        newer = sorted(i for i in by_id if i > self.after)
        for job_id in newer:
            missing = range(self.after + 1, job_id)
            if 0 < len(missing) <= GAP_CAP:
                for skipped in missing:
                    self.gaps.setdefault(skipped, now + GAP_TTL)
            self._first_sight(by_id[job_id], me, ended)
            self.after = job_id
        self.more = len(newer) >= NEW_LIMIT
        if len(self.open) > OPEN_CAP:
            dropped = sorted(self.open)[: len(self.open) - OPEN_CAP]
            log.warning("watching the ends of the newest %d open import jobs only; "
                        "forgetting jobs %s..", OPEN_CAP, dropped[:5])
            self.open.difference_update(dropped)
        return tuple(sorted(ended, key=lambda e: e.id))

    def _first_sight(self, row: Any, me: int | None, ended: list[EndedJob]) -> None:
        if str(row[3]) in FINAL_STATES:
            ended.append(EndedJob.from_row(row, me))  # began and ended between two reads
        else:
            self.open.add(int(row[0]))

    # -- the file's JSON ----------------------------------------------------------------------
    def to_json(self, target: str) -> dict[str, Any]:
        return {"format": FORMAT, "target": target, "after": self.after,
                "open": sorted(self.open),
                "gaps": {str(k): round(v, 1) for k, v in sorted(self.gaps.items())}}

    @classmethod
    def from_json(cls, value: Any) -> EndingsLedger:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise LedgerError("not a traystatus import ledger (format 1)")
        after = value.get("after")
        if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
            raise LedgerError("after: expected a job id")
        open_ids = value.get("open")
        gaps = value.get("gaps")
        if not isinstance(open_ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in open_ids
        ):
            raise LedgerError("open: expected a list of job ids")
        if not isinstance(gaps, dict) or not all(
            k.isdigit() and isinstance(v, (int, float)) for k, v in gaps.items()
        ):
            raise LedgerError("gaps: expected job ids with deadlines")
        return cls(after, set(open_ids[-OPEN_CAP:]),
                   {int(k): float(v) for k, v in list(gaps.items())[:GAP_CAP]})


def ledger_key(host: str, port: str, dbname: str, user: str) -> str:
    """The file name part for one database and login: readable, and unique by hash."""
    ident = f"{user}@{host}:{port}/{dbname}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{dbname}-{user}")
    return f"{safe[:40]}-{digest}"


class LedgerFile:
    """The ledger of one database and login on disk, with its one owner (``claim``)."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target  # for a person reading the file: user@host:port/db
        self._lock: IO[bytes] | None = None
        self._written = ""

    @classmethod
    def claim(cls, folder: Path, key: str, target: str) -> LedgerFile | None:
        """Own the file, or None when another monitor (this process or another) owns it
        or the folder cannot be used (logged): the caller keeps its ledger in memory."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = (folder / f"{key}.lock").open("ab")
        except OSError as ex:
            log.warning("cannot keep which imports ended in %s (%s): endings are told "
                        "for this run only", folder, ex.strerror or ex)
            return None
        try:
            import fcntl

            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass  # Windows: the single-instance guard keeps one app per session
        except OSError:
            lock.close()
            log.info("another traystatus watcher keeps the import ledger of %s", target)
            return None
        out = cls(folder / f"{key}.json", target)
        out._lock = lock
        return out

    def load(self) -> EndingsLedger:
        """The saved ledger; a fresh one (a baseline on the next read) when there is none
        or it cannot be read (logged)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return EndingsLedger()
        except OSError as ex:
            log.warning("cannot read %s (%s): starting from now", self.path, ex.strerror or ex)
            return EndingsLedger()
        try:
            ledger = EndingsLedger.from_json(json.loads(text))
        except (ValueError, RecursionError) as ex:
            log.warning("ignoring %s (%s): starting from now", self.path, ex)
            return EndingsLedger()
        self._written = text
        return ledger

    def render(self, ledger: EndingsLedger) -> str | None:
        """The file's new text, or None when it would not change (on the loop)."""
        text = json.dumps(ledger.to_json(self.target), indent=1) + "\n"
        return None if text == self._written else text

    def save(self, ledger: EndingsLedger) -> None:
        text = self.render(ledger)
        if text is not None:
            self.write(text)

    def write(self, text: str) -> None:
        """Write atomically: a crash leaves the old file or the new one (off the loop)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as ex:
            log.warning("cannot save %s (%s)", self.path, ex.strerror or ex)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._written = text

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing drops the flock
