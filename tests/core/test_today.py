"""What happened today (issue 21 part 4): DAY_SQL's row and what the app saw, as the day's
lines (pure: no Qt, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from traystatus.core.model.state import Problem, State, Status
from traystatus.core.model.today import SHOWN, Day, SeenLog, day_start, day_view, timeline
from traystatus.core.model.upgrade import Upgrade, UpgradePhase

NOW = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=15)


def at(h: float) -> datetime:
    return SINCE + timedelta(hours=h)


def iso(t: datetime) -> str:
    return t.isoformat()


def job(i: int, state: str, ended: datetime, **kw: object) -> dict[str, object]:
    return {"id": i, "slug": f"lu_{i}", "description": None, "state": state,
            "rows": kw.get("rows", 0), "errors": kw.get("errors", 0), "mine": kw.get("mine"),
            "review": kw.get("review"), "review_at": kw.get("review_at"),
            "approved_at": kw.get("approved_at"), "ended": iso(ended)}


def texts(row: tuple[object, ...], log: SeenLog | None = None) -> list[str]:
    return [e.text for e in timeline(row, log, SINCE, NOW)]


def test_imports_reviews_and_derive_runs_in_order() -> None:
    jobs = [
        job(1, "finished", at(-2), rows=10),  # yesterday: not today's
        job(2, "finished", at(9), rows=12_345, mine=True, review=True,
            review_at=iso(at(8)), approved_at=iso(at(8.5))),
        job(3, "failed", at(10)),
        job(4, "finished", at(11), rows=500, errors=3),
        job(5, "rejected", at(12), review=True, review_at=iso(at(12))),  # no stamp
        {**job(7, "rejected", at(12.5), review=True, review_at=iso(at(12.25))),
         "rejected_at": iso(at(12.5))},
        {"id": 6, "slug": "lu_6", "state": "waiting_for_review", "review": True,
         "review_at": iso(at(13)), "ended": iso(at(13))},
        "not a job", {"no": "id"},
    ]
    runs = [
        {"id": 9, "state": "completed", "start": iso(at(9.1)), "end": iso(at(9.6))},
        {"id": 8, "state": "completed", "start": iso(at(-3)), "end": iso(at(-2))},  # yesterday
        {"id": 10, "state": "processing", "start": iso(at(14.5)), "end": None},
    ]
    got = timeline((jobs, runs), None, SINCE, NOW)
    assert [e.kind for e in got] == ["review", "import", "derive", "import", "import",
                                     "review", "import", "review", "import", "review",
                                     "derive"]
    lines = [e.text for e in got]
    assert lines[0] == "Review of lu_2: held the imports 30 min (approved)"
    assert lines[1] == "Your import lu_2 finished: 12,345 rows"
    assert lines[2].startswith("Derive ") and lines[2].endswith("took 30 min")
    assert lines[3] == "Import lu_3 failed" and got[3].bad
    assert lines[4] == "Import lu_4 finished: 500 rows, 3 errors" and got[4].bad
    assert lines[5] == "Review of lu_5: rejected"
    assert lines[6] == "Import lu_5 was rejected at review"
    assert lines[7] == "Review of lu_7: held the imports 15 min (rejected)"
    assert lines[8] == "Import lu_7 was rejected at review"
    assert lines[9] == "Review of lu_6: still waiting"
    assert lines[10].endswith("running for 30 min")


def test_time_lost_to_disconnection_and_upgrades_the_app_saw() -> None:
    log = SeenLog()
    log.observe(Status(State.STABLE), at(1))
    log.observe(Status(State.DISCONNECTED, problem=Problem.UNREACHABLE), at(2))
    log.observe(Status(State.ERROR, problem=Problem.AUTH_FAILED), at(2.2))  # same spell
    log.observe(Status(State.CONNECTING), at(2.4))
    log.observe(Status(State.STABLE), at(2.5))
    up = Upgrade(UpgradePhase.COMPLETED, 4, "v2026.12.0", started_at=at(3),
                 ended_at=at(3.25))
    log.observe(Status(State.STABLE, upgrade=up), at(3.3))
    log.observe(Status(State.DISCONNECTED, problem=Problem.STALE), at(14))
    lines = texts(([], []), log)
    assert len(lines) == 3
    assert lines[0].startswith("No connection ") and lines[0].endswith("(30 min lost)")
    assert lines[1].startswith("StatBus upgraded ") and lines[1].endswith("to v2026.12.0")
    assert lines[2].endswith("(1 h so far)")


def test_a_spell_from_yesterday_counts_from_midnight_and_old_lines_are_cut() -> None:
    log = SeenLog()
    log.observe(Status(State.DISCONNECTED, problem=Problem.UNREACHABLE), at(-1))
    log.observe(Status(State.STABLE), at(0.5))
    assert texts(([], []), log)[0].endswith("(30 min lost)")
    many = [job(i, "finished", at(1 + i / 100), rows=i) for i in range(SHOWN + 10)]
    got = timeline((many, []), None, SINCE, NOW)
    assert len(got) == SHOWN and got[-1].text.endswith(f"{SHOWN + 9} rows")


def test_views_say_what_is_missing() -> None:
    assert "not available through a relay" in day_view(None, SeenLog(), NOW, relay=True).note
    unreadable = day_view(Day(NOW, SINCE, None), SeenLog(), NOW)
    assert "cannot tell" in unreadable.note and unreadable.entries == ()
    assert day_view(Day(NOW, SINCE, ([], [])), SeenLog(), NOW).note == ""
    start = day_start(NOW)
    assert start <= NOW and NOW - start < timedelta(days=1)
    assert start.astimezone().hour == 0


def test_review_holds_the_app_saw_stand_in_for_statbus_record_through_a_relay() -> None:
    from traystatus.core.model.state import ReviewBlock

    log = SeenLog()
    block = ReviewBlock(((7, "lu_2026"),), 2, since=at(5))
    log.observe(Status(State.STABLE, review=block), at(6))
    log.observe(Status(State.DISCONNECTED, problem=Problem.STALE), at(6.5))  # not an end
    log.observe(Status(State.STABLE, review=block), at(6.6))
    log.observe(Status(State.PROCESSING), at(7))
    log.observe(Status(State.STABLE, review=ReviewBlock(((8, ""),), 0)), at(14))
    relay = [e.text for e in timeline(None, log, SINCE, NOW) if e.kind == "review"]
    assert relay == ["Review of lu_2026: held the imports 2 h",
                     "Review of job 8: still waiting, 1 h so far"]
    assert [e for e in timeline(([], []), log, SINCE, NOW) if e.kind == "review"] == []
