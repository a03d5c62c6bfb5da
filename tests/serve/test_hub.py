"""The hub's fan-out, with sinks that stand for fast, slow and stuck connections.

The network is not the point here (test_serve.py has real sockets): what is, is that one
stuck client neither delays nor grows memory for the others, and gets the latest state
(never a backlog) when it catches up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from traystatus.core.model.details import Details, WorkSummary
from traystatus.core.model.state import State, Status
from traystatus.serve.hub import Hub, HubOptions, text_frame


class FakeSource:
    def __init__(self) -> None:
        self.status = Status(State.STABLE)
        self.listeners: list[Callable[[Status], None]] = []
        self.subscribed = 0

    def add_listener(self, cb: Callable[[Status], None]) -> None:
        self.listeners.append(cb)

    def add_details_listener(self, cb: Callable[[Details], None]) -> None:
        pass

    def add_summary_listener(self, cb: Callable[[WorkSummary], None]) -> None:
        pass

    def subscribe_details(self) -> None:
        self.subscribed += 1

    def unsubscribe_details(self) -> None:
        self.subscribed -= 1

    def emit(self, status: Status) -> None:
        self.status = status
        for cb in self.listeners:
            cb(status)


class Fast:
    """A connection that keeps up: every frame is written at once."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def try_write(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True

    def texts(self) -> list[str]:
        return [_decode(f) for f in self.frames]


class Stuck:
    """A client that stopped reading: its buffer is full until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[str] = []
        self.aborted = False

    def try_write(self, frame: bytes) -> bool:
        if not self.release.is_set():
            return False
        self.sent.append(_decode(frame))
        return True


async def until_true(predicate: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


def _decode(frame: bytes) -> str:
    assert frame[0] == 0x81
    n = frame[1]
    start = 2
    if n == 126:
        n, start = int.from_bytes(frame[2:4], "big"), 4
    elif n == 127:
        n, start = int.from_bytes(frame[2:10], "big"), 10
    assert len(frame) == start + n
    return frame[start:].decode()


def test_text_frames_follow_rfc6455_lengths() -> None:
    for size in (0, 125, 126, 65535, 65536, 70000):
        text = "x" * size
        assert _decode(text_frame(text)) == text


@pytest.mark.asyncio
async def test_a_stuck_client_delays_nobody_and_ends_on_the_latest_state() -> None:
    source = FakeSource()
    hub = Hub(source, HubOptions(send_timeout=60))
    fast = [Fast() for _ in range(5)]
    stuck = Stuck()
    closed: list[asyncio.Event] = []

    async def connect(sink: Fast | Stuck) -> None:
        done = asyncio.Event()
        closed.append(done)
        await hub.serve_client(sink, details=False,
                               abort=lambda: setattr(sink, "aborted", True),
                               receive_until_closed=done.wait)

    sinks: list[Fast | Stuck] = [*fast, stuck]
    tasks = [asyncio.create_task(connect(s)) for s in sinks]
    await asyncio.sleep(0.05)  # initial messages: the fast ones got theirs
    assert all(len(f.texts()) == 1 for f in fast)
    encoded = hub.counters.frames_encoded

    for i in range(200):
        state = State.PROCESSING if i % 2 == 0 else State.STABLE
        source.emit(Status(state, message=f"m{i}"))
    # Written synchronously, in order, to everyone who keeps up; no task switch needed.
    for f in fast:
        texts = f.texts()
        assert len(texts) == 201 and json.loads(texts[-1])["reason"] == "m199"
    # One encoding per message, whoever and however many receive it.
    assert hub.counters.frames_encoded - encoded == 200
    # The stuck client holds at most one unsent message: the newest.
    stuck_client = next(c for c in hub._status_clients if c.sink is stuck)
    assert stuck_client.latest is not None
    assert json.loads(_decode(stuck_client.latest))["reason"] == "m199"
    assert hub.counters.messages_replaced >= 199 and hub.behind == 1

    stuck.release.set()  # it reads again: the latest only, not a backlog
    await until_true(lambda: hub.behind == 0)
    assert len(stuck.sent) == 1
    assert json.loads(stuck.sent[-1])["reason"] == "m199"
    for done in closed:
        done.set()
    await asyncio.gather(*tasks)
    assert hub.clients == 0


@pytest.mark.asyncio
async def test_a_client_stuck_past_the_send_timeout_is_dropped() -> None:
    source = FakeSource()
    hub = Hub(source, HubOptions(send_timeout=0.2))
    stuck = Stuck()
    done = asyncio.Event()

    def abort() -> None:
        stuck.aborted = True
        done.set()  # as a real connection ends when its transport is aborted

    task = asyncio.create_task(hub.serve_client(
        stuck, details=False, abort=abort, receive_until_closed=done.wait))
    await asyncio.wait_for(task, 5)
    assert stuck.aborted and hub.counters.slow_clients_dropped == 1 and hub.clients == 0


@pytest.mark.asyncio
async def test_details_are_refcounted_onto_the_source() -> None:
    source = FakeSource()
    hub = Hub(source, HubOptions(details_linger=0.05))
    events = [asyncio.Event() for _ in range(3)]
    tasks = [
        asyncio.create_task(hub.serve_client(Fast(), details=True, abort=lambda: None,
                                             receive_until_closed=e.wait))
        for e in events
    ]
    await asyncio.sleep(0.01)
    assert source.subscribed == 1 and hub.details_clients == 3
    events[0].set()
    events[1].set()
    await asyncio.sleep(0.01)
    assert source.subscribed == 1
    events[2].set()
    await asyncio.gather(*tasks)
    assert source.subscribed == 1  # a moment more, for a client that comes at once
    await asyncio.sleep(0.2)
    assert source.subscribed == 0


class Broken:
    """A connection that failed: nothing can be written to it."""

    def try_write(self, frame: bytes) -> bool:
        return False


@pytest.mark.asyncio
async def test_a_writer_that_fails_ends_its_client_and_unregisters_it() -> None:
    """The peer never says goodbye (its reader would wait for ever): a connection that
    takes nothing is ended by the hub, so the client does not stay counted."""
    source = FakeSource()
    hub = Hub(source, HubOptions(max_clients=1, send_timeout=0.2))
    done = asyncio.Event()
    aborted: list[bool] = []

    def abort() -> None:
        aborted.append(True)
        done.set()  # as a real connection ends when its transport is aborted

    task = asyncio.create_task(hub.serve_client(
        Broken(), details=False, abort=abort, receive_until_closed=done.wait))
    await asyncio.wait_for(task, 5)
    assert aborted and hub.clients == 0 and not hub.full()


def test_reserved_slots_count_against_max_clients() -> None:
    hub = Hub(FakeSource(), HubOptions(max_clients=2))
    assert hub.reserve() and hub.reserve()
    assert not hub.reserve() and hub.full()
    hub.release()
    assert hub.reserve()


def test_clients_get_a_generic_reason_never_the_servers_error_text() -> None:
    from traystatus.core.model.state import Problem
    from traystatus.serve.hub import status_message

    secret = ('connection to server at "10.1.2.3", port 5432 failed: FATAL: password '
              'authentication failed for user "traystatus_serve"')
    for problem in Problem:
        msg = status_message(Status(State.ERROR, problem=problem, message=secret))
        assert msg["problem"] == problem.value and msg["stable"] is None
        assert "10.1.2.3" not in msg["reason"] and "traystatus_serve" not in msg["reason"]
        assert msg["reason"].endswith("the server's log.")
