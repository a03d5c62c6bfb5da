"""Issue 18 item 5: the details window says one number for one thing. Its headline and
ring come from Status.progress, its job bars from a details snapshot read at another
moment; the window draws them from one snapshot (the details' jobs)."""

from __future__ import annotations

from datetime import timedelta

from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS
from tests.app.sample_data import NOW, job
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache
from traystatus.core.model.details import Details
from traystatus.core.model.progress import Progress
from traystatus.core.model.state import State, Status


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
