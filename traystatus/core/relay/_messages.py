"""A traystatus server's messages, validated into our types. Pure: no I/O, no clock.

Everything a server sends is a hint from the network. ``parse_message()`` decodes one
text frame, checks each field against a table (its type, range and length), then the
fields against each other (``stable`` must agree with ``state``; a ``problem`` only
with DISCONNECTED or ERROR, a ``reason`` never with STABLE or PROCESSING;
``blocked_by_review`` must name the jobs of ``review``; times carry a UTC offset and are
plausible), makes every text printable
(core/words/safetext.py) and returns a Status. Anything else raises ``ProtocolError``, one line
saying what is wrong: the relay shows that as a grey state for that message and carries
on, so a bad message costs one message, never the source.

The tables below are the protocol. A field a server adds is ignored until it gets a row
here (a newer server still works with an older client); a field in a table is checked
whenever it is present, and ``REQUIRED`` ones must be.

A server's own trouble (its database lost, its login refused) is relayed with advice for
the person at this end: the server's administrator fixes it, not them. The server's own
words are advice for its operator and are not repeated (``doctor`` shows them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from traystatus.core.model.coerce import (
    OPTIONAL,
    REQUIRED,
    BadValue,
    Check,
    Table,
    array,
    boolean,
    integer,
    nullable,
    number,
    obj,
    percentage,
    show,
    text,
    timestamp,
    word,
)
from traystatus.core.model.details import DetailsError, WorkSummary
from traystatus.core.model.estimate import Estimate
from traystatus.core.model.jobs import ENDING_KEYS, SUMMARY_KEYS, EndedJob
from traystatus.core.model.progress import PHASE_NAMES, Progress
from traystatus.core.model.state import SOURCES, Problem, ReviewBlock, State, Status
from traystatus.core.model.upgrade import ERROR_CHARS, UpgradePhase
from traystatus.core.model.upgrade import from_json as upgrade_from_json
from traystatus.core.words.safetext import printable

MAX_ATTEMPT = 2**31 - 1
MAX_ESTIMATE_SECONDS = 30 * 86400.0  # estimate.MAX_SECONDS: longer is no estimate
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
SKEW = timedelta(days=1)
"""How far ahead of this computer's clock a server's time may be (clocks drift)."""


class ProtocolError(BadValue):
    """The message cannot be used; ``str()`` says why in one printable line."""


def _checked(check: Check, value: Any, path: str) -> Any:
    """``check(value, path)``, its BadValue as the ProtocolError it is here."""
    try:
        return check(value, path)
    except ProtocolError:
        raise
    except BadValue as ex:
        raise ProtocolError(str(ex)) from None


# -- the protocol ---------------------------------------------------------------------------
JOB_FIELDS: Table = {
    "id": (REQUIRED, integer()),
    "slug": (OPTIONAL, nullable(text(200))),
    "description": (OPTIONAL, nullable(text(500))),
    "state": (OPTIONAL, nullable(text(100))),
    "total_rows": (OPTIONAL, nullable(integer())),
    "imported_rows": (OPTIONAL, nullable(integer())),
    "error_count": (OPTIONAL, nullable(integer())),
    "warning_count": (OPTIONAL, nullable(integer())),
    "error": (OPTIONAL, nullable(text(500))),
    "user_id": (OPTIONAL, nullable(integer())),
    "ended_at": (OPTIONAL, nullable(timestamp)),
    "mine": (OPTIONAL, boolean),
}
"""An import job's fields (core/model/jobs.py), each checked one way wherever a message
carries it; the tables below pick theirs."""


def _pick(*names: str) -> dict[str, tuple[bool, Check]]:
    return {name: JOB_FIELDS[name] for name in names}


REVIEW: Table = {
    "waiting": (REQUIRED, array(obj(_pick("id", "slug")))),
    "queued_behind": (OPTIONAL, integer()),
    # when the review began (StatBus's stamp); "may_approve" is the server's login's and
    # means nothing for the client, so it is checked and then not used
    "since": (OPTIONAL, nullable(timestamp)),
    "may_approve": (OPTIONAL, nullable(boolean)),
}

JOB: Table = {
    **_pick("id", "slug", "state"),
    "pct": (OPTIONAL, nullable(percentage())),
    **_pick("total_rows", "user_id", "mine"),
    "held": (OPTIONAL, boolean),  # held back by a review (newer servers)
}

DERIVE: Table = {
    "phase": (REQUIRED, text(100)),
    "step": (OPTIONAL, nullable(text(200))),
    "completed": (OPTIONAL, integer()),
    "total": (OPTIONAL, integer()),
}

ESTIMATE: Table = {
    "known": (OPTIONAL, boolean),
    "at": (OPTIONAL, nullable(timestamp)),
    "low": (OPTIONAL, nullable(timestamp)),
    "high": (OPTIONAL, nullable(timestamp)),
    "how": (OPTIONAL, text(300)),
    "after_review": (OPTIONAL, nullable(array(number(0, MAX_ESTIMATE_SECONDS), 2))),
    "text": (OPTIONAL, text(300)),
}
"""When the register will be stable (core/model/estimate.py ``Estimate.to_json``); checked
against each other in ``_estimate`` (low <= at <= high, all three or none, none in the
past beyond the skew, none years ahead)."""

PROGRESS: Table = {
    "jobs": (OPTIONAL, array(obj(JOB))),
    "derive": (OPTIONAL, nullable(obj(DERIVE))),
    "text": (OPTIONAL, text()),
    "me": (OPTIONAL, nullable(integer())),
    "overall_pct": (OPTIONAL, nullable(percentage())),
    "imports_pct": (OPTIONAL, nullable(percentage())),
    "imports_running": (OPTIONAL, integer()),
    "imports_queued": (OPTIONAL, integer()),
    "imports_held": (OPTIONAL, integer()),
    "estimate": (OPTIONAL, nullable(obj(ESTIMATE))),
}

ENDED_JOB: Table = _pick(*SUMMARY_KEYS)
"""An ended job in a work summary (jobs.SUMMARY_KEYS)."""

SUMMARY: Table = {
    "since": (OPTIONAL, nullable(timestamp)),
    "until": (OPTIONAL, nullable(timestamp)),
    "import_jobs_finished": (OPTIONAL, integer()),
    "import_jobs_failed": (OPTIONAL, integer()),
    "import_jobs_with_errors": (OPTIONAL, integer()),
    "import_jobs_rejected": (OPTIONAL, integer()),
    "import_jobs": (OPTIONAL, array(obj(ENDED_JOB))),
    "analytics_tasks_completed": (OPTIONAL, integer()),
    "analytics_tasks_failed": (OPTIONAL, integer()),
    "duration_seconds": (OPTIONAL, nullable(number(0, 1e9))),
    "text": (OPTIONAL, text()),
}

UPGRADE: Table = {
    "phase": (REQUIRED, word([p.value for p in UpgradePhase])),
    "id": (REQUIRED, integer()),
    "name": (OPTIONAL, text(80)),
    "scheduled_at": (OPTIONAL, nullable(timestamp)),
    "started_at": (OPTIONAL, nullable(timestamp)),
    "ended_at": (OPTIONAL, nullable(timestamp)),
    "error": (OPTIONAL, text(ERROR_CHARS)),
    "text": (OPTIONAL, text()),
}

STATUS: Table = {
    "stable": (REQUIRED, nullable(boolean)),
    "state": (REQUIRED, word([s.value for s in State])),
    "since": (OPTIONAL, timestamp),
    "problem": (OPTIONAL, nullable(word([p.value for p in Problem]))),
    "reason": (OPTIONAL, text()),
    "attempt": (OPTIONAL, integer(0, MAX_ATTEMPT)),
    "next_retry_at": (OPTIONAL, nullable(timestamp)),
    "source": (OPTIONAL, word(SOURCES)),
    "review": (OPTIONAL, nullable(obj(REVIEW))),
    "blocked_by_review": (OPTIONAL, array(integer())),
    "note": (OPTIONAL, text()),
    "progress": (OPTIONAL, nullable(obj(PROGRESS))),
    "upgrade": (OPTIONAL, nullable(obj(UPGRADE))),
}
"""What ``/api/system-stability`` sends (serve/hub.py ``status_message``); ``summary`` is
checked on its own (``SUMMARY``): a bad summary costs the summary, not the state."""

IMPORT_ENDED: Table = _pick(*(k for k in ENDING_KEYS if k != "mine"))
"""``import_ended``: one of the credential's user's import jobs ended (serve/hub.py sends
it to that user's sockets only, so it is ``mine``); checked on its own, like a summary."""

STABLE_OF = {State.STABLE: True, State.PROCESSING: False}
UPGRADING_OVER = (State.STABLE, State.PROCESSING, State.DISCONNECTED)
"""States a running upgrade replaces (core/watch/monitor.py): never sent with one."""


@dataclass(frozen=True)
class Message:
    """One state message: the Status, and the work summary it carries (if any) or why
    that summary cannot be used."""

    status: Status
    summary: WorkSummary | None = None
    summary_error: str = ""
    import_ended: EndedJob | None = None
    import_error: str = ""
    since_told: bool = False  # the message carried the server's ``since``


def decode(raw: str) -> Any:
    """JSON text as data; ProtocolError for what is not JSON, NaN/Infinity, numbers that
    do not fit a float, and nesting deeper than Python's parser goes."""
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ProtocolError("nested too deeply") from None
    except ValueError as ex:  # JSONDecodeError, and int() of thousands of digits
        raise ProtocolError(f"not JSON ({printable(str(ex), 120)})") from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} does not fit a number")
    return value


