"""One tray app per user and profile, through a named local socket.

The first instance listens on a QLocalServer named after the user and profile. A second
start connects, sends ``show`` (the first opens its details window) and exits 0; with
``--replace`` it sends ``quit`` instead, waits for the first to let go of the name, and
takes over. A name left behind by a crashed instance (nobody answers) is removed.
"""

from __future__ import annotations

import getpass
import hashlib

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

SHOW = b"show\n"
QUIT = b"quit\n"


def server_name(profile: str | None) -> str:
    """Short, file-name-safe and per user (local sockets live in a shared temp folder)."""
    key = f"{getpass.getuser()}\0{profile or ''}".encode()
    return "traystatus-" + hashlib.sha256(key).hexdigest()[:16]


def send(name: str, message: bytes, timeout_ms: int = 1500) -> bool:
    """Send ``message`` to a running instance; False when none answers."""
    sock = QLocalSocket()
    sock.connectToServer(name)
    if not sock.waitForConnected(timeout_ms):
        return False
    sock.write(message)
    sock.flush()
    sock.waitForBytesWritten(timeout_ms)
    sock.waitForReadyRead(timeout_ms)  # the first answers "ok" once it acted
    sock.disconnectFromServer()
    return True


class SingleInstance(QObject):
    """The listening side. ``showRequested`` / ``quitRequested`` come from later starts."""

    showRequested = Signal()
    quitRequested = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._on_connection)

    def listen(self) -> bool:
        if self.server.listen(self.name):
            return True
        # A stale socket file from a crashed instance: nobody answers on it.
        QLocalServer.removeServer(self.name)
        return self.server.listen(self.name)

    def close(self) -> None:
        self.server.close()

    def _on_connection(self) -> None:
        while self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()
            sock.readyRead.connect(lambda s=sock: self._read(s))

    def _read(self, sock: QLocalSocket) -> None:
        data = bytes(sock.readAll().data())
        sock.write(b"ok\n")
        sock.flush()
        sock.disconnectFromServer()
        if QUIT in data:
            self.quitRequested.emit()
        elif SHOW in data:
            self.showRequested.emit()
