"""How a review that holds StatBus's import queue reads in the CLI's lines and Waybar JSON."""

from __future__ import annotations

from datetime import UTC, datetime

from traystatus.cli.watching import status_line, status_object
from traystatus.core.model.state import ReviewBlock, State, Status

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BLOCK = ReviewBlock(waiting=((7, "lu_2026"),), queued_behind=2)


def test_status_line_says_the_review() -> None:
    assert status_line(Status(State.STABLE, since=T)) == "stable"
    assert status_line(Status(State.STABLE, since=T, review=BLOCK)) == (
        "stable: Waiting for review: lu_2026; 2 imports queued behind it")
    # an hourglass that is true (analytics running) still says who the queue waits for
    assert status_line(Status(State.PROCESSING, since=T, review=BLOCK)).startswith(
        "processing: Waiting for review: lu_2026")


def test_waybar_object_has_its_own_class_and_tooltip() -> None:
    out = status_object(Status(State.STABLE, since=T, review=BLOCK))
    assert out["class"] == "review" and out["alt"] == "review" and out["text"] == "stable"
    assert out["tooltip"].endswith("\nWaiting for review: lu_2026; 2 imports queued behind it")
    assert out["blocked_by_review"] == [7]
    plain = status_object(Status(State.STABLE, since=T))
    assert plain["class"] == "stable" and plain["blocked_by_review"] == []
