"""Notifications and the worker on a REAL StatBus (the kit), with and without traystatus.

    source <the kit's env>; .venv/bin/python bench/bench_statbus_real.py [--keep]

Needs the STATBUS_REAL_* variables of the real StatBus kit (docs/statbus-compat.md). For
each scenario, two fresh copies of the same demo database (StatBus's test users and its
getting-started settings, worker idle): one without traystatus, one with sql/install.sql.
On each, StatBus's own worker runs as StatBus runs it: per queue a loop of
``CALL worker.process_tasks(p_mode => 'serial')`` and, for the analytics queue, its
``default_concurrency`` more loops in ``'concurrent'`` mode, each loop its own session,
all at once. Scenarios:

* plain: one demo import (legal units), no review;
* review: the same with review = true; the worker stops at waiting_for_review, then the
  app's approval (an UPDATE), and the worker again.

Printed: the notifications on ``system_stability`` (target: at most 4 per import), every
error a worker call raised (deadlocks included; target: none), warnings from our triggers,
and whether StatBus's results (tasks by command and state, the jobs, the statistical units
without their sequence-assigned ids, which differ from run to run under the concurrent
worker even without traystatus) are identical with and without traystatus.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "sql" / "install.sql"
ADMIN_EMAIL = "test.admin@statbus.org"
DUE = ("SELECT count(*) FROM worker.tasks WHERE state::text IN "
       "('interrupted', 'pending', 'processing', 'waiting') "
       "AND (scheduled_at IS NULL OR scheduled_at <= now())")
Conn = psycopg.Connection[tuple[Any, ...]]
ID_KEY = re.compile(r"(^|_)ids?$")


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"bench_statbus_real: {name} is not set: source the real StatBus kit's "
                 "environment first (docs/statbus-compat.md)")
    return value


def dsn(dbname: str) -> str:
    return make_conninfo(host=env("STATBUS_REAL_HOST"), port=env("STATBUS_REAL_PORT"),
                         user="postgres", dbname=dbname)


def copy_db(template: str) -> str:
    name = f"i10b_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn("postgres"), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER statbus_app STRATEGY FILE_COPY")
                  .format(sql.Identifier(name), sql.Identifier(template)))
    return name


def drop_db(name: str) -> None:
    with psycopg.connect(dsn("postgres"), autocommit=True) as c:
        c.execute("UPDATE pg_database SET datistemplate = false WHERE datname = %s", (name,))
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def psql(target: str, script: str, cwd: Path) -> None:
    proc = subprocess.run(
        [str(Path(env("STATBUS_REAL_BIN")) / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
         target], input=script, capture_output=True, text=True, timeout=600, cwd=cwd,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}, check=False)
    if proc.returncode != 0:
        sys.exit(f"bench_statbus_real: psql failed: {proc.stderr.strip()[-500:]}")


class Worker:
    """StatBus's worker: its loops, each its own session, all at once, until nothing is due."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.calls = 0
        with psycopg.connect(target, autocommit=True) as c:
            self.loops: list[tuple[str, str]] = []
            modes = {r[0] for r in c.execute(
                "SELECT enumlabel FROM pg_enum "
                "WHERE enumtypid = 'worker.process_mode'::regtype")}
            serial, concurrent = ("serial", "concurrent") if "serial" in modes else ("top", "child")
            for queue, n in c.execute(
                    "SELECT queue, coalesce(default_concurrency, 1) FROM worker.queue_registry"):
                self.loops.append((str(queue), serial))
                if int(n) > 1:
                    self.loops += [(str(queue), concurrent)] * int(n)

    def _loop(self, queue: str, mode: str, stop: threading.Event) -> None:
        with psycopg.connect(self.target, autocommit=True) as c:
            c.add_notice_handler(
                lambda d: self.warnings.append(str(d.message_primary))
                if d.severity_nonlocalized == "WARNING" else None)
            while not stop.is_set():
                try:
                    c.execute("CALL worker.process_tasks(p_queue => %s, p_batch_size => 10, "
                              "p_mode => %s::worker.process_mode)", (queue, mode))
                    self.calls += 1
                except psycopg.Error as ex:
                    self.errors.append(f"{queue}/{mode}: {ex.sqlstate} {ex}".strip())
                time.sleep(0.02)

    def run(self) -> float:
        stop = threading.Event()
        threads = [threading.Thread(target=self._loop, args=(q, m, stop)) for q, m in self.loops]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        quiet = 0
        with psycopg.connect(self.target, autocommit=True) as c:
            while quiet < 3:
                time.sleep(0.3)
                row = c.execute(DUE).fetchone()
                quiet = quiet + 1 if row and row[0] == 0 else 0
                if time.perf_counter() - t0 > 900:
                    self.errors.append("the worker did not become idle in 15 minutes")
                    break
        stop.set()
        for t in threads:
            t.join(120)
        return time.perf_counter() - t0


