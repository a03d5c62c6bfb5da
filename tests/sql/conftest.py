"""Helpers for the SQL tests: a listener on ``system_stability`` and small row factories.

Every helper talks to a real server through psycopg; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest
from psycopg.rows import TupleRow

from tests.fix_db import STATBUS_REAL

Conn = psycopg.Connection[TupleRow]  # psycopg's default: a column's type is the database's

CHANNEL = "system_stability"
IMPORT_JOB_STATES = [
    "waiting_for_upload", "upload_completed", "preparing_data", "analysing_data",
    "waiting_for_review", "approved", "rejected", "processing_data", "failed", "finished",
]
ACTIVE_JOB_STATES = {
    "upload_completed", "preparing_data", "analysing_data", "approved", "processing_data",
}
# the states the line looks at: active ones, and waiting_for_review, which holds the others
WATCHED_JOB_STATES = ACTIVE_JOB_STATES | {"waiting_for_review"}
# active states a review holds back (approved goes on)
HELD_JOB_STATES = ACTIVE_JOB_STATES - {"approved"}


_REAL_AT = os.environ.get("STATBUS_REAL_TEMPLATE", "").rpartition("_")[2] if STATBUS_REAL else ""
# StatBus holds its import queue during a review since 20260310132309.
REVIEW_HOLDS = not (_REAL_AT.isdigit() and int(_REAL_AT) < 20260310132309)


def jobs_busy(states: list[str] | set[str]) -> bool:
    """The job half of the line: an approved job, or an active one while no job waits for
    review (StatBus holds its import queue during a review)."""
    states = set(states)
    return "approved" in states or (
        bool(states & HELD_JOB_STATES)
        and not (REVIEW_HOLDS and "waiting_for_review" in states)
    )


# On a real StatBus older than 20260325114130 (STATBUS_REAL_TEMPLATE=statbus_template_<V>),
# worker.task_state has no 'interrupted' yet.
HAS_INTERRUPTED = not (_REAL_AT.isdigit() and int(_REAL_AT) < 20260325114130)
# Tests that write columns or commands StatBus added in March 2026 (process_duration_ms,
# error/warning counts, derive_units_phase) run from v2026.03.0 on.
NEEDS_2026_03 = pytest.mark.skipif(
    _REAL_AT.isdigit() and int(_REAL_AT) < 20260328092344,
    reason="writes columns/commands this older StatBus lacks (process_duration_ms, "
    "warning_count, derive_units_phase); install.sql reads them when present")
TASK_STATES = [s for s in ["pending", "processing", "interrupted", "waiting", "completed",
                           "failed"] if HAS_INTERRUPTED or s != "interrupted"]
BUSY_TASK_STATES = {"pending", "processing", "waiting", "interrupted"} & set(TASK_STATES)
# one real command per queue
QUEUE_COMMAND = {
    "analytics": "derive_statistical_unit",
    "import": "import_job_process",
    "maintenance": "task_cleanup",
}


class Listener:
    """A connection that LISTENs on system_stability (autocommit, as a client would)."""

    SENTINEL = "traystatus_test_sentinel"

    def __init__(self, dsn: str, channel: str = CHANNEL) -> None:
        self.conn: Conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(f"LISTEN {channel}")
        self.conn.execute(f"LISTEN {self.SENTINEL}")
        self._n = 0

    def drain(self, timeout: float = 30) -> list[str]:
        """Every system_stability payload committed before this call, in commit order.

        A session receives its own notifications too, and all notifications reach a listener
        in commit order: so this connection NOTIFYs a sentinel and collects everything up to
        it. No sleeping, no guessing how long "quiet" is.
        """
        self._n += 1
        token = str(self._n)
        self.conn.execute("SELECT pg_notify(%s, %s)", (self.SENTINEL, token))
        got: list[str] = []
        for n in self.conn.notifies(timeout=timeout):
            if n.channel == self.SENTINEL:
                if n.payload == token:
                    return got
                continue
            got.append(n.payload)
        raise AssertionError(f"sentinel {token} not received within {timeout} s; got {got}")

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def listener(db_dsn: str) -> Iterator[Listener]:
    lst = Listener(db_dsn)
    yield lst
    lst.close()


def stable(conn: Conn) -> bool:
    row = conn.execute("SELECT public.is_system_stable()").fetchone()
    assert row is not None
    return bool(row[0])


def payload(stable_value: bool, review: list[int] | None = None, queued_behind: int = 0) -> str:
    """The exact text the triggers send: ``{"stable": ...}``, with the review block's
    fingerprint while a job waits for review (the ids waiting, the imports queued behind)."""
    if review:
        return json.dumps({"review": {"jobs": sorted(review), "queued_behind": queued_behind},
                           "stable": stable_value})
    return json.dumps({"stable": stable_value})


def add_job(conn: Conn, state: str = "waiting_for_upload", **cols: object) -> int:
    """Insert an import job in ``state`` (a failed job gets the error it must have)."""
    cols.setdefault("slug", f"job_{uuid.uuid4().hex}")
    if STATBUS_REAL:
        # a real definition: StatBus's BEFORE INSERT trigger fills the rest from it
        row = conn.execute("SELECT id FROM public.import_definition "
                           "WHERE slug = 'legal_unit_job_provided'").fetchone()
        assert row is not None
        cols.setdefault("definition_id", row[0])
        cols.setdefault("time_context_ident", "r_year_curr")
    cols.setdefault("definition_id", 1)
    if state == "failed":
        cols.setdefault("error", "boom")
    names = ["state", *cols]
    values = [state, *cols.values()]
    sql = (
        f"INSERT INTO public.import_job ({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(values))}) RETURNING id"
    )
    r = conn.execute(sql, values).fetchone()
    assert r is not None
    return int(r[0])


def add_task(
    conn: Conn,
    state: str = "pending",
    command: str = "derive_statistical_unit",
    scheduled_at: datetime | str | None = None,
    **cols: object,
) -> int:
    names = ["command", "state", "scheduled_at", *cols]
    values = [command, state, scheduled_at, *cols.values()]
    sql = (
        f"INSERT INTO worker.tasks ({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(values))}) RETURNING id"
    )
    r = conn.execute(sql, values).fetchone()
    assert r is not None
    return int(r[0])
