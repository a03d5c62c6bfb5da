"""How the state is read shows where a person looks: the details window and the About box
say when StatBus is watched directly (no traystatus SQL installed), and why."""

from __future__ import annotations

from datetime import timedelta

from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS
from tests.app.sample_data import NOW, realistic
from traystatus.app import texts
from traystatus.app.details import DetailsWindow
from traystatus.app.icons import IconCache
from traystatus.core.model.state import State, Status
from traystatus.core.watch.builtin import BUILTIN_NOTE

BUILTIN = Status(State.PROCESSING, since=NOW - timedelta(minutes=3), source="builtin",
                 note=BUILTIN_NOTE)


def test_source_line_for_each_source() -> None:
    line = texts.source_line(BUILTIN)
    assert line.startswith("Watching StatBus directly; an administrator can install")
    assert "docs/sql.md" in line
    outdated = Status(State.STABLE, source="builtin",
                      note="The traystatus SQL in db is version 1; this traystatus expects "
                      "version 2. Ask a StatBus administrator to run `traystatus install-sql` "
                      f"again. Meanwhile traystatus reads StatBus directly. {BUILTIN_NOTE}")
    assert "version 1" in texts.source_line(outdated)
    assert texts.source_line(Status(State.STABLE)).startswith("Reading traystatus's SQL")
    assert texts.source_line(Status(State.CONNECTING)) == ""
    assert texts.source_line(Status(State.STABLE, source="relay")).startswith("Reading a")


def test_details_window_says_statbus_is_watched_directly(qapp: QApplication) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    details = DetailsWindow(None, IconCache(), clock=lambda: NOW)
    details.set_status(BUILTIN)
    details.set_details(realistic())
    details.resize(640, 600)
    details.show()
    qapp.processEvents()
    assert details.main.source_note.isVisible()
    assert details.main.source_note.text().startswith("Watching StatBus directly")
    assert details.grab().save(str(ARTIFACTS / "details-builtin.png"))
    # Installed SQL: nothing to say.
    details.set_status(Status(State.PROCESSING, since=NOW, source="installed"))
    qapp.processEvents()
    assert not details.main.source_note.isVisible()
    details.close()
