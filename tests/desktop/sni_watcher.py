"""A minimal StatusNotifierWatcher on the session bus, for the tray-host check's tests.

Debian 12 has no stand-alone SNI watcher (snixembed is not packaged), so the test runs this
real D-Bus service: it owns org.kde.StatusNotifierWatcher and says a host is registered,
which is all a client (Qt, or traystatus doctor) asks before using the SNI protocol.
No "from __future__ import annotations": dbus-fast reads D-Bus signatures from the
annotations, and "as" cannot be a bare annotation.
Run: python sni_watcher.py  (DBUS_SESSION_BUS_ADDRESS set); prints "ready" once serving.
"""

import asyncio
import sys

from dbus_fast.aio import MessageBus
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property, method, signal

NAME = "org.kde.StatusNotifierWatcher"


# The string annotations are D-Bus signatures for dbus-fast (Annotated[..., DBusSignature]
# needs dbus-fast 4; we support 2): mypy, which reads them as Python names, is told per line.
class Watcher(ServiceInterface):
    def __init__(self, host_registered: bool) -> None:
        super().__init__(NAME)
        self.items: list[str] = []
        self.host_registered = host_registered

    @method()
    def RegisterStatusNotifierItem(self, service: "s") -> None:  # type: ignore[name-defined]  # noqa: F821
        self.items.append(service)

    @method()
    def RegisterStatusNotifierHost(self, service: "s") -> None:  # type: ignore[name-defined]  # noqa: F821
        self.host_registered = True
        self.StatusNotifierHostRegistered()

    @signal()
    def StatusNotifierHostRegistered(self) -> None:
        return None

    @dbus_property(access=PropertyAccess.READ)
    def RegisteredStatusNotifierItems(self) -> "as":  # type: ignore[valid-type]  # noqa: F722
        return self.items

    @dbus_property(access=PropertyAccess.READ)
    def IsStatusNotifierHostRegistered(self) -> "b":  # type: ignore[name-defined]  # noqa: F821
        return self.host_registered

    @dbus_property(access=PropertyAccess.READ)
    def ProtocolVersion(self) -> "i":  # type: ignore[name-defined]  # noqa: F821
        return 0


async def main() -> None:
    bus = await MessageBus().connect()
    bus.export("/StatusNotifierWatcher", Watcher(host_registered="--no-host" not in sys.argv))
    await bus.request_name(NAME)
    print("ready", flush=True)
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    asyncio.run(main())
