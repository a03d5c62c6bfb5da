"""StatBus's software upgrades (``public.upgrade``) as one small value: ``Upgrade``. Pure.

StatBus's upgrade daemon keeps one row per release or commit in ``public.upgrade``
(migration 20260311174120, commit-centric since 20260328092344, with a ``state`` column
since 20260414180000 and ``rollback_completed_at`` renamed ``rolled_back_at`` since
20260415183106), and its trigger announces every change on ``worker_status`` as
``{"type":"upgrade_changed"}``. The daemon claims a scheduled row (``state =
'in_progress'``, ``started_at = now()``), stops the application and the database, backs it
up, migrates, starts everything and marks the row ``completed`` (or ``failed`` with
``error``, or ``rolled_back`` with ``rolled_back_at`` after restoring the backup).

The read (``UPGRADE_SQL``) asks for the newest few rows that were ever scheduled, each as
``to_jsonb(row)`` so every vintage of the table reads the same; ``pick()`` chooses the one
that matters now: a running one, else a scheduled one, else the last one that ended within
``RECENT`` (completed, failed, rolled back). Skipped, superseded and dismissed rows are
not news. ``Upgrade.running`` is what makes the monitor's state ``UPGRADING``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from traystatus.core.model.coerce import MAX_INT, BadValue, Check, get, integer, offset_time
from traystatus.core.words.safetext import printable

UPGRADE_TABLE_SQL = "SELECT to_regclass('public.upgrade') IS NOT NULL"
UPGRADE_SQL = """
SELECT now(), coalesce(jsonb_agg(to_jsonb(u) ORDER BY n.k DESC, u.id DESC), '[]'::jsonb)
  FROM (SELECT t.id, greatest(t.started_at, t.scheduled_at) AS k
          FROM public.upgrade AS t
         WHERE t.scheduled_at IS NOT NULL OR t.started_at IS NOT NULL
         ORDER BY 2 DESC, t.id DESC
         LIMIT 5) AS n
  JOIN public.upgrade AS u ON u.id = n.id
