"""The ledger of import endings (core/watch/endings.py), as plain data: only final states end an
import, each ending is told once, nothing from before the baseline, and its file is
written atomically with one owner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from traystatus.core.watch.endings import (
    GAP_TTL,
    NEW_LIMIT,
    EndingsLedger,
    LedgerFile,
    ledger_key,
)


def row(job_id: int, state: str, imported: int | None = 0, user: int | None = 7) -> tuple[Any, ...]:
    return (job_id, f"job_{job_id}", f"Job {job_id}", state, 8000, imported, 0, 24, None, user)


def test_baseline_tells_nothing_from_before() -> None:
    ledger = EndingsLedger()
    assert not ledger.started
    ledger.baseline((12, [10, 12]))
    assert (ledger.after, ledger.open) == (12, {10, 12})
    assert ledger.params() == {"ids": [10, 12], "after": 12, "limit": NEW_LIMIT}


def test_review_is_not_an_ending_and_the_real_end_is_told_once() -> None:
    ledger = EndingsLedger()
    ledger.baseline((5, [5]))
    assert ledger.apply([row(5, "waiting_for_review")], me=7, now=0) == ()
    assert ledger.open == {5}
    assert ledger.apply([row(5, "approved")], me=7, now=1) == ()
    assert ledger.apply([row(5, "processing_data", 4000)], me=7, now=2) == ()
    [end] = ledger.apply([row(5, "finished", 8000)], me=7, now=3)
    assert (end.id, end.state, end.mine, end.text) == (5, "finished", True,
                                                       "8,000 rows imported, 24 warnings")
    assert ledger.open == set()
    assert ledger.apply([], me=7, now=4) == ()  # told once


def test_rejected_and_failed_end_an_import() -> None:
    ledger = EndingsLedger()
    ledger.baseline((2, [1, 2]))
    ends = ledger.apply([row(1, "rejected"), row(2, "failed")], me=None, now=0)
    assert [(e.id, e.state, e.mine) for e in ends] == [(1, "rejected", False),
                                                       (2, "failed", False)]


def test_a_job_that_began_and_ended_between_two_reads_is_told() -> None:
    ledger = EndingsLedger()
    ledger.baseline((3, []))
    ends = ledger.apply([row(4, "finished", 10), row(5, "analysing_data")], me=7, now=0)
    assert [e.id for e in ends] == [4]
    assert (ledger.after, ledger.open) == (5, {5})


def test_an_id_the_sequence_skipped_is_looked_for_until_its_deadline() -> None:
    ledger = EndingsLedger()
    ledger.baseline((3, []))
    ledger.apply([row(6, "analysing_data")], me=7, now=100)  # 4 and 5 not committed yet
    assert set(ledger.gaps) == {4, 5}
    assert ledger.params()["ids"] == [4, 5, 6]
    # 4 commits late, already finished; 5 was rolled back.
    [end] = ledger.apply([row(4, "finished"), row(6, "analysing_data")], me=7, now=101)
    assert end.id == 4 and set(ledger.gaps) == {5}
    ledger.apply([row(6, "analysing_data")], me=7, now=100 + GAP_TTL + 1)
    assert ledger.gaps == {} and ledger.open == {6}


def test_a_deleted_job_is_forgotten_silently_and_a_full_page_reads_again() -> None:
    ledger = EndingsLedger()
    ledger.baseline((1, [1]))
    rows = [row(i, "waiting_for_upload") for i in range(2, 2 + NEW_LIMIT)]
    assert ledger.apply(rows, me=None, now=0) == ()
    assert 1 not in ledger.open and ledger.more
    assert ledger.apply([], me=None, now=0) == () and not ledger.more


def test_the_file_round_trips_atomically_with_one_owner(tmp_path: Path) -> None:
    key = ledger_key("db.example.org", "5432", "statbus", "ana@example.org")
    owner = LedgerFile.claim(tmp_path, key, "ana@example.org@db.example.org:5432/statbus")
    assert owner is not None
    assert LedgerFile.claim(tmp_path, key, "again") is None  # one owner at a time
    ledger = owner.load()
    assert not ledger.started
    ledger.baseline((9, [8]))
    ledger.apply([row(8, "analysing_data"), row(11, "preparing_data")], me=None, now=50)
    owner.save(ledger)
    saved = json.loads(owner.path.read_text())
    assert saved["after"] == 11 and saved["open"] == [8, 11] and set(saved["gaps"]) == {"10"}
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    owner.release()
    again = LedgerFile.claim(tmp_path, key, "x")
    assert again is not None
    back = again.load()
    assert (back.after, back.open, back.gaps) == (11, {8, 11}, {10: 50 + GAP_TTL})
    again.release()


def test_a_broken_file_starts_from_a_baseline(tmp_path: Path) -> None:
    owner = LedgerFile.claim(tmp_path, "k", "t")
    assert owner is not None
    for text in ("{", "[]", '{"format": 1, "after": "x", "open": [], "gaps": {}}',
                 '{"format": 1, "after": 3, "open": [true], "gaps": {}}'):
        owner.path.write_text(text)
        assert not owner.load().started
    owner.release()


def test_an_ending_round_trips_for_a_relay_and_junk_is_refused() -> None:
    import pytest

    from traystatus.core.model.details import DetailsError
    from traystatus.core.model.jobs import EndedJob

    end = EndedJob.from_row(row(3, "finished", 8000), me=7)
    assert EndedJob.from_json(end.to_json(), ending=True) == end
    junk: object
    for junk in (None, [], {"id": 3, "state": "waiting_for_review"}, {"state": "finished"},
                 {"id": "x", "state": "finished"}, {"id": 3, "state": "failed", "error": 5}):
        with pytest.raises(DetailsError):
            EndedJob.from_json(junk, ending=True)


def test_a_database_whose_ids_start_over_gets_a_new_baseline() -> None:
    ledger = EndingsLedger()
    ledger.baseline((1000, [990]))
    assert not ledger.starts_over(1000) and not ledger.starts_over(1200)
    assert ledger.starts_over(12)
    assert not ledger.started and ledger.open == set()
