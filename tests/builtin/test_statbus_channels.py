"""Which of StatBus's own notifications cover which crossing of the line, on the real
StatBus (docs/architecture.md, "StatBus built-in"). Each write is one autocommit
statement by the superuser; a listener (the kit's analyst) collects everything up to a
sentinel, so "nothing was sent" is a fact, not a timeout.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.builtin.kit import KitDb

CHANNELS = ("worker_tasks", "worker_queue_change", "worker_task_changed", "import_job",
            "import_job_progress", "worker_status")
SENTINEL = "ts_builtin_sentinel"


class Collector:
    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        for ch in (*CHANNELS, SENTINEL):
            self.conn.execute(f"LISTEN {ch}")
        self.n = 0

    def drain(self) -> list[tuple[str, str]]:
        self.n += 1
        self.conn.execute("SELECT pg_notify(%s, %s)", (SENTINEL, str(self.n)))
        got: list[tuple[str, str]] = []
        for note in self.conn.notifies(timeout=30):
            if note.channel == SENTINEL:
                if note.payload == str(self.n):
                    return got
                continue
            got.append((note.channel, note.payload))
        raise AssertionError("sentinel not received")


def channels(notes: list[tuple[str, str]]) -> set[str]:
    return {ch for ch, _ in notes}


@pytest.fixture
def collector(kit_db: KitDb) -> Iterator[Collector]:
    c = Collector(kit_db.analyst_dsn)
    yield c
    c.conn.close()


def test_task_crossings_and_what_covers_them(kit_db: KitDb, collector: Collector) -> None:
    with kit_db.connect() as w:
        collector.drain()
        # worker.spawn (how StatBus queues work) announces the queue on worker_tasks.
        w.execute("SELECT worker.spawn('derive_reports')")
        assert channels(collector.drain()) == {"worker_tasks"}
        row = w.execute("SELECT max(id) FROM worker.tasks").fetchone()
        assert row is not None
        spawned = row[0]
        # A plain INSERT (no function) announces nothing.
        row = w.execute(
            "INSERT INTO worker.tasks (command) VALUES ('derive_reports') RETURNING id"
        ).fetchone()
        assert row is not None
        plain = row[0]
        assert collector.drain() == []
        # Every state change: worker_task_changed {"id", "parent_id"}.
        w.execute("UPDATE worker.tasks SET state = 'processing' WHERE id = %s", (spawned,))
        notes = collector.drain()
        assert channels(notes) == {"worker_task_changed"}
        assert f'"id" : {spawned}' in notes[0][1]
        # Other columns (progress, info, scheduled_at): nothing.
        w.execute("UPDATE worker.tasks SET info = '{}'::jsonb WHERE id = %s", (spawned,))
        w.execute("UPDATE worker.tasks SET scheduled_at = now() + interval '1 hour' "
                  "WHERE id = %s", (plain,))
        assert collector.drain() == []
        # A delete of an active task, and a TRUNCATE: nothing.
        w.execute("DELETE FROM worker.tasks WHERE id = %s", (spawned,))
        assert collector.drain() == []
        # Moving a command to another queue: worker_queue_change.
        w.execute("UPDATE worker.command_registry SET queue = 'maintenance' "
                  "WHERE command = 'derive_reports'")
        assert channels(collector.drain()) == {"worker_queue_change"}


def test_job_crossings_all_announced(kit_db: KitDb, collector: Collector) -> None:
    kit_db.setup_demo()
    collector.drain()
    job_id, _ = kit_db.start_import()
    notes = collector.drain()
    assert ("import_job", f'{{"verb" : "INSERT", "id" : {job_id}}}') in notes
    with kit_db.connect() as w:
        w.execute("UPDATE public.import_job SET state = 'rejected' WHERE id = %s", (job_id,))
        assert "import_job" in channels(collector.drain())
        w.execute("DELETE FROM public.import_job WHERE id = %s", (job_id,))
        assert collector.drain() == [("import_job", f'{{"verb" : "DELETE", "id" : {job_id}}}')]
