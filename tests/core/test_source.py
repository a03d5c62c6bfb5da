"""The seam: StateSource, open_source, Status.source and the one JSON shape, the reader
chosen after connecting, and the installed-SQL version rule."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tests.core.conftest import FAST, running
from traystatus.core.model.state import Problem, ReviewBlock, State, Status
from traystatus.core.pg.sqlfiles import EXPECTED_SQL_VERSION, version_problem
from traystatus.core.source import SourceError, StateSource, is_relay, open_source
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions


def test_the_monitor_is_a_state_source_and_open_source_builds_one() -> None:
    source = open_source("host=127.0.0.1 dbname=x", FAST, password="pw")
    assert isinstance(source, Monitor) and isinstance(source, StateSource)
    assert source.status.state is State.CONNECTING and source.status.source == "installed"


def test_a_server_url_opens_a_relay_not_a_monitor() -> None:
    assert is_relay("wss://stat.example.org/traystatus") and is_relay(" WS://h:1/")
    assert not is_relay("postgresql://u@h/db") and not is_relay("host=h")
    source = open_source("wss://stat.example.org/x")
    assert isinstance(source, StateSource) and not isinstance(source, Monitor)
    assert source.status.state is State.CONNECTING and source.status.source == "relay"


def test_a_bad_server_url_is_one_line() -> None:
    with pytest.raises(SourceError) as info:
        open_source("wss://stat.example.org:notaport/x")
    assert "\n" not in str(info.value)


def test_status_json_is_one_shape_with_source_and_review() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    plain = Status(State.STABLE, since=t).to_json()
    assert plain["source"] == "installed" and plain["review"] is None
    blocked = Status(
        State.PROCESSING,
        since=t,
        source="builtin",
        review=ReviewBlock(waiting=((7, "census_2026"),), queued_behind=3),
    ).to_json()
    assert blocked["source"] == "builtin"
    assert blocked["review"] == {"waiting": [{"id": 7, "slug": "census_2026"}],
                                 "queued_behind": 3, "since": None, "may_approve": None}
    assert (plain["blocked_by_review"], blocked["blocked_by_review"]) == ([], [7])
    assert set(plain) == set(blocked)
    json.dumps(blocked)  # serialisable as is


def test_the_review_line_a_person_reads() -> None:
    one = ReviewBlock(waiting=((7, "census_2026"),), queued_behind=2)
    assert one.text == "Waiting for review: census_2026; 2 imports queued behind it"
    assert ReviewBlock(((7, "a"),), 1).text == "Waiting for review: a; 1 import queued behind it"
    assert ReviewBlock(((7, "a"),)).text == "Waiting for review: a"
    two = ReviewBlock(((7, "a"), (9, "")), 3)
    assert two.text == "Waiting for review: a, job 9; 3 imports queued behind them"


def test_a_review_block_or_a_source_change_is_news() -> None:
    a = Status(State.PROCESSING)
    assert a.same_news(replace(a, since=datetime(2000, 1, 1, tzinfo=UTC)))
    assert a.same_news(replace(a))
    assert not a.same_news(replace(a, review=ReviewBlock(((1, "x"),))))
    assert not a.same_news(replace(a, source="relay"))


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        (EXPECTED_SQL_VERSION, None),
        (None, Problem.SQL_MISSING),
        (EXPECTED_SQL_VERSION - 1, Problem.SQL_OUTDATED),
        (EXPECTED_SQL_VERSION + 1, Problem.SQL_NEWER),
        ("garbage", Problem.SQL_OUTDATED),
    ],
)
def test_one_version_rule(version: object, problem: Problem | None) -> None:
    found = version_problem(version, "db on h:5432")
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.problem is problem
        assert "db on h:5432" in found.fact and "traystatus" in found.fix
        assert found.diagnosis().message == f"{found.fact}. {found.fix}"


def test_reader_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="reader"):
        MonitorOptions(reader="psychic")  # type: ignore[arg-type]  # on purpose


@pytest.mark.asyncio
async def test_auto_takes_the_installed_sql_when_it_is_there(db_dsn: str) -> None:
    m = Monitor(db_dsn, replace(FAST, reader="auto"))
    async with running(m) as rec:
        status = await rec.state(State.STABLE)
    assert status.source == "installed"


@pytest.mark.asyncio
async def test_auto_falls_back_to_builtin_without_our_sql(bare_db_dsn: str) -> None:
    m = Monitor(bare_db_dsn, replace(FAST, reader="auto"))
    async with running(m) as rec:
        await rec.until(lambda: m.status.is_known, what="an answer from the built-in reader")
    assert m.status.source == "builtin" and m.counters.stability_reads >= 1
