"""A Status survives the trip through a traystatus server: ``status_message()`` on the
server (serve/hub.py, what it really sends), ``parse_message()`` in the relay client (the
frame it receives). Pure: no database, no network.

The relay rebuilds a Status field by field, so a field added to Status without teaching
the relay would silently vanish on relayed clients; the first test fails then.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from traystatus.core.model.progress import Progress
from traystatus.core.model.state import Problem, ReviewBlock, State, Status, utcnow
from traystatus.core.model.upgrade import Upgrade, UpgradePhase
from traystatus.core.relay._messages import ProtocolError, parse_message, parse_status
from traystatus.serve.hub import status_message

SINCE = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
WHERE = "ws://relay.example:8765"


def _progress() -> Progress:
    return Progress.from_json(
        {
            "jobs": [
                {"id": 7, "slug": "lu_2026", "state": "processing_data", "total_rows": 20000,
                 "import_pct": 42.5, "user_id": 3},
                {"id": 8, "slug": "es_2026", "state": "upload_completed", "total_rows": 500,
                 "user_id": 4},
            ],
            "phases": [
                {"phase": "derive_units_phase", "state": "processing",
                 "step": "derive_statistical_unit", "total": 412, "completed": 120},
            ],
            "derive_queued": False,
            "me": 3,
        }
    )


def _processing() -> Status:
    """A known state with every field a known state can have away from its default."""
    return Status(
        State.PROCESSING,
        since=SINCE,
        source="relay",
        review=ReviewBlock(((11, "lu_review"),), queued_behind=2),
        note="watching StatBus directly",
        progress=_progress(),
        upgrade=_scheduled(),
    )


def _scheduled() -> Upgrade:
    return Upgrade(UpgradePhase.SCHEDULED, 12, "v2026.12.0", scheduled_at=SINCE,
                   error="")


def _trouble() -> Status:
    """The server's own trouble, with every field such a state can have."""
    return Status(
        State.DISCONNECTED,
        since=SINCE,
        problem=Problem.STALE,
        message="the server did not answer in 5 s",
        attempt=3,
        next_retry_at=SINCE.replace(minute=5),
        source="relay",
        note="watching StatBus directly",
    )


def _through_the_wire(status: Status) -> Status:
    return parse_message(json.dumps(status_message(status)), where=WHERE, now=utcnow()).status


def test_every_field_of_status_crosses_the_relay() -> None:
    sent = [_processing(), _trouble()]
    for f in dataclasses.fields(Status):
        assert any(getattr(s, f.name) != f.default for s in sent) or f.name == "source", (
            f"the test Statuses leave {f.name!r} at its default: set it, and teach the relay"
        )
    for status in sent:
        got = _through_the_wire(status)
        for f in dataclasses.fields(Status):
            if f.name in ("progress", "message"):
                continue  # compared as the faces show them, below
            assert getattr(got, f.name) == getattr(status, f.name), f.name
    got = _through_the_wire(_processing())
    # the review block counts imports behind it: the server sends the jobs as held, and
    # the client keeps what it was told (every face says the held view)
    expected = _processing().held_progress
    assert got.progress is not None and expected is not None
    assert got.progress.to_json() == expected.to_json()
    assert got.progress.text == "2 imports held by a review, derive 120 of 412 tasks"
    assert got.held_progress is not None and got.held_progress.to_json() == expected.to_json()
    # the server's trouble is said as the server's, with advice for this end
    got = _through_the_wire(_trouble())
    assert got.message == (f"The traystatus server at {WHERE} reports that it gets no "
                           "answer from its database; it retries on its own; if this lasts, "
                           "ask its administrator.")


@pytest.mark.parametrize("state", list(State))
def test_each_state_crosses_with_its_since(state: State) -> None:
    running = replace(_scheduled(), phase=UpgradePhase.RUNNING, started_at=SINCE)
    sent = Status(state, since=SINCE, source="relay",
                  upgrade=running if state is State.UPGRADING else None)
    got = _through_the_wire(sent)
    assert (got.state, got.since, got.source) == (state, SINCE, "relay")


@pytest.mark.parametrize(
    "message",
    [None, [], "text", {"state": "bogus"}, {"state": 5}, {"stable": "yes"},
     {"stable": True}, {"stable": True, "state": "unknown"}],
)
def test_a_malformed_message_is_a_protocol_error(message: object) -> None:
    with pytest.raises(ProtocolError):
        parse_status(message, where=WHERE, now=utcnow())


def test_every_field_a_server_sends_has_a_row_in_the_protocol_tables() -> None:
    """A field the server adds is ignored by clients until it gets a row in
    core/relay/_messages.py: this fails when one is sent without one (add the row and its check)."""
    from datetime import timedelta

    from traystatus.core.model.details import WorkSummary
    from traystatus.core.model.jobs import EndedJob
    from traystatus.core.relay._messages import (
        ENDED_JOB,
        JOB,
        PROGRESS,
        REVIEW,
        STATUS,
        SUMMARY,
        UPGRADE,
    )

    sent = status_message(_processing())
    assert set(sent) <= set(STATUS), set(sent) - set(STATUS)
    progress = sent["progress"]
    assert set(progress) <= set(PROGRESS), set(progress) - set(PROGRESS)
    assert set(progress["jobs"][0]) <= set(JOB), set(progress["jobs"][0]) - set(JOB)
    assert set(sent["review"]) <= set(REVIEW)
    assert set(sent["upgrade"]) <= set(UPGRADE), set(sent["upgrade"]) - set(UPGRADE)
    summary = WorkSummary(
        since=SINCE, until=SINCE + timedelta(minutes=4), import_jobs_finished=2,
        import_jobs_failed=1, import_jobs_with_errors=1,
        import_jobs=(EndedJob(7, "lu_2026", "LU 2026", "failed", error_count=3,
                               warning_count=1, error="bad row", ended_at=SINCE),),
        analytics_tasks_completed=1412, analytics_tasks_failed=0, duration_seconds=252.0,
        import_jobs_rejected=1,
    )
    wire = {**summary.to_json(), "text": summary.text}
    assert set(wire) <= set(SUMMARY), set(wire) - set(SUMMARY)
    assert set(wire["import_jobs"][0]) <= set(ENDED_JOB)
    # and it crosses whole
    from traystatus.core.relay._messages import parse_message

    got = parse_message(json.dumps({**sent, "summary": wire}), where=WHERE,
                        now=datetime(2026, 11, 29, 13, 0, tzinfo=UTC))
    assert got.summary == summary and got.summary_error == ""


def test_a_held_job_crosses_as_held() -> None:
    """A server newer than the review hold sends ``held`` per job and ``imports_held``:
    the client keeps them (a job the server says is held is not counted as importing),
    also without a review block of its own to work it out from."""
    progress = _progress()
    held = replace(progress, jobs=tuple(replace(j, held=j.id == 7) for j in progress.jobs))
    sent = Status(State.PROCESSING, since=SINCE, source="relay", progress=held)
    wire = status_message(sent)
    assert wire["progress"]["imports_held"] == 1
    got = _through_the_wire(sent)
    assert got.progress is not None
    assert [j.id for j in got.progress.held_jobs] == [7]
    assert got.progress.running_jobs == ()
    assert got.progress.to_json() == held.to_json()
