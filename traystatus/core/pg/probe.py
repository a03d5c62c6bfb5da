"""Probe: the one look at the network a diagnosis may take.

``diagnose`` is ``diagnosis.classify`` plus a plain TCP probe where ``diagnosis.tcp_look``
(pure) asks for one: it tells "TLS failed" (the server answers TCP) from "nothing listens
there". It sends nothing and never logs in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import psycopg

from traystatus.core.pg.diagnosis import (
    Diagnosis,
    Phase,
    Target,
    classify,
    classify_connect,
    detail_of,
    tcp_look,
)


async def diagnose(
    ex: BaseException, conninfo: str = "", phase: Phase = Phase.CONNECT, probe_timeout: float = 3.0
) -> Diagnosis:
    """``classify``, plus a TCP look when ``diagnosis.tcp_look`` asks for one (a connect
    that failed without a SQLSTATE and without a password question): it tells "TLS failed"
    (the server answers TCP) from "nothing listens there".

    The probe opens and closes a plain TCP connection to the same host and port; it sends
    nothing, so no password or user name travels in clear text. No second login is ever
    made: a verdict rests only on the failure it explains (a server that refused while
    restarting must not be judged by a login that works a moment later).
    """
    where = tcp_look(ex, conninfo, phase)
    if where is None or not isinstance(ex, psycopg.OperationalError):
        return classify(ex, conninfo, phase)
    host, port = where
    reachable = port.isdigit() and await tcp_reachable(host, int(port), probe_timeout)
    return classify_connect(ex, Target.from_conninfo(conninfo), detail_of(ex),
                            reachable=reachable)


async def tcp_reachable(host: str, port: int, seconds: float) -> bool:
    """True when something accepts TCP connections at host:port (or a Unix socket dir)."""
    try:
        if host.startswith("/"):
            path = f"{host}/.s.PGSQL.{port}"
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), seconds)
        else:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), seconds)
    except (OSError, TimeoutError, socket.gaierror):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


