"""The seam: a source of state, and the one place that picks which.

The tray app, the CLI and a traystatus server consume ``StateSource`` only: a Status on
every change, details while subscribed, a work summary at the end of a run. Where the
state comes from is the source's business:

* a database (``monitor.Monitor``): our installed SQL, StatBus's own channels, or
  ``auto`` (installed when present and current, else built-in; readers.py);
* a traystatus server (``traystatus serve``) over WebSocket: a relay of another
  Monitor's events (``Status.source == "relay"``).

``open_source(target, ...)`` builds the right one from what the user gave: a libpq
conninfo or ``postgresql://`` URI is a database, a ``ws://`` / ``wss://`` URL a server.
A new kind of source implements ``StateSource`` and gets a branch in ``open_source``;
app/ and cli/ do not change.

The contract every source keeps (docs/architecture.md, "The seam"):

* ``run()`` runs until ``stop()`` and never raises for the environment's faults: they are
  a Status (DISCONNECTED or ERROR with a Problem and a message); a cancelled ``run()``
  cleans up and re-raises.
* ``stop()`` and ``reconnect_now()`` are safe from any thread and cut waits short.
* Listeners are plain callables called on the loop that runs ``run()``; an exception in
  one is logged and counted, never fatal.
* Details are read only while subscribed (refcounted) and told to details listeners;
  none is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from traystatus.core.model.details import Details, WorkSummary
from traystatus.core.model.state import Counters, Status

if TYPE_CHECKING:
    from traystatus.core.watch.options import MonitorOptions

RELAY_SCHEMES = ("ws://", "wss://")


@runtime_checkable
class StateSource(Protocol):
    """What the tray, the CLI and the server need of a source of state."""

    @property
    def status(self) -> Status: ...

    @property
    def counters(self) -> Counters: ...

    def add_listener(self, callback: Callable[[Status], None]) -> None: ...
    def add_details_listener(self, callback: Callable[[Details], None]) -> None: ...
    def add_summary_listener(self, callback: Callable[[WorkSummary], None]) -> None: ...
    async def run(self) -> None: ...
    def stop(self) -> None: ...
    def reconnect_now(self) -> None: ...
    def subscribe_details(self) -> None: ...
    def unsubscribe_details(self) -> None: ...
    def details(self) -> AbstractAsyncContextManager[Any]: ...


class SourceError(ValueError):
    """The target names a source this traystatus cannot open (one line for the user)."""


def is_relay(target: str) -> bool:
    """True when ``target`` is a traystatus server's URL rather than a database."""
    return target.strip().lower().startswith(RELAY_SCHEMES)


def open_source(
    target: str,
    options: MonitorOptions | None = None,
    **connect_kwargs: Any,
) -> StateSource:
    """The source for ``target``: a database conninfo/URI or a ``ws(s)://`` server URL.

    ``options``: for a database, ``monitor.MonitorOptions`` (timing, and ``reader``:
    installed | builtin | auto). ``connect_kwargs``: more libpq parameters (the password).
    Nothing connects here: ``run()`` does. Raises ``SourceError`` for a target it cannot
    open.
    """
    if is_relay(target):
        from traystatus.core.relay.client import RelayError, RelaySource

        # A relay's secret is its token; a profile's keychain entry comes as "password".
        token = connect_kwargs.get("token") or connect_kwargs.get("password")
        try:
            return RelaySource(target, options, token=str(token) if token else None)
        except RelayError as ex:
            raise SourceError(str(ex)) from None
    # Imported here: a relay needs no psycopg.
    from traystatus.core.watch.monitor import Monitor

    return Monitor(target, options, **connect_kwargs)
