"""Issue 22: when the register will be stable, where a person sees it: the tray's tooltip
and the details window (with how it was reached). Rendered to PNG."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QLabel, QToolTip

from tests.app.conftest import ARTIFACTS
from tests.app.sample_data import NOW, job
from traystatus.app import texts
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache
from traystatus.core.model.details import Details
from traystatus.core.model.estimate import Estimate
from traystatus.core.model.progress import Progress
from traystatus.core.model.state import State, Status

HOW = "derive took 35 min–42 min after imports of this size this week (3 runs)"
KNOWN = Estimate(NOW + timedelta(minutes=40), NOW + timedelta(minutes=25),
                 NOW + timedelta(minutes=65), HOW)


def _status(estimate: Estimate | None) -> Status:
    progress = Progress.from_json({"jobs": [{"id": 1, "slug": "lu_2026",
                                             "state": "processing_data", "total_rows": 20_000,
                                             "import_pct": 42.0}], "phases": []})
    return Status(State.PROCESSING, since=NOW - timedelta(minutes=3),
                  progress=replace(progress, estimate=estimate))


def _tooltip_png(qapp: QApplication, text: str, name: str) -> None:
    label = QLabel(text)
    label.setPalette(QToolTip.palette())
    label.setBackgroundRole(QPalette.ColorRole.ToolTipBase)
    label.setForegroundRole(QPalette.ColorRole.ToolTipText)
    label.setAutoFillBackground(True)
    label.setMargin(6)
    label.adjustSize()
    label.show()
    qapp.processEvents()
    ARTIFACTS.mkdir(exist_ok=True)
    assert label.grab().save(str(ARTIFACTS / name))
    label.close()


def test_tooltip_says_when_stable_with_its_range(qapp: QApplication) -> None:
    tip = texts.tooltip(_status(KNOWN), NOW)
    at, lo, hi = (texts.local_hhmm(t) for t in (NOW + timedelta(minutes=40),
                                                 NOW + timedelta(minutes=25),
                                                 NOW + timedelta(minutes=65)))
    assert f"Stable at about {at} ({lo}–{hi})" in tip.splitlines()
    _tooltip_png(qapp, tip, "tooltip-estimate.png")


def test_tooltip_says_unknown_rather_than_a_made_up_time(qapp: QApplication) -> None:
    unknown = Estimate(None, None, None, "no derive run in the history yet (StatBus keeps a week)")
    tip = texts.tooltip(_status(unknown), NOW)
    assert "When stable: unknown" in tip.splitlines()
    assert "about" not in tip
    assert "When stable" not in texts.tooltip(_status(None), NOW)
    assert "When stable" not in texts.tooltip(Status(State.STABLE, since=NOW), NOW)


def test_details_window_shows_the_estimate_and_how_it_was_reached(qapp: QApplication) -> None:
    window = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    window.set_status(_status(KNOWN))
    window.set_details(Details.from_json({
        "system_stable": False, "generated_at": NOW.isoformat(),
        "import_jobs": [job(1, "lu_2026", "processing_data", "processing", 42.0, 800.0,
                            20_000, 8_400, description="Legal units 2026")],
        "import_jobs_total": 1,
        "analytics": {"active_total": 0, "by_command": [], "tasks": []}}))
    window.resize(620, 420)
    window.show()
    qapp.processEvents()
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "details-estimate.png"))
    section = window.sections()[0]
    assert section.estimate.isVisible()
    assert section.estimate.text().startswith("Stable at about ")
    assert section.estimate_how.text() == HOW[:1].upper() + HOW[1:] + "."
    window.set_status(Status(State.STABLE, since=NOW))
    qapp.processEvents()
    assert not section.estimate.isVisible() and not section.estimate_how.isVisible()
    window.close()
