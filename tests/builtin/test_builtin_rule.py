"""The built-in rule (builtin_sql) is is_system_stable()'s rule, state by state; what it
costs in accuracy (nothing, given its ids); and what the login needs (builtin.Probe).

On the stand-in, traystatus's SQL is installed only to serve as the oracle: the built-in
reads never call it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import TupleRow

from tests.builtin.kit import KitDb
from tests.core.conftest import with_params
from tests.fix_db import PgServer, temporary_role
from traystatus.core.model.state import Problem
from traystatus.core.watch import _builtin_sql as builtin_sql
from traystatus.core.watch._builtin_protocol import Probe, TaskTracker
from traystatus.core.watch.readers import review_block

Conn = psycopg.Connection[TupleRow]  # psycopg's default: a column's type is the database's

TASK_STATES = ["pending", "processing", "interrupted", "waiting", "completed", "failed"]
JOB_STATES = ["waiting_for_upload", "upload_completed", "preparing_data", "analysing_data",
              "waiting_for_review", "approved", "rejected", "processing_data", "failed",
              "finished"]
COMMANDS = {"analytics": "derive_statistical_unit", "import": "import_job_process",
            "maintenance": "task_cleanup"}
WHEN = {"null": None, "past": "now() - interval '1 hour'", "future": "now() + interval '1 hour'"}


def builtin_reads(c: Conn, tracker: TaskTracker) -> tuple[bool, bool]:
    """(RULE with the tracker's ids, RULE_FULL)."""
    tracker.holds_queue = probe_conn(c).holds_queue
    q = tracker.query()
    assert not q.full
    row = c.execute(q.sql.encode(), q.params).fetchone()
    assert row is not None
    fast = tracker.apply(row, full=False).stable
    full = c.execute(builtin_sql.RULE_FULL.encode(), {"holds": tracker.holds_queue}).fetchone()
    assert full is not None
    return fast, bool(full[0])


def probe_conn(c: Conn) -> Probe:
    from tests.builtin.test_builtin_race import probe as full_probe

    return full_probe(c)


def oracle(c: Conn) -> bool:
    row = c.execute("SELECT public.is_system_stable()").fetchone()
    assert row is not None
    return bool(row[0])


def test_install_sql_draws_the_same_job_line(conn: Conn) -> None:
    rows = conn.execute(
        "SELECT e.enumlabel FROM pg_enum AS e "
        "WHERE e.enumtypid = 'public.import_job_state'::regtype "
        "AND public.system_stability_job_state_active(e.enumlabel::public.import_job_state)"
    ).fetchall()
    assert {r[0] for r in rows} == set(builtin_sql.ACTIVE_JOB_STATES)
    # and holds the queue during a review exactly when install.sql decided it does
    info = conn.execute("SELECT public.system_stability_sql_info()").fetchone()
    assert info is not None
    assert probe_conn(conn).holds_queue is info[0]["review_holds_queue"]


@pytest.mark.parametrize("behind", ["upload_completed", "approved", "processing_data"])
def test_a_review_holds_the_queue_as_install_sql_says(conn: Conn, behind: str) -> None:
    tracker = TaskTracker()
    tracker.need_full = False
    for state in ("waiting_for_review", behind):
        conn.execute("INSERT INTO public.import_job (slug, definition_id, state) "
                     "VALUES (%s, 1, %s)", (uuid.uuid4().hex, state))
    truth = oracle(conn)
    assert builtin_reads(conn, tracker) == (truth, truth)
    if probe_conn(conn).holds_queue:
        assert truth is (behind != "approved")
    # The review block the tray shows: the same as system_stability_review() says.
    q = tracker.query()
    row = conn.execute(q.sql.encode(), q.params).fetchone()
    installed = conn.execute("SELECT public.system_stability_review()").fetchone()
    assert row is not None and installed is not None
    assert review_block(row[4]) == review_block(installed[0]) is not None


def test_every_task_case_agrees_with_is_system_stable(conn: Conn) -> None:
    tracker = TaskTracker()
    tracker.need_full = False
    cases = 0
    for state, (queue, command), when in itertools.product(
        TASK_STATES, COMMANDS.items(), WHEN
    ):
        conn.execute("DELETE FROM worker.tasks")
        error = "x" if state == "failed" else None
        sched = WHEN[when]
        row = conn.execute(
            f"INSERT INTO worker.tasks (command, state, error, scheduled_at) "
            f"VALUES (%s, %s, %s, {sched or 'NULL'}) RETURNING id",
            (command, state, error),
        ).fetchone()
        assert row is not None
        # The state change that made it so announced its id (worker_task_changed).
        tracker.note(f'{{"id" : {row[0]}, "parent_id" : null}}')
        truth = oracle(conn)
        assert builtin_reads(conn, tracker) == (truth, truth), (state, queue, when)
        cases += 1
    assert cases == len(TASK_STATES) * 3 * 3


def test_every_job_state_agrees_with_is_system_stable(conn: Conn) -> None:
    tracker = TaskTracker()
    tracker.need_full = False
    for state in JOB_STATES:
        conn.execute("DELETE FROM public.import_job")
        conn.execute(
            "INSERT INTO public.import_job (slug, definition_id, state, error) "
            "VALUES (%s, 1, %s, %s)",
            (uuid.uuid4().hex, state, "x" if state == "failed" else None),
        )
        truth = oracle(conn)
        assert builtin_reads(conn, tracker) == (truth, truth), state


def test_a_processing_task_nobody_announced_is_found_by_the_full_read_only(conn: Conn) -> None:
    """The cost of the cheap read, exactly: it finds processing/interrupted tasks by the
    ids it was told. The full read (first read of every connection) finds them all."""
    conn.execute("INSERT INTO worker.tasks (command, state) "
                 "VALUES ('collect_changes', 'processing')")
    tracker = TaskTracker()
    q = tracker.query()
    assert q.full  # the first read of a connection is the full one
    row = conn.execute(q.sql.encode(), q.params).fetchone()
    assert row is not None
    assert tracker.apply(row, full=True).stable is False
    assert len(tracker.ids) == 1
    # A fresh tracker told nothing (never the case on a connection) would miss it:
    blind = TaskTracker()
    blind.need_full = False
    assert builtin_reads(conn, blind) == (True, False)


def test_tracked_ids_shrink_to_the_running_ones(conn: Conn) -> None:
    ids = []
    for state in ("processing", "completed", "interrupted", "failed"):
        row = conn.execute(
            "INSERT INTO worker.tasks (command, state, error) VALUES "
            "('derive_statistical_unit', %s, %s) RETURNING id",
            (state, "x" if state == "failed" else None),
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    tracker = TaskTracker()
    tracker.need_full = False
    for i in ids:
        assert tracker.note(f'{{"id": {i}, "parent_id": null}}')
    builtin_reads(conn, tracker)
    assert tracker.ids == [ids[0], ids[2]]


@pytest.mark.parametrize(
    "payload",
    ["", "not json", "[1]", '{"id": "7"}', '{"id": true}', '{"id": -1}', '{"parent_id": 3}',
     '{"id": 1e400}', "x" * 9000],
)
def test_an_unusable_payload_makes_the_next_read_a_full_one(payload: str) -> None:
    tracker = TaskTracker()
    tracker.need_full = False
    assert tracker.note(payload) is False
    assert tracker.query().full
    assert tracker.unusable_payloads == 1


def test_payloads_beyond_the_cap_are_counted_not_parsed() -> None:
    """A flood costs no parsing past ``cap`` payloads between two reads, and the next read
    does not depend on the ids it dropped (``lost``)."""
    tracker = TaskTracker(cap=100)
    tracker.need_full = False
    for i in range(1, 500):
        assert tracker.note(f'{{"id": {i}}}')
    assert len(tracker.ids) == 100 and tracker.dropped_payloads == 399
    assert tracker.note("garbage")  # past the cap: not even looked at
    assert tracker.unusable_payloads == 0 and tracker.lost
    query = tracker.query()  # no clock: no floor either, so the full read
    assert query.full and query.sql == builtin_sql.RULE_FULL
    tracker.apply((True, [], None), full=True)
    assert tracker.ids == [] and not tracker.query().full
    assert tracker.note('{"id": 7}') and tracker.ids == [7]  # parsing again after a read


def _row(newest: int, lowest: int | None = None, stable: bool = True) -> tuple[object, ...]:
    """A read's row: stable, tracked ids, next_due, newest id, review, lowest active id,
    analytics tasks scheduled ahead."""
    return (stable, [], None, newest, None, lowest, [])


def test_after_lost_payloads_the_read_starts_from_the_floor() -> None:
    tracker = TaskTracker(floor_lag=5.0)
    assert tracker.query(now=100.0).full
    tracker.apply(_row(newest=50, lowest=40), full=True, now=100.0)
    assert tracker.note("garbage") is False
    # Within floor_lag of the connection's first read: only a full read is sure.
    assert tracker.query(now=101.0).full
    tracker.apply(_row(newest=60), full=True, now=101.0)
    tracker.apply(_row(newest=70), full=False, now=106.0)
    assert tracker.floor() == 61  # the read at 101 is the newest one >= 5 s old: 60 + 1
    tracker.apply(_row(newest=80), full=False, now=112.0)
    assert tracker.floor() == 71  # the newest read >= 5 s old is at 106
    assert tracker.note('{"id": 75}')
    for _ in range(3):
        tracker.note("garbage")
    q = tracker.query(now=112.5)
    assert q.since and q.sql == builtin_sql.RULE_SINCE and not q.full
    assert q.params["low"] == 71 and q.params["ids"] == [75]
    tracker.apply(_row(newest=80), full=False, now=112.5)
    assert tracker.query(now=113.0).sql == builtin_sql.RULE  # nothing lost since
    tracker.reset()  # a new connection knows no floor
    assert tracker.floor() is None and tracker.query(now=114.0).full


def _reads(conn: Conn, tracker: TaskTracker, *times: float) -> tuple[object, ...]:
    row: tuple[object, ...] | None = None
    for now in times:
        q = tracker.query(now=now)
        row = conn.execute(q.sql.encode(), q.params).fetchone()
        assert row is not None
        tracker.apply(row, q.full, now=now)
    assert row is not None
    return row


def test_a_task_scheduled_ahead_is_probed_by_id_not_under_the_floor(conn: Conn) -> None:
    """A task queued long ago for later (StatBus's maintenance tasks are, 24 h ahead)
    must not hold the floor back, or every read after lost payloads would read the rows
    of a day; an analytics one is probed by id instead."""
    conn.execute("DELETE FROM worker.tasks")
    ahead = conn.execute("INSERT INTO worker.tasks (command, state, scheduled_at) VALUES "
                         "('derive_statistical_unit', 'pending', now() + interval '1 hour') "
                         "RETURNING id").fetchone()
    conn.execute("INSERT INTO worker.tasks (command, state, scheduled_at) VALUES "
                 "('task_cleanup', 'pending', now() + interval '1 day')")
    newest = conn.execute("INSERT INTO worker.tasks (command, state) VALUES "
                          "('derive_statistical_unit', 'completed') RETURNING id").fetchone()
    assert ahead is not None and newest is not None
    tracker = TaskTracker(floor_lag=0.0)
    tracker.holds_queue = probe_conn(conn).holds_queue
    assert _reads(conn, tracker, 1.0, 2.0)[0] is True
    assert tracker.floor() == newest[0] + 1  # neither task scheduled ahead holds it back
    # It falls due and runs; what told of it was lost.
    conn.execute("UPDATE worker.tasks SET state = 'processing', scheduled_at = NULL "
                 "WHERE id = %s", (ahead[0],))
    tracker.note("garbage")
    q = tracker.query(now=3.0)
    assert q.since and q.params["ids"] == [ahead[0]]
    row = conn.execute(q.sql.encode(), q.params).fetchone()
    assert row is not None and tracker.apply(row, q.full, now=3.0).stable is False
    assert oracle(conn) is False


def test_full_reads_asked_for_by_notifications_are_rate_limited() -> None:
    """Anyone may NOTIFY: a forged flood must not make every client scan the table. It
    costs reads from the floor instead, and one full read per min_full_interval."""
    tracker = TaskTracker(min_full_interval=30.0)
    assert tracker.query(now=100.0).full  # the first read of a connection: always
    tracker.apply(_row(newest=9), full=True, now=100.0)
    tracker.apply(_row(newest=9), full=False, now=105.0)
    assert tracker.note("garbage") is False
    q = tracker.query(now=106.0)
    assert not q.full and q.since  # the full read is held back; the floor answers
    tracker.apply(_row(newest=9), full=False, now=106.0)
    assert tracker.full_due_in(106.0) == pytest.approx(24.0)
    assert tracker.query(now=107.0).sql == builtin_sql.RULE
    assert tracker.query(now=111.0).sql == builtin_sql.RULE_FLOOR  # the floor, 5 s on
    assert tracker.query(now=130.5).full
    tracker.apply(_row(newest=9), full=True, now=130.5)
    assert tracker.full_due_in(131.0) is None
    tracker.reset()  # a new connection reads everything at once
    assert tracker.query(now=131.0).full


def test_the_read_from_the_floor_finds_a_task_nobody_announced(conn: Conn) -> None:
    """The floor is the lowest pending/waiting/tracked id; a task that started above it
    with its payload lost is found by RULE_SINCE, as a full read would, and not by RULE."""
    conn.execute("DELETE FROM worker.tasks")
    old = conn.execute("INSERT INTO worker.tasks (command, state) "
                       "VALUES ('derive_statistical_unit', 'completed') RETURNING id").fetchone()
    task = conn.execute("INSERT INTO worker.tasks (command, state) "
                        "VALUES ('collect_changes', 'pending') RETURNING id").fetchone()
    assert old is not None and task is not None
    tracker = TaskTracker(floor_lag=0.0)
    tracker.holds_queue = probe_conn(conn).holds_queue
    for now in (1.0, 2.0):  # the full read of the connection, then an everyday read
        q = tracker.query(now=now)
        row = conn.execute(q.sql.encode(), q.params).fetchone()
        assert row is not None and row[0] is False
        tracker.apply(row, q.full, now=now)
    assert tracker.floor() == task[0]  # the pending task, not the table's oldest row
    conn.execute("UPDATE worker.tasks SET state = 'processing' WHERE id = %s", (task[0],))
    tracker.note("x" * 300)  # what told of it was lost (too long: unusable)
    q = tracker.query(now=3.0)
    assert q.since
    row = conn.execute(q.sql.encode(), q.params).fetchone()
    assert row is not None
    assert tracker.apply(row, q.full, now=3.0).stable is False
    assert tracker.ids == [task[0]]
    plain = conn.execute(builtin_sql.RULE.encode(), {"ids": [], "holds": True}).fetchone()
    assert plain is not None and plain[0] is True  # the everyday read alone would miss it
    assert oracle(conn) is False


def test_next_due_is_the_earliest_future_analytics_task(conn: Conn) -> None:
    conn.execute("INSERT INTO worker.tasks (command, state, scheduled_at) VALUES "
                 "('derive_statistical_unit', 'pending', now() + interval '2 hours'), "
                 "('derive_statistical_unit', 'pending', now() + interval '1 hour'), "
                 "('task_cleanup', 'pending', now() + interval '10 minutes')")
    tracker = TaskTracker()
    q = tracker.query()
    row = conn.execute(q.sql.encode(), q.params).fetchone()
    assert row is not None
    result = tracker.apply(row, full=True)
    assert result.stable is True
    due = conn.execute("SELECT min(scheduled_at) FROM worker.tasks "
                       "WHERE command = 'derive_statistical_unit'").fetchone()
    assert due is not None and result.next_due == due[0]


# -- what the login needs -------------------------------------------------------------------
def probe(dsn: str) -> Probe:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(builtin_sql.PROBE.encode()).fetchone()
        assert row is not None
        return Probe.from_row(row)


def test_the_kit_analyst_may_read_everything(kit_db: KitDb) -> None:
    p = probe(kit_db.analyst_dsn)
    assert p.problem("statbus") is None
    assert p.task_changed_channel is True
    assert p.login == "analyst@statbus-real.test"


def test_notify_reader_lacks_the_worker_schema(kit_db: KitDb) -> None:
    dsn = with_params(kit_db.dsn, user="statbus_notify", password="statbus-real-notify")
    diag = probe(dsn).problem("statbus")
    assert diag is not None and diag.problem is Problem.PERMISSION
    assert "USAGE on schema worker" in diag.message
    assert "GRANT authenticated TO \"statbus_notify\"" in diag.message
    # StatBus's own RPCs need the very same grant (SECURITY INVOKER): no way around it.
    with psycopg.connect(dsn, autocommit=True) as c, pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="schema worker"
    ):
        c.execute("SELECT public.is_deriving_statistical_units()")


@pytest.fixture
def stand_in_server(templates: PgServer) -> PgServer:
    return templates


@pytest.fixture
def outsider(templates: PgServer) -> Iterator[tuple[str, str]]:
    """A login in regular_user but not in authenticated: row level security hides jobs."""
    yield from temporary_role(templates, f"outsider_{uuid.uuid4().hex[:8]}", "regular_user")


def test_a_login_outside_authenticated_would_see_a_subset(
    bare_db_dsn: str, outsider: tuple[str, str]
) -> None:
    name, password = outsider
    with psycopg.connect(bare_db_dsn, autocommit=True) as c:
        c.execute("GRANT USAGE ON SCHEMA worker TO regular_user")
        c.execute("GRANT SELECT ON worker.tasks, worker.command_registry TO regular_user")
        c.execute("GRANT SELECT ON public.import_job TO regular_user")
    diag = probe(with_params(bare_db_dsn, user=name, password=password)).problem("db")
    assert diag is not None and diag.problem is Problem.PERMISSION
    assert "sees only some import jobs" in diag.message


def test_a_plain_login_gets_every_missing_grant_named(
    bare_db_dsn: str, outsider: tuple[str, str]
) -> None:
    name, password = outsider
    with psycopg.connect(bare_db_dsn, autocommit=True) as c:
        # The stand-in rejects REVOKE as StatBus's sql_saga does: event triggers off.
        c.execute("SET session_replication_role = replica")
        c.execute("REVOKE ALL ON SCHEMA worker FROM regular_user")
        c.execute("REVOKE ALL ON public.import_job FROM regular_user")
    diag = probe(with_params(bare_db_dsn, user=name, password=password)).problem("db")
    assert diag is not None and diag.problem is Problem.PERMISSION
    assert "USAGE on schema worker and SELECT on public.import_job" in diag.message


def test_not_a_statbus_database(templates: PgServer) -> None:
    diag = probe(templates.dsn("postgres")).problem("db")
    assert diag is not None and diag.problem is Problem.SQL_MISSING


def test_a_statbus_too_old_for_worker_task_changed(kit: object) -> None:
    from tests.builtin.conftest import OLDEST_TEMPLATE
    from tests.builtin.kit import Kit

    assert isinstance(kit, Kit)
    with kit.database(template=OLDEST_TEMPLATE) as old:
        p = probe(old.analyst_dsn)
        assert p.problem("statbus") is None
        assert p.task_changed_channel is False
