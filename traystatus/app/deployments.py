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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from PySide6.QtCore import QObject, Signal

from traystatus.app.notify_policy import Decision, Notice, NotificationPolicy, NotifyOptions
from traystatus.app.slot import Opener, SourceSlot, SourceSpec, open_spec
from traystatus.core.config.profiles import ConnectionProfile, ProfileError, ProfileStore
from traystatus.core.model.details import WorkSummary
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.watch.options import MonitorOptions

log = logging.getLogger(__name__)

# Worst first: what the one icon shows when deployments disagree.
SEVERITY = {
    State.ERROR: 4,
    State.DISCONNECTED: 3,
    State.UPGRADING: 2,  # data unavailable or changing, as processing, for longer
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


def spec_for_profile(
    profile: ConnectionProfile,
    options: MonitorOptions,
    typed_password: str | None = None,
    source_override: str | None = None,
) -> SourceSpec:
    """How a profile is watched, the same for the one shown in detail and every other
    watched one: its target, its ``source`` setting, its keychain entry (or a password
    typed this session), the monitor's timing."""
    return SourceSpec(profile.to_conninfo(), profile.name,
                      source_override or profile.source or "auto", options, typed_password,
                      ask_password=profile.ask_password)


class Deployments(QObject):
    """The watched deployments besides the one shown in detail, a ``SourceSlot`` each.
    ``changed()`` after any of their Status changes; ``noticed(list[Decision])`` with
    named notices to send; ``detailsChanged((name, Details))`` while the details window
    reads them."""

    changed = Signal()
    noticed = Signal(object)
    detailsChanged = Signal(object)
    dayChanged = Signal(object)  # (name, core.today.DayView) while details are wanted

    def __init__(
        self,
        store: ProfileStore,
        options: Callable[[], MonitorOptions],
        clock: Callable[[], datetime],
        parent: QObject | None = None,
        passwords: Mapping[str, str] | None = None,
        opener: Opener = open_spec,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.options = options
        self.clock = clock
        # Passwords typed in Settings that no keychain kept (the controller's, shared).
        self.passwords: Mapping[str, str] = passwords if passwords is not None else {}
        self.opener = opener
        self.names: list[str] = []
        self.statuses: dict[str, Status] = {}
        self.slots: dict[str, SourceSlot] = {}
        self.policies: dict[str, NotificationPolicy] = {}
        # Deployments whose details the window reads now (it is open).
        self.wanted: set[str] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self._closing_by_name: dict[str, asyncio.Future[None]] = {}
        self.closed = False  # after stop() (Quit) nothing is opened any more

    def start(self, names: Sequence[str]) -> None:
        """Watch ``names`` (in this order); names that are no profile are skipped."""
        self.sync(names)

    def sync(self, names: Sequence[str], forced: Collection[str] = ()) -> None:
        """Watch ``names`` (in this order), names that are no profile skipped. A
        deployment already watched keeps its source unless what it is opened with
        changed (its connection settings, its source setting, a typed password) or it
        is in ``forced`` (a new password went to its keychain entry); one no longer
        listed is stopped."""
        if self.closed:
            return
        known = set(self.store.names())
        for name in names:
            if name not in known:
                log.warning("watched profile %r does not exist; skipped", name)
        wanted = [n for n in dict.fromkeys(names) if n in known]
        for name in [n for n in self.slots if n not in wanted]:
            self._drop(name)
        self.names = wanted
        for name in wanted:
            try:
                spec: SourceSpec | None = spec_for_profile(
                    self.store.get(name), self.options(), self.passwords.get(name)
                )
                problem = None
            except ProfileError as ex:
                spec, problem = None, Status(State.ERROR, problem=Problem.CONFIG,
                                             message=str(ex))
            slot = self.slots.get(name)
            if slot is None:
                slot = self._slot(name)
                self.statuses[name] = Status(State.CONNECTING)
                self.policies[name] = NotificationPolicy(
                    NotifyOptions.from_settings(self.store.settings), started_at=self.clock()
                )
            elif spec == slot.spec and name not in forced and spec is not None:
                continue  # nothing it is opened with changed: it keeps running
            else:
                self.statuses[name] = Status(State.CONNECTING)
            slot.restart(spec)
            if problem is not None:
                self.statuses[name] = problem
        self.changed.emit()

    def _slot(self, name: str) -> SourceSlot:
        slot = SourceSlot(self.opener, name, self)
        slot.statusChanged.connect(lambda st: self._set(slot, st))
        slot.workFinished.connect(lambda s: self._summary(slot, s))
        slot.detailsChanged.connect(
            lambda d: self.detailsChanged.emit((self._name_of(slot), d))
        )
        slot.dayChanged.connect(lambda d: self.dayChanged.emit((self._name_of(slot), d)))
        if name in self.wanted:
            slot.want_details(True)
        previous = self._closing_by_name.get(name)
        if previous is not None:
            slot.after(previous)  # its old source stops first
        self.slots[name] = slot
        return slot

    def _name_of(self, slot: SourceSlot) -> str | None:
        return next((n for n, s in self.slots.items() if s is slot), None)

    def _drop(self, name: str) -> None:
        slot = self.slots.pop(name)
        self.statuses.pop(name, None)
        self.policies.pop(name, None)
        self.wanted.discard(name)
        closing = asyncio.ensure_future(slot.close())
        self._closing.add(closing)
        self._closing_by_name[name] = closing
        closing.add_done_callback(self._closing.discard)
        closing.add_done_callback(
            lambda f: self._closing_by_name.pop(name, None)
            if self._closing_by_name.get(name) is f else None
        )
        closing.add_done_callback(lambda _f: slot.deleteLater())

    def rename(self, old: str, new: str) -> None:
        """Profile ``old`` is now called ``new``: its source keeps running."""
        if old not in self.slots or new in self.slots:
            return
        self.slots[new] = self.slots.pop(old)
        if old in self.statuses:
            self.statuses[new] = self.statuses.pop(old)
        if old in self.policies:
            self.policies[new] = self.policies.pop(old)
        if old in self.wanted:
            self.wanted.discard(old)
            self.wanted.add(new)
        self.names = [new if n == old else n for n in self.names]

    def set_notify_options(self, options: NotifyOptions) -> None:
        """New notification settings: applied in place, no source restarted."""
        for policy in self.policies.values():
            policy.options = options

    def want_details(self, name: str, wanted: bool) -> None:
        """Read deployment ``name``'s details (True) or stop (False): the details window
        subscribes while it is open, as it does for the deployment shown in detail."""
        if wanted == (name in self.wanted):
            return
        if wanted:
            self.wanted.add(name)
        else:
            self.wanted.discard(name)
        slot = self.slots.get(name)
        if slot is not None:
            slot.want_details(wanted)

    def _set(self, slot: SourceSlot, status: Status) -> None:
        name = self._name_of(slot)
        if name is None or name not in self.statuses:
            return  # stopped meanwhile
        self.statuses[name] = status
        decisions = self.policies[name].on_status(status, self.clock())
        if decisions:
            self.noticed.emit([named(d, name) for d in decisions])
        self.changed.emit()

    def _summary(self, slot: SourceSlot, summary: WorkSummary) -> None:
        name = self._name_of(slot)
        policy = self.policies.get(name) if name is not None else None
        if name is not None and policy is not None:
            decisions = policy.on_summary(summary, self.clock())
            if decisions:
                self.noticed.emit([named(d, name) for d in decisions])

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
        for name in list(self.slots):
            self.reconnect(name)

    def reconnect(self, name: object) -> None:
        """Reconnect one deployment now ("Reconnect now" in its details section); one
        that a bug stopped is started over."""
        slot = self.slots.get(name) if isinstance(name, str) else None
        if slot is None or not isinstance(name, str):
            return
        if self.statuses.get(name, Status(State.STABLE)).problem is Problem.INTERNAL:
            self.statuses[name] = Status(State.CONNECTING)
            slot.restart(slot.spec)
            self.changed.emit()
        else:
            slot.reconnect_now()

    def rows(self) -> list[tuple[str, Status]]:
        return [(n, self.statuses[n]) for n in self.names if n in self.statuses]

    async def stop(self) -> None:
        self.closed = True
        for name in list(self.slots):
            self._drop(name)
        self.names = []
        if self._closing:
            await asyncio.wait(list(self._closing))
