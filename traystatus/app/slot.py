"""One owner for the running source of one deployment: ``SourceSlot``.

Every watched deployment - the one shown in detail and each other one Settings lists -
has exactly one slot, and only the slot starts and stops its source. A restart replaces
the source atomically: the old one is cut off from the views at once (nothing it says
reaches them any more), stopped and waited for (its connection closed), and only then is
the new one opened and started. Restarts run one after another; when several are asked
for while one is still stopping the old source, only the newest is started (two quick
Saves, a Save then a Remove, a profile switch right after a Save: one source, never an
orphan). ``close()`` (Quit) stops whatever runs or is being started.

``SourceSpec`` is everything a source is opened with. Two equal specs open the same
source, which is how a Save knows that a change needs no restart (docs/app.md, "Which
changes restart what").
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from PySide6.QtCore import QObject, Signal

from traystatus.app.adapter import MonitorAdapter
from traystatus.app.tasks import bug_status
from traystatus.core.config import credentials
from traystatus.core.config.password import (
    PasswordNeeded,
    Source,
    check_password_async,
    is_wrong_password,
    needed_text,
    wrong_password_text,
)
from traystatus.core.config.password import resolve_async as resolve_password_async
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.source import SourceError, StateSource, is_relay, open_source
from traystatus.core.watch.options import READER_MODES, MonitorOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    """What one source is opened with: the target, the profile whose keychain entry may
    hold the password (None for ``--dsn``), how to read the database (installed |
    builtin | auto), the monitor's timing, and a password typed in Settings that no
    keychain could keep (this session only)."""

    conninfo: str
    # Where the password is looked up; a rename moves the entry, so no restart for it.
    keychain_name: str | None = field(default=None, compare=False)
    source_mode: str = "auto"
    options: MonitorOptions = field(default_factory=MonitorOptions)
    typed_password: str | None = field(default=None, repr=False)
    # The profile asks for its password each session: its keychain entry is never read.
    ask_password: bool = False


# An opened (not yet running) source and where its password came from.
Opened = tuple[StateSource, Source | None]
Opener = Callable[[SourceSpec], Awaitable[Opened]]


async def open_spec(spec: SourceSpec) -> Opened:
    """Find the password (the CLI's order, off the loop) and open the source; nothing
    connects yet. Raises ``SourceError`` for a target that cannot be opened."""
    typed = spec.typed_password
    name = spec.keychain_name
    kwargs: dict[str, Any] = {}
    if is_relay(spec.conninfo):
        # A traystatus server: the profile's keychain entry is its token.
        token = typed or (
            await credentials.get_password_async(name) if name else None
        )
        if token:
            kwargs["password"] = token
        source: Source | None = Source.KEYCHAIN if token else None
    else:
        # A password typed this session (Settings without a secure keychain, or the
        # password dialog) takes the keychain's place in the order (after the DSN's own
        # and libpq's). A profile that asks each session never reads the keychain.
        lookup = (lambda _name: typed) if typed or spec.ask_password else None
        keychain_name = (name or "session") if spec.ask_password else name
        found = await resolve_password_async(spec.conninfo, keychain_name, keychain=lookup)
        log.info("password%s: %s%s", f" of {name}" if name else "", found.source.value,
                 " (typed this session)" if typed else "")
        user = _user(spec.conninfo)
        if found.source is Source.NEEDED and spec.ask_password:
            raise PasswordNeeded(needed_text(user))
        if found.source is Source.KEYCHAIN and typed:
            error = await check_password_async(spec.conninfo, typed)
            if is_wrong_password(error):
                log.info("the password typed this session was refused")
                raise PasswordNeeded(wrong_password_text(user), wrong=True)
        if found.password:
            kwargs["password"] = found.password
        source = found.source
    options = spec.options
    if spec.source_mode in READER_MODES:
        options = replace(options, reader=spec.source_mode)
    return open_source(spec.conninfo, options, **kwargs), source


def _user(conninfo: str) -> str | None:
    try:
        user = conninfo_to_dict(conninfo).get("user")
    except Exception:  # not a conninfo: opening it says so
        return None
    return str(user) if user else None


class SourceSlot(QObject):
    """The one running source of one deployment, as Qt signals that only the current
    source can send: ``statusChanged(Status)``, ``detailsChanged(Details)``,
    ``workFinished(WorkSummary)``, ``importEnded(EndedJob)``; ``adapterChanged`` with
    the new ``MonitorAdapter`` (None while there is none)."""

    statusChanged = Signal(object)
    detailsChanged = Signal(object)
    workFinished = Signal(object)
    importEnded = Signal(object)
    dayChanged = Signal(object)  # core.today.DayView while details are wanted
    adapterChanged = Signal(object)

    def __init__(self, opener: Opener, what: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.opener = opener
        self.what = what  # "test", "the database": names it in the log and a bug's message
        self.adapter: MonitorAdapter | None = None
        # The spec of the source running or being started (None: none wanted).
        self.spec: SourceSpec | None = None
        self.opened = 0  # sources this slot opened (the tests and bench count them)
        self.password_source: Source | None = None
        # Why the last start stopped for a password to be asked (None: it did not).
        self.password_needed: PasswordNeeded | None = None
        self.closed = False
        self._generation = 0
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Future[None]] = set()
        self._stops: set[asyncio.Future[None]] = set()
        self._details_wanted = False

    # -- replacing --------------------------------------------------------------------------
    def restart(self, spec: SourceSpec | None) -> None:
        """Replace the source by one opened from ``spec`` (None: stop it, start none).
        Returns at once; the old source is cut off from the views now."""
        if self.closed:
            return
        self.spec = spec
        self._generation += 1
        old, self.adapter = self.adapter, None
        if old is not None:
            self._retire(old)
        task = asyncio.ensure_future(self._replace(self._generation, spec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self, generation: int, spec: SourceSpec | None) -> None:
        # One restart at a time, and none starts before every replaced source stopped.
        async with self._lock:
            if self._stops:  # asyncio.wait, not gather: a cancelled restart cancels no stop
                await asyncio.wait(list(self._stops))
            if generation != self._generation or spec is None:
                return  # a newer restart follows (or none is wanted)
            try:
                source, password_source = await self.opener(spec)
            except asyncio.CancelledError:
                raise
            except PasswordNeeded as ex:  # the controller asks (password dialog)
                if generation == self._generation:
                    self.password_needed = ex
                    self.statusChanged.emit(
                        Status(State.ERROR, problem=Problem.NO_PASSWORD, message=str(ex))
                    )
                return
            except SourceError as ex:  # the user's target, not our bug: say what is wrong
                log.warning("cannot watch %s: %s", self.what, ex)
                if generation == self._generation:
                    self.statusChanged.emit(
                        Status(State.ERROR, problem=Problem.CONFIG, message=str(ex))
                    )
                return
            except Exception as ex:
                log.error("unexpected error while starting to watch %s", self.what, exc_info=ex)
                if generation == self._generation:
                    self.statusChanged.emit(bug_status(f"starting to watch {self.what}", ex))
                return
            if generation != self._generation:
                return  # replaced meanwhile; this source never ran: nothing to stop
            self._install(source, password_source)

    def _install(self, source: StateSource, password_source: Source | None) -> None:
        adapter = MonitorAdapter(source, self)

        def forward(signal: Any) -> Callable[[object], None]:
            def emit(value: object) -> None:
                if adapter is self.adapter:  # an old source never reaches the views
                    signal.emit(value)
            return emit

        adapter.statusChanged.connect(forward(self.statusChanged))
        adapter.detailsChanged.connect(forward(self.detailsChanged))
        adapter.workFinished.connect(forward(self.workFinished))
        adapter.importEnded.connect(forward(self.importEnded))
        adapter.dayChanged.connect(forward(self.dayChanged))
        self.adapter = adapter
        self.password_source = password_source
        self.password_needed = None
        self.opened += 1
        if self._details_wanted:
            adapter.want_details(True)
        self.adapterChanged.emit(adapter)
        self.statusChanged.emit(source.status)
        adapter.start()

    def _retire(self, adapter: MonitorAdapter) -> None:
        """Cut ``adapter`` off and stop it; the next start waits for that."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "failed to disconnect": none
            for signal in (adapter.statusChanged, adapter.detailsChanged,
                           adapter.workFinished, adapter.importEnded, adapter.dayChanged):
                signal.disconnect()
        self.adapterChanged.emit(None)
        stop = asyncio.ensure_future(self._stop(adapter))
        self._stops.add(stop)
        stop.add_done_callback(self._stops.discard)

    async def _stop(self, adapter: MonitorAdapter) -> None:
        try:
            await adapter.stop()
        except Exception:
            log.exception("could not stop the old source of %s", self.what)
        finally:
            adapter.deleteLater()

    async def close(self) -> None:
        """Stop the source and any start under way, and wait until they are stopped."""
        self.closed = True
        self._generation += 1
        self.spec = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        old, self.adapter = self.adapter, None
        if old is not None:
            self._retire(old)
        if self._stops:
            await asyncio.wait(list(self._stops))

    def after(self, stopping: asyncio.Future[None]) -> None:
        """Start nothing before ``stopping`` is done (the closing slot this one replaces:
        a deployment unticked and ticked again never has two sources at once)."""
        if not stopping.done():
            self._stops.add(stopping)
            stopping.add_done_callback(self._stops.discard)

    # -- while it runs ----------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A restart or a stop is under way."""
        return bool(self._tasks or self._stops)

    def want_details(self, wanted: bool) -> None:
        """Read details (True) or stop (False), for this source and the ones after it."""
        if wanted == self._details_wanted:
            return
        self._details_wanted = wanted
        if self.adapter is not None:
            self.adapter.want_details(wanted)

    def reconnect_now(self) -> None:
        if self.adapter is not None:
            self.adapter.reconnect_now()