def parse_message(raw: str, *, where: str, now: datetime) -> Message:
    """A text frame of ``/api/system-stability`` as a Message; ProtocolError if unusable.

    ``where``: the server, for the words of relayed problems; ``now``: this computer's
    clock, against which the server's times must be plausible."""
    value = decode(raw)
    status = parse_status(value, where=where, now=now)
    if not isinstance(value, dict):
        return Message(status)
    told = value.get("since") is not None
    summary, summary_error = None, ""
    if value.get("summary") is not None:
        try:
            summary = _summary(_checked(obj(SUMMARY), value["summary"], "summary"))
        except ProtocolError as ex:
            summary_error = str(ex)
    ended, ended_error = None, ""
    if value.get("import_ended") is not None:
        try:
            ended = _import_end(_checked(obj(IMPORT_ENDED), value["import_ended"],
                                            "import_ended"))
        except ProtocolError as ex:
            ended_error = str(ex)
    return Message(status, summary, summary_error, ended, ended_error, told)


def _import_end(value: dict[str, Any]) -> EndedJob:
    """The checked fields as an EndedJob; ``mine``: serve sends it to its owner only."""
    try:
        return replace(EndedJob.from_json(value), mine=True)
    except BadValue as ex:  # checked above; EndedJob's own rules, should they grow
        raise ProtocolError(f"import_ended: {printable(str(ex), 120)}") from None


