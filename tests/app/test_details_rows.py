"""The details window renders what joblabel.job_label says, in the palette's tones, on
light and dark desktops; its sections are reached explicitly (``main``, ``section(name)``).
PNGs in test-artifacts/ (details-dark.png, details-light.png: looked at)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QLabel

from tests.app.conftest import ARTIFACTS
from tests.app.sample_data import NOW, job, realistic_json, realistic_progress
from traystatus.app import palette
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache
from traystatus.app.joblabel import job_label
from traystatus.app.palette import Tone
from traystatus.core.model.details import Details, ImportJob
from traystatus.core.model.state import State, Status

PROCESSING = Status(State.PROCESSING, since=NOW - timedelta(minutes=3),
                    progress=realistic_progress())


def _dark() -> QPalette:
    p = QPalette()
    for role, value in [
        (QPalette.ColorRole.Window, "#2b2b2b"), (QPalette.ColorRole.WindowText, "#e6e6e6"),
        (QPalette.ColorRole.Base, "#1e1e1e"), (QPalette.ColorRole.Text, "#e6e6e6"),
        (QPalette.ColorRole.Button, "#353535"), (QPalette.ColorRole.ButtonText, "#e6e6e6"),
    ]:
        p.setColor(role, QColor(value))
    return p


def _ink(label: QLabel) -> set[str]:
    """The colours of a label's fully drawn text pixels (its background left out)."""
    img = label.grab().toImage()
    background = img.pixelColor(0, 0).name()
    seen: dict[str, int] = {}
    for y in range(img.height()):
        for x in range(img.width()):
            name = img.pixelColor(x, y).name()
            if name != background:
                seen[name] = seen.get(name, 0) + 1
    # Anti-aliased edges blend with the background; the core of the glyphs is the ink.
    return {name for name, n in seen.items() if n >= 8}


def _window(qapp: QApplication, details: Details, dark: bool) -> DetailsWindow:
    w = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    if dark:
        w.setPalette(_dark())  # the desktop's palette, for this window only
    w.set_status(PROCESSING)
    w.set_details(details)
    w.resize(680, 900)
    w.show()
    qapp.processEvents()
    return w


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_job_rows_draw_their_tone_from_the_palette(qapp: QApplication, dark: bool) -> None:
    """A failed job's state and a slug are drawn in the palette's colours for the window's
    background: the dark table on a dark desktop (before, the light table's #c62828 and
    #666666 were drawn on dark grey too, the slug barely readable)."""
    data = realistic_json()
    w = _window(qapp, Details.from_json(data), dark)
    rows = {r.job_id: r for r in w.main.rows if r.isVisible()}
    failed = rows[6]
    assert failed.state.text().startswith("Failed at ")
    assert palette.color(Tone.PROBLEM, dark) in _ink(failed.state)
    assert palette.color(Tone.MUTED, dark) in _ink(failed.slug)
    finished = rows[5]
    assert palette.color(Tone.STABLE, dark) in _ink(finished.state)
    ARTIFACTS.mkdir(exist_ok=True)
    assert w.grab().save(str(ARTIFACTS / f"details-{'dark' if dark else 'light'}.png"))
    w.close()


def test_rows_say_what_job_label_says(qapp: QApplication) -> None:
    data = realistic_json()
    details = Details.from_json(data)
    w = _window(qapp, details, dark=False)
    for row, j in zip(w.main.rows, details.import_jobs, strict=False):
        label = job_label(j, NOW)
        assert row.state.text() == label.state
        assert row.bar.isVisibleTo(row) == (label.bar is not None)
        if label.bar is not None:
            assert row.bar.format() == label.bar
        assert row.rows.text() == label.rows and row.problems.text() == label.problems
    w.close()


def test_a_blank_error_or_an_endless_eta_renders(qapp: QApplication) -> None:
    """An error column of only blanks raised IndexError in the render; a rate so slow the
    ETA falls past the calendar raised OverflowError: the window stopped updating."""
    data = realistic_json()
    blank = job(20, "blank_error", "failed", "failed", active=False, error="  \n ")
    slow = job(21, "slow", "processing_data", "processing", 1.0, None, 10**15)
    slow["rows_per_sec"] = 1e-9
    data["import_jobs"] = [blank, slow]
    data["import_jobs_total"] = 2
    w = _window(qapp, Details.from_json(data), dark=False)
    shown = [r for r in w.main.rows if r.isVisible()]
    assert [r.state.text() for r in shown] == ["Failed", "Importing data"]
    assert shown[0].problems.isHidden()
    assert shown[1].rows.text().endswith("ETA unknown")
    assert ImportJob.from_json(slow).eta_seconds is not None
    w.close()


def test_sections_are_reached_explicitly(qapp: QApplication) -> None:
    """No attribute forwarding to the main section: the window's own API, or a section."""
    w = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    w.set_status(PROCESSING)
    assert w.section(None) is w.main and w.sections() == [w.main]
    assert w.main.headline.text().startswith("Processing for 3 min")
    with pytest.raises(AttributeError):
        _ = w.headline  # type: ignore[attr-defined]  # on purpose: no forwarding
    w.close()
