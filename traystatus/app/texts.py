"""The words the tray shows: tooltip and status lines, as pure functions of a Status.

No Qt here, so the tests can check every sentence with a fixed clock. Times are shown in
the user's local time zone, as HH:MM (what a person compares with the clock on the panel).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from traystatus.core.model.details import Details
from traystatus.core.model.review import who_approves
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.words.wording import format_duration

APP_TITLE = "StatBus status"


def _utc(when: datetime) -> datetime:
    """Every source gives aware times (a relay's are checked when parsed); a naive one is
    read as UTC here rather than crash the tooltip on subtracting it from an aware one."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def local_hhmm(when: datetime) -> str:
    try:
        return _utc(when).astimezone().strftime("%H:%M")
    except (OverflowError, ValueError):  # year 1 or 9999 in a zone that leaves the range
        return "--:--"


def _elapsed(since: datetime, now: datetime) -> str:
    """'3 min', '45 s', '2 h 5 min': how long a state has lasted, minute-grained after 1 min."""
    s = max(0, int((_utc(now) - _utc(since)).total_seconds()))
    if s >= 60:
        s -= s % 60
    return format_duration(s)


def retry_text(status: Status, now: datetime) -> str:
    if status.next_retry_at is None:
        return ""
    left = (_utc(status.next_retry_at) - _utc(now)).total_seconds()
    if left <= 0.5:
        return "retrying now"
    return f"retrying in {int(left + 0.999)} s"


def progress_pct(status: Status) -> int | None:
    """The ring's number: ``Status.progress`` (the one source), only while processing."""
    progress = status.held_progress
    if status.state is not State.PROCESSING or progress is None:
        return None
    return progress.overall_pct


def one_snapshot(status: Status, details: Details | None) -> Status:
    """``status`` with its progress counting the import jobs as ``details`` lists them
    (``Progress.with_jobs_from``), so a window that shows both says one number per job."""
    if details is None or status.progress is None or status.state is not State.PROCESSING:
        return status
    return replace(status, progress=status.progress.with_jobs_from(details.import_jobs))


def estimate_line(status: Status) -> str:
    """'Stable at about 14:40 (14:25–15:05)', 'When stable: unknown', in local time; ""
    when not processing or not estimated yet (core/model/estimate.py)."""
    if status.state is not State.PROCESSING or status.progress is None:
        return ""
    found = status.progress.estimate
    if found is None:
        return ""
    try:
        line = found.text()
    except (OverflowError, ValueError):  # a time out of the local zone's range
        return ""
    return line[:1].upper() + line[1:]


def headline(status: Status, now: datetime) -> str:
    """One line: 'Stable since 14:02',
    'Processing for 3 min: 2 imports (42 % overall), derive 120 of 412 tasks'."""
    st = status.state
    if st == State.STABLE:
        return f"Stable since {local_hhmm(status.since)}"
    if st == State.PROCESSING:
        text = f"Processing for {_elapsed(status.since, now)}"
        progress = status.held_progress
        words = progress.text if progress is not None else ""
        return f"{text}: {words}" if words else text
    if st == State.UPGRADING:
        if status.upgrade is not None:
            return status.upgrade.text(now)
        return "StatBus is being upgraded"
    if st == State.CONNECTING:
        return "Connecting to the database…"
    if st == State.DISCONNECTED:
        if status.problem == Problem.STALE:
            return f"Connection stale since {local_hhmm(status.since)}"
        return f"Disconnected since {local_hhmm(status.since)}"
    if status.problem is Problem.NO_PASSWORD:
        return "Password needed"
    return "Cannot watch the database"


UPGRADE_DOWN = "Data unavailable during the upgrade; the database is not reachable now."
UPGRADE_UP = "Data unavailable or changing until the upgrade ends."


def detail_line(status: Status, now: datetime) -> str:
    """The second line for DISCONNECTED / ERROR: the reason and the next retry. While
    StatBus upgrades: what that means for the data (the database being down for the
    backup is expected, not a connection problem), and the next retry."""
    if status.state is State.UPGRADING:
        if status.problem is None:
            return UPGRADE_UP
        retry = retry_text(status, now)
        return f"{UPGRADE_DOWN} {retry.capitalize()}." if retry else UPGRADE_DOWN
    if status.state not in (State.DISCONNECTED, State.ERROR):
        return ""
    text = status.message.strip()
    retry = retry_text(status, now)
    if retry:
        if text and text[-1] not in ".!?":
            text += "."
        text = f"{text} {retry.capitalize()}." if text else f"{retry.capitalize()}."
    return text


def tooltip(status: Status, now: datetime, profile: str | None = None) -> str:
    lines = [APP_TITLE + (f" ({profile})" if profile else ""), headline(status, now)]
    extra = detail_line(status, now)
    if extra:
        lines.append(extra)
    when = estimate_line(status)
    if when:
        lines.append(when)
    if status.upgrade is not None and status.state is not State.UPGRADING:
        # "StatBus will be upgraded at 22:00: data unavailable for a while", or its end
        lines.append(status.upgrade.text(now))
    if status.review is not None and status.is_known:
        # "Waiting for review for 2 h 5 min: lu_2026; 2 imports queued behind it"
        lines.append(status.review.text_at(now))
        who = who_approves(status.review)
        if who:
            lines.append(who)
    return "\n".join(lines)


def needs_ticking(status: Status) -> bool:
    """Whether the tooltip changes with time alone (so a 1 s timer must run)."""
    if status.state == State.PROCESSING:
        return True
    if status.is_known and status.review is not None and status.review.since is not None:
        return True  # the review's waiting time grows (the text changes once a minute)
    return (status.state in (State.DISCONNECTED, State.ERROR, State.UPGRADING)
            and status.next_retry_at is not None)


def source_line(status: Status) -> str:
    """How the state is read, for the About box and the details window: "Watching StatBus
    directly; an administrator can install traystatus's SQL ..." ("" before any answer)."""
    if status.source == "builtin":
        note = status.note or (
            "watching StatBus directly; an administrator can install traystatus's SQL for "
            "fewer notifications: see docs/sql.md"
        )
        return note[:1].upper() + note[1:]
    if status.source == "relay":
        return "Reading a traystatus server."
    if status.is_known:
        return "Reading traystatus's SQL installed in the StatBus database."
    return ""
