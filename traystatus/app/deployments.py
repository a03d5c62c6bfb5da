"""Several deployments in one tray app: the other profiles Settings says to watch.

The controller keeps showing one profile in detail (the details window, the Profile
menu's choice); ``Deployments`` watches the others (``Settings.watched``), each with its
own source of state and its own notification policy. The tray shows ONE icon with the
worst state of all of them and a line per deployment in its tooltip and menu
(docs/app.md says why one icon and not one per deployment).

Every notice of a watched deployment names it: its title starts with the profile's name
and its key is the profile's own (a finish on test does not replace one on production).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from PySide6.QtCore import QObject, Signal

from traystatus.app.adapter import MonitorAdapter
from traystatus.app.notify_policy import Decision, Notice, NotificationPolicy, NotifyOptions
from traystatus.app.tasks import TaskSet
from traystatus.core.details import WorkSummary
from traystatus.core.monitor import MonitorOptions
from traystatus.core.password import resolve_async
from traystatus.core.profiles import ProfileError, ProfileStore
from traystatus.core.source import SourceError, open_source
from traystatus.core.state import Problem, State, Status

log = logging.getLogger(__name__)

# Worst first: what the one icon shows when deployments disagree.
SEVERITY = {
    State.ERROR: 4,
    State.DISCONNECTED: 3,
    State.PROCESSING: 2,
    State.CONNECTING: 1,
    State.STABLE: 0,
}


def worst(statuses: Sequence[Status]) -> Status | None:
    """The status the one icon shows: the most severe; among equals, the first given
    (the deployment shown in detail comes first)."""
    best: Status | None = None
    for status in statuses:
        if best is None or SEVERITY[status.state] > SEVERITY[best.state]:
            best = status
    return best


def named(decision: Decision, name: str) -> Decision:
    """A notice of deployment ``name``: its title says which, its key is its own."""
    if isinstance(decision, Notice):
        return replace(decision, title=f"{name}: {decision.title}", key=f"{name}/{decision.key}",
                       deployment=name)
    return replace(decision, key=f"{name}/{decision.key}")


class Deployments(QObject):
    """The watched deployments besides the one shown in detail. ``changed()`` after any
    of their Status changes; ``noticed(list[Decision])`` with named notices to send;
    ``detailsChanged((name, Details))`` while the details window reads them."""

    changed = Signal()
    noticed = Signal(object)
    detailsChanged = Signal(object)

    def __init__(
        self,
        store: ProfileStore,
        options: Callable[[], MonitorOptions],
        clock: Callable[[], datetime],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.options = options
        self.clock = clock
        self.names: list[str] = []
        self.statuses: dict[str, Status] = {}
        self.adapters: dict[str, MonitorAdapter] = {}
        self.policies: dict[str, NotificationPolicy] = {}
        # Deployments whose details the window reads now (it is open): a source opened
        # later is subscribed as it starts.
        self.wanted: set[str] = set()
        self.tasks = TaskSet(self._failed)

    def start(self, names: Sequence[str]) -> None:
        """Watch ``names`` (in this order); names that are no profile are skipped."""
        known = set(self.store.names())
        self.names = [n for n in dict.fromkeys(names) if n in known]
        for name in names:
            if name not in known:
                log.warning("watched profile %r does not exist; skipped", name)
        for name in self.names:
            self.statuses[name] = Status(State.CONNECTING)
            self.policies[name] = NotificationPolicy(
                NotifyOptions.from_settings(self.store.settings), started_at=self.clock()
            )
            self.tasks.start(self._open(name), f"watching {name}")
        self.changed.emit()

    async def _open(self, name: str) -> None:
        try:
            profile = self.store.get(name)
            conninfo = profile.to_conninfo()
            found = await resolve_async(conninfo, name)
            kwargs = {"password": found.password} if found.password else {}
            source = open_source(conninfo, self.options(), **kwargs)
        except (ProfileError, SourceError) as ex:
            self._set(name, Status(State.ERROR, problem=Problem.CONFIG, message=str(ex)))
            return
        adapter = MonitorAdapter(source, self)
        adapter.statusChanged.connect(lambda st, n=name: self._set(n, st))
        adapter.workFinished.connect(lambda s, n=name: self._summary(n, s))
        adapter.detailsChanged.connect(lambda d, n=name: self.detailsChanged.emit((n, d)))
        self.adapters[name] = adapter
        if name in self.wanted:
            adapter.want_details(True)
        adapter.start()

    def want_details(self, name: str, wanted: bool) -> None:
        """Read deployment ``name``'s details (True) or stop (False): the details window
        subscribes while it is open, as it does for the deployment shown in detail."""
        if wanted == (name in self.wanted):
            return
        if wanted:
            self.wanted.add(name)
        else:
            self.wanted.discard(name)
        adapter = self.adapters.get(name)
        if adapter is not None:
            adapter.want_details(wanted)

    def _set(self, name: str, status: Status) -> None:
        if name not in self.statuses:
            return  # stopped meanwhile
        self.statuses[name] = status
        decisions = self.policies[name].on_status(status, self.clock())
        if decisions:
            self.noticed.emit([named(d, name) for d in decisions])
        self.changed.emit()

    def _summary(self, name: str, summary: WorkSummary) -> None:
        policy = self.policies.get(name)
        if policy is not None:
            decisions = policy.on_summary(summary, self.clock())
            if decisions:
                self.noticed.emit([named(d, name) for d in decisions])

    def _failed(self, what: str, error: BaseException) -> None:
        log.error("%s failed: %s", what, error)

    def tick(self, now: datetime) -> None:
        out: list[Decision] = []
        for name, policy in self.policies.items():
            out += [named(d, name) for d in policy.tick(now)]
        if out:
            self.noticed.emit(out)

    def pause(self, until: datetime | None) -> None:
        for policy in self.policies.values():
            if until is None:
                policy.resume()
            else:
                policy.pause(until)

    def reconnect_now(self) -> None:
        for adapter in self.adapters.values():
            adapter.reconnect_now()

    def reconnect(self, name: object) -> None:
        """Reconnect one deployment now ("Reconnect now" in its details section)."""
        adapter = self.adapters.get(name) if isinstance(name, str) else None
        if adapter is not None:
            adapter.reconnect_now()

    def rows(self) -> list[tuple[str, Status]]:
        return [(n, self.statuses[n]) for n in self.names if n in self.statuses]

    async def stop(self) -> None:
        await self.tasks.cancel_all()
        adapters, self.adapters = self.adapters, {}
        self.statuses.clear()
        self.policies.clear()
        self.wanted.clear()
        self.names = []
        await asyncio.gather(*(a.stop() for a in adapters.values()), return_exceptions=True)
        for a in adapters.values():
            a.deleteLater()
