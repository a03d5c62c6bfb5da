"""Probe: the one look at the network a diagnosis may take.

``diagnose`` is ``diagnosis.classify`` plus a plain TCP probe for a connect that failed
without a SQLSTATE and without a password question: it tells "TLS failed" (the server
answers TCP) from "nothing listens there". It sends nothing and never logs in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import psycopg
from psycopg import errors as pgerrors

from traystatus.core.pg import connect as pgconnect
from traystatus.core.pg.diagnosis import (
    Diagnosis,
    Phase,
    Target,
    classify,
    classify_connect,
    detail_of,
    invalid_setting,
)


async def diagnose(
    ex: BaseException, conninfo: str = "", phase: Phase = Phase.CONNECT, probe_timeout: float = 3.0
) -> Diagnosis:
    """``classify``, plus a TCP probe when a connect failed without a SQLSTATE and without
    a password question: it tells "TLS failed" (the server answers TCP) from "nothing
    listens there".

    The probe opens and closes a plain TCP connection to the same host and port; it sends
    nothing, so no password or user name travels in clear text. No second login is ever
    made: a verdict rests only on the failure it explains (a server that refused while
    restarting must not be judged by a login that works a moment later).
    """
    target = Target.from_conninfo(conninfo)
    pgconn = getattr(ex, "pgconn", None)
    if (
        phase is Phase.CONNECT
        and isinstance(ex, psycopg.OperationalError)
        and not isinstance(ex, pgerrors.ConnectionTimeout)
        and pgconnect.sqlstate_of(ex) is None
        and pgconn is not None
        and not pgconn.needs_password
        and not pgconn.used_password
        and not invalid_setting(conninfo)
    ):
        host = _decode(pgconn.hostaddr) or _decode(pgconn.host) or target.host
        port = _decode(pgconn.port) or target.port or "5432"
        reachable = port.isdigit() and await tcp_reachable(host, int(port), probe_timeout)
        return classify_connect(ex, target, detail_of(ex), reachable=reachable)
    return classify(ex, conninfo, phase)


def _decode(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


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


