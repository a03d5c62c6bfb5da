"""``status``, ``wait`` and ``watch --relay`` against a hostile server: each scenario of
``../shared/repro/fakerelay.py`` gives a clear answer (the exit code, one line saying what
is wrong), in time, never a traceback or a hang; and several profiles' ``wait`` counts
``--timeout`` from the moment all of them answered.

The real console script in a subprocess, the hostile server (tests/core/hostile_relay.py)
on a real loopback WebSocket in the test's own loop.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.cli.conftest import SCRIPT, Cli
from tests.core.hostile_relay import PROCESSING, HostileRelay, hostile_relay, st

# scenario -> (exit code of `status`, words on stdout)
STATUS: dict[str, tuple[int, str]] = {
    "stable": (0, "stable"),
    "processing": (1, "processing"),
    "garbage": (3, "disconnected: The traystatus server at {url} sent a message that cannot "
                   "be used: not JSON"),
    "wrongtypes": (3, "stable: expected true/false, got text"),
    "naive_since": (3, 'since: "2026-12-06T04:00:00" has no UTC offset'),
    "naive_retry": (3, 'next_retry_at: "2026-12-06T04:00:00" has no UTC offset'),
    "far_future": (3, "since: 9999-12-31T23:59:59+00:00 is not plausible"),
    "far_past": (3, "since: 0001-01-01T00:00:00+00:00 is not plausible"),
    "review_int": (3, "review.waiting: expected a list, got a number"),
    "review_str": (3, "review.waiting[0].slug: expected text, got an object"),
    "progress_int": (3, "progress.jobs: expected a list, got a number"),
    "progress_bad": (3, "progress.jobs[0].id: expected a whole number, got text"),
    "summary_bad": (0, "stable"),
    "summary_list": (0, "stable"),
    "lie_mixed": (3, "stable: true contradicts state 'processing'"),
    "lie_mixed2": (3, "stable: false contradicts state 'stable'"),
    "stable_with_problem": (3, "problem 'unreachable' contradicts state 'stable'"),
    "state_unknown": (3, 'state: "unknown" is not one of'),
    "only_stable_key": (3, "state: missing"),
    "deep": (3, "nested too deeply"),
    "deep_obj": (3, "reason: expected text, got a list"),
    "huge_attempt": (3, "attempt: 99999999999999999999999999 is out of range"),
    "ansi": (3, "error: The traystatus server at {url} reports that it was refused by its "
                "database (its login); ask its administrator (nothing to change on this "
                "computer).\n"),
    "long_reason": (3, "reports that it hit an internal error; ask its administrator"),
    "db_password": (3, "error: The traystatus server at {url} reports that it was refused by "
                       "its database (its login); ask its administrator"),
    "binary": (3, "a binary frame (a traystatus server sends text)"),
    "huge": (3, "a message larger than 4 MiB"),
    "midclose": (3, "closed the connection"),
    "flap": (0, "stable"),
    "http200": (3, "did not answer as a traystatus server (HTTP 200)"),
    "401": (3, "refused the token (HTTP 401)"),
    "redirect": (3, "cannot be reached"),
}
QUICK = 6.0  # every answer that needs no deadline comes well within this (27 s before)


async def run(
    cli: Cli, *args: str, within: float = 60, relay: HostileRelay | None = None
) -> tuple[int, str, str, float]:
    """Run the CLI; the time returned counts from its first request to ``relay`` when one
    is given (Python's start and imports take seconds at a load of 10; they are not what the
    deadlines promise), else from the start of the process."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), *args, env=cli.env, cwd=cli.home, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(
            f"traystatus {' '.join(args)} did not end within {within} s") from None
    assert proc.returncode is not None
    if relay is not None and relay.first_request_at is not None:
        started = max(started, relay.first_request_at)
    return proc.returncode, out.decode(), err.decode(), time.monotonic() - started


