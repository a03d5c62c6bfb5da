"""How a review that holds StatBus's import queue reads in the CLI's lines and Waybar JSON."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from tests.app.sample_data import job, realistic_json
from traystatus.cli.watching import _print_details_text, status_line, status_object
from traystatus.core.model.details import Details
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


def test_the_details_lines_say_why_an_import_stopped() -> None:
    """``status --details``: a job StatBus ended in ``finished`` after its prepare failed
    (0 rows) reads "Stopped with an error" and its cause, not "Finished with errors"."""
    data = realistic_json()
    data["import_jobs"] = [
        job(8, "lu_bad", "finished", "done", None, None, 500, 0, active=False,
            error='{"prepare_error": "value too long for type character varying(5)"}'),
        job(9, "lu_part", "finished", "done", 100, None, 500, 480, errors=20, active=False,
            error="deadlock detected\nDETAIL: x"),
    ]
    out = io.StringIO()
    _print_details_text(Details.from_json(data), out)
    lines = out.getvalue().splitlines()
    assert ("  import lu_bad: Stopped with an error (value too long for type character "
            "varying(5))") in lines, lines
    assert "  import lu_part: Finished with 20 errors (deadlock detected)" in lines, lines
