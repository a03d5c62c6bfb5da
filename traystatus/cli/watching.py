"""``status``, ``wait`` and ``watch``: the core's state, printed for scripts and status bars.

All three run one source of state (:func:`traystatus.core.source.open_source`: the
database Monitor) under ``asyncio.run()`` and read its Status changes from a queue, so
they get the same LISTEN/re-read protocol, reconnects and error diagnosis as the tray app:

* ``status`` waits for the first answer that is not "connecting" (and, with --details, one
  details snapshot), prints it and exits 0 stable / 1 processing / 3 anything else.
* ``wait`` returns 0 at the first STABLE. Disconnections are waited through (the monitor
  reconnects); an ERROR (bad password, SQL missing, no privilege, TLS) exits 3 at once,
  since waiting will not fix it; the timeout exits 1.
* ``watch`` prints one line per change of (state, problem): retry attempts inside one
  disconnection are not news. Each line is flushed, for pipes into status bars.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Coroutine
from datetime import date, datetime
from typing import Any, TextIO

import psycopg

from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.cli.target import (
    Target,
    connect_limit,
    connect_timeout,
    prepare_conninfo,
    resolve_connection,
    resolve_connection_async,
    resolve_target,
)
from traystatus.core.model.details import Details
from traystatus.core.model.state import State, Status
from traystatus.core.pg import diagnosis, probe
from traystatus.core.source import SourceError, StateSource, is_relay, open_source
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions, ReaderMode
from traystatus.core.words.safetext import MAX_CHARS, printable
from traystatus.core.words.wording import format_duration

log = logging.getLogger(__name__)

STOP_GRACE = 5.0

LABELS = {
    State.CONNECTING: "connecting",
    State.STABLE: "stable",
    State.PROCESSING: "processing",
    State.DISCONNECTED: "disconnected",
    State.ERROR: "error",
    State.UPGRADING: "upgrading",
}


def exit_code(status: Status) -> ExitCode:
    if status.state is State.STABLE:
        return ExitCode.STABLE
    if status.state in (State.PROCESSING, State.UPGRADING):
        return ExitCode.PROCESSING  # not stable; waiting will tell (an upgrade ends)
    return ExitCode.UNUSABLE


@dataclasses.dataclass
class Session:
    monitor: StateSource
    statuses: asyncio.Queue[Status]
    details: asyncio.Queue[Details]


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """What ``open_source`` gets: a conninfo (or a server's ws:// URL) and its secrets."""

    target: str
    token: str | None = None
    source: ReaderMode = "auto"  # a database: installed | builtin | auto (--source)
    # The password probe's open connection (one-shot commands): the monitor adopts it.
    connection: psycopg.AsyncConnection[Any] | None = dataclasses.field(
        default=None, compare=False, repr=False)
    listen: bool = True  # False: a one-shot read (status), no LISTEN round trips

    def open(self) -> StateSource:
        if self.token is not None:
            return open_source(self.target, token=self.token)
        if is_relay(self.target):
            return open_source(self.target)
        # A database: the monitor's connect deadline is the conninfo's connect_timeout.
        source = open_source(self.target,
                             MonitorOptions(connect_timeout=connect_timeout(self.target),
                                            reader=self.source, listen=self.listen))
        if self.connection is not None and isinstance(source, Monitor):
            source.adopt(self.connection)
        return source


@contextlib.asynccontextmanager
async def monitoring(conninfo: str | SourceSpec) -> AsyncIterator[Session]:
    """Run a source of state for the body of the ``async with``, then stop it cleanly."""
    spec = conninfo if isinstance(conninfo, SourceSpec) else SourceSpec(conninfo)
    try:
        monitor = spec.open()
    except SourceError as ex:
        raise CliError(str(ex), ExitCode.USAGE) from None
    session = Session(monitor, asyncio.Queue(), asyncio.Queue())
    monitor.add_listener(session.statuses.put_nowait)
    monitor.add_details_listener(session.details.put_nowait)
    task = asyncio.create_task(monitor.run(), name="traystatus-monitor")
    try:
        yield session
    finally:
        monitor.stop()
        try:
            await asyncio.wait_for(task, STOP_GRACE)
        except TimeoutError:
            log.debug("the monitor did not stop within %.0f s; cancelled", STOP_GRACE)
        except Exception:  # the monitor promises not to raise; never hide our own result
            log.exception("the monitor ended with an unexpected error")


async def next_status(
    session: Session, deadline: float | None, skip_connecting: bool = True
) -> Status | None:
    """The next Status (None at the deadline, a loop.time() value)."""
    loop = asyncio.get_running_loop()
    while True:
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            status = await asyncio.wait_for(session.statuses.get(), timeout)
        except TimeoutError:
            return None
        if skip_connecting and status.state is State.CONNECTING:
            continue
        return status


def run(coro: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run(coro)``, with SIGTERM (a status bar reloading, ``kill``) ending it
    cleanly: the monitor closes its connection, and the exit code is 143 as for a shell."""

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        terminated: list[bool] = []

        def on_term() -> None:
            terminated.append(True)
            task.cancel()

        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no handlers
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_term)
        try:
            return await coro
        except asyncio.CancelledError:
            if not terminated:
                raise  # Ctrl-C: asyncio.run turns it into KeyboardInterrupt (exit 130)
            return int(ExitCode.TERMINATED)

    return asyncio.run(main())


PROGRESS_GRACE = 2.0
"""Seconds ``status`` waits, after a "processing" answer, for the progress read after it."""


def _conninfo(args: argparse.Namespace) -> SourceSpec:
    """--relay URL [--token-file F] (a traystatus server), else the database's conninfo."""
    return _source(args)[0]


def _source(args: argparse.Namespace) -> tuple[SourceSpec, psycopg.Error | None]:
    """What ``_conninfo`` gives, and for a database the password probe's own failure (the
    same connection just failed: a one-shot answer reports it instead of waiting again)."""
    found = _spec_or_target(args)
    if isinstance(found, Target):
        conninfo, probe_error = resolve_connection(found)
        return SourceSpec(conninfo, source=found.source(getattr(args, "source", None))), probe_error
    return found, None


async def _source_async(args: argparse.Namespace) -> tuple[SourceSpec, psycopg.Error | None]:
    """:func:`_source` for a one-shot command, in its event loop: the password probe is
    the source's first connection (issue 23). When libpq connects on its own, the spec
    carries that open connection and the monitor uses it: one connection per command
    (the TCP, TLS and start-up round trips once, not twice)."""
    found = _spec_or_target(args)
    if not isinstance(found, Target):
        return found, None
    mode = found.source(getattr(args, "source", None))
    conninfo = prepare_conninfo(found)
    spec = SourceSpec(conninfo, source=mode)
    monitor = spec.open()
    probe_conninfo = (monitor.connect_conninfo() if isinstance(monitor, Monitor)
                      else conninfo)
    conninfo, probe_error, conn = await resolve_connection_async(found, conninfo,
                                                                 probe_conninfo)
    return SourceSpec(conninfo, source=mode, connection=conn), probe_error


def _spec_or_target(args: argparse.Namespace) -> SourceSpec | Target:
    """A relay's spec, or the database Target whose password is still to be found."""
    relay = getattr(args, "relay", None)
    if relay:
        if getattr(args, "dsn", None) or getattr(args, "profile", None):
            raise CliError("give either --relay or --dsn/--profile, not both", ExitCode.USAGE)
        from traystatus.core.relay.client import RelayError, read_token_file, relay_url

        try:
            url = relay_url(relay)
            token = read_token_file(args.token_file) if args.token_file else None
        except RelayError as ex:
            raise CliError(str(ex), ExitCode.USAGE) from None
        return SourceSpec(url, token)
    target = resolve_target(args.dsn, args.profile)
    if target.profile.relay is not None:
        # A profile that names a traystatus server: its keychain entry is the token.
        if getattr(args, "token_file", None):
            from traystatus.core.relay.client import RelayError, read_token_file

            try:
                return SourceSpec(target.profile.to_conninfo(),
                                  read_token_file(args.token_file))
            except RelayError as ex:
                raise CliError(str(ex), ExitCode.USAGE) from None
        from traystatus.core.config import credentials

        token = credentials.get_password(target.profile.name)
        return SourceSpec(target.profile.to_conninfo(), token)
    if getattr(args, "token_file", None):
        raise CliError("--token-file goes with --relay URL", ExitCode.USAGE)
    return target


RELAY_SLACK = 2.0
"""Seconds past a relay's connect deadline before the CLI gives up on its first answer:
the relay itself answers by then (the state, or why there is none)."""


def first_answer_limit(conninfo: str | SourceSpec) -> float:
    """How long the first answer may take: one connect attempt (the monitor's own limit)
    and its first read. ``--timeout`` counts from that answer on.

    A traystatus server: the relay's own deadline (``connect_timeout``, 10 s) covers
    connecting and the first state, and the relay reports at that deadline."""
    target = conninfo.target if isinstance(conninfo, SourceSpec) else conninfo
    if is_relay(target):
        return MonitorOptions().connect_timeout + RELAY_SLACK
    return connect_limit(target) + MonitorOptions().health_timeout + 1


# -- output ---------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def details_to_json(details: Details) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(details)
    out["headline"] = details.headline
    return out


def status_line(status: Status) -> str:
    """``stable`` / ``error: <what to do>``: what a person or a Polybar label shows.

    A review that holds the import queue is said too: ``stable: Waiting for review: x; 2
    imports queued behind it``."""
    label = LABELS[status.state]
    said = [status.upgrade.text()] if status.upgrade is not None else []
    if status.message:
        said.append(status.message)
    if status.review is not None and status.is_known:
        said.append(status.review.text)
    # a database's or a server's words: no terminal escapes, one line, capped
    return f"{label}: {printable('; '.join(said), 2 * MAX_CHARS)}" if said else label


def estimate_words(status: Status) -> str:
    """'stable at about 14:40 (14:25–15:05): derive took ...' ("" while not processing or
    not estimated yet): ``wait -v`` prints it when it changes."""
    if status.state is not State.PROCESSING or status.progress is None:
        return ""
    found = status.progress.estimate
    if found is None:
        return ""
    try:
        line = found.text()
    except (OverflowError, ValueError):
        return ""
    how = printable(found.how, MAX_CHARS)
    return f"{line} ({how})" if how else line


def status_object(status: Status) -> dict[str, Any]:
    """The JSON of one state: the core's fields plus Waybar's (text, alt, class, tooltip)."""
    out = status.to_json()
    label = LABELS[status.state]
    since = status.since.astimezone().strftime("%H:%M:%S")
    review = status.review.text if status.review is not None and status.is_known else ""
    upgrade = status.upgrade.text() if status.upgrade is not None else ""
    out.update(
        text=label,
        alt="review" if review and status.state is State.STABLE else label,
        tooltip=f"StatBus {label} since {since}"
        + (f"\n{upgrade}" if upgrade else "")
        + (f"\n{printable(status.message, 2 * MAX_CHARS)}" if status.message else "")
        + (f"\n{review}" if review else ""),
        **{"class": "review" if review and status.state is State.STABLE else label},
    )
    return out


def _print_details_text(details: Details, out: TextIO) -> None:
    if details.import_jobs or details.analytics.active_total:
        print(f"  {details.headline}", file=out)
    for job in details.import_jobs:
        extra = []
        eta = job.eta_seconds
        if eta is not None:
            extra.append(f"about {format_duration(eta)} left")
        if job.error_count and job.phase != "done":
            extra.append(f"{job.error_count} errors so far")
        if job.ended and job.error_line:
            extra.append(job.error_line)  # why it stopped or failed, not just that it did
        tail = f" ({', '.join(extra)})" if extra else ""
        print(f"  import {printable(job.title, 200)}: {printable(job.phase_label, 200)}{tail}",
              file=out)
    for command, count in details.analytics.by_command_totals.items():
        print(f"  analytics {printable(command, 200)}: {count}", file=out)


# -- commands -------------------------------------------------------------------------------


async def _status(
    conninfo: str | SourceSpec, seconds: float, want_details: bool
) -> tuple[Status | None, Details | None]:
    loop = asyncio.get_running_loop()
    async with monitoring(conninfo) as session:
        status = await next_status(session, loop.time() + first_answer_limit(conninfo))
        deadline = loop.time() + seconds
        if status is not None and status.state is State.PROCESSING and status.progress is None:
            # The progress (and its estimate of when stable) is read right after the answer:
            # a moment more, so --json says them; the answer stands if it does not come.
            later = await next_status(session, min(deadline, loop.time() + PROGRESS_GRACE))
            if later is not None and later.state is State.PROCESSING:
                status = later
        details = None
        if status is not None and status.is_known and want_details:
            session.monitor.subscribe_details()
            try:
                details = await asyncio.wait_for(
                    session.details.get(), max(0.0, deadline - loop.time())
                )
            except TimeoutError:
                log.warning("no details arrived within the timeout")
    return status, details


async def _status_once(
    args: argparse.Namespace,
) -> tuple[SourceSpec, Status | None, Details | None]:
    """``status``'s work in one event loop: the password probe's connection is the
    monitor's (one connection per command)."""
    spec, probe_error = await _source_async(args)
    if probe_error is not None:
        return spec, await probe_status(spec.target, probe_error), None
    # One read is all status asks for: no LISTEN (a round trip each, issue 23).
    status, details = await _status(dataclasses.replace(spec, listen=False), args.timeout,
                                    args.details)
    return spec, status, details


async def probe_status(conninfo: str, error: psycopg.Error) -> Status:
    """The Status the monitor would report for the password probe's failure: the same
    connection, tried a moment ago, so ``status`` and ``wait`` do not wait for it twice."""
    diag = await probe.diagnose(error, conninfo, diagnosis.Phase.CONNECT)
    state = State.DISCONNECTED if diag.transient else State.ERROR
    return Status(state, problem=diag.problem, message=diag.full_message)


def cmd_status(args: argparse.Namespace) -> int:
    if getattr(args, "all", False):
        if getattr(args, "dsn", None) or getattr(args, "profile", None) or getattr(
            args, "relay", None
        ) or getattr(args, "details", False):
            raise CliError("--all asks every stored profile: give no --dsn, --profile, "
                           "--relay or --details with it", ExitCode.USAGE)
        from traystatus.cli import many

        return many.cmd_status_all(args)
    spec, status, details = asyncio.run(_status_once(args))
    if status is None:
        msg = (f"no answer within {first_answer_limit(spec):g} s of connecting; check the "
               "network, or run `traystatus doctor`")
        if args.json:
            print(json.dumps({"state": "unknown", "since": None, "problem": "timeout",
                              "reason": msg}))
        else:
            print(f"unknown: {msg}")
        return int(ExitCode.UNUSABLE)
    if args.json:
        obj = status.to_json()
        if args.details:
            obj["details"] = details_to_json(details) if details is not None else None
        print(json.dumps(obj, default=_json_default))
    else:
        print(status_line(status))
        if details is not None:
            _print_details_text(details, sys.stdout)
    return int(exit_code(status))


async def _wait(conninfo: str | SourceSpec, seconds: float | None, quiet: bool,
                until_reviewed: bool = False,
                probe_error: psycopg.Error | None = None, verbose: bool = False) -> int:
    """``seconds`` counts from the first answer (the state, or why there is none), so
    ``--timeout 0`` asks "is it stable now?" and connecting is bounded by connect_timeout.
    ``probe_error``: the password probe's failure, which is the first answer then.

    Stable is what it waits for: nothing running and nothing due, so the register does not
    change. A job waiting for review holds StatBus's import queue and counts as stable (the
    imports behind it start only when a person acts). ``until_reviewed``: the other
    reading, "every import has ended": also wait until no job waits for review.
    ``verbose`` (``-v``): also print the estimate of when it will be stable, as it changes."""
    loop = asyncio.get_running_loop()
    deadline: float | None = loop.time() + first_answer_limit(conninfo)
    last: tuple[State, object, object] | None = None
    answered = False
    last_estimate = ""
    first: Status | None = None
    if probe_error is not None:
        target = conninfo.target if isinstance(conninfo, SourceSpec) else conninfo
        first = await probe_status(target, probe_error)
        answered = True
        deadline = None if seconds is None else loop.time() + seconds
        if first.state is State.ERROR:  # waiting cannot fix it
            print(f"traystatus wait: {status_line(first)}", file=sys.stderr)
            return int(ExitCode.UNUSABLE)
        if seconds == 0:  # "is it stable now?": no, it cannot be reached
            if not quiet:
                print(f"traystatus wait: {status_line(first)}", file=sys.stderr)
            print(f"traystatus wait: not stable after 0 s (still {LABELS[first.state]})",
                  file=sys.stderr)
            return int(ExitCode.TIMEOUT)
    async with monitoring(conninfo) as session:
        while True:
            if first is not None:
                status: Status | None = first
                first = None
            else:
                status = await next_status(session, deadline)
            if not answered:
                if status is None:
                    print(f"traystatus wait: no answer within {first_answer_limit(conninfo):g}"
                          " s of connecting; check the network, or run `traystatus doctor`",
                          file=sys.stderr)
                    return int(ExitCode.TIMEOUT)
                answered = True
                deadline = None if seconds is None else loop.time() + seconds
            if status is None:
                assert seconds is not None
                last_text = f" (still {LABELS[last[0]]})" if last else ""
                print(f"traystatus wait: not stable after {seconds:g} s{last_text}",
                      file=sys.stderr)
                return int(ExitCode.TIMEOUT)
            if status.state is State.STABLE and not (until_reviewed and status.review):
                return int(ExitCode.STABLE)
            if status.state is State.ERROR:
                print(f"traystatus wait: {status_line(status)}", file=sys.stderr)
                return int(ExitCode.UNUSABLE)
            key = (status.state, status.problem, status.review)
            if key != last and not quiet:
                print(f"traystatus wait: {status_line(status)}", file=sys.stderr, flush=True)
            last = key
            said = estimate_words(status) if verbose else ""
            if said and said != last_estimate:
                print(f"traystatus wait: {said}", file=sys.stderr, flush=True)
                last_estimate = said


def cmd_wait(args: argparse.Namespace) -> int:
    from traystatus.cli import many

    names = many.profiles_of(args)
    if len(names) > 1:
        if getattr(args, "dsn", None) or getattr(args, "relay", None):
            raise CliError("several --profile: give no --dsn or --relay with them",
                           ExitCode.USAGE)
        return many.cmd_wait_many(args, names)
    args.profile = names[0] if names else None

    async def once() -> int:
        spec, probe_error = await _source_async(args)
        return await _wait(spec, args.timeout, args.quiet,
                           getattr(args, "until_reviewed", False), probe_error,
                           verbose=bool(getattr(args, "verbose", 0)))

    return run(once())


async def _watch(conninfo: str | SourceSpec, as_json: bool, out: TextIO) -> int:
    last: tuple[object, ...] | None = None
    async with monitoring(conninfo) as session:
        while True:
            status = await next_status(session, None, skip_connecting=False)
            if status is None:  # pragma: no cover - no deadline
                continue
            key: tuple[object, ...] = (status.state, status.problem, status.review)
            if key == last:
                continue
            last = key
            if as_json:
                line = json.dumps(status_object(status))
            else:
                since = status.since.astimezone().isoformat(timespec="seconds")
                line = f"{since} {status_line(status)}"
            out.write(line + "\n")
            out.flush()


def cmd_watch(args: argparse.Namespace) -> int:
    return run(_watch(_conninfo(args), args.json, sys.stdout))
