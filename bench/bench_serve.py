"""Benchmark ``traystatus serve`` with many WebSocket clients. Prints figures.

    .venv/bin/python bench/bench_serve.py [--clients 1000] [--procs 4] [--flips 40]
                                          [--idle 30] [--rounds 1]

* An embedded PostgreSQL with the StatBus stand-in and install.sql; ``traystatus serve``
  as a child process on 127.0.0.1 (loopback only, ``--no-auth``), exactly as a user runs it.
* ``--clients`` WebSocket clients on ``/api/system-stability``, spread over ``--procs``
  client processes (one asyncio loop each; connections opened 50 at a time).
* Latency: a writer flips the system (insert an analytics task / complete it) ``--flips``
  times; for each flip, the time from the writer's COMMIT returning to the moment the
  LAST client received the new state, and to each client's message. Median and p99.
* Memory: the server's RSS before the clients connect and with all of them connected;
  the difference per client.
* Idle CPU: the server's CPU time over ``--idle`` seconds with every client connected and
  nothing happening (heartbeat pings included), as a share of one core.
* Database connections held by the server (pg_stat_activity), with every client connected.

Client and server share this machine's cores: on a loaded 2-core machine the clients'
own reading dominates the tail. Say so when quoting the figures.

    .venv/bin/python bench/bench_serve.py --auth-keys 200 [--rounds 5]

What following credentials costs, on the real StatBus kit (``build.sh --env`` in the
environment; a copy of its template, a user of its own, dropped afterwards): the server
in-process with its JWT secret; the handshake with a shared token, with a StatBus API key
checked against the database (first use) and the same key again (answer cached), medians
over ``--rounds`` x 20 handshakes; then ``--auth-keys`` sockets with as many distinct API
keys open, and one pass of re-checking them all against the database (cache off), median
over ``--rounds`` passes: what every ``--recheck-interval`` costs at that many keys.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import psycopg

from traystatus._paths import sql_dir
from traystatus.demo.embedded import EmbeddedPostgres

START = "INSERT INTO worker.tasks (command, state) VALUES ('collect_changes', 'pending')"
FINISH = (
    "UPDATE worker.tasks SET state = 'completed' "
    "WHERE command = 'collect_changes' AND state <> 'completed'"
)
SCRIPT = Path(sys.executable).parent / "traystatus"
REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- client processes -------------------------------------------------------------------------
def client_main(url: str, n: int, conn: Connection) -> None:
    asyncio.run(_clients(url, n, conn))


async def _clients(url: str, n: int, conn: Connection) -> None:
    import aiohttp

    received: list[list[tuple[float, bool | None]]] = [[] for _ in range(n)]
    ready = asyncio.Event()
    connected = 0
    gate = asyncio.Semaphore(50)

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        nonlocal connected
        async with gate:
            ws = await http.ws_connect(url, compress=0, max_msg_size=1 << 20)
        first = await ws.receive()
        assert first.type is aiohttp.WSMsgType.TEXT
        connected += 1
        if connected == n:
            ready.set()
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                stable = msg.data.startswith('{"stable":true')
                nulled = msg.data.startswith('{"stable":null')
                received[i].append((time.monotonic(), None if nulled else stable))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = [asyncio.create_task(one(i, http)) for i in range(n)]
        await ready.wait()
        conn.send("ready")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # "stop"
        conn.send(received)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the run ----------------------------------------------------------------------------------
def start_db(base: Path, max_connections: int = 50) -> tuple[EmbeddedPostgres, str]:
    server = EmbeddedPostgres(base / "data", settings={"max_connections": str(max_connections)})
    server.start()
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench")
    dsn = server.dsn("bench")
    with psycopg.connect(dsn, autocommit=True) as c:
        for name in ("fixtures/statbus_schema.sql", "install.sql"):
            c.execute((sql_dir() / name).read_text().encode())
    return server, dsn


def start_serve(dsn: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--dsn", dsn, "--listen", "127.0.0.1:0", "--no-auth",
         "--max-clients", "100000"],
        env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"serve did not start (exit {proc.wait()})")
        m = re.search(r"listening on (\S+)", line)
        if m:
            return proc, m.group(1)


def wait_known(url: str, within: float = 30) -> None:
    import json
    import urllib.request

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        # with a token (any, under --no-auth): without one /healthz says only "ok"
        req = urllib.request.Request(f"{url}/healthz",
                                     headers={"Authorization": "Bearer bench"})
        with urllib.request.urlopen(req) as r:
            if json.load(r)["database_connected"]:
                return
        time.sleep(0.2)
    raise SystemExit("the server never connected to its database")


def run_round(args: argparse.Namespace, dsn: str) -> dict[str, float]:
    proc, url = start_serve(dsn)
    try:
        wait_known(url)
        time.sleep(0.5)
        rss_before = rss_kib(proc.pid)
        ws_url = "ws" + url[4:] + "/api/system-stability"
        per = [args.clients // args.procs + (1 if i < args.clients % args.procs else 0)
               for i in range(args.procs)]
        ctx = mp.get_context("spawn")
        pipes, workers = [], []
        t_connect = time.monotonic()
        for n in per:
            parent, child = ctx.Pipe()
            w = ctx.Process(target=client_main, args=(ws_url, n, child), daemon=True)
            w.start()
            pipes.append(parent)
            workers.append(w)
        for p in pipes:
            assert p.recv() == "ready"
        connect_s = time.monotonic() - t_connect
        time.sleep(1.0)
        rss_after = rss_kib(proc.pid)
        with psycopg.connect(dsn, autocommit=True) as c:
            row = c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'bench' "
                "AND application_name = 'traystatus'"
            ).fetchone()
            db_connections = int(row[0]) if row else -1
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle)
        idle_cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)

        commits: list[tuple[float, bool]] = []
        cpu_flips0 = cpu_seconds(proc.pid)
        with psycopg.connect(dsn, autocommit=True) as writer:
            for i in range(args.flips):
                stable_after = i % 2 == 1
                writer.execute(FINISH if stable_after else START)
                commits.append((time.monotonic(), stable_after))
                time.sleep(args.gap)
        cpu_per_flip = (cpu_seconds(proc.pid) - cpu_flips0) / args.flips
        for p in pipes:
            p.send("stop")
        received: list[list[tuple[float, bool | None]]] = []
        for p in pipes:
            received.extend(p.recv())
        for w in workers:
            w.join(10)
    finally:
        proc.terminate()
        proc.wait(20)

    last_latency: list[float] = []
    all_latency: list[float] = []
    missed = 0
    for k, (t_commit, stable) in enumerate(commits):
        t_next = commits[k + 1][0] if k + 1 < len(commits) else float("inf")
        times = []
        for msgs in received:
            got = [t for t, s in msgs if s is stable and t_commit - 0.05 <= t < t_next]
            if got:
                times.append(got[0] - t_commit)
            else:
                missed += 1
        if times:
            last_latency.append(max(times))
            all_latency.extend(times)
    return {
        "clients": float(args.clients),
        "connect_s": connect_s,
        "last_p50": statistics.median(last_latency),
        "last_p99": pct(last_latency, 99),
        "last_max": max(last_latency),
        "each_p50": statistics.median(all_latency),
        "each_p99": pct(all_latency, 99),
        "missed": float(missed),
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_after / 1024,
        "kib_per_client": (rss_after - rss_before) / args.clients,
        "idle_cpu_pct": idle_cpu * 100,
        "db_connections": float(db_connections),
        "cpu_per_flip_ms": cpu_per_flip * 1000,
    }


def auth_bench(keys: int, rounds: int) -> None:
    asyncio.run(_auth_bench(keys, rounds))


async def _auth_bench(keys: int, rounds: int) -> None:
    import uuid

    import aiohttp
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from traystatus.core.watch.monitor import Monitor
    from traystatus.serve.app import credential_checker, recheck_sockets
    from traystatus.serve.server import Running, ServeConfig, serve

    base = os.environ.get("STATBUS_REAL_DSN")
    if not base:
        raise SystemExit("--auth-keys needs the real StatBus kit: eval \"$(bash "
                         "tests/statbus_real/kit/build.sh --env)\"")
    suffix = uuid.uuid4().hex[:10]
    db, email = f"bench_auth_{suffix}", f"bench-{suffix}@example.org"
    admin = make_conninfo(base, dbname="postgres")
    template = os.environ.get("STATBUS_REAL_TEMPLATE", "statbus_template")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER statbus_app STRATEGY "
                          "FILE_COPY").format(sql.Identifier(db), sql.Identifier(template)))
    dsn = make_conninfo(base, dbname=db)
    tmp = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO auth.user (email, password, statbus_role, display_name, "
                      "email_confirmed_at) VALUES (%s, %s, 'regular_user', 'Bench', now())",
                      (email, uuid.uuid4().hex))
            secret = c.execute("SELECT value FROM auth.secrets WHERE key = 'jwt_secret'"
                               ).fetchone()
            c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(email)))
            tokens = [str(r[0]) for r in c.execute(
                "SELECT (public.create_api_key('bench ' || i, '1 day')).token "
                "FROM generate_series(1, %s) AS i", (keys + rounds * 20,)).fetchall()]
        assert secret is not None
        (tmp / "jwt").write_text(str(secret[0]) + "\n")
        (tmp / "tokens").write_text("bench-token-0123456789abcdef\n")
        for name in ("jwt", "tokens"):
            (tmp / name).chmod(0o600)
        config = ServeConfig(port=0, token_file=str(tmp / "tokens"),
                             jwt_secret_file=str(tmp / "jwt"), credential_conninfo=dsn,
                             recheck=3600.0, startup_grace=0.1)
        started: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = asyncio.create_task(serve(config, Monitor(dsn), ready=started.set_result,
                                         stop=stop, handle_signals=False))
        running = await started
        ws_url = "ws" + running.url[4:] + "/api/system-stability"

        async def handshake(http: aiohttp.ClientSession, token: str) -> float:
            t0 = time.perf_counter()
            ws = await http.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"})
            took = time.perf_counter() - t0
            await ws.close()
            return took

        fresh = iter(tokens[keys:])
        shared, first, cached = [], [], []
        # no connection limit: every open WebSocket holds one of the connector's
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await handshake(http, "bench-token-0123456789abcdef")  # warm up
            for _ in range(rounds * 20):
                shared.append(await handshake(http, "bench-token-0123456789abcdef"))
                key = next(fresh)
                first.append(await handshake(http, key))
                cached.append(await handshake(http, key))
            print(f"handshake medians ({rounds * 20} each): shared token "
                  f"{ms(statistics.median(shared))}, StatBus API key checked in the "
                  f"database {ms(statistics.median(first))}, the same key again (cached) "
                  f"{ms(statistics.median(cached))}")
            sockets = [await http.ws_connect(ws_url,
                                             headers={"Authorization": f"Bearer {t}"})
                       for t in tokens[:keys]]
            assert running.app is not None
            checker = credential_checker(running.app)
            assert checker is not None
            checker.ttl = 0.0  # every pass asks the database
            passes = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                closed = await recheck_sockets(running.app)
                passes.append(time.perf_counter() - t0)
                assert closed == 0
            print(f"re-checking {keys} open API-key sockets against the database: median "
                  f"{ms(statistics.median(passes))} a pass ({rounds} passes; "
                  f"{ms(statistics.median(passes) / keys)} a key), every "
                  "--recheck-interval (default 5 s)")
            for ws in sockets:
                await ws.close()
        stop.set()
        await task
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(db)))
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(email)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--flips", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between flips")
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--auth-keys", type=int, default=0, metavar="N",
                        help="measure credential checks instead (real StatBus kit)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    if args.auth_keys:
        auth_bench(args.auth_keys, args.rounds)
        print(f"load average after: {os.getloadavg()}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        db, dsn = start_db(Path(tmp))
        try:
            for r in range(args.rounds):
                res = run_round(args, dsn)
                print(
                    f"round {r + 1}: {args.clients} clients over {args.procs} processes "
                    f"(connected in {res['connect_s']:.1f} s); COMMIT -> last client: "
                    f"median {ms(res['last_p50'])}, p99 {ms(res['last_p99'])}, "
                    f"max {ms(res['last_max'])}; COMMIT -> each client: median "
                    f"{ms(res['each_p50'])}, p99 {ms(res['each_p99'])}; missed "
                    f"{res['missed']:.0f}"
                )
                print(
                    f"  server RSS {res['rss_before_mib']:.1f} MiB -> "
                    f"{res['rss_after_mib']:.1f} MiB: {res['kib_per_client']:.1f} KiB per "
                    f"client; idle CPU {res['idle_cpu_pct']:.3f} % of one core; database "
                    f"connections held: {res['db_connections']:.0f}; server CPU per flip "
                    f"{res['cpu_per_flip_ms']:.1f} ms"
                )
        finally:
            db.destroy()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
