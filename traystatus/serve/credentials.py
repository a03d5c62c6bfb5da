"""What only the database knows about a StatBus JWT: is its API key revoked, does its
user still exist. Asked the way StatBus asks it, over the server's own small connection.

* API keys: StatBus's own ``auth.check_api_key_revocation()`` (PostgREST's pre-request
  check), with the key's claims in ``request.jwt.claims`` for the transaction. It raises
  when the key was revoked (``auth.api_key.revoked_at``) or is gone (deleted, or its user
  deleted: the key's row goes with the user).
* Any StatBus JWT: its ``role`` (the user's email) must still be a role; StatBus drops it
  when the user is deleted, so PostgREST refuses that user's tokens from then on.

The server's role needs ``USAGE`` on schema ``auth`` (``EXECUTE`` on the function is
PUBLIC's in StatBus); docs/serve.md has the GRANT. Answers are cached for ``ttl`` seconds
per credential, so a burst of handshakes costs one query. When the question cannot be
asked (no database, no grant), the answer is "unknown": handshakes are refused (503), and
sockets already open stay until it can be asked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from typing import Any

import psycopg
from psycopg import errors

from traystatus.serve.auth import Credential

log = logging.getLogger(__name__)

GRANT_HINT = (
    "GRANT USAGE ON SCHEMA auth TO <the server's role> (StatBus's "
    "auth.check_api_key_revocation() then checks API keys; docs/serve.md)"
)


class Answer(enum.Enum):
    VALID = "valid"
    REVOKED = "revoked"  # revoked, deleted, its user deleted
    UNKNOWN = "unknown"  # could not ask (database unreachable, grant missing)


class CredentialChecker:
    """One autocommit connection (opened on first use, again after a failure) asking
    StatBus about JWTs. ``check()`` never raises."""

    def __init__(self, conninfo: str, ttl: float = 5.0, timeout: float = 5.0) -> None:
        self.conninfo = conninfo
        self.ttl = ttl
        self.timeout = timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._cache: dict[str, tuple[float, Answer]] = {}
        self.queries = 0
        self.problem = ""  # the last reason the question could not be asked (for the log)
        self._warned = ""

    @staticmethod
    def needed(credential: Credential) -> bool:
        return credential.kind in ("jwt", "api_key")

    async def check(self, credential: Credential, *, fresh: bool = False) -> Answer:
        if not self.needed(credential):
            return Answer.VALID
        key = credential.key
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and not fresh and now - cached[0] < self.ttl:
            return cached[1]
        async with self._lock:
            cached = self._cache.get(key)
            if cached is not None and time.monotonic() - cached[0] < self.ttl and (
                not fresh or cached[0] >= now
            ):
                return cached[1]
            answer = await self._ask(credential)
            if answer is not Answer.UNKNOWN:
                self._cache[key] = (time.monotonic(), answer)
            if len(self._cache) > 10_000:
                self._prune()
            return answer

    def _prune(self) -> None:
        limit = time.monotonic() - self.ttl
        self._cache = {k: v for k, v in self._cache.items() if v[0] >= limit}

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is not None and not (conn.closed or conn.broken):
            return conn
        fresh: psycopg.AsyncConnection[Any] = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(self.conninfo, autocommit=True),
            self.timeout * 2,
        )
        self._conn = fresh
        return fresh

    async def _ask(self, credential: Credential) -> Answer:
        self.queries += 1
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
                row = await self._one(conn, credential)
                if not (row and row[0]):
                    return Answer.REVOKED  # the user was deleted (StatBus drops its role)
        except errors.RaiseException:
            return Answer.REVOKED  # "API Key has been revoked." / "Key not found."
        except (errors.InsufficientPrivilege, errors.UndefinedFunction,
                errors.InvalidSchemaName) as ex:
            self._note(f"cannot check StatBus API keys: {ex.diag.message_primary}; "
                       f"{GRANT_HINT}", warn=True)
            return Answer.UNKNOWN
        except (psycopg.Error, OSError, TimeoutError) as ex:
            self._note(f"cannot check StatBus tokens now: {type(ex).__name__}: {ex}")
            await self._drop()
            return Answer.UNKNOWN
        self.problem = ""
        return Answer.VALID

    @staticmethod
    async def _one(conn: psycopg.AsyncConnection[Any], credential: Credential) -> Any:
        """One round trip: does the role exist; for an API key, StatBus's revocation check
        too, with the key's claims set for this statement's transaction only (the FROM
        item runs first: a subquery with a volatile function is not pulled up)."""
        role = credential.role or ""
        if credential.kind != "api_key":
            cur = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s)",
                (role,))
            return await cur.fetchone()
        cur = await conn.execute(
            "SELECT (SELECT count(*) > 0 FROM pg_catalog.pg_roles WHERE rolname = %s), "
            "auth.check_api_key_revocation() "
            "FROM (SELECT set_config('request.jwt.claims', %s, true)) AS claims",
            (role, json.dumps(credential.claims)))
        return await cur.fetchone()

    def _note(self, problem: str, warn: bool = False) -> None:
        self.problem = problem
        if problem != self._warned:
            self._warned = problem
            (log.warning if warn else log.info)("%s", problem)

    async def probe(self) -> str:
        """At start: can API keys be checked? "" if so, else what to fix (for a WARNING)."""
        probe = Credential("api_key", "probe", claims={"type": "access"})
        async with self._lock:  # one connection: never opened twice at once
            return await self._probe(probe)

    async def _probe(self, probe: Credential) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
                async with conn.transaction():
                    await conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                                       (json.dumps(probe.claims),))
                    await conn.execute("SELECT auth.check_api_key_revocation()")
        except (errors.InsufficientPrivilege, errors.UndefinedFunction,
                errors.InvalidSchemaName) as ex:
            return (f"StatBus API keys cannot be checked, so they are refused: "
                    f"{ex.diag.message_primary}; {GRANT_HINT}")
        except (psycopg.Error, OSError, TimeoutError) as ex:
            await self._drop()
            return f"cannot reach the database to check StatBus tokens: {type(ex).__name__}"
        return ""

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)

    async def close(self) -> None:
        await self._drop()