def clean(out: str, err: str) -> None:
    assert "Traceback" not in out + err, err
    assert "\x1b" not in out + err


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", sorted(STATUS))
async def test_status_gives_each_hostile_scenario_a_clear_answer(cli: Cli, scenario: str) -> None:
    code, words = STATUS[scenario]
    async with hostile_relay(scenario) as server:
        rc, out, err, took = await run(cli, "status", "--relay", server.url, relay=server)
    clean(out, err)
    assert rc == code, out + err
    assert words.format(url=server.url) in out
    assert len(out.splitlines()) == 1 and len(out) < 900  # one line, the 3 MB reason capped
    assert "web password" not in out  # the server operator's advice is not for this end
    assert took < QUICK


@pytest.mark.asyncio
async def test_a_server_s_escapes_in_names_are_not_printed(cli: Cli) -> None:
    evil = "\x1b[2J\x1b[31mlu\r\nfake line\x1b[0m"
    async with hostile_relay("silent") as server:
        task = asyncio.create_task(run(cli, "status", "--relay", server.url))
        await server.send(st(review={"waiting": [{"id": 7, "slug": evil}], "queued_behind": 0},
                             blocked_by_review=[7]))
        rc, out, err, _ = await task
    clean(out, err)
    assert rc == 0
    assert out == "stable: Waiting for review: lu fake line\n"


@pytest.mark.asyncio
async def test_a_silent_relay_answers_within_the_connect_deadline(cli: Cli) -> None:
    """Answers the handshake, then nothing: `status` says so at the 10 s connect deadline
    (it took 24-27 s), `wait --timeout 2` 2 s later (it took 27 s)."""
    async with hostile_relay("silent") as server:
        (s_rc, s_out, s_err, s_took), (w_rc, w_out, w_err, w_took) = await asyncio.gather(
            run(cli, "status", "--relay", server.url, relay=server),
            run(cli, "wait", "--timeout", "2", "--relay", server.url, relay=server),
        )
    clean(s_out, s_err)
    clean(w_out, w_err)
    assert s_rc == 3
    assert s_out == (f"disconnected: The traystatus server at {server.url} accepted the "
                     "connection but sent no state within 10 s. Reconnecting on its own.\n")
    assert 9.5 <= s_took <= 13
    assert w_rc == 1
    assert "not stable after 2 s (still disconnected)" in w_err
    assert 11.5 <= w_took <= 15


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ["review_int", "progress_int", "lie_mixed", "garbage"])
async def test_watch_carries_on_after_a_bad_message(cli: Cli, bad: str) -> None:
    """One malformed message stopped `watch --relay` for good (nothing printed, ever)."""
    async with hostile_relay(bad) as server:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT), "watch", "--relay", server.url, env=cli.env, cwd=cli.home,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            first = await asyncio.wait_for(proc.stdout.readline(), QUICK)
            while b"connecting" in first:
                first = await asyncio.wait_for(proc.stdout.readline(), QUICK)
            assert b"disconnected: The traystatus server" in first
            assert b"cannot be used" in first
            await server.send(PROCESSING)
            line = await asyncio.wait_for(proc.stdout.readline(), QUICK)
            assert line.decode().rstrip().endswith(" processing")
            await server.send(st())
            line = await asyncio.wait_for(proc.stdout.readline(), QUICK)
            assert line.decode().rstrip().endswith(" stable")
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 143
        assert b"Traceback" not in err


@pytest.mark.asyncio
@pytest.mark.parametrize("seconds", [0, 2])
async def test_wait_for_several_profiles_counts_the_timeout_from_their_answers(
    cli: Cli, seconds: int
) -> None:
    """`wait -p A -p B --timeout N` waited N + 27 s (and --timeout 0 27 s): the timeout
    counted from the start plus the whole connect allowance, not from the answers."""
    async with hostile_relay("stable") as a, hostile_relay("processing") as b:
        for name, server in (("a", a), ("b", b)):
            r = cli.run("profile", "add", name, "--relay", server.url)
            assert r.returncode == 0, r.stderr
        rc, out, err, took = await run(cli, "wait", "--timeout", str(seconds),
                                       "-p", "a", "-p", "b")
    clean(out, err)
    assert rc == 1, err
    assert f"not all stable after {seconds} s (still: b processing)" in err
    assert seconds <= took <= seconds + QUICK