def parse_status(value: Any, *, where: str, now: datetime) -> Status:
    """A decoded state message as a Status (``source="relay"``); ProtocolError if not."""
    f = _checked(obj(STATUS), value, "")
    state = State(f["state"])
    if f["stable"] is not STABLE_OF.get(state):
        raise ProtocolError(
            f"stable: {show(f['stable'])} contradicts state {state.value!r} (stable is "
            "true only when stable, false only when processing, null otherwise)")
    problem = Problem(f["problem"]) if f.get("problem") else None
    upgrade = upgrade_from_json(f["upgrade"]) if f.get("upgrade") is not None else None
    running = upgrade is not None and upgrade.running
    if (state is State.UPGRADING and not running) or (running and state in UPGRADING_OVER):
        raise ProtocolError(
            f"state {state.value!r} contradicts upgrade "
            f"{upgrade.phase.value if upgrade is not None else None!r} (upgrading exactly "
            "while an upgrade runs)")
    # a server that lost its database during an upgrade: UPGRADING, with why
    has_trouble = state in (State.DISCONNECTED, State.ERROR) or (
        state is State.UPGRADING and problem is not None)
    if problem is not None and not has_trouble:
        raise ProtocolError(f"problem {problem.value!r} contradicts state {state.value!r}")
    reason = f.get("reason", "")
    if reason and state in STABLE_OF:  # a known state has no reason to give
        raise ProtocolError(f"a reason ({printable(reason, 60)!r}) contradicts state "
                            f"{state.value!r}")
    review = _review(f.get("review"), now)
    blocked = f.get("blocked_by_review")
    if blocked is not None and blocked != (review.job_ids if review is not None else []):
        raise ProtocolError("blocked_by_review does not name the jobs of review")
    since = f.get("since")
    next_retry_at = f.get("next_retry_at")
    for name, when in (("since", since), ("next_retry_at", next_retry_at)):
        if when is not None and not EARLIEST <= when <= now + SKEW:
            raise ProtocolError(
                f"{name}: {when.isoformat()} is not plausible (this computer's clock says "
                f"{now.astimezone(UTC).isoformat(timespec='seconds')})")
    progress = f.get("progress")
    return Status(
        state,
        since=since or now,
        problem=problem,
        message=relayed_reason(where, state, problem) if has_trouble else "",
        attempt=f.get("attempt", 0),
        next_retry_at=next_retry_at,
        source="relay",
        review=review,
        note=f.get("note", ""),
        progress=_progress(progress, now) if progress is not None
        and state is State.PROCESSING else None,
        upgrade=upgrade,
    )


