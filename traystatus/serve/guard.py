"""Connections that have not shown a valid credential yet: how many, from where.

A connection is *unauthenticated* from its first byte until one of its requests passes
the token check (app.py calls :meth:`ConnectionGuard.authenticated`). The server lets at
most ``per_address`` such connections from one address and ``total`` in all; one more is
closed at once, before it costs a request parser. With the header time bound
(server.py: a request head must arrive within ``--header-timeout``), a slowloris client
holds at most ``per_address`` sockets for that long.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class ConnectionGuard:
    def __init__(self, per_address: int = 64, total: int = 1024) -> None:
        self.per_address = per_address
        self.total = total
        self._pending: dict[object, str] = {}  # the connection's protocol -> its address
        self._by_address: Counter[str] = Counter()
        self.refused = 0
        self._warned = False

    @property
    def unauthenticated(self) -> int:
        return len(self._pending)

    def opened(self, connection: object, transport: asyncio.BaseTransport) -> bool:
        """A new connection (its protocol object): False, and closed, when it would
        exceed a limit."""
        peer: Any = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if len(self._pending) >= self.total or self._by_address[address] >= self.per_address:
            self.refused += 1
            if not self._warned:
                self._warned = True
                log.warning("refusing connections: %d unauthenticated in all, %d from %s "
                            "(limits %d / %d)", len(self._pending), self._by_address[address],
                            address, self.total, self.per_address)
            # after aiohttp has started the connection's handler, so it ends cleanly
            asyncio.get_running_loop().call_soon(transport.abort)  # type: ignore[attr-defined]
            return False
        self._pending[connection] = address
        self._by_address[address] += 1
        return True

    def authenticated(self, connection: object) -> None:
        self._forget(connection)

    def closed(self, connection: object) -> None:
        self._forget(connection)

    def _forget(self, connection: object) -> None:
        address = self._pending.pop(connection, None)
        if address is not None:
            self._by_address[address] -= 1
            if self._by_address[address] <= 0:
                del self._by_address[address]
            if not self._pending:
                self._warned = False


class GuardedServer(web.Server):
    """aiohttp's low-level server, telling a :class:`ConnectionGuard` about connections
    (made by :class:`GuardedAppRunner` from the server aiohttp builds)."""

    guard: ConnectionGuard

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.guard.opened(handler, transport)

    def connection_lost(self, handler: Any, exc: BaseException | None = None) -> None:
        self.guard.closed(handler)
        super().connection_lost(handler, exc)


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose server is a :class:`GuardedServer`."""

    def __init__(self, app: web.Application, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # same object and state; two hooks more
        assert isinstance(server, GuardedServer)
        server.guard = self.guard
        return server
