"""Several deployments at once: ``status --all`` and ``wait --profile A --profile B``.

An analyst who watches test and production (or several countries' registers) asks one
question of all of them. Each profile gets its own source of state, all run at once on
one loop (so N slow servers cost one connect timeout, not N):

* ``status --all``: every stored profile, one line each (``prod: processing``), or with
  ``--json`` one array of the usual objects plus ``"profile"``. The exit code is the worst
  of them: 3 (not reachable / not usable) over 1 (processing) over 0 (stable). A profile
  that cannot even be opened (bad settings, no password) is a line of its own, exit 3:
  the others are still reported.
* ``wait`` with several ``--profile``: returns 0 when every one of them is stable at the
  same moment (the latest answer of each), 3 at once when one is in ERROR (waiting will
  not fix it; its name is said), 1 when the timeout passes first. As for one profile,
  connecting has its own limit and ``--timeout`` counts from the moment every profile
  has answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from traystatus.cli import watching
from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.core.config.profiles import ProfileError, ProfileStore
from traystatus.core.model.state import State, Status


@dataclass
class Named:
    """One profile's answer: its Status, or why there is none."""

    profile: str
    status: Status | None
    problem: str = ""  # when the profile could not be opened or gave no answer in time

    @property
    def code(self) -> int:
        if self.status is None:
            return int(ExitCode.UNUSABLE)
        return int(watching.exit_code(self.status))


def worst(codes: Sequence[int]) -> int:
    """3 over 1 over 0: the exit code of several answers."""
    return max(codes, default=int(ExitCode.STABLE))


def profiles_of(args: argparse.Namespace) -> list[str]:
    """``--profile`` given once or more (a list on ``wait``), in order, without repeats."""
    given = getattr(args, "profile", None)
    names = [given] if isinstance(given, str) else list(given or [])
    return list(dict.fromkeys(names))


def _spec(args: argparse.Namespace, name: str) -> tuple[watching.SourceSpec, Any]:
    one = argparse.Namespace(**{**vars(args), "profile": name, "dsn": None})
    return watching._source(one)


async def _one_status(args: argparse.Namespace, name: str) -> Named:
    try:
        spec, probe_error = _spec(args, name)
    except CliError as ex:
        return Named(name, None, str(ex))
    if probe_error is not None:
        return Named(name, await watching.probe_status(spec.target, probe_error))
    status, _ = await watching._status(spec, args.timeout, False)
    if status is None:
        return Named(name, None, f"no answer within {watching.first_answer_limit(spec):g} s "
                                 "of connecting")
    return Named(name, status)


def cmd_status_all(args: argparse.Namespace) -> int:
    try:
        names = ProfileStore().all_names()  # an invalid one gets its line saying why
    except ProfileError as ex:
        raise CliError(str(ex), ExitCode.UNUSABLE) from ex
    if not names:
        raise CliError("--all: no profile is stored; add one with `traystatus profile add`",
                       ExitCode.USAGE)

    async def every() -> list[Named]:
        return list(await asyncio.gather(*(_one_status(args, n) for n in names)))

    answers = asyncio.run(every())
    if args.json:
        out = []
        for a in answers:
            if a.status is not None:
                obj: dict[str, Any] = {"profile": a.profile, **a.status.to_json()}
            else:
                obj = {"profile": a.profile, "state": "unknown", "since": None,
                       "problem": "unusable", "reason": a.problem}
            out.append(obj)
        print(json.dumps(out, default=watching._json_default))
    else:
        width = max(len(a.profile) for a in answers)
        for a in answers:
            line = watching.status_line(a.status) if a.status else f"unknown: {a.problem}"
            print(f"{a.profile + ':':<{width + 1}} {line}")
    return worst([a.code for a in answers])


async def _wait_all(args: argparse.Namespace, names: list[str]) -> int:
    specs = []
    for name in names:
        try:
            spec, probe_error = _spec(args, name)
        except CliError as ex:
            raise CliError(f"{name}: {ex}", ex.code) from None
        if probe_error is not None:
            first = await watching.probe_status(spec.target, probe_error)
            if first.state is State.ERROR:
                print(f"traystatus wait: {name}: {watching.status_line(first)}",
                      file=sys.stderr)
                return int(ExitCode.UNUSABLE)
        specs.append((name, spec))
    loop = asyncio.get_running_loop()
    seconds = args.timeout
    limit = max(watching.first_answer_limit(s) for _, s in specs)
    # As single-profile ``wait``: connecting has its own limit, and ``--timeout`` counts
    # from the moment every profile has answered (so --timeout 0 asks "all stable now?").
    deadline: float | None = loop.time() + limit
    latest: dict[str, Status] = {}
    said: dict[str, tuple[object, ...]] = {}
    merged: asyncio.Queue[tuple[str, Status]] = asyncio.Queue()
    until_reviewed = getattr(args, "until_reviewed", False)

    async def feed(name: str, session: watching.Session) -> None:
        while True:
            status = await session.statuses.get()
            if status.state is not State.CONNECTING:
                merged.put_nowait((name, status))

    async with contextlib.AsyncExitStack() as stack:
        for name, spec in specs:
            session = await stack.enter_async_context(watching.monitoring(spec))
            task = asyncio.create_task(feed(name, session))
            stack.callback(task.cancel)
        while True:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                name, status = await asyncio.wait_for(merged.get(), timeout)
            except TimeoutError:
                silent = [n for n in names if n not in latest]
                if silent:
                    print(f"traystatus wait: no answer within {limit:g} s of connecting "
                          f"from {', '.join(silent)}; check the network, or run "
                          "`traystatus doctor`", file=sys.stderr)
                    return int(ExitCode.TIMEOUT)
                busy = [f"{n} {watching.LABELS[s.state]}" for n, s in latest.items()
                        if s.state is not State.STABLE or (until_reviewed and s.review)]
                print(f"traystatus wait: not all stable after {seconds or 0:g} s "
                      f"(still: {', '.join(busy)})", file=sys.stderr)
                return int(ExitCode.TIMEOUT)
            if name not in latest and len(latest) == len(specs) - 1:  # the last to answer
                deadline = None if seconds is None else loop.time() + seconds
            latest[name] = status
            if status.state is State.ERROR:
                print(f"traystatus wait: {name}: {watching.status_line(status)}",
                      file=sys.stderr)
                return int(ExitCode.UNUSABLE)
            key = (status.state, status.problem, status.review)
            if said.get(name) != key and not args.quiet:
                print(f"traystatus wait: {name}: {watching.status_line(status)}",
                      file=sys.stderr, flush=True)
            said[name] = key
            if len(latest) == len(specs) and all(
                s.state is State.STABLE and not (until_reviewed and s.review)
                for s in latest.values()
            ):
                return int(ExitCode.STABLE)


def cmd_wait_many(args: argparse.Namespace, names: list[str]) -> int:
    return watching.run(_wait_all(args, names))

