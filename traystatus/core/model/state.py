"""What the monitor reports: one immutable ``Status`` value per change.

Pure data, no I/O and no Qt: the CLI prints it, the tray app renders it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from traystatus.core.model.progress import Progress
from traystatus.core.model.upgrade import Upgrade
from traystatus.core.words.wording import format_duration, plural


class State(enum.Enum):
    """The states a monitor can be in.

    ``CONNECTING``: no answer yet. ``STABLE`` / ``PROCESSING``: the truth read from the
    database. ``DISCONNECTED``: the connection is lost or stale; retrying on its own.
    ``ERROR``: something retrying will not fix (bad password, SQL missing or outdated,
    no privilege, TLS failure); the monitor still retries, slowly, so a fix is picked up.
    ``UPGRADING``: StatBus's own software upgrade runs (``public.upgrade``: started, not
    ended); data is unavailable or changing, never stable. Also while the database is
    unreachable during a running upgrade (then ``problem`` says why, and the monitor
    retries as for DISCONNECTED).
    """

    CONNECTING = "connecting"
    STABLE = "stable"
    PROCESSING = "processing"
    DISCONNECTED = "disconnected"
    ERROR = "error"
    UPGRADING = "upgrading"


class Problem(enum.Enum):
    """Why the monitor is DISCONNECTED or in ERROR: the kind, for code to branch on."""

    UNREACHABLE = "unreachable"  # host down, refused, DNS, timeout
    CONNECTION_LOST = "connection_lost"  # was connected, the connection broke
    STALE = "stale"  # health check did not answer in time
    AUTH_FAILED = "auth_failed"  # wrong password / no such role / pg_hba reject
    TLS = "tls"  # certificate, sslmode or negotiation failure
    SQL_MISSING = "sql_missing"  # traystatus SQL not installed in that database
    SQL_OUTDATED = "sql_outdated"  # installed version older than this app expects
    SQL_NEWER = "sql_newer"  # installed version newer than this app knows
    PERMISSION = "permission"  # no EXECUTE on the functions
    NO_PASSWORD = "no_password"  # no password known and no keychain to ask
    CONFIG = "config"  # the profile itself is unusable (bad DSN)
    INTERNAL = "internal"  # a bug in traystatus; details in the log
    PROTOCOL = "protocol"  # a traystatus server sent a message that cannot be used


def utcnow() -> datetime:
    return datetime.now(UTC)


SOURCES = ("installed", "builtin", "relay")
"""Where a Status came from: our installed SQL, StatBus's own channels, a traystatus server."""


