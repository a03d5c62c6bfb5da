"""The one ``since`` rule (core/model/state.py ``carry_since``), on both paths: a monitor's
(its reads are stamped when read: ``since`` stays while the state stays) and a relay's (its
server tells when a known state began: a later one there is a flip this end missed).

The relay path runs the real RelaySource against a real WebSocket server
(tests/core/hostile_relay.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.core.hostile_relay import hostile_relay, st
from tests.core.test_relay_hostile import until, watching
from traystatus.core.model.state import Problem, State, Status, carry_since

T0 = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


def test_a_new_state_begins_at_its_own_since_on_both_paths() -> None:
    old = Status(State.STABLE, since=T0)
    new = Status(State.PROCESSING, since=LATER)
    assert carry_since(old, new).since == LATER
    assert carry_since(old, new, told=True).since == LATER


def test_the_monitor_path_keeps_since_while_the_state_stays() -> None:
    """A monitor's every read is stamped with its own time: not when the state began."""
    for state in (State.STABLE, State.PROCESSING, State.DISCONNECTED, State.ERROR):
        old = Status(state, since=T0)
        assert carry_since(old, Status(state, since=LATER)).since == T0, state


def test_the_relay_path_takes_a_known_state_s_told_since() -> None:
    """The server saw STABLE begin again at LATER (a flip this end never saw): told."""
    for state in (State.STABLE, State.PROCESSING):
        old = Status(state, since=T0, source="relay")
        assert carry_since(old, Status(state, since=LATER), told=True).since == LATER


def test_trouble_began_when_this_end_saw_it_whatever_a_server_says() -> None:
    old = Status(State.DISCONNECTED, since=T0, problem=Problem.UNREACHABLE)
    new = Status(State.DISCONNECTED, since=LATER, problem=Problem.STALE)
    carried = carry_since(old, new, told=True)
    assert carried.since == T0 and carried.problem is Problem.STALE


def without_since(**kw: Any) -> str:
    d = json.loads(st(**kw))
    del d["since"]
    return json.dumps(d)


@pytest.mark.asyncio
async def test_a_relay_s_later_since_for_the_same_state_is_taken() -> None:
    """Behaviour kept: the server's newer STABLE (a PROCESSING in between that this client
    never got) is when stable began; saying "stable since 04:00" would hide that run."""
    async with hostile_relay("stable") as server, watching(server.url) as w:
        await until(lambda: w.status.state is State.STABLE, "stable")
        assert w.status.since == T0
        await server.send(st(since=LATER.isoformat()))
        await until(lambda: w.status.since == LATER, "the server's newer since")
        assert w.status.state is State.STABLE


@pytest.mark.asyncio
async def test_a_relay_message_without_since_does_not_move_since() -> None:
    """A server that does not send ``since`` (it is optional in the protocol): each of its
    messages used to move ``since`` to the moment it was read, so "processing for 5 min"
    restarted with every progress message and every repeat was news. Failed before the
    one rule (since moved to the second message's time)."""
    async with hostile_relay("stable") as server, watching(server.url) as w:
        await until(lambda: w.status.state is State.STABLE, "stable")
        await server.send(without_since(state="processing", stable=False))
        await until(lambda: w.status.state is State.PROCESSING, "processing")
        began = w.status.since
        await asyncio.sleep(0.05)
        await server.send(without_since(state="processing", stable=False, note="still"))
        await until(lambda: w.status.note == "still", "the second message")
        assert w.status.since == began
        seen = len(w.seen)
        await server.send(without_since(state="processing", stable=False, note="still"))
        await server.send(without_since(state="processing", stable=False, note="last"))
        await until(lambda: w.status.note == "last", "the last message")
        assert len(w.seen) == seen + 1, "a repeat without since is no news"
        assert w.status.since == began


@pytest.mark.asyncio
async def test_a_relay_s_trouble_keeps_the_since_this_end_first_saw() -> None:
    down = dict(state="disconnected", stable=None, problem="unreachable", reason="x")
    async with hostile_relay("stable") as server, watching(server.url) as w:
        await until(lambda: w.status.state is State.STABLE, "stable")
        await server.send(st(**down, since=LATER.isoformat()))
        await until(lambda: w.status.state is State.DISCONNECTED, "disconnected")
        assert w.status.since == LATER
        await server.send(st(**down, since=(LATER + timedelta(minutes=1)).isoformat(),
                             note="again"))
        await until(lambda: w.status.note == "again", "the second message")
        assert w.status.since == LATER
