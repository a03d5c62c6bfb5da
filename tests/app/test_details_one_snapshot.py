"""Issue 18 item 5: the details window says one number for one thing. Its headline and
ring come from Status.progress, its job bars from a details snapshot read at another
moment; the window draws them from one snapshot (the details' jobs)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS
from tests.app.sample_data import NOW, job
from traystatus.app import texts
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache
from traystatus.core.model.details import Details
from traystatus.core.model.progress import Progress
from traystatus.core.model.state import ReviewBlock, State, Status


def _progress(*jobs: dict[str, object]) -> Progress:
    return Progress.from_json({"jobs": list(jobs), "phases": [], "derive_queued": False})


def _details(*jobs: dict[str, object]) -> Details:
    return Details.from_json({
        "system_stable": False, "generated_at": NOW.isoformat(), "import_jobs": list(jobs),
        "import_jobs_total": len(jobs),
        "analytics": {"active_total": 0, "by_command": [], "tasks": []},
    })


def _window(qapp: QApplication, progress: Progress, details: Details) -> DetailsWindow:
    window = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    window.set_status(Status(State.PROCESSING, since=NOW - timedelta(minutes=3),
                             progress=progress))
    window.set_details(details)
    window.resize(620, 420)
    window.show()
    qapp.processEvents()
    return window


def test_headline_ring_and_bar_say_the_same_percentage(qapp: QApplication) -> None:
    # The aggregate was read when the import stood at 5 %, the details at 15 %.
    progress = _progress({"id": 1, "slug": "es_2026", "state": "processing_data",
                          "total_rows": 8_000, "import_pct": 5.0, "user_id": 1})
    details = _details(job(1, "es_2026", "processing_data", "processing", 15.0, 800.0,
                           8_000, 1_200, description="Establishments 2026"))
    window = _window(qapp, progress, details)
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "details-one-snapshot.png"))
    row = next(r for r in window.main.rows if r.isVisible())
    assert row.bar.format() == "Importing 15 %"
    assert "1 import (15 %)" in window.main.headline.text()
    assert "15 percent" in window.main.icon.accessibleName()
    assert "5 %" not in window.main.headline.text().replace("15 %", "")
    window.close()


def test_a_job_the_details_show_ended_is_not_counted_as_running(qapp: QApplication) -> None:
    progress = _progress(
        {"id": 1, "slug": "lu", "state": "processing_data", "total_rows": 100,
         "import_pct": 90.0},
        {"id": 2, "slug": "es", "state": "analysing_data", "total_rows": 100,
         "analysis_pct": 40.0},
    )
    details = _details(
        job(1, "lu", "finished", "done", 100, None, 100, 100, active=False),
        job(2, "es", "analysing_data", "analysing", 60.0, 10.0, 100),
    )
    window = _window(qapp, progress, details)
    assert "1 import (60 %)" in window.main.headline.text()
    bars = [r.bar.format() for r in window.main.rows if r.isVisible()]
    assert "Analysing 60 %" in bars
    window.close()


def test_several_imports_say_their_figure_is_overall(qapp: QApplication) -> None:
    progress = _progress(
        {"id": 1, "slug": "lu", "state": "processing_data", "total_rows": 100,
         "import_pct": 20.0},
        {"id": 2, "slug": "es", "state": "analysing_data", "total_rows": 100,
         "analysis_pct": 60.0},
    )
    details = _details(job(1, "lu", "processing_data", "processing", 20.0, 10.0, 100, 20),
                       job(2, "es", "analysing_data", "analysing", 60.0, 10.0, 100))
    window = _window(qapp, progress, details)
    assert "2 imports (40 % overall)" in window.main.headline.text()
    window.close()


def _held(data: dict[str, object]) -> dict[str, object]:
    return {**data, "held_by_review": True}


def test_a_held_job_is_not_counted_as_importing(qapp: QApplication) -> None:
    """A job a review holds is said as held, outside the percentage; its bar stands
    still and names the review (the details' ``held_by_review``)."""
    progress = _progress(
        {"id": 1, "slug": "lu", "state": "processing_data", "total_rows": 100,
         "import_pct": 20.0},
        {"id": 2, "slug": "es", "state": "preparing_data", "total_rows": 100},
        {"id": 4, "slug": "ab", "state": "analysing_data", "total_rows": 100,
         "analysis_pct": 80.0},
    )
    details = _details(
        job(1, "lu", "processing_data", "processing", 20.0, 10.0, 100, 20),
        _held(job(2, "es", "preparing_data", "preparing", None, 12.0, 100)),
        _held(job(4, "ab", "analysing_data", "analysing", 80.0, 12.0, 100)),
        job(3, "lu_2026", "waiting_for_review", "review", 100.0, None, 100, active=False,
            needs_person=True),
    )
    window = _window(qapp, progress, details)
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "details-held-by-review.png"))
    headline = window.main.headline.text()
    assert "1 import (20 %), 2 imports held by a review" in headline, headline
    assert "20 percent" in window.main.icon.accessibleName()
    rows = {r.job_id: r for r in window.main.rows if r.isVisible()}
    assert rows[2].state.text() == "Held: waiting for the review of lu_2026"
    assert (rows[2].bar.format(), rows[2].bar.maximum()) == ("Held · Preparing", 1000)
    assert rows[4].bar.format() == "Held · Analysing 80 %"
    assert not rows[4].bar.isEnabled() and rows[1].bar.isEnabled()  # greyed: not moving
    assert "rows/s" not in rows[2].rows.text() + rows[4].rows.text()
    window.close()


def test_the_headline_says_held_from_the_review_block() -> None:
    """Without details (the tray's tooltip), the Status's review block tells the hold: the
    aggregate's jobs that are not approved are held, not importing."""
    progress = _progress(
        {"id": 2, "slug": "es", "state": "analysing_data", "total_rows": 100,
         "analysis_pct": 40.0},
        {"id": 5, "slug": "fr", "state": "approved", "total_rows": 100},
    )
    status = Status(State.PROCESSING, since=NOW - timedelta(minutes=3), progress=progress,
                    review=ReviewBlock(((3, "lu_2026"),), queued_behind=1))
    line = texts.headline(status, NOW)
    assert line.endswith(": 1 import queued, 1 import held by a review"), line
    assert texts.progress_pct(status) is None  # nothing imports: no ring number
    # Without a hold the same aggregate still counts it as importing.
    line = texts.headline(replace(status, review=None), NOW)
    assert line.endswith(": 1 import (40 %), 1 import queued"), line
