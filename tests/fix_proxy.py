"""A TCP proxy in front of the test server, to break the network on purpose.

Threads and blocking sockets, so it works the same whatever event loop the test uses.

* ``blackhole()``: the network goes silent. Every connection stays open, but nothing is
  forwarded any more in either direction (bytes are read and dropped, so no side sees
  an error or a full buffer), and new connections are accepted and then ignored. This
  is what a laptop sees when the Wi-Fi drops or a NAT forgets the connection: no FIN,
  no RST, just silence.
* ``restore()``: new connections are forwarded again (the silent ones stay dead: their
  byte streams lost data, as on a real network).
* ``cut()``: close every connection at once (both sides see the connection end).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket | None
    silent: bool = False
    closed: bool = False
    last_from_client: bool = False  # who spoke last (for Proxy.turns)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            if s is None:
                continue
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class Proxy:
    """Forward 127.0.0.1:``port`` to ``target_host``:``target_port``.

    A ``target_host`` that is a folder (starts with ``/``) is PostgreSQL's Unix socket
    folder, as libpq reads ``host``: the proxy connects to ``.s.PGSQL.<port>`` in it.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._silent = False
        self._running = False
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        # Round trips: the times a client spoke after the server did (or first), summed
        # over every connection.
        self.turns = 0

    # -- control ----------------------------------------------------------------------------
    def start(self) -> Proxy:
        self._running = True
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._running = False
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def blackhole(self) -> None:
        """Stop forwarding anything, on open and new connections, without closing any."""
        with self._lock:
            self._silent = True
            for pair in self._pairs:
                pair.silent = True

    def restore(self) -> None:
        """Forward new connections again."""
        with self._lock:
            self._silent = False

    def cut(self) -> None:
        """Close every open connection."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for p in self._pairs if not p.closed)

    def dsn(self, dsn: str) -> str:
        """``dsn`` pointed at the proxy instead of the server."""
        params = conninfo_to_dict(dsn)
        params.pop("hostaddr", None)
        params["host"] = "127.0.0.1"
        params["port"] = str(self.port)
        return make_conninfo("", **params)

    # -- work -------------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., object], *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                silent = self._silent
            upstream = None
            if not silent:
                try:
                    upstream = self._connect_upstream()
                except OSError:
                    client.close()
                    continue
            pair = _Pair(client, upstream, silent=silent)
            with self._lock:
                self._pairs.append(pair)
            self._spawn(self._pump, pair, True)
            if upstream is not None:
                self._spawn(self._pump, pair, False)

    def _connect_upstream(self) -> socket.socket:
        host, port = self.target
        if host.startswith("/"):
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.settimeout(10)
            try:
                upstream.connect(f"{host}/.s.PGSQL.{port}")
            except OSError:
                upstream.close()
                raise
        else:
            upstream = socket.create_connection(self.target, timeout=10)
        upstream.settimeout(None)
        return upstream

    def _pump(self, pair: _Pair, from_client: bool) -> None:
        src = pair.client if from_client else pair.upstream
        assert src is not None
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if pair.silent:
                continue  # read and dropped: the network ate it
            with self._lock:
                if from_client and not pair.last_from_client:
                    self.turns += 1
                pair.last_from_client = from_client
            dst = pair.upstream if from_client else pair.client
            if dst is None:
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        if not pair.silent:
            pair.close()


@pytest.fixture
def proxy_factory() -> Iterator[type[Proxy]]:
    """Make proxies that are all stopped at the end of the test."""
    made: list[Proxy] = []

    class _Tracked(Proxy):
        def __init__(self, host: str, port: int) -> None:
            super().__init__(host, port)
            made.append(self)

    yield _Tracked
    for p in made:
        p.stop()