# -- words for a server's own trouble -------------------------------------------------------
SERVER_TROUBLE: Mapping[Problem, str] = {
    Problem.UNREACHABLE: "cannot reach its database",
    Problem.CONNECTION_LOST: "lost its connection to its database",
    Problem.STALE: "gets no answer from its database",
    Problem.AUTH_FAILED: "was refused by its database (its login)",
    Problem.TLS: "cannot set up TLS with its database",
    Problem.SQL_MISSING: "finds traystatus's SQL missing in its database",
    Problem.SQL_OUTDATED: "finds traystatus's SQL in its database outdated",
    Problem.SQL_NEWER: "finds traystatus's SQL in its database newer than it knows",
    Problem.PERMISSION: "may not read the state from its database",
    Problem.NO_PASSWORD: "has no password for its database",
    Problem.CONFIG: "has an unusable database setting",
    Problem.INTERNAL: "hit an internal error",
    Problem.PROTOCOL: "cannot read its own source of state",
}


def relayed_reason(where: str, state: State, problem: Problem | None) -> str:
    """What a relay user reads for the server's trouble: whose problem it is and who can
    fix it (the server's administrator). The server's own reason is advice for its
    operator ("fix the password in the profile"), wrong at this end: it is not repeated
    (``doctor`` shows it, and the server's log has it)."""
    trouble = SERVER_TROUBLE.get(problem, "") if problem is not None else ""
    trouble = trouble or "cannot tell the state of its database"
    if state in (State.DISCONNECTED, State.UPGRADING):
        advice = "it retries on its own; if this lasts, ask its administrator"
    else:
        advice = "ask its administrator (nothing to change on this computer)"
    return f"The traystatus server at {where} reports that it {trouble}; {advice}."


# -- building our types ---------------------------------------------------------------------
def _review(value: dict[str, Any] | None, now: datetime) -> ReviewBlock | None:
    if value is None:
        return None
    waiting = tuple((item["id"], item.get("slug") or "") for item in value["waiting"])
    since = value.get("since")
    if since is not None and since > now:
        since = None  # a review that starts in the future is no waiting time: unknown
    return ReviewBlock(waiting, value.get("queued_behind", 0), since=since)


def _estimate(value: dict[str, Any] | None, now: datetime) -> Estimate | None:
    """The checked fields as an Estimate: all three times or none, in order, plausible."""
    if value is None:
        return None
    times = [value.get(k) for k in ("at", "low", "high")]
    after = value.get("after_review")
    after_review = (min(after), max(after)) if after and len(after) == 2 else None
    how = value.get("how", "")
    if all(t is None for t in times):
        return Estimate(None, None, None, how, after_review)
    if any(t is None for t in times):
        raise ProtocolError("progress.estimate: at, low and high come together or not at all")
    at, low, high = (t for t in times if isinstance(t, datetime))
    if not low <= at <= high:
        raise ProtocolError("progress.estimate: low <= at <= high does not hold")
    if high > now + SKEW + timedelta(seconds=MAX_ESTIMATE_SECONDS) or low < now - SKEW:
        raise ProtocolError("progress.estimate: the times are not plausible (this computer's "
                            f"clock says {now.astimezone(UTC).isoformat(timespec='seconds')})")
    return Estimate(at, low, high, how, after_review)


def _progress(value: dict[str, Any], now: datetime) -> Progress:
    """``Progress.to_json()`` (what the server sends) back into a Progress: the jobs with
    their (rounded) percentages and the running derive phase. Descriptions are not sent;
    titles fall back to the slug."""
    jobs = []
    for j in value.get("jobs", []):
        item = {k: j.get(k) for k in ("id", "slug", "state", "total_rows", "user_id")}
        key = {"analysing_data": "analysis_pct", "processing_data": "import_pct"}.get(
            j.get("state") or "")
        if key:
            item[key] = j.get("pct")
        jobs.append(item)
    phases = []
    derive = value.get("derive")
    if derive is not None:
        commands = {name: command for command, name in PHASE_NAMES.items()}
        phases.append({
            "phase": commands.get(derive["phase"], derive["phase"]),
            "state": "processing",
            "step": derive.get("step"),
            "total": derive.get("total"),
            "completed": derive.get("completed"),
        })
    queued = "derive queued" in value.get("text", "")
    estimate = _estimate(value.get("estimate"), now)
    try:
        progress = Progress.from_json({"jobs": jobs, "phases": phases, "derive_queued": queued,
                                       "me": value.get("me")})
        held = {j.get("id") for j in value.get("jobs", []) if j.get("held") is True}
        jobs_held = tuple(replace(j, held=True) if j.id in held else j for j in progress.jobs)
        return replace(progress, jobs=jobs_held, estimate=estimate)
    except DetailsError as ex:  # checked above; Progress's own rules, should they grow
        raise ProtocolError(f"progress: {printable(str(ex), 120)}") from None


def _summary(value: dict[str, Any]) -> WorkSummary:
    duration = value.get("duration_seconds")
    try:
        return WorkSummary.from_json(value, duration)
    except DetailsError as ex:
        raise ProtocolError(f"summary: {printable(str(ex), 120)}") from None
