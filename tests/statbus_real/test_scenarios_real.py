"""Scenarios on a real StatBus, driven only by StatBus's own code paths (tests/statbus_real/
statbus.py): a job created and uploaded as the app does, the app's review decisions, and
StatBus's worker procedure until idle. At every step a client following the protocol
(LISTEN, read; re-read on every notification) holds the truth; StatBus's own results are
the same with and without traystatus installed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.sql.conftest import Listener
from tests.statbus_real import statbus
from tests.statbus_real.conftest import Kit
from traystatus._paths import sql_dir

INSTALL = sql_dir() / "install.sql"


def demo_csv(kit: Kit) -> Any:
    return kit.src / "app" / "public" / "demo" / "legal_units_demo.csv"


class Client:
    """What the tray does: LISTEN, read; on every notification, read again."""

    def __init__(self, dsn: str) -> None:
        self.listener = Listener(dsn)
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.value = self.read()
        self.notifications = 0
        self.sent: list[str] = []  # every payload received, in order
        self._seen = 0  # how many of them news() has returned

    def read(self) -> bool:
        row = self.conn.execute("SELECT public.is_system_stable()").fetchone()
        assert row is not None
        return bool(row[0])

    def catch_up(self) -> bool:
        got = self.listener.drain()
        self.notifications += len(got)
        self.sent.extend(got)
        if got:
            self.value = self.read()
        return self.value

    def news(self) -> list[Any]:
        """The payloads received since the last call (parsed), after catching up."""
        self.catch_up()
        got, self._seen = self.sent[self._seen:], len(self.sent)
        return [json.loads(p) for p in got]

    def review(self) -> Any:
        row = self.conn.execute("SELECT public.system_stability_review()").fetchone()
        assert row is not None
        return row[0]

    def close(self) -> None:
        self.listener.close()
        self.conn.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "traystatus", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def _cli_sees_the_review(dsn: str, job: int) -> None:
    """status --json, watch's line and wait's two readings, while the review holds."""
    status = _cli("status", "--json", "--dsn", dsn)
    assert status.returncode == 0, status.stderr
    out = json.loads(status.stdout)
    assert (out["state"], out["blocked_by_review"]) == ("stable", [job])
    review = out["review"]
    since, may_approve = review.pop("since"), review.pop("may_approve")
    assert review == {"waiting": [{"id": job, "slug": "lu_reviewed"}], "queued_behind": 1}
    assert since is not None and may_approve is True  # StatBus's stamp; the superuser may approve
    text = _cli("status", "--dsn", dsn)
    assert text.stdout.strip() == (
        "stable: Waiting for review: lu_reviewed; 1 import queued behind it")
    assert _cli("wait", "--timeout", "0", "--dsn", dsn).returncode == 0
    held = _cli("wait", "--timeout", "0", "--until-reviewed", "--dsn", dsn)
    assert held.returncode == 1, held.stderr


def _same(with_ts: dict[str, Any], without: dict[str, Any]) -> None:
    """StatBus's results with and without traystatus; a difference is named field by field."""
    for key in ("tasks", "jobs"):
        assert with_ts[key] == without[key], key
    diffs = []
    for a, b in zip(with_ts["statistical_units"], without["statistical_units"], strict=True):
        if a != b:
            da, db = json.loads(a), json.loads(b)
            diffs.append({k: (da.get(k), db.get(k)) for k in set(da) | set(db)
                          if da.get(k) != db.get(k)})
    assert diffs == []


def install(kit: Kit, dsn: str) -> None:
    proc = kit.psql(dsn, "-f", str(INSTALL))
    assert proc.returncode == 0, proc.stderr


def worker_checked(dsn: str, client: Client) -> int:
    """StatBus's worker until idle; after every CALL the client's value is the truth."""
    wrong: list[tuple[bool, bool]] = []

    def check() -> None:
        held, truth = client.catch_up(), client.read()
        if held != truth:
            wrong.append((held, truth))

    calls = statbus.run_worker(dsn, after_call=check)
    assert wrong == []
    return calls


