"""The details query exists twice: ``get_system_status_details()`` in sql/install.sql (the
installed source) and ``builtin_sql.DETAILS`` (the built-in source's plain reads, run with
the analyst's own privileges when nothing is installed). Here both read the same real
StatBus, seeded with import jobs in every state that matters and analytics tasks in every
busy state, as the same analyst, in one REPEATABLE READ transaction (one snapshot, one
``now()``), and must agree on every field of the parsed ``Details``, on every key of the
JSON (what ``/api/job-details`` sends), on the work summary and on the work mark.

The comparison walks dataclass fields and JSON keys: a field added to ``Details`` (or a key
added to either query) is compared without editing this file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from tests.statbus_real import statbus
from tests.statbus_real.conftest import HEAD, OLDEST, Kit
from tests.statbus_real.test_scenarios_real import install
from traystatus.core.model.details import Details, WorkSummary
from traystatus.core.pg.link import Link
from traystatus.core.watch import _builtin_sql as builtin_sql
from traystatus.core.watch._stability import Owed
from traystatus.core.watch.builtin import BuiltinReader
from traystatus.core.watch.readers import InstalledReader

ADMIN = "admin@statbus-real.test"  # the kit's StatBus administrator
ANALYST = "analyst@statbus-real.test"  # the kit's regular user (the login that reads)
# Keys that differ by design: the built-in source has nothing installed to report.
BY_DESIGN = frozenset({"sql_version"})


# -- comparing --------------------------------------------------------------------------
def _key(item: object) -> object:
    """How an item of a list is matched across the two sides: its id when it has one."""
    if isinstance(item, Mapping) and "id" in item:
        return item["id"]
    ident = getattr(item, "id", None)
    return ident if ident is not None else repr(item)


def differences(installed: object, builtin: object, path: str) -> list[str]:
    """Every place where the two values differ, one line each: dataclasses field by field
    (``dataclasses.fields``, so a new field is compared too), mappings key by key, lists
    item by item matched by id (an order or membership difference is one line, and the
    items both have are still compared)."""
    if is_dataclass(installed) and not isinstance(installed, type):
        if type(installed) is not type(builtin):
            return [f"{path}: installed {type(installed).__name__}, "
                    f"builtin {type(builtin).__name__}"]
        out: list[str] = []
        for f in fields(installed):
            if f.name not in BY_DESIGN:
                out += differences(getattr(installed, f.name), getattr(builtin, f.name),
                                   f"{path}.{f.name}")
        return out
    if isinstance(installed, Mapping) and isinstance(builtin, Mapping):
        out = []
        for k in sorted(set(installed) | set(builtin)):
            if k in BY_DESIGN:
                continue
            if k not in builtin:
                out.append(f"{path}.{k}: installed {installed[k]!r}, builtin has no such key")
            elif k not in installed:
                out.append(f"{path}.{k}: builtin {builtin[k]!r}, installed has no such key")
            else:
                out += differences(installed[k], builtin[k], f"{path}.{k}")
        return out
    if (isinstance(installed, Sequence) and isinstance(builtin, Sequence)
            and not isinstance(installed, str) and not isinstance(builtin, str)):
        keys_i, keys_b = [_key(x) for x in installed], [_key(x) for x in builtin]
        out = []
        if keys_i != keys_b:
            out.append(f"{path}: installed lists {keys_i}, builtin {keys_b}")
        by_b = dict(zip(keys_b, builtin, strict=True))
        for k, item in zip(keys_i, installed, strict=True):
            if k in by_b:
                out += differences(item, by_b[k], f"{path}[{k}]")
        return out
    if installed != builtin:
        return [f"{path}: installed {installed!r}, builtin {builtin!r}"]
    return []


def test_differences_names_every_field_and_key() -> None:
    """The comparison itself: a difference anywhere is found and named."""
    @dataclass(frozen=True)
    class Item:
        id: int
        x: int

    @dataclass(frozen=True)
    class Whole:
        a: int
        items: tuple[Item, ...]

    assert differences(Whole(1, (Item(1, 1), Item(2, 2))), Whole(1, (Item(1, 1), Item(2, 2))),
                       "d") == []
    assert differences(Whole(1, (Item(1, 1), Item(2, 2))), Whole(2, (Item(2, 3), Item(1, 1))),
                       "d") == ["d.a: installed 1, builtin 2",
                                "d.items: installed lists [1, 2], builtin [2, 1]",
                                "d.items[2].x: installed 2, builtin 3"]
    assert differences({"k": [{"id": 1, "v": 1}], "sql_version": 3},
                       {"k": [{"id": 1}], "extra": True, "sql_version": None}, "j") == [
        "j.extra: builtin True, installed has no such key",
        "j.k[1].v: installed 1, builtin has no such key"]


# -- seeding a real StatBus -------------------------------------------------------------
def _columns(conn: statbus.Conn, table: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped", (table,))}


def _put(conn: statbus.Conn, table: str, ident: int, **values: Any) -> None:
    """Write what StatBus's worker would have written by now, without running it (its
    triggers off, as a replica applies rows): columns this StatBus lacks are skipped."""
    have = _columns(conn, table)
    values = {k: v for k, v in values.items() if k in have}
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
            sql.SQL(table),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values)),
            (*values.values(), ident))


@dataclass
class Seeded:
    jobs: dict[str, int]
    now: datetime


def seed_jobs(conn: statbus.Conn) -> Seeded:
    """Import jobs in every state, created as the app creates them, then moved on as
    StatBus's worker would have moved them: with partial progress, speeds, errors."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    now: datetime = row[0]

    def ago(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    jobs: dict[str, int] = {}
    plan: list[tuple[str, str, bool, dict[str, Any]]] = [
        ("upload", ANALYST, False, {}),
        ("queued", ADMIN, False, dict(
            state="upload_completed", priority=7, total_rows=5000)),
        ("preparing", ANALYST, False, dict(
            state="preparing_data", priority=3, total_rows=2000, preparing_data_at=ago(1))),
        ("analysing", ADMIN, False, dict(
            state="analysing_data", priority=4, total_rows=1200, preparing_data_at=ago(6),
            analysis_start_at=ago(5), analysis_completed_pct=37.25,
            analysis_rows_per_sec=18.5, current_step_code="external_idents",
            total_analysis_steps_weighted=4800, completed_analysis_steps_weighted=1788,
            last_progress_update=ago(0.2))),
        ("processing", ANALYST, True, dict(
            state="processing_data", priority=1, total_rows=900, preparing_data_at=ago(20),
            analysis_start_at=ago(19), analysis_stop_at=ago(15), analysis_completed_pct=100,
            analysis_rows_per_sec=60.0, processing_start_at=ago(4),
            import_completed_pct=61.5, import_rows_per_sec=12.25, imported_rows=553,
            changes_approved_at=ago(5), last_progress_update=ago(0.1), warning_count=2)),
        ("approved", ADMIN, True, dict(
            state="approved", priority=5, total_rows=300, preparing_data_at=ago(30),
            analysis_start_at=ago(29), analysis_stop_at=ago(25), analysis_completed_pct=100,
            analysis_rows_per_sec=40.0, changes_approved_at=ago(0.5))),
        ("review", ANALYST, True, dict(
            state="waiting_for_review", priority=2, total_rows=800, preparing_data_at=ago(40),
            analysis_start_at=ago(39), analysis_stop_at=ago(35), analysis_completed_pct=100,
            analysis_rows_per_sec=25.0, last_progress_update=ago(35), warning_count=4)),
        ("finished", ADMIN, False, dict(
            state="finished", priority=6, total_rows=400, imported_rows=400,
            preparing_data_at=ago(12), analysis_start_at=ago(11), analysis_stop_at=ago(9),
            analysis_completed_pct=100, processing_start_at=ago(8), processing_stop_at=ago(2),
            import_completed_pct=100, import_rows_per_sec=3.0, last_progress_update=ago(2))),
        ("finished_errors", ANALYST, False, dict(
            state="finished", priority=8, total_rows=250, imported_rows=240,
            preparing_data_at=ago(9), analysis_start_at=ago(8), analysis_stop_at=ago(7),
            analysis_completed_pct=100, processing_start_at=ago(6), processing_stop_at=ago(1),
            import_completed_pct=100, last_progress_update=ago(1),
            error="10 rows have errors", error_count=10, warning_count=3)),
        ("failed", ADMIN, False, dict(
            state="failed", priority=9, total_rows=100, preparing_data_at=ago(4),
            analysis_start_at=ago(3.5), analysis_completed_pct=12.5, last_progress_update=ago(3),
            error="column \"tax_ident\" is missing")),
        # Marked failed while StatBus prepared it (a person stopping a stuck job; StatBus's
        # own prepare failure ends in finished, test_prepare_failure_real.py): no stop stamp,
        # so its ended time is when preparing began, the latest evidence the row has.
        ("failed_preparing", ANALYST, False, dict(
            state="failed", priority=13, total_rows=600, preparing_data_at=ago(3),
            error='{"prepare_error": "value too long for type character varying(16)"}')),
        ("failed_preparing_long_ago", ADMIN, False, dict(
            state="failed", priority=14, total_rows=600, preparing_data_at=ago(45),
            error='{"prepare_error": "stopped by an administrator"}')),
        ("finished_long_ago", ADMIN, False, dict(
            state="finished", priority=10, total_rows=50, imported_rows=50,
            preparing_data_at=ago(130), analysis_start_at=ago(129), analysis_stop_at=ago(128),
            analysis_completed_pct=100, processing_start_at=ago(127),
            processing_stop_at=ago(120), import_completed_pct=100,
            last_progress_update=ago(120))),
        # Analysed 50 minutes ago, rejected by a person 3 minutes ago: it ended then.
        ("rejected", ANALYST, True, dict(
            state="rejected", priority=11, total_rows=70, preparing_data_at=ago(52),
            analysis_start_at=ago(51), analysis_stop_at=ago(50), analysis_completed_pct=100,
            last_progress_update=ago(50), changes_rejected_at=ago(3))),
        ("rejected_long_ago", ADMIN, True, dict(
            state="rejected", priority=12, total_rows=70, preparing_data_at=ago(300),
            analysis_start_at=ago(299), analysis_stop_at=ago(298), analysis_completed_pct=100,
            last_progress_update=ago(298), changes_rejected_at=ago(240))),
    ]
    for name, email, review, values in plan:
        jobs[name] = statbus.create_job(conn, f"agree_{name}", review=review, email=email)
        conn.execute("UPDATE public.import_job SET description = %s WHERE id = %s",
                     (f"Details agree: {name.replace('_', ' ')}", jobs[name]))
        if values:
            _put(conn, "public.import_job", jobs[name], **values)
    return Seeded(jobs, now)


def seed_tasks(conn: statbus.Conn, now: datetime) -> None:
    """Analytics tasks in every busy state StatBus has (interrupted where it exists), more
    than the 50 shown, and the ones that must not count: done, failed, scheduled ahead."""
    have = _columns(conn, "worker.tasks")
    started = "process_start_at" if "process_start_at" in have else "processed_at"
    duration = "process_duration_ms" if "process_duration_ms" in have else "duration_ms"
    states = {r[0] for r in conn.execute(
        "SELECT enumlabel FROM pg_enum WHERE enumtypid = 'worker.task_state'::regtype")}

    def task(command: str, state: str, *, parent: int | None = None, priority: int | None,
             started_ago: float | None = None, took_ms: float | None = None,
             scheduled_in: float | None = None, error: str | None = None,
             payload: Mapping[str, Any] | None = None) -> int:
        values: dict[str, Any] = {
            "command": command, "state": state, "priority": priority, "parent_id": parent,
            "payload": Jsonb({"command": command, **(payload or {})}),
            "created_at": now - timedelta(minutes=10),
            started: None if started_ago is None else now - timedelta(seconds=started_ago),
            duration: took_ms, "error": error,
            "scheduled_at": None if scheduled_in is None
            else now + timedelta(minutes=scheduled_in)}
        if "depth" in have:
            values["depth"] = 0 if parent is None else 1
        row = conn.execute(sql.SQL("INSERT INTO worker.tasks ({}) VALUES ({}) RETURNING id")
                           .format(sql.SQL(", ").join(map(sql.Identifier, values)),
                                   sql.SQL(", ").join(sql.Placeholder() * len(values))),
                           tuple(values.values())).fetchone()
        assert row is not None
        return int(row[0])

    period = "derive_statistical_history_period"
    root = task("derive_statistical_history", "waiting", priority=20, started_ago=90,
                took_ms=1500.5)
    task("statistical_unit_refresh_batch", "processing", priority=15, started_ago=30,
         payload={"batch_seq": 1})
    task(period, "processing", parent=root, priority=21, started_ago=12)
    task(period, "processing", parent=root, priority=None, started_ago=3)
    if "interrupted" in states:
        task(period, "interrupted", parent=root, priority=22, started_ago=200, took_ms=4.25)
    for i in range(55):
        task(period, "pending", parent=root, priority=30 + i % 7, payload={"i": i},
             scheduled_in=-1.0 if i % 11 == 0 else None)
    task(period, "pending", parent=root, priority=25, scheduled_in=60)  # ahead: not yet
    task(period, "completed", parent=root, priority=23, started_ago=60, took_ms=250.75)
    task(period, "failed", parent=root, priority=24, started_ago=50, took_ms=9.0,
         error="division by zero")


# -- reading both ---------------------------------------------------------------------------
def _login(dsn: str) -> str:
    """The kit's analyst login on this test's copy of StatBus."""
    params = conninfo_to_dict(os.environ["STATBUS_REAL_ANALYST_DSN"])
    params["dbname"] = conninfo_to_dict(dsn)["dbname"]
    return make_conninfo("", **params)


@dataclass
class Both:
    installed: Details
    builtin: Details
    installed_summary: WorkSummary
    builtin_summary: WorkSummary
    installed_mark: int
    builtin_mark: int


async def read_both(login: str, since: datetime) -> Both:
    """Each reader as the monitor drives it (first read, then details), one after the other
    in one REPEATABLE READ transaction of the analyst: one snapshot and one now()."""
    conn = await psycopg.AsyncConnection.connect(login, autocommit=False)
    try:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        link = Link(conn, 30.0)
        installed, builtin = InstalledReader(login), BuiltinReader(login)
        await installed.first_read(link, False)
        await builtin.first_read(link, False)
        d_installed = await installed.read_details(link)
        d_builtin = await builtin.read_details(link)
        assert d_installed is not None and d_builtin is not None
        marks = await link.one("SELECT public.system_work_mark()")
        mark_b = await link.one(builtin_sql.WORK_MARK, builtin.tracker.params())
        assert marks is not None and mark_b is not None
        # Everything since the seed began (mark 0: every analytics task counts).
        owed = Owed(0, since, 60.0)
        s_installed = await installed.read_summary(link, owed)
        s_builtin = await builtin.read_summary(link, owed)
        assert s_installed is not None and s_builtin is not None
        await conn.rollback()
    finally:
        await conn.close()
    return Both(d_installed, d_builtin, s_installed, s_builtin, int(marks[0]),
                int(mark_b[0]))


def disagreements(both: Both) -> list[str]:
    return (differences(both.installed, both.builtin, "details")
            + differences(both.installed.to_json(), both.builtin.to_json(), "json")
            + differences(both.installed_summary, both.builtin_summary, "summary")
            + differences(both.installed_mark, both.builtin_mark, "work_mark"))


def _varied(items: Sequence[Any], what: str) -> list[str]:
    """Fields that hold one value across all ``items``: the seed does not exercise them,
    so their agreement would prove nothing."""
    if not items:
        return [f"{what}: none seeded"]
    return [f"{what}.{f.name}" for f in fields(items[0])
            if len({repr(getattr(i, f.name)) for i in items}) < 2]


# The oldest supported StatBus (processed_at, duration_ms, no interrupted, no error_count,
# no review hold) and the newest; the first release in between adds nothing the two lack.
@pytest.mark.parametrize("version", (OLDEST, HEAD))
@pytest.mark.asyncio
async def test_installed_and_builtin_details_agree_field_by_field(
    kit: Kit, new_db: Callable[..., str], version: str,
) -> None:
    if "STATBUS_REAL_ANALYST_DSN" not in os.environ:
        pytest.skip("the kit's analyst login is not in the environment")
    dsn = new_db(kit.template(version))
    install(kit, dsn)
    login = _login(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        seeded = seed_jobs(conn)
        seed_tasks(conn, seeded.now)
        since = seeded.now - timedelta(hours=1)

        # A review waits (on a StatBus that holds its queue then, the others are held).
        both = await read_both(login, since)
        shown = {j.state for j in both.installed.import_jobs}
        assert shown >= {"waiting_for_upload", "upload_completed", "preparing_data",
                         "analysing_data", "processing_data", "approved",
                         "waiting_for_review", "finished", "failed", "rejected"}, shown
        by_id = {j.id: j for j in both.installed.import_jobs}
        assert seeded.jobs["failed_preparing_long_ago"] not in by_id
        assert by_id[seeded.jobs["failed_preparing"]].ended_at == seeded.now - timedelta(
            minutes=3)  # its preparing_data_at
        assert both.installed.analytics.tasks_shown == 50 < both.installed.analytics.active_total
        wrong = disagreements(both)
        if version == HEAD:
            wrong += [f"not exercised: {w}" for w in
                      _varied(both.installed.import_jobs, "ImportJob")
                      + _varied(both.installed.analytics.tasks, "AnalyticsTask")]
        assert wrong == [], "\n".join(["with a review waiting:", *wrong])

        # The person rejects it, as the app does: the queue moves again.
        with conn.transaction():
            conn.execute("CALL test.set_user_from_email(%s)", (ADMIN,))
            conn.execute("UPDATE public.import_job SET state = 'rejected' WHERE id = %s",
                         (seeded.jobs["review"],))
        both = await read_both(login, since)
        assert not any(j.state == "waiting_for_review" for j in both.installed.import_jobs)
        wrong = disagreements(both)
        assert wrong == [], "\n".join(["after the review was rejected:", *wrong])
