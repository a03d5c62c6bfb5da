"""RelaySource against a hostile server (tests/core/hostile_relay.py): every message it
sends gives a clear answer, a bad message costs that message and never the source, and
the first state has the database path's deadline.

Real WebSockets on loopback, the real RelaySource; nothing mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from tests.core.hostile_relay import MESSAGES, PROCESSING, SCENARIOS, hostile_relay, st
from traystatus.app import texts
from traystatus.core.model.state import Problem, State, Status, utcnow
from traystatus.core.relay.client import RelaySource
from traystatus.core.watch.options import MonitorOptions

LIMIT = 1.0  # the relay's connect deadline in these tests
FAST = MonitorOptions(connect_timeout=LIMIT, backoff_initial=0.3, backoff_cap=0.6,
                      backoff_jitter=0.0, error_retry=1.0, health_interval=5.0)
WAIT = 10.0


async def until(predicate: Callable[[], bool], what: str, within: float = WAIT) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


class Watched:
    """A running RelaySource and every Status it reported."""

    def __init__(self, relay: RelaySource, task: asyncio.Task[None]) -> None:
        self.relay = relay
        self.task = task
        self.seen: list[Status] = []
        relay.add_listener(self.seen.append)

    @property
    def status(self) -> Status:
        return self.relay.status


@contextlib.asynccontextmanager
async def watching(url: str) -> AsyncIterator[Watched]:
    relay = RelaySource(url, FAST)
    watched = Watched(relay, asyncio.create_task(relay.run()))
    try:
        yield watched
    finally:
        relay.stop()
        started = time.monotonic()
        await asyncio.wait_for(watched.task, 10)
        # stop() ends run() promptly, whatever it was doing (a swallowed cancellation of
        # the details task kept it waiting until wait_for cancelled it again, 10 s)
        assert time.monotonic() - started < 3


# scenario -> (state, problem, words in the message) of the first answer
ANSWERS: dict[str, tuple[State, Problem | None, str]] = {
    "stable": (State.STABLE, None, ""),
    "processing": (State.PROCESSING, None, ""),
    "garbage": (State.DISCONNECTED, Problem.PROTOCOL, "cannot be used: not JSON"),
    "wrongtypes": (State.DISCONNECTED, Problem.PROTOCOL, "stable: expected true/false"),
    "naive_since": (State.DISCONNECTED, Problem.PROTOCOL, "has no UTC offset"),
    "naive_retry": (State.DISCONNECTED, Problem.PROTOCOL, "next_retry_at"),
    "far_future": (State.DISCONNECTED, Problem.PROTOCOL, "is not plausible"),
    "far_past": (State.DISCONNECTED, Problem.PROTOCOL, "is not plausible"),
    "review_int": (State.DISCONNECTED, Problem.PROTOCOL, "review.waiting: expected a list"),
    "review_str": (State.DISCONNECTED, Problem.PROTOCOL, "review.waiting[0].slug"),
    "progress_int": (State.DISCONNECTED, Problem.PROTOCOL, "progress.jobs: expected a list"),
    "progress_bad": (State.DISCONNECTED, Problem.PROTOCOL, "progress.jobs[0].id"),
    "summary_bad": (State.STABLE, None, ""),
    "summary_list": (State.STABLE, None, ""),
    "lie_mixed": (State.DISCONNECTED, Problem.PROTOCOL,
                  "stable: true contradicts state 'processing'"),
    "lie_mixed2": (State.DISCONNECTED, Problem.PROTOCOL,
                   "stable: false contradicts state 'stable'"),
    "stable_with_problem": (State.DISCONNECTED, Problem.PROTOCOL,
                            "problem 'unreachable' contradicts state 'stable'"),
    "state_unknown": (State.DISCONNECTED, Problem.PROTOCOL, "is not one of"),
    "only_stable_key": (State.DISCONNECTED, Problem.PROTOCOL, "state: missing"),
    "deep": (State.DISCONNECTED, Problem.PROTOCOL, "nested too deeply"),
    "deep_obj": (State.DISCONNECTED, Problem.PROTOCOL, "reason: expected text"),
    "huge_attempt": (State.DISCONNECTED, Problem.PROTOCOL, "attempt: "),
    "ansi": (State.ERROR, Problem.AUTH_FAILED, "reports that it was refused by its database"),
    "long_reason": (State.ERROR, Problem.INTERNAL, "reports that it hit an internal error"),
    "db_password": (State.ERROR, Problem.AUTH_FAILED, "ask its administrator"),
    "binary": (State.DISCONNECTED, Problem.PROTOCOL, "a binary frame"),
    "huge": (State.DISCONNECTED, Problem.PROTOCOL, "a message larger than 4 MiB"),
    "midclose": (State.DISCONNECTED, Problem.CONNECTION_LOST, "closed the connection"),
    "flap": (State.STABLE, None, ""),
    "http200": (State.ERROR, Problem.CONFIG, "did not answer as a traystatus server"),
    "401": (State.ERROR, Problem.AUTH_FAILED, "refused the token"),
    "redirect": (State.DISCONNECTED, Problem.UNREACHABLE, "cannot be reached"),
    "silent": (State.DISCONNECTED, Problem.STALE, f"sent no state within {LIMIT:g} s"),
    "nopong": (State.DISCONNECTED, Problem.STALE, f"sent no state within {LIMIT:g} s"),
    "connecting_forever": (State.DISCONNECTED, Problem.UNREACHABLE,
                           "has had no answer from its database"),
}
KEEPS_THE_SOCKET = [s for s in MESSAGES if s not in ("stable", "processing")]


def test_every_scenario_has_its_answer() -> None:
    assert set(ANSWERS) == set(SCENARIOS)


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", sorted(ANSWERS))
async def test_each_hostile_scenario_gets_a_clear_answer(scenario: str) -> None:
    state, problem, words = ANSWERS[scenario]
    async with hostile_relay(scenario) as server, watching(server.url) as w:
        took = await until(lambda: w.status.state is not State.CONNECTING, "an answer",
                           within=LIMIT + 3)
        got = next(s for s in w.seen if s.state is not State.CONNECTING)
        assert (got.state, got.problem) == (state, problem), got.message
        assert words in got.message
        assert len(got.message) < 700 and "\x1b" not in got.message
        if scenario in ("silent", "nopong", "connecting_forever"):
            assert LIMIT - 0.1 <= took <= LIMIT + 1.5  # the deadline, not later
        else:
            assert took < LIMIT + 1.5
        # the tray's words take it as it is (a naive time crashed the tooltip)
        texts.tooltip(got, utcnow())
        texts.tooltip(got, utcnow() + timedelta(hours=1))
        assert not w.task.done(), "the source stopped"


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", KEEPS_THE_SOCKET)
async def test_a_good_message_after_a_bad_one_is_answered(scenario: str) -> None:
    async with hostile_relay(scenario) as server, watching(server.url) as w:
        await until(lambda: w.status.state is not State.CONNECTING, "an answer")
        await server.send(PROCESSING)
        await until(lambda: w.status.state is State.PROCESSING, "processing")
        await server.send(st())
        await until(lambda: w.status.state is State.STABLE, "stable")
        assert server.connections == 1  # on the same connection: the source carried on
        assert not w.task.done()


@pytest.mark.asyncio
async def test_a_bad_message_after_stable_is_grey_not_the_old_stable() -> None:
    async with hostile_relay("stable") as server, watching(server.url) as w:
        await until(lambda: w.status.state is State.STABLE, "stable")
        await server.send(MESSAGES["lie_mixed"][0])
        await until(lambda: w.status.state is State.DISCONNECTED, "grey")
        assert w.status.problem is Problem.PROTOCOL
        assert [s.state for s in w.seen if s.state is State.PROCESSING] == []
        assert w.relay.counters.malformed_payloads == 1


@pytest.mark.asyncio
async def test_after_a_bad_message_the_relay_reconnects_for_a_fresh_state() -> None:
    """A server that says nothing usable after a bad message: the relay gives the socket
    up after the deadline and connects again (the server sends its state on connect)."""
    async with hostile_relay("review_int") as server, watching(server.url) as w:
        await until(lambda: w.status.problem is Problem.PROTOCOL, "the protocol error")
        server.scenario = "processing"
        took = await until(lambda: w.status.state is State.PROCESSING, "a fresh state")
        assert took <= LIMIT + FAST.backoff_initial + 1.5
        assert server.connections == 2


@pytest.mark.asyncio
async def test_silence_costs_the_deadline_then_a_reconnect() -> None:
    async with hostile_relay("silent") as server, watching(server.url) as w:
        await until(lambda: w.status.problem is Problem.STALE, "stale")
        server.scenario = "stable"
        await until(lambda: w.status.state is State.STABLE, "stable after reconnecting")
        assert server.connections >= 2


@pytest.mark.asyncio
async def test_a_server_still_connecting_stays_connected_grey() -> None:
    async with hostile_relay("connecting_forever") as server, watching(server.url) as w:
        await until(lambda: w.status.state is State.DISCONNECTED, "grey")
        await asyncio.sleep(LIMIT + FAST.backoff_cap)
        assert server.connections == 1  # alive, just not ready: no reconnect loop
        await server.send(st())
        await until(lambda: w.status.state is State.STABLE, "stable")


@pytest.mark.asyncio
async def test_a_run_of_bad_messages_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="traystatus.core.relay.client")
    async with hostile_relay("garbage") as server, watching(server.url) as w:
        await until(lambda: w.relay.counters.malformed_payloads == 5, "five bad messages")
        warnings = [r for r in caplog.records if r.name == "traystatus.core.relay.client"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        await server.send(st())
        await until(lambda: w.status.state is State.STABLE, "stable")
        await server.send("{")
        await until(lambda: w.relay.counters.malformed_payloads == 6, "one more")
        warnings = [r for r in caplog.records if r.name == "traystatus.core.relay.client"]
        assert len(warnings) == 2  # a new run, after a usable message


@pytest.mark.asyncio
async def test_bad_details_cost_the_details_message_not_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="traystatus.core.relay.client")
    async with hostile_relay("stable") as server, watching(server.url) as w:
        server.details = ["[1]", "{", "[" * 100_000 + "]" * 100_000, '{"system_stable": "x"}',
                          '{"system_stable": true, "import_jobs": [{"id": 1e400}]}']
        await until(lambda: w.status.state is State.STABLE, "stable")
        got: list[object] = []
        w.relay.add_details_listener(got.append)
        async with w.relay.details():
            await until(lambda: w.relay.counters.malformed_payloads == 5, "five bad details")
            warnings = [r for r in caplog.records if "details" in r.getMessage()]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert got == [] and w.status.state is State.STABLE
            await server.send('{"system_stable": true, "import_jobs": []}')
            await until(lambda: len(got) == 1, "good details after bad ones")
        assert not w.task.done()