"""
"""The newest rows that were ever scheduled or started, and the database's clock. A
sequential scan of a table with one row per StatBus release (hundreds), only when an
``upgrade_changed`` arrives and once per connection."""

UPGRADE_CHANNEL = "worker_status"
UPGRADE_CHANGED = "upgrade_changed"
RECENT = timedelta(hours=12)
"""How long an ended upgrade stays news (the tooltip line; the notice is sent at once)."""
ERROR_CHARS = 300


class UpgradePhase(enum.Enum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


ENDED = (UpgradePhase.COMPLETED, UpgradePhase.FAILED, UpgradePhase.ROLLED_BACK)
_IGNORED_STATES = frozenset(("available", "skipped", "superseded", "dismissed"))


class UpgradeRowError(ValueError):
    """A row or a message that is not an upgrade (logged, never shown as one)."""


def is_upgrade_changed(payload: str) -> bool:
    """A ``worker_status`` payload that announces an upgrade row change (a hint only)."""
    if UPGRADE_CHANGED not in payload:  # cheap: every analytics task sends one
        return False
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("type") == UPGRADE_CHANGED


@dataclass(frozen=True)
class Upgrade:
    """One StatBus upgrade as a person needs it.

    ``id``: the row's id. ``name``: the version shown ("v2026.03.1", "sha-0123456789ab").
    ``scheduled_at`` / ``started_at`` / ``ended_at`` (completed, rolled back; for a failed
    one StatBus keeps no time: None). ``error``: why it failed (printable, capped).
    """

    phase: UpgradePhase
    id: int
    name: str = ""
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str = ""

    @property
    def running(self) -> bool:
        return self.phase is UpgradePhase.RUNNING

    @property
    def ended(self) -> bool:
        return self.phase in ENDED

    @property
    def key(self) -> tuple[int, UpgradePhase]:
        """What a notice is about: this row in this phase (told once)."""
        return (self.id, self.phase)

    # -- words ----------------------------------------------------------------------------
    def text(self, now: datetime | None = None) -> str:
        """One line for a person, times in local time ("StatBus is being upgraded since
        22:01")."""
        p = self.phase
        if p is UpgradePhase.SCHEDULED:
            if self.scheduled_at is None:
                return "StatBus will be upgraded soon: data unavailable for a while"
            return (f"StatBus will be upgraded at {clock(self.scheduled_at, now)}: "
                    "data unavailable for a while")
        if p is UpgradePhase.RUNNING:
            if self.started_at is None:
                return "StatBus is being upgraded"
            return f"StatBus is being upgraded since {clock(self.started_at, now)}"
        if p is UpgradePhase.COMPLETED:
            at = f" at {clock(self.ended_at, now)}" if self.ended_at else ""
            return f"StatBus was upgraded{at}{self._version()}"
        why = f": {self.error}" if self.error else ""
        if p is UpgradePhase.ROLLED_BACK:
            at = f" at {clock(self.ended_at, now)}" if self.ended_at else ""
            return f"The StatBus upgrade failed and was rolled back{at}{why}"
        return f"The StatBus upgrade failed{why}"

    def _version(self) -> str:
        return f" to {self.name}" if self.name else ""

    # -- JSON (status --json, the relay) --------------------------------------------------
    def to_json(self) -> dict[str, object]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t is not None else None

        return {
            "phase": self.phase.value,
            "id": self.id,
            "name": self.name,
            "scheduled_at": iso(self.scheduled_at),
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "error": self.error,
            "text": self.text(),
        }


def clock(t: datetime | None, now: datetime | None = None) -> str:
    """Local time: "22:01" today, "Mon 7 Dec 22:01" otherwise."""
    if t is None:
        return "?"
    local = t.astimezone()
    today = (now or datetime.now(local.tzinfo)).astimezone().date()
    if local.date() == today:
        return local.strftime("%H:%M")
    return f"{local.strftime('%a')} {local.day} {local.strftime('%b %H:%M')}"


# -- from the database ----------------------------------------------------------------------
_ID = integer(-MAX_INT, MAX_INT)


def _get(row: Mapping[str, object], key: str, check: Check) -> Any:
    """``row[key]`` through core/model/coerce.py's ``check`` (absent or null: None)."""
    try:
        return get(row, key, check)
    except BadValue as ex:
        raise UpgradeRowError(str(ex)) from None


def _time(row: Mapping[str, object], key: str) -> datetime | None:
    when: datetime | None = _get(row, key, offset_time)
    return when


def _name(row: Mapping[str, object]) -> str:
    for key in ("commit_tags", "tags"):
        tags = row.get(key)
        if isinstance(tags, list) and tags and isinstance(tags[-1], str):
            stable = [t for t in tags if isinstance(t, str) and "-" not in t]
            return printable(stable[0] if stable else tags[-1], 80)
    for key in ("version", "commit_version"):
        value = row.get(key)
        if isinstance(value, str) and value:
            return printable(value, 80)
    sha = row.get("commit_sha")
    return f"sha-{sha[:12]}" if isinstance(sha, str) and sha else ""


def from_row(row: Mapping[str, object]) -> Upgrade | None:
    """One ``to_jsonb(public.upgrade)`` row as an Upgrade; None when it is not news
    (available, skipped, superseded, dismissed). Both vintages: with ``state`` (it wins)
    or only the timestamps; ``rolled_back_at`` or ``rollback_completed_at``."""
    row_id = _get(row, "id", _ID)
    if row_id is None:
        raise UpgradeRowError("id: missing")
    scheduled = _time(row, "scheduled_at")
    started = _time(row, "started_at")
    completed = _time(row, "completed_at")
    rolled_back = _time(row, "rolled_back_at") or _time(row, "rollback_completed_at")
    error = row.get("error")
    error_text = printable(error, ERROR_CHARS) if isinstance(error, str) else ""
    state = row.get("state")
    if isinstance(state, str):
        if state in _IGNORED_STATES:
            return None
        phase = {
            "scheduled": UpgradePhase.SCHEDULED,
            "in_progress": UpgradePhase.RUNNING,
            "completed": UpgradePhase.COMPLETED,
            "failed": UpgradePhase.FAILED,
            "rolled_back": UpgradePhase.ROLLED_BACK,
        }.get(state)
        if phase is None:
            raise UpgradeRowError(f"state: unknown {state[:40]!r}")
    else:
        # Before the state column (migration 20260414180000): its own backfill rule.
        if any(row.get(k) is not None for k in ("dismissed_at", "skipped_at", "superseded_at")):
            return None
        if completed is not None:
            phase = UpgradePhase.COMPLETED
        elif rolled_back is not None:
            phase = UpgradePhase.ROLLED_BACK
        elif error is not None:
            phase = UpgradePhase.FAILED
        elif started is not None:
            phase = UpgradePhase.RUNNING
        elif scheduled is not None:
            phase = UpgradePhase.SCHEDULED
        else:
            return None
    ended = completed if phase is UpgradePhase.COMPLETED else (
        rolled_back if phase is UpgradePhase.ROLLED_BACK else None)
    return Upgrade(phase, row_id, _name(row), scheduled, started, ended, error_text)


def pick(rows: Sequence[object], now: datetime) -> Upgrade | None:
    """The upgrade that matters at ``now`` among rows of ``UPGRADE_SQL`` (newest first):
    running, else scheduled, else the newest that ended within ``RECENT``. A malformed
    row is skipped (``UpgradeRowError`` only when every row is malformed)."""
    upgrades: list[Upgrade] = []
    bad: UpgradeRowError | None = None
    for row in rows:
        if not isinstance(row, Mapping):
            bad = UpgradeRowError("a row that is not an object")
            continue
        try:
            up = from_row(row)
        except UpgradeRowError as ex:
            bad = ex
            continue
        if up is not None:
            upgrades.append(up)
    if bad is not None and not upgrades and rows:
        raise bad
    for phase in (UpgradePhase.RUNNING, UpgradePhase.SCHEDULED):
        for up in upgrades:
            if up.phase is phase:
                return up
    ended = [(when, up) for up in upgrades if up.ended
             and (when := up.ended_at or up.started_at or up.scheduled_at) is not None
             and now - when <= RECENT]
    return max(ended, key=lambda pair: (pair[0], pair[1].id))[1] if ended else None


# -- from a traystatus server (relaymsg validates the types first) ---------------------------
def from_json(value: Mapping[str, object]) -> Upgrade:
    """``Upgrade.to_json()`` back (the relay client; shapes checked by relaymsg)."""
    def t(key: str) -> datetime | None:
        v = value.get(key)
        return v if isinstance(v, datetime) else None

    phase = value.get("phase")
    row_id = value.get("id")
    name = value.get("name")
    error = value.get("error")
    return Upgrade(
        UpgradePhase(phase),
        row_id if isinstance(row_id, int) else 0,
        printable(name, 80) if isinstance(name, str) else "",
        t("scheduled_at"),
        t("started_at"),
        t("ended_at"),
        printable(error, ERROR_CHARS) if isinstance(error, str) else "",
    )
