"""Connecting so that a refused login keeps its SQLSTATE and a timeout its true length.

libpq keeps the SQLSTATE of a failed start-up to itself: ``PQconnectPoll`` offers only the
text, and psycopg's ``OperationalError`` has ``sqlstate = None``. Yet the SQLSTATE is what
tells "the database system is starting up" (57P03, a restart: retry soon) from "no such
database" (3D000) or "no CONNECT privilege" (42501), and the text is translated. So the
connections made here ask libpq for verbose error messages (``PQsetErrorVerbosity``)
before the first poll: libpq then writes the code itself, in a fixed place ("FATAL:  57P03:
..."), and :func:`sqlstate_of` reads it back. No message text is interpreted.

``PQsetErrorVerbosity`` is not in psycopg's API, so it is called from the very libpq that
psycopg uses (found by :func:`_libpq`; checked by its version). Where it cannot be found,
nothing changes except that :func:`sqlstate_of` returns None, and diagnosis.py says it
cannot tell (never a guess).

:func:`connect` also measures the wait: libpq and psycopg apply ``connect_timeout`` to each
host and address in turn, so three unanswering hosts take three times as long; a
:class:`ConnectTimedOut` carries the seconds really waited and the hosts tried, for the
message.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import glob
import os
import re
import sys
import time
from collections.abc import Callable, Generator
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

PQERRORS_DEFAULT = 1  # libpq's PGVerbosity: TERSE 0, DEFAULT 1, VERBOSE 2, SQLSTATE 3
PQERRORS_VERBOSE = 2

# What libpq writes for a server error in verbose mode: "<SEVERITY>:  <SQLSTATE>: <text>".
# The severity is translated; the two spaces, the code and ": " are libpq's fixed format.
_CODE = re.compile(r":  ([0-9A-Z]{5}): ")
# The LOCATION line verbose mode adds ("LOCATION:  function, file.c:123"): not for people.
_LOCATION = re.compile(r"^\S+:  \S+, \S+:\d+\s*$")


@functools.cache
def _libpq() -> Callable[[int, int], int] | None:
    """``PQsetErrorVerbosity`` of the libpq psycopg uses, or None when not found (never
    raises: without it connects work as psycopg's own, only without the SQLSTATE)."""
    try:
        return _find_libpq()
    except Exception:  # an unusual install: fall back, do not break connecting
        return None


def _find_libpq() -> Callable[[int, int], int] | None:
    candidates: list[str] = []
    if pq.__impl__ == "python":
        from psycopg.pq import _pq_ctypes

        return _verbosity_of(_pq_ctypes.pq)  # type: ignore[attr-defined]
    if pq.__impl__ == "binary":
        # The wheel's own copy (auditwheel/delocate/delvewheel rename it): already loaded,
        # so opening it by its path gives the same library.
        with contextlib.suppress(ImportError):
            import psycopg_binary

            base = os.path.dirname(psycopg_binary.__file__)
            for pattern in (os.path.join(base + ".libs", "libpq*"),
                            os.path.join(base, ".dylibs", "libpq*"),
                            os.path.join(base, "libpq*")):
                candidates.extend(sorted(glob.glob(pattern)))
    else:
        found = ctypes.util.find_library("pq") or ctypes.util.find_library("libpq")
        if found:
            candidates.append(found)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError), open("/proc/self/maps", encoding="utf-8") as maps:
            loaded = {line.split()[-1] for line in maps if "libpq" in line.rsplit("/", 1)[-1]}
            if pq.__impl__ == "binary":
                loaded = {p for p in loaded if "psycopg_binary" in p}
            candidates = sorted(loaded) + candidates
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = _verbosity_of(lib)
        if setter is not None:
            return setter
    return None


def _verbosity_of(lib: Any) -> Callable[[int, int], int] | None:
    try:
        version = lib.PQlibVersion
        setter = lib.PQsetErrorVerbosity
    except AttributeError:
        return None
    version.restype = ctypes.c_int
    version.argtypes = []
    if version() != pq.version():
        return None  # another libpq than psycopg's: its PGconn is not ours to touch
    setter.restype = ctypes.c_int
    setter.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return setter  # type: ignore[no-any-return]


