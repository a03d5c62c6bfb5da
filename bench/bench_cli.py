"""CLI timings on an embedded PostgreSQL: what a script or a status bar experiences.

    .venv/bin/python bench/bench_cli.py [--runs 15]

Prints medians and p90 of:
* ``status``: process start to exit (interpreter start-up, connect, first read, clean stop);
* ``wait``: writer's COMMIT that makes the system stable -> ``wait`` process exited;
* ``watch --json``: writer's COMMIT -> the JSON line read from the pipe.
Not a test: no assertions, figures only (the machine is shared).

Before timing, the package is byte-compiled (``compileall``), as pip does for an installed
wheel: an editable checkout under ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile
every traystatus module on every run (about 20 ms of CPU) and measure what no user sees.
"""

from __future__ import annotations

import argparse
import compileall
import json
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from traystatus._paths import sql_dir  # noqa: E402
from traystatus.demo.embedded import EmbeddedPostgres  # noqa: E402

SCRIPT = Path(sys.executable).parent / "traystatus"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, values: list[float]) -> None:
    ms = [v * 1000 for v in values]
    print(f"{name:<34} median {statistics.median(ms):7.1f} ms   p90 {pct(ms, 0.9):7.1f} ms"
          f"   min {min(ms):6.1f}   max {max(ms):7.1f}   (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    compileall.compile_dir(REPO / "traystatus", quiet=1)
    base = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    server = EmbeddedPostgres(base / "data")
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as c:
            c.execute("CREATE DATABASE statbus")
        dsn = server.dsn("statbus")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute((sql_dir() / "fixtures" / "statbus_schema.sql").read_text())  # type: ignore[arg-type]
            c.execute((sql_dir() / "install.sql").read_text())  # type: ignore[arg-type]
        env_cmd = [str(SCRIPT)]
        conn = psycopg.connect(dsn, autocommit=True)

        status_times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([*env_cmd, "status", "--dsn", dsn], check=True, capture_output=True)
            status_times.append(time.perf_counter() - t0)

        wait_times = []
        for i in range(runs):
            conn.execute("INSERT INTO public.import_job (slug, definition_id, state) "
                         "VALUES (%s, 1, 'processing_data')", (f"w{i}",))
            proc = subprocess.Popen([*env_cmd, "wait", "--dsn", dsn], stderr=subprocess.PIPE,
                                    text=True)
            assert proc.stderr is not None
            proc.stderr.readline()  # "traystatus wait: processing": it is connected
            conn.execute("UPDATE public.import_job SET state = 'finished' WHERE slug = %s",
                         (f"w{i}",))
            t0 = time.perf_counter()
            proc.wait(60)
            wait_times.append(time.perf_counter() - t0)
            proc.stderr.close()

        watch_times = []
        proc = subprocess.Popen([*env_cmd, "watch", "--json", "--dsn", dsn],
                                stdout=subprocess.PIPE, text=True, bufsize=1)
        assert proc.stdout is not None
        proc.stdout.readline()  # the initial state
        for i in range(runs):
            for state in ("processing_data", "finished"):
                # Apart by more than the monitor's 200 ms coalescing window: each change is
                # then "the first of a burst", shown at once.
                time.sleep(0.4)
                t0 = time.perf_counter()
                if state == "processing_data":
                    conn.execute("INSERT INTO public.import_job (slug, definition_id, state) "
                                 "VALUES (%s, 1, %s)", (f"x{i}", state))
                else:
                    conn.execute("UPDATE public.import_job SET state = %s WHERE slug = %s",
                                 (state, f"x{i}"))
                t_commit = time.perf_counter()
                ready, _, _ = select.select([proc.stdout], [], [], 30)
                assert ready
                json.loads(proc.stdout.readline())
                watch_times.append(time.perf_counter() - t_commit)
                del t0
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        conn.close()

        report("status (process start -> exit)", status_times)
        report("wait (COMMIT -> process exit)", wait_times)
        report("watch --json (COMMIT -> line)", watch_times)
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