def test_upload_and_worker_with_and_without_traystatus(
    kit: Kit, demo_template: str, new_db: Callable[..., str]
) -> None:
    """One import of StatBus's demo legal units, then its derive run: identical results."""
    outcome = {}
    for with_ts in (False, True):
        dsn = new_db(demo_template)
        if with_ts:
            install(kit, dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            client = Client(dsn) if with_ts else None
            if client:
                assert client.value is True
            statbus.create_job(conn, "lu_demo")
            statbus.upload(conn, "lu_demo", demo_csv(kit))
            if client:
                assert client.catch_up() is False  # uploaded: queued for the worker
                calls = worker_checked(dsn, client)
                assert client.catch_up() is True and client.read() is True
                assert client.notifications >= 2
                print(f"demo import: {calls} worker calls, "
                      f"{client.notifications} notifications")
                client.close()
            else:
                statbus.run_worker(dsn)
            outcome[with_ts] = statbus.results(conn)
    assert outcome[True]["jobs"][0][1] == "finished"
    assert len(outcome[True]["statistical_units"]) > 0
    _same(outcome[True], outcome[False])


@pytest.mark.parametrize("decision", ["approved", "rejected"])
def test_review_holds_the_queue_and_is_reported(
    kit: Kit, demo_template: str, new_db: Callable[..., str], decision: str
) -> None:
    """A job with review stops in waiting_for_review; a second upload waits behind it with no
    task due. Stable, with the block reported; the app's decision releases the queue."""
    outcome = {}
    for with_ts in (False, True):
        dsn = new_db(demo_template)
        if with_ts:
            install(kit, dsn)
        client = Client(dsn) if with_ts else None
        with psycopg.connect(dsn, autocommit=True) as conn:
            first = statbus.create_job(conn, "lu_reviewed", review=True)
            statbus.upload(conn, "lu_reviewed", demo_csv(kit))
            statbus.run_worker(dsn) if client is None else worker_checked(dsn, client)
            assert statbus.job_state(conn, first) == "waiting_for_review"
            second = statbus.create_job(conn, "lu_behind")
            statbus.upload(conn, "lu_behind", demo_csv(kit))
            statbus.run_worker(dsn) if client is None else worker_checked(dsn, client)
            # StatBus holds the second job: still queued, nothing due, the worker idle
            assert statbus.job_state(conn, second) == "upload_completed"
            assert conn.execute(statbus.DUE).fetchone() == (0,)
            if client:
                assert client.catch_up() is True  # no hourglass for a person's turn
                block = client.review()
                assert block["jobs"] == [{"id": first, "slug": "lu_reviewed",
                                          "description": block["jobs"][0]["description"]}]
                assert (block["holds_queue"], block["queued_behind"]) == (True, 1)
                details = conn.execute("SELECT public.get_system_status_details()").fetchone()
                assert details is not None
                jobs = {j["id"]: j for j in details[0]["import_jobs"]}
                assert jobs[second]["held_by_review"] is True
                assert jobs[first]["phase"] == "review"
                mark = conn.execute("SELECT public.system_work_mark(), now()").fetchone()
                assert mark is not None
                _cli_sees_the_review(dsn, first)
            statbus.set_state(conn, first, decision)  # the app's UPDATE
            if client:
                assert client.catch_up() is False  # the queue runs again
                assert client.review() is None
                worker_checked(dsn, client)
                assert client.catch_up() is True
            else:
                statbus.run_worker(dsn)
            assert statbus.job_state(conn, first) == (
                "finished" if decision == "approved" else "rejected")
            assert statbus.job_state(conn, second) == "finished"
            if client:
                summary = conn.execute("SELECT public.get_system_work_summary(%s, %s)",
                                       mark).fetchone()
                assert summary is not None
                ended = {j["slug"]: j["state"] for j in summary[0]["import_jobs"]}
                assert ended["lu_behind"] == "finished"
                if decision == "rejected":  # rejected is final, and reported
                    assert summary[0]["import_jobs_rejected"] == 1
                    assert ended["lu_reviewed"] == "rejected"
                client.close()
            outcome[with_ts] = statbus.results(conn)
    _same(outcome[True], outcome[False])


def test_review_block_changes_are_announced_once_each(
    kit: Kit, demo_template: str, new_db: Callable[..., str]
) -> None:
    """The answer is the boolean and the review block. On the real schema, through StatBus's
    own paths: a job that stops for review while nothing else runs is announced (stable, with
    the review); an upload queued behind the review (the boolean stays "stable") is announced
    once, with the count; the worker, with nothing due, sends nothing; the rejection that
    releases the queue is announced once; and a rejection with nothing behind it (stable
    before and after) is announced once, clearing the block."""
    dsn = new_db(demo_template)
    install(kit, dsn)
    client = Client(dsn)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            first = statbus.create_job(conn, "lu_reviewed", review=True)
            statbus.upload(conn, "lu_reviewed", demo_csv(kit))
            worker_checked(dsn, client)
            assert statbus.job_state(conn, first) == "waiting_for_review"
            sent = client.news()
            # busy for the import, then stable with the review: the last says so
            assert sent and sent[-1] == {
                "stable": True, "review": {"jobs": [first], "queued_behind": 0}}, sent
            assert len(sent) <= 4, sent

            second = statbus.create_job(conn, "lu_behind")
            assert client.news() == []  # waiting_for_upload: nothing changes
            statbus.upload(conn, "lu_behind", demo_csv(kit))
            assert client.news() == [
                {"stable": True, "review": {"jobs": [first], "queued_behind": 1}}]
            assert client.read() is True and client.review()["queued_behind"] == 1
            statbus.run_worker(dsn)  # nothing due: the queue is held
            assert statbus.job_state(conn, second) == "upload_completed"
            assert client.news() == []

            statbus.set_state(conn, first, "rejected")  # the app's UPDATE
            assert client.news() == [{"stable": False}]
            assert client.review() is None
            worker_checked(dsn, client)
            assert statbus.job_state(conn, second) == "finished"
            assert client.read() is True
            client.news()

            # a rejection with nothing behind: stable before and after, the block clears
            third = statbus.create_job(conn, "lu_alone", review=True)
            statbus.upload(conn, "lu_alone", demo_csv(kit))
            worker_checked(dsn, client)
            assert statbus.job_state(conn, third) == "waiting_for_review"
            assert client.news()[-1] == {
                "stable": True, "review": {"jobs": [third], "queued_behind": 0}}
            statbus.set_state(conn, third, "rejected")
            assert client.news() == [{"stable": True}]
            assert client.read() is True and client.review() is None
    finally:
        client.close()
