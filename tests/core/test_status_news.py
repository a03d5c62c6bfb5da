"""Which fields of a Status are news (``Status.same_news``): a change that is news makes the
monitor and the relay client emit the Status, so the icon, tooltip, windows, ``watch
--json`` lines and a traystatus server's clients see it; one that is not is dropped."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from traystatus.core.model.progress import Progress
from traystatus.core.model.state import Problem, ReviewBlock, State, Status
from traystatus.core.model.upgrade import Upgrade, UpgradePhase

T = datetime(2026, 3, 1, 12, tzinfo=UTC)

# Every field of Status, decided: (a value other than BASE's, is it news?, why).
# A field added to Status fails test_every_field_of_status_is_decided until it is here.
DECISIONS: dict[str, tuple[Any, bool, str]] = {
    "state": (State.STABLE, True, "the icon"),
    "since": (datetime(2000, 1, 1, tzinfo=UTC), False,
              "when the monitor first saw the state: a re-read stamps a new one"),
    "problem": (Problem.STALE, True, "the icon's reason, the CLI's exit code"),
    "message": ("the server stopped", True, "the tooltip's sentence"),
    "attempt": (3, True, "the retry count in --json lines and relay messages"),
    "next_retry_at": (T, True, "'retrying in 10 s' in the tooltip"),
    "source": ("relay", True, "'through a traystatus server' in the details window"),
    "review": (ReviewBlock(((1, "x"),)), True, "the review notice and line"),
    "note": ("watching StatBus directly", True, "doctor, About and the details window"),
    "progress": (Progress(derive_queued=True), True, "the percentage in the tooltip"),
    "upgrade": (Upgrade(UpgradePhase.RUNNING, 1), True, "the upgrade notices"),
}
BASE = Status(State.PROCESSING, since=T)


def test_every_field_of_status_is_decided() -> None:
    assert sorted(f.name for f in fields(Status)) == sorted(DECISIONS)


def test_same_news_follows_each_decision() -> None:
    for name, (value, news, _why) in DECISIONS.items():
        changed = replace(BASE, **{name: value})
        assert getattr(changed, name) != getattr(BASE, name), name
        assert BASE.same_news(changed) is not news, name
        assert changed.same_news(BASE) is not news, name
    assert BASE.same_news(replace(BASE))


def test_a_field_added_without_a_decision_is_news() -> None:
    """same_news follows the dataclass: a new field counts unless declared not news (before,
    a field missing from a hand-written list was silently no news: the icon kept an old
    picture)."""

    @dataclass(frozen=True)
    class Wider(Status):
        extra: int = 0

    wide = Wider(State.STABLE)
    assert not wide.same_news(replace(wide, extra=1))
    assert wide.same_news(replace(wide, since=T))
