"""A Status survives the trip through a traystatus server: to_json() on the server,
status_from_json() in the relay. Pure: no database, no network.

The relay rebuilds a Status field by field, so a field added to Status without teaching
the relay would silently vanish on relayed clients; the first test fails then.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from traystatus.core.progress import Progress
from traystatus.core.relay import status_from_json
from traystatus.core.state import Problem, ReviewBlock, State, Status

SINCE = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


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
        }
    )


def _everything_set() -> Status:
    """A Status with every field away from its default."""
    return Status(
        State.PROCESSING,
        since=SINCE,
        problem=Problem.STALE,
        message="the server did not answer in 5 s",
        attempt=3,
        next_retry_at=SINCE.replace(minute=5),
        source="relay",
        review=ReviewBlock(((11, "lu_review"),), queued_behind=2),
        note="watching StatBus directly",
        progress=_progress(),
    )


def _through_the_wire(status: Status) -> Status:
    return status_from_json(json.loads(json.dumps(status.to_json())))


def test_every_field_of_status_crosses_the_relay() -> None:
    sent = _everything_set()
    for f in dataclasses.fields(Status):
        assert getattr(sent, f.name) != f.default or f.name == "source", (
            f"the test Status leaves {f.name!r} at its default: set it, and teach the relay"
        )
    got = _through_the_wire(sent)
    for f in dataclasses.fields(Status):
        if f.name == "progress":
            continue  # compared as the faces show it, below
        assert getattr(got, f.name) == getattr(sent, f.name), f.name
    assert got.progress is not None and sent.progress is not None
    assert got.progress.to_json() == sent.progress.to_json()
    assert got.progress.text == sent.progress.text


@pytest.mark.parametrize("state", list(State))
def test_each_state_crosses_with_its_since(state: State) -> None:
    sent = Status(state, since=SINCE, source="relay")
    assert _through_the_wire(sent) == sent


@pytest.mark.parametrize(
    "message",
    [None, [], "text", {"state": "bogus"}, {"state": 5}, {"stable": "yes"}],
)
def test_a_malformed_message_is_a_value_error(message: object) -> None:
    with pytest.raises(ValueError):
        status_from_json(message)