@dataclass(frozen=True)
class ReviewBlock:
    """Imports held up by a job waiting for a person's review.

    ``waiting``: the jobs in waiting_for_review, as (id, slug). ``queued_behind``: how many
    imports are queued behind them. A Status without a block has ``review=None``.
    ``since``: when the longest-waiting of them entered waiting_for_review (StatBus's
    ``import_job.analysis_stop_at``: its trigger stamps it as the job leaves analysing_data,
    and a job with review goes to waiting_for_review right then); None when not read.
    ``may_approve``: whether this login may approve or reject every waiting job, by
    StatBus's own rule (core/model/review.py); None when unknown (through a relay).
    """

    waiting: tuple[tuple[int, str], ...]
    queued_behind: int = 0
    since: datetime | None = None
    may_approve: bool | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "waiting": [{"id": job_id, "slug": slug} for job_id, slug in self.waiting],
            "queued_behind": self.queued_behind,
            "since": self.since.isoformat() if self.since is not None else None,
            "may_approve": self.may_approve,
        }

    @property
    def job_ids(self) -> list[int]:
        return [job_id for job_id, _ in self.waiting]

    @property
    def text(self) -> str:
        """One line for a person: "Waiting for review: lu_2026; 2 imports queued behind it"."""
        return self.text_at(None)

    def waited(self, now: datetime, seen: datetime | None = None) -> timedelta | None:
        """How long the review has waited at ``now``: since StatBus's stamp, else since
        ``seen`` (when this app first saw it waiting), else None."""
        start = self.since or seen
        return None if start is None else max(timedelta(0), now - start)

    def text_at(self, now: datetime | None, seen: datetime | None = None) -> str:
        """"Waiting for review for 2 h 5 min: lu_2026; 3 imports queued behind it" (the
        waiting time when known at ``now``)."""
        names = ", ".join(slug or f"job {job_id}" for job_id, slug in self.waiting)
        waited = self.waited(now, seen) if now is not None else None
        how_long = ""
        if waited is not None and waited >= timedelta(minutes=1):
            # whole minutes (a waiting time that ticks every second is noise); under a
            # minute it is no news
            words = format_duration(waited.total_seconds() // 60 * 60)
            # seen by this app only: it may have waited longer
            how_long = f" for {'at least ' if self.since is None else ''}{words}"
        line = f"Waiting for review{how_long}: {names}"
        if self.queued_behind:
            them = "it" if len(self.waiting) == 1 else "them"
            line += f"; {plural(self.queued_behind, 'import')} queued behind {them}"
        return line


NOT_NEWS: Mapping[str, bool] = MappingProxyType({"news": False})
"""Field metadata of a Status field that is not news (``Status.same_news`` skips it): a
re-read that changes only such a field re-renders nothing and notifies nobody."""


@dataclass(frozen=True)
class Status:
    """One snapshot of what the monitor knows.

    ``since``: when this state began (the time the monitor first saw it); the one field
    that is not news (``same_news``).
    ``message``: one sentence a person can act on (empty for STABLE/PROCESSING).
    ``attempt`` / ``next_retry_at``: for DISCONNECTED and ERROR, the reconnect attempt
    number and when the next one starts.
    ``source``: how the state was learnt (one of ``SOURCES``).
    ``review``: imports held up by a job waiting for review, or None.
    ``note``: what a person should know about how the state is read ("watching StatBus
    directly; ..."), "" when nothing; shown by doctor, About and the details window.
    ``progress``: how far along the work is, while PROCESSING and once it has been read
    (core/model/progress.py); None otherwise. The one source of every percentage shown.
    ``upgrade``: StatBus's software upgrade that matters now (core/model/upgrade.py): scheduled,
    running (then ``state`` is UPGRADING) or recently ended; None when none, or on a
    StatBus without ``public.upgrade``.

    ``to_json()`` is the one JSON shape of a Status: ``status --json``, ``watch --json``
    lines and what a traystatus server sends all use it.
    """

    state: State
    since: datetime = field(default_factory=utcnow, metadata=NOT_NEWS)
    problem: Problem | None = None
    message: str = ""
    attempt: int = 0
    next_retry_at: datetime | None = None
    source: str = "installed"
    review: ReviewBlock | None = None
    note: str = ""
    progress: Progress | None = None
    upgrade: Upgrade | None = None

    @property
    def is_known(self) -> bool:
        """True when the state is the database's truth (stable or processing)."""
        return self.state in (State.STABLE, State.PROCESSING)

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "since": self.since.isoformat(),
            "problem": self.problem.value if self.problem else None,
            "reason": self.message,
            "attempt": self.attempt,
            "next_retry_at": self.next_retry_at.isoformat() if self.next_retry_at else None,
            "source": self.source,
            "review": self.review.to_json() if self.review is not None else None,
            # the ids of the jobs waiting for review ([] when none): while one waits, StatBus
            # holds its import queue, and the register stays stable until a person acts
            "blocked_by_review": self.review.job_ids if self.review is not None else [],
            "note": self.note,
            "progress": self.held_progress.to_json() if self.held_progress is not None
            else None,
            "upgrade": self.upgrade.to_json() if self.upgrade is not None else None,
        }

    @property
    def held_progress(self) -> Progress | None:
        """``progress`` with the jobs a review holds said as held (``Progress.
        held_by_review``): while a job waits for review and StatBus holds its queue (the
        review block counts imports behind it), the others are neither running nor queued.
        The aggregate's query does not know the hold; this Status's review block does.
        Every face says the progress through this (app/texts.py, ``to_json``)."""
        progress = self.progress
        if progress is not None and self.review is not None and self.review.queued_behind:
            return progress.held_by_review()
        return progress

    def same_news(self, other: Status) -> bool:
        """True when ``other`` tells nothing new: every field equal but those declared
        ``NOT_NEWS`` (only ``since``). A field added to Status is news unless declared
        otherwise (tests/core/test_status_news.py makes each field's decision explicit)."""
        news = _news(type(self))
        return bool(news(self) == news(other))


_NEWS: dict[type[Status], Callable[[Status], Any]] = {}


def _news(cls: type[Status]) -> Callable[[Status], Any]:
    """The getter of ``cls``'s fields that are news (made once per class)."""
    news = _NEWS.get(cls)
    if news is None:
        names = [f.name for f in fields(cls) if f.metadata.get("news", True)]
        news = _NEWS[cls] = attrgetter(*names)
    return news


@dataclass
class Counters:
    """What a source of state did, for tests, benchmarks and ``doctor``.

    The database monitor fills them all; another source fills what applies to it
    (a relay counts the frames it received as notifications, for instance).
    """

    queries: int = 0  # every statement sent, LISTEN included
    stability_reads: int = 0
    details_reads: int = 0
    progress_reads: int = 0  # the small aggregate, only while processing
    history_reads: int = 0  # the estimate's history (at most once a minute, processing)
    endings_reads: int = 0  # which import jobs ended (core/watch/endings.py), import listeners only
    summary_reads: int = 0
    day_reads: int = 0  # the day's history (core/model/today.py), only while details are wanted
    upgrade_reads: int = 0  # public.upgrade: per connection and per upgrade_changed
    health_checks: int = 0  # stability reads made because the interval passed
    notifications: int = 0
    malformed_payloads: int = 0
    connects: int = 0  # successful connections
    connect_failures: int = 0
    reconnects: int = 0  # successful connections after the first
    stale: int = 0
    callback_errors: int = 0


def carry_since(old: Status, new: Status, *, told: bool = False) -> Status:
    """The one ``since`` rule: ``new`` with the time its state began, given ``old``.

    A new state begins at ``new.since``. While the state stays the same ``since`` does not
    move (still disconnected, maybe for another reason now: the tray's grace period and
    "disconnected for 5 min" count from it; a monitor's every read is stamped with the
    time of the read, which is not when the state began), except when the source *told*
    when a known state began (``told``: a relay's message carries its server's ``since``,
    the time that server saw STABLE or PROCESSING begin; a later one there means the state
    began again, after a flip this end never saw: the server sends a slow client only its
    newest state). Trouble (any state that is not known) is this end's own: it began when
    this end saw it, whatever a server says."""
    if old.state is not new.state:
        return new
    if told and new.is_known:
        return new
    return replace(new, since=old.since)