def results(c: Conn) -> dict[str, Any]:
    """StatBus's own results, without times and clock-derived values."""
    tasks = c.execute(
        "SELECT command, state::text, count(*), array_agg(DISTINCT coalesce(error, '')) "
        "FROM worker.tasks GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    jobs = c.execute(
        "SELECT slug, state::text, total_rows, imported_rows, error, "
        "       to_jsonb(j) -> 'error_count', to_jsonb(j) -> 'warning_count' "
        "FROM public.import_job AS j ORDER BY slug").fetchall()
    stamp_cols = [r[0] for r in c.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'public.statistical_unit'::regclass "
        "AND attnum > 0 AND NOT attisdropped "
        "AND atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype)")]
    # Surrogate ids (unit_id, related_*_ids, ...) come from sequences, and StatBus's
    # concurrent worker assigns them in a different order from run to run even without
    # traystatus: compare the units without them, as a sorted list.
    units = sorted(json.dumps({k: v for k, v in r[0].items() if not ID_KEY.search(k)},
                              sort_keys=True)
                   for r in c.execute("SELECT to_jsonb(su) - %s::text[] "
                                      "FROM public.statistical_unit AS su", (stamp_cols,)))
    return {"tasks": [list(map(str, t)) for t in tasks], "jobs": [list(map(str, j)) for j in jobs],
            "units": units}


def as_admin(c: Conn) -> None:
    c.execute("CALL test.set_user_from_email(%s)", (ADMIN_EMAIL,))


def scenario(template: str, review: bool, installed: bool) -> dict[str, Any]:
    name = copy_db(template)
    target = dsn(name)
    try:
        if installed:
            with psycopg.connect(target, autocommit=True) as c:
                c.execute(INSTALL.read_text())
        listen: Conn = psycopg.connect(target, autocommit=True)
        listen.execute("LISTEN system_stability")
        src = Path(env("STATBUS_REAL_SRC"))
        csv = src / "app" / "public" / "demo" / "legal_units_demo.csv"
        slug = "bench_import"
        with psycopg.connect(target) as c:
            as_admin(c)
            c.execute("INSERT INTO public.import_job (definition_id, slug, time_context_ident, "
                      "review) SELECT id, %s, 'r_year_curr', %s FROM public.import_definition "
                      "WHERE slug = 'legal_unit_job_provided'", (slug, review))
            c.commit()
            table = c.execute("SELECT upload_table_name FROM public.import_job WHERE slug = %s",
                              (slug,)).fetchone()
            assert table is not None
            header = csv.read_text(encoding="utf-8").splitlines()[0]
            as_admin(c)
            with c.cursor().copy(f'COPY public."{table[0]}" ({header}) '
                                 "FROM STDIN WITH (FORMAT csv, HEADER true)") as cp:
                cp.write(csv.read_bytes())
            c.commit()
        worker = Worker(target)
        took = worker.run()
        if review:
            with psycopg.connect(target) as c:
                state = c.execute("SELECT state::text FROM public.import_job WHERE slug = %s",
                                  (slug,)).fetchone()
                assert state == ("waiting_for_review",), state
                as_admin(c)
                c.execute("UPDATE public.import_job SET state = 'approved' WHERE slug = %s",
                          (slug,))
                c.commit()
            took += worker.run()
        payloads = [n.payload for n in listen.notifies(timeout=1.0)]
        listen.close()
        with psycopg.connect(target, autocommit=True) as c:
            res = results(c)
            final = c.execute("SELECT state::text FROM public.import_job WHERE slug = %s",
                              (slug,)).fetchone()
            stable = c.execute("SELECT public.is_system_stable()").fetchone() if installed \
                else None
        return {"payloads": payloads, "errors": worker.errors, "warnings": worker.warnings,
                "results": res, "took": took, "calls": worker.calls, "final": final,
                "stable": stable, "loops": worker.loops}
    finally:
        drop_db(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args()
    base = copy_db(os.environ.get("STATBUS_REAL_TEMPLATE", "statbus_template"))
    try:
        psql(dsn(base), "BEGIN;\n\\i test/setup.sql\n"
             "CALL test.set_user_from_email('test.admin@statbus.org');\n"
             "\\i samples/demo/getting-started.sql\nCOMMIT;\n", Path(env("STATBUS_REAL_SRC")))
        Worker(dsn(base)).run()
        with psycopg.connect(dsn("postgres"), autocommit=True) as c:
            c.execute("UPDATE pg_database SET datistemplate = true WHERE datname = %s", (base,))
        print(f"real StatBus {os.environ.get('STATBUS_REAL_COMMIT', '?')[:7]}, "
              f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for review in (False, True):
            label = "review-then-approve import" if review else "plain import"
            without = scenario(base, review, installed=False)
            with_ = scenario(base, review, installed=True)
            same = without["results"] == with_["results"]
            print(f"{label}:")
            print(f"  worker loops (queue, mode): {with_['loops']}")
            print(f"  without traystatus: {without['took']:.1f} s, {without['calls']} calls, "
                  f"job {without['final'][0]}, errors {without['errors'] or 'none'}")
            print(f"  with traystatus:    {with_['took']:.1f} s, {with_['calls']} calls, "
                  f"job {with_['final'][0]}, errors {with_['errors'] or 'none'}, "
                  f"warnings {with_['warnings'] or 'none'}")
            print(f"  notifications on system_stability: {len(with_['payloads'])} "
                  f"{with_['payloads']} (target: at most 4); is_system_stable() at the end: "
                  f"{with_['stable'][0] if with_['stable'] else '?'}")
            print(f"  StatBus's results identical with and without: {same}")
            if not same:
                for key in ("tasks", "jobs"):
                    if without["results"][key] != with_["results"][key]:
                        print(f"    {key} without: {without['results'][key]}")
                        print(f"    {key} with:    {with_['results'][key]}")
                print(f"    units: {len(without['results']['units'])} vs "
                      f"{len(with_['results']['units'])}")
    finally:
        drop_db(base)


if __name__ == "__main__":
    main()
