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

from tests.builtin.kit import KitDb
from tests.core.conftest import with_params
from tests.fix_db import PgServer, temporary_role
from traystatus.core import builtin_sql
from traystatus.core.builtin import Probe, TaskTracker
from traystatus.core.readers import review_block
from traystatus.core.state import Problem

Conn = psycopg.Connection[tuple[object, ...]]

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
    assert probe_conn(conn).holds_queue is info[0]["review_holds_queue"]  # type: ignore[index]


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
            f"VALUES (%s, %s, %s, {sched or 'NULL'}) RETURNING id",  # type: ignore[arg-type]
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
        ids.append(int(row[0]))  # type: ignore[call-overload]
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


def test_a_flood_of_ids_beyond_the_cap_costs_one_full_read() -> None:
    tracker = TaskTracker(cap=100)
    tracker.need_full = False
    for i in range(1, 500):
        assert tracker.note(f'{{"id": {i}}}')
    assert len(tracker.ids) == 100
    query = tracker.query()
    assert query.full and query.sql == builtin_sql.RULE_FULL
    tracker.apply((True, [], None), full=True)
    assert tracker.ids == [] and not tracker.query().full


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


def test_full_reads_asked_for_by_notifications_are_rate_limited() -> None:
    """Anyone may NOTIFY: a forged flood must not make every client scan the table."""
    tracker = TaskTracker(min_full_interval=30.0)
    assert tracker.query(now=100.0).full  # the first read of a connection: always
    tracker.apply((True, [], None), full=True, now=100.0)
    assert tracker.note("garbage") is False
    q = tracker.query(now=101.0)
    assert not q.full  # held back; the cheap read goes on
    tracker.apply((True, [], None), full=False, now=101.0)
    assert tracker.full_due_in(101.0) == pytest.approx(29.0)
    assert tracker.query(now=130.5).full
    tracker.apply((True, [], None), full=True, now=130.5)
    assert tracker.full_due_in(131.0) is None
    tracker.reset()  # a new connection reads everything at once
    assert tracker.query(now=131.0).full