def _verbosity(pgconn: pq.abc.PGconn, level: int) -> None:
    setter = _libpq()
    ptr = getattr(pgconn, "pgconn_ptr", None)  # every implementation has it; abc does not
    if setter is not None and ptr is not None:
        setter(ptr, level)


def _connect_gen(conninfo: str) -> Generator[Any, Any, pq.abc.PGconn]:
    """psycopg's connection generator (generators._connect), with verbose errors."""
    from psycopg._encodings import conninfo_encoding
    from psycopg.waiting import Wait

    conn = pq.PGconn.connect_start(conninfo.encode())
    _verbosity(conn, PQERRORS_VERBOSE)
    while True:
        if conn.status == pq.ConnStatus.BAD:
            raise pgerrors.OperationalError(
                "connection is bad: "
                + conn.get_error_message(conninfo_encoding(conninfo)), pgconn=conn)
        status = conn.connect_poll()
        if status == pq.PollingStatus.READING or status == pq.PollingStatus.WRITING:
            wait = Wait.R if status == pq.PollingStatus.READING else Wait.W
            while not (yield conn.socket, wait):
                pass
        elif status == pq.PollingStatus.OK:
            break
        elif status == pq.PollingStatus.FAILED:
            raise pgerrors.OperationalError(
                "connection failed: " + conn.get_error_message(conninfo_encoding(conninfo)),
                pgconn=pgerrors.finish_pgconn(conn))
        else:
            raise pgerrors.InternalError(f"unexpected poll status: {status}",
                                         pgconn=pgerrors.finish_pgconn(conn))
    _verbosity(conn, PQERRORS_DEFAULT)  # connected: queries' errors read as usual
    conn.nonblocking = 1
    return conn


class AsyncConnection(psycopg.AsyncConnection[Any]):
    """psycopg's AsyncConnection whose failed connects keep their SQLSTATE."""

    @classmethod
    def _connect_gen(cls, conninfo: str = "") -> Generator[Any, Any, AsyncConnection]:
        pgconn = yield from _connect_gen(conninfo)
        return cls(pgconn)


class Connection(psycopg.Connection[Any]):
    """psycopg's (blocking) Connection whose failed connects keep their SQLSTATE."""

    @classmethod
    def _connect_gen(cls, conninfo: str = "") -> Generator[Any, Any, Connection]:
        pgconn = yield from _connect_gen(conninfo)
        return cls(pgconn)


def sqlstate_of(ex: BaseException) -> str | None:
    """The SQLSTATE of a failed connect: psycopg's own when it has one, else the code
    libpq wrote into the message of a connection made here (the last host tried)."""
    code = getattr(ex, "sqlstate", None)
    if isinstance(code, str) and code:
        return code
    if not isinstance(ex, psycopg.OperationalError):
        return None
    found = _CODE.search(str(ex).splitlines()[0] if str(ex) else "")
    if found is None:
        found = _CODE.search(str(ex))
    return found.group(1) if found else None


def plain(text: str) -> str:
    """A verbose libpq message as a person would read it: without the SQLSTATE and the
    LOCATION lines."""
    lines = [ln for ln in text.splitlines() if not _LOCATION.match(ln)]
    return _CODE.sub(":  ", "\n".join(lines))


class ConnectTimedOut(TimeoutError):
    """No connection in time: ``waited`` seconds in all, over ``hosts`` hosts."""

    def __init__(self, waited: float, hosts: int, per_host: float) -> None:
        super().__init__(f"no connection within {waited:.0f} s")
        self.waited = waited
        self.hosts = hosts
        self.per_host = per_host


def host_count(conninfo: str) -> int:
    """How many hosts libpq will try (a comma-separated host or hostaddr list)."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return 1
    hosts = str(params.get("host") or params.get("hostaddr") or "")
    return max(1, len(hosts.split(","))) if hosts else 1


def per_host_timeout(conninfo: str) -> float:
    """The connect_timeout libpq applies to each host (0: none), in seconds."""
    try:
        return float(conninfo_to_dict(conninfo).get("connect_timeout") or 0)
    except (psycopg.Error, ValueError):
        return 0.0


def timed_out(started: float, conninfo: str) -> ConnectTimedOut:
    """The timeout to raise for a connect that began at ``started`` (monotonic)."""
    return ConnectTimedOut(time.monotonic() - started, host_count(conninfo),
                           per_host_timeout(conninfo))
