"""Issue 22 through a relay: the estimate a server sends in ``progress.estimate`` is checked
by relaymsg's tables (ESTIMATE) and crosses whole; a bad one costs the message (one line),
never a negative or reversed range on this side."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.core.test_relaymsg import JSON, NOW, VALID_PROGRESS, msg, parse, refused
from traystatus.app import texts
from traystatus.core.model.estimate import Estimate
from traystatus.core.model.state import State, Status
from traystatus.core.relay._messages import ESTIMATE, ProtocolError

AT, LOW, HIGH = (NOW + timedelta(minutes=m) for m in (40, 25, 65))
GOOD = Estimate(AT, LOW, HIGH, "derive took 5 min–6 min after imports of this size this week "
                "(3 runs)", (600.0, 900.0))


def processing(estimate: Any) -> dict[str, Any]:
    return msg(state="processing", stable=False,
               progress={**VALID_PROGRESS, "estimate": estimate})


def test_an_estimate_crosses_the_relay_whole() -> None:
    got = parse(processing(GOOD.to_json())).status
    assert got.progress is not None and got.progress.estimate == GOOD
    # and what a server makes of a Status is what it sends
    status = Status(State.PROCESSING, since=NOW, progress=got.progress)
    again = parse({**status.to_json(), "stable": False}).status
    assert again.progress is not None and again.progress.estimate == GOOD
    assert "Stable at about" in texts.tooltip(again, NOW)


def test_unknown_crosses_as_unknown() -> None:
    unknown = Estimate(None, None, None, "no derive run in the history yet")
    got = parse(processing(unknown.to_json())).status
    assert got.progress is not None and got.progress.estimate == unknown


@pytest.mark.parametrize("bad, words", [
    ({"at": LOW.isoformat(), "low": AT.isoformat(), "high": HIGH.isoformat()},
     "low <= at <= high"),
    ({"at": AT.isoformat(), "low": None, "high": HIGH.isoformat()}, "together"),
    ({"at": "2026-12-06T04:40:00", "low": None, "high": None}, "no UTC offset"),
    ({"at": (NOW + timedelta(days=400)).isoformat(),
      "low": (NOW + timedelta(days=400)).isoformat(),
      "high": (NOW + timedelta(days=400)).isoformat()}, "not plausible"),
    ({"after_review": [-5, 10]}, "out of range"),
    ({"after_review": [1, 2, 3]}, "more than 2"),
    ({"how": 5}, "expected text"),
])
def test_a_bad_estimate_costs_the_message(bad: dict[str, Any], words: str) -> None:
    why = refused(processing({**GOOD.to_json(), **bad}))
    assert words in why and why.startswith("progress.estimate")


@pytest.mark.parametrize("field", sorted(ESTIMATE))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON)
def test_fuzz_every_estimate_field(field: str, value: Any) -> None:
    try:
        got = parse(processing({**GOOD.to_json(), field: value})).status
    except ProtocolError as ex:
        assert str(ex) and len(str(ex)) < 600
        return
    assert got.progress is not None
    e = got.progress.estimate
    assert e is not None
    if e.known:
        assert e.low is not None and e.at is not None and e.high is not None
        assert e.low <= e.at <= e.high
    if e.after_review is not None:
        assert 0 <= e.after_review[0] <= e.after_review[1]
    texts.tooltip(got, NOW)
