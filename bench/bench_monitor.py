"""Benchmark the monitoring core against a real (embedded) PostgreSQL. Prints figures.

    .venv/bin/python bench/bench_monitor.py [--flips 1000] [--monitors 200] [--fanout-flips 50]
                                            [--procs 4] [--tasks 10000]
                                            [--storm-listeners 200] [--storm-tasks 1000]

1. Latency: a writer thread flips the system (insert an analytics task / complete it) and
   measures from the moment it sends COMMIT to the moment the Monitor's listener is called
   with the new state. 1,000 flips: median, p90, p99, max.
2. Fan-out: N monitors (one asyncio loop, one process) on one server; per flip the time
   until ALL of them have reported it, and the server's CPU per flip (CPU time of the
   postmaster and every backend, from /proc/<pid>/schedstat). In one process the client
   loop serialises 200 wake-ups and reads, so the run is repeated with the monitors
   spread over --procs processes, closer to 200 analysts on 200 machines (but still on
   this machine's cores).
3. Storm: a simulated worker runs N task lifecycles (insert pending, processing, completed,
   one task per transaction, 4 worker threads) while 1 monitor listens: notifications it
   received, queries it issued, the CPU its thread used, and the CPU of its backend.
4. Storm with many listeners (--storm-listeners, default 200, over --procs processes):
   how much slower the worker gets and what the listening backends and the monitor
   processes spend per notification.

5. Due moment: an analytics task scheduled 1 s ahead falls due without any write; the
   monitor (health interval 60 s) re-reads just after the moment the database gave it
   (system_stability_next_due()). Latency from the due moment to the listener seeing
   PROCESSING, over --due-flips tasks (target: under 1 s). ``--due-only`` runs just this.

The server is a fresh EmbeddedPostgres with max_connections raised; nothing else shares it.
Timing figures depend on the machine's load: run it on a quiet machine for the record.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from traystatus._paths import sql_dir
from traystatus.core.model.state import State, Status
from traystatus.core.watch.monitor import Monitor
from traystatus.core.watch.options import MonitorOptions
from traystatus.demo.embedded import EmbeddedPostgres

START = "INSERT INTO worker.tasks (command, state) VALUES ('collect_changes', 'pending')"
FINISH = (
    "UPDATE worker.tasks SET state = 'completed' "
    "WHERE command = 'collect_changes' AND state <> 'completed'"
)
QUIET = MonitorOptions(health_interval=60.0, health_timeout=10.0, connect_timeout=30.0)
CLK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def summary(values: list[float]) -> str:
    return (
        f"median {ms(statistics.median(values))}, p90 {ms(pct(values, 90))}, "
        f"p99 {ms(pct(values, 99))}, max {ms(max(values))} (n={len(values)})"
    )


# -- server -----------------------------------------------------------------------------------
def start_server(base: Path, max_connections: int) -> tuple[EmbeddedPostgres, str]:
    server = EmbeddedPostgres(base / "data", settings={"max_connections": str(max_connections)})
    server.start()
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench")
    dsn = server.dsn("bench")
    with psycopg.connect(dsn, autocommit=True) as c:
        for name in ("fixtures/statbus_schema.sql", "install.sql"):
            c.execute((sql_dir() / name).read_text().encode())
    return server, dsn


def postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.datadir / "postmaster.pid").read_text().splitlines()[0])


def proc_cpu(pid: int) -> float:
    """CPU seconds of one process (0 when it is gone).

    /proc/<pid>/schedstat counts nanoseconds on the CPU; utime+stime in /proc/<pid>/stat
    is sampled in 10 ms ticks, which rounds a backend's sub-millisecond work to 0 or 10 ms.
    """
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


def server_cpu(server: EmbeddedPostgres) -> float:
    """CPU seconds used so far by the postmaster and all its live children."""
    root = postmaster_pid(server)
    total = proc_cpu(root)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == root:
            total += proc_cpu(int(entry))
    return total


# -- 1. latency ------------------------------------------------------------------------------
async def bench_latency(dsn: str, flips: int) -> None:
    monitor = Monitor(dsn, QUIET)
    seen = threading.Event()
    want: list[State] = [State.STABLE]
    stamp: list[float] = [0.0]

    def on_status(s: Status) -> None:
        if s.state is want[0]:
            stamp[0] = time.perf_counter()
            seen.set()

    monitor.add_listener(on_status)
    task = asyncio.create_task(monitor.run())
    await asyncio.to_thread(seen.wait, 30)

    def writer() -> list[float]:
        out: list[float] = []
        with psycopg.connect(dsn) as conn:
            for i in range(flips):
                want[0] = State.PROCESSING if i % 2 == 0 else State.STABLE
                seen.clear()
                conn.execute(START if i % 2 == 0 else FINISH)
                t0 = time.perf_counter()
                conn.commit()
                if not seen.wait(10):
                    raise RuntimeError(f"flip {i} not seen within 10 s")
                out.append(stamp[0] - t0)
        return out

    latencies = await asyncio.to_thread(writer)
    monitor.stop()
    await task
    print(f"[latency] COMMIT -> Monitor listener, {flips} flips: {summary(latencies)}")
    print(
        f"[latency] monitor queries {monitor.counters.queries}, "
        f"notifications {monitor.counters.notifications}, "
        f"stability reads {monitor.counters.stability_reads}"
    )


# -- 2. fan-out ------------------------------------------------------------------------------
async def bench_fanout(server: EmbeddedPostgres, dsn: str, n: int, flips: int) -> None:
    monitors = [Monitor(dsn, QUIET) for _ in range(n)]
    want: list[State] = [State.STABLE]
    seen_at: dict[int, float] = {}
    all_seen = threading.Event()
    lock = threading.Lock()

    def make_listener(idx: int) -> Any:
        def on_status(s: Status) -> None:
            if s.state is want[0] and idx not in seen_at:
                with lock:
                    seen_at[idx] = time.perf_counter()
                    if len(seen_at) == n:
                        all_seen.set()

        return on_status

    for i, m in enumerate(monitors):
        m.add_listener(make_listener(i))
    t_connect = time.perf_counter()
    tasks = [asyncio.create_task(m.run()) for m in monitors]
    await asyncio.to_thread(all_seen.wait, 120)
    print(f"[fanout] {n} monitors connected and read in {time.perf_counter() - t_connect:.2f} s")

    def writer() -> tuple[list[float], list[float], float]:
        all_times: list[float] = []
        each: list[float] = []
        cpu0 = server_cpu(server)
        with psycopg.connect(dsn) as conn:
            for i in range(flips):
                with lock:
                    seen_at.clear()
                    all_seen.clear()
                    want[0] = State.PROCESSING if i % 2 == 0 else State.STABLE
                conn.execute(START if i % 2 == 0 else FINISH)
                t0 = time.perf_counter()
                conn.commit()
                if not all_seen.wait(60):
                    raise RuntimeError(f"flip {i}: only {len(seen_at)} of {n} monitors saw it")
                times = [t - t0 for t in seen_at.values()]
                all_times.append(max(times))
                each.extend(times)
                time.sleep(0.05)  # let the monitors settle (coalescing windows end)
        return all_times, each, server_cpu(server) - cpu0

    all_times, each, cpu = await asyncio.to_thread(writer)
    for m in monitors:
        m.stop()
    await asyncio.gather(*tasks)
    print(f"[fanout] time until ALL {n} monitors saw a flip: {summary(all_times)}")
    print(f"[fanout] per-monitor latency: {summary(each)}")
    reads = sum(m.counters.stability_reads for m in monitors)
    print(
        f"[fanout] server CPU {cpu:.3f} s for {flips} flips = {ms(cpu / flips)} per flip "
        f"({ms(cpu / flips / n)} per flip per monitor); stability reads {reads} "
        f"({reads / n / (flips + 1):.2f} per monitor per flip)"
    )


# -- 2b. fan-out across processes -------------------------------------------------------------
def _fanout_child(dsn: str, k: int, counter: Any, stop: Any, out: Any) -> None:
    """k monitors in this process; count every known state they report; send the times."""
    events: list[list[float]] = [[] for _ in range(k)]

    async def main() -> None:
        monitors = [Monitor(dsn, QUIET) for _ in range(k)]
        for i, m in enumerate(monitors):

            def on_status(s: Status, i: int = i) -> None:
                if s.is_known:
                    events[i].append(time.perf_counter())
                    with counter.get_lock():
                        counter.value += 1

            m.add_listener(on_status)
        tasks = [asyncio.create_task(m.run()) for m in monitors]
        await asyncio.to_thread(stop.wait)  # a multiprocessing Event: wait in a thread
        for m in monitors:
            m.stop()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    out.put(events)


def bench_fanout_procs(server: EmbeddedPostgres, dsn: str, n: int, procs: int, flips: int) -> None:
    """As bench_fanout, with the monitors spread over ``procs`` processes (as on many
    machines): perf_counter is CLOCK_MONOTONIC, comparable across processes on Linux."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    counter = ctx.Value("l", 0)
    stop = ctx.Event()
    out = ctx.Queue()
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    children = [ctx.Process(target=_fanout_child, args=(dsn, k, counter, stop, out)) for k in per]
    for c in children:
        c.start()

    def wait_count(target: int, within: float) -> None:
        end = time.monotonic() + within
        while counter.value < target:
            if time.monotonic() > end:
                raise RuntimeError(f"only {counter.value} of {target} state reports")
            time.sleep(0.0005)

    wait_count(n, 120)
    commits: list[float] = []
    cpu0 = server_cpu(server)
    with psycopg.connect(dsn) as conn:
        for i in range(flips):
            conn.execute(START if i % 2 == 0 else FINISH)
            t0 = time.perf_counter()
            conn.commit()
            commits.append(t0)
            wait_count(n * (i + 2), 60)
            time.sleep(0.05)
    cpu = server_cpu(server) - cpu0
    stop.set()
    events: list[list[float]] = []
    for _ in children:
        events.extend(out.get(timeout=60))
    for c in children:
        c.join(60)
    all_times: list[float] = []
    each: list[float] = []
    for i, t0 in enumerate(commits):
        times = [ev[i + 1] - t0 for ev in events if len(ev) > i + 1]
        all_times.append(max(times))
        each.extend(times)
    print(f"[fanout/{procs} procs] time until ALL {n} monitors saw a flip: {summary(all_times)}")
    print(f"[fanout/{procs} procs] per-monitor latency: {summary(each)}")
    print(f"[fanout/{procs} procs] server CPU {ms(cpu / flips)} per flip")


# -- 3. storm --------------------------------------------------------------------------------
def bench_storm(dsn: str, tasks: int, workers: int = 4) -> None:
    monitor = Monitor(dsn, QUIET)
    loop = asyncio.new_event_loop()
    cpu: dict[str, float] = {}
    ready = threading.Event()
    monitor.add_listener(lambda s: ready.set() if s.is_known else None)

    def monitor_thread() -> None:
        start = time.thread_time()
        loop.run_until_complete(monitor.run())
        cpu["monitor"] = time.thread_time() - start
        loop.close()

    th = threading.Thread(target=monitor_thread)
    th.start()
    if not ready.wait(30):
        raise RuntimeError("monitor did not connect")
    with psycopg.connect(dsn, autocommit=True) as admin:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'traystatus' "
            "AND datname = current_database()"
        ).fetchone()
        assert row is not None
        backend = int(row[0])
    backend_cpu0 = proc_cpu(backend)
    before = (monitor.counters.queries, monitor.counters.notifications)

    per_worker = tasks // workers

    def worker() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            for _ in range(per_worker):
                cur = c.execute(
                    "INSERT INTO worker.tasks (command, state) "
                    "VALUES ('derive_statistical_unit', 'pending') RETURNING id"
                )
                row = cur.fetchone()
                assert row is not None
                c.execute(
                    "UPDATE worker.tasks SET state = 'processing', process_start_at = now() "
                    "WHERE id = %s",
                    (row[0],),
                )
                c.execute(
                    "UPDATE worker.tasks SET state = 'completed', completed_at = now(), "
                    "process_duration_ms = 1 WHERE id = %s",
                    (row[0],),
                )

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    time.sleep(1.0)  # the last coalesced read
    state = monitor.status.state
    backend_cpu = proc_cpu(backend) - backend_cpu0  # before the backend exits
    monitor.stop()
    th.join(30)
    queries = monitor.counters.queries - before[0]
    notes = monitor.counters.notifications - before[1]
    print(
        f"[storm] {per_worker * workers} task lifecycles by {workers} workers in {took:.1f} s: "
        f"monitor received {notes} notifications, issued {queries} queries "
        f"({queries / took:.1f}/s), final state {state.value}"
    )
    print(
        f"[storm] monitor thread CPU {cpu['monitor']:.2f} s (whole run, incl. connect); "
        f"its backend's CPU during the storm {backend_cpu:.3f} s"
    )


# -- 4. storm with many listeners -------------------------------------------------------------
def _lifecycles(dsn: str, tasks: int, workers: int = 4) -> float:
    per_worker = tasks // workers

    def worker() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            for _ in range(per_worker):
                row = c.execute(
                    "INSERT INTO worker.tasks (command, state) "
                    "VALUES ('derive_statistical_unit', 'pending') RETURNING id"
                ).fetchone()
                assert row is not None
                c.execute("UPDATE worker.tasks SET state = 'processing' WHERE id = %s", (row[0],))
                c.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s", (row[0],))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def bench_storm_many(dsn: str, n: int, procs: int, tasks: int) -> None:
    """What a task storm costs when ``n`` monitors listen: every NOTIFY wakes every
    listening backend, whatever the clients do with it."""
    import multiprocessing as mp

    alone = _lifecycles(dsn, tasks)
    ctx = mp.get_context("fork")
    counter = ctx.Value("l", 0)
    stop = ctx.Event()
    out = ctx.Queue()
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    children = [ctx.Process(target=_fanout_child, args=(dsn, k, counter, stop, out)) for k in per]
    for c in children:
        c.start()
    end = time.monotonic() + 120
    while counter.value < n and time.monotonic() < end:
        time.sleep(0.05)
    with psycopg.connect(dsn, autocommit=True) as admin:
        pids = [
            int(str(r[0]))
            for r in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'traystatus'"
            )
        ]
    kids = [c.pid for c in children if c.pid is not None]
    b0 = sum(proc_cpu(p) for p in pids)
    c0 = sum(proc_cpu(p) for p in kids)
    took = _lifecycles(dsn, tasks)
    backends = sum(proc_cpu(p) for p in pids) - b0
    clients = sum(proc_cpu(p) for p in kids) - c0
    stop.set()
    for _ in children:
        out.get(timeout=60)
    for c in children:
        c.join(60)
    notes = 2 * tasks  # one NOTIFY when a task becomes active, one when it ends
    print(
        f"[storm/{n} listeners] {tasks} task lifecycles took {took:.1f} s "
        f"(alone: {alone:.1f} s); listening backends used {backends:.2f} s CPU = "
        f"{backends / len(pids) / notes * 1e6:.0f} us per notification per listener; "
        f"monitor processes {clients:.2f} s = {clients / n / notes * 1e6:.0f} us per "
        f"notification per monitor"
    )


# -- 5. a scheduled task falls due ------------------------------------------------------------
async def bench_due(dsn: str, flips: int) -> None:
    monitor = Monitor(dsn, QUIET)  # health interval 60 s: only the due moment can do it
    seen = threading.Event()
    want: list[State] = [State.STABLE]
    stamp: list[float] = [0.0]

    def on_status(s: Status) -> None:
        if s.state is want[0]:
            stamp[0] = time.time()
            seen.set()

    monitor.add_listener(on_status)
    task = asyncio.create_task(monitor.run())
    await asyncio.to_thread(seen.wait, 30)

    def writer() -> list[float]:
        out: list[float] = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(flips):
                want[0] = State.PROCESSING
                seen.clear()
                row = conn.execute(
                    "INSERT INTO worker.tasks (command, state, scheduled_at) "
                    "VALUES ('derive_statistical_unit', 'pending', now() + interval '1 s') "
                    "RETURNING id, extract(epoch FROM scheduled_at)::float8").fetchone()
                assert row is not None
                if not seen.wait(10):
                    raise RuntimeError(f"due task {i} not seen within 10 s")
                out.append(stamp[0] - float(row[1]))
                want[0] = State.STABLE
                seen.clear()
                conn.execute("UPDATE worker.tasks SET state = 'completed' WHERE id = %s",
                             (row[0],))
                if not seen.wait(10):
                    raise RuntimeError(f"task {i}'s end not seen within 10 s")
        return out

    latencies = await asyncio.to_thread(writer)
    monitor.stop()
    await task
    print(f"[due] scheduled task falls due -> Monitor listener, {flips} tasks: "
          f"{summary(latencies)} (target: under 1 s); health checks "
          f"{monitor.counters.health_checks}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=1000)
    ap.add_argument("--monitors", type=int, default=200)
    ap.add_argument("--fanout-flips", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--procs", type=int, default=4, help="processes for the 2nd fan-out run")
    ap.add_argument("--storm-listeners", type=int, default=200)
    ap.add_argument("--storm-tasks", type=int, default=1000)
    ap.add_argument("--due-flips", type=int, default=10)
    ap.add_argument("--due-only", action="store_true")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="traystatus-bench-"))
    os.chmod(base, 0o755)
    server, dsn = start_server(base, max_connections=args.monitors + 50)
    try:
        print(f"# bench_monitor on {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        if args.due_only:
            asyncio.run(bench_due(dsn, args.due_flips))
            return
        asyncio.run(bench_latency(dsn, args.flips))
        asyncio.run(bench_fanout(server, dsn, args.monitors, args.fanout_flips))
        if args.procs > 1:
            bench_fanout_procs(server, dsn, args.monitors, args.procs, args.fanout_flips)
        bench_storm(dsn, args.tasks)
        if args.storm_listeners:
            bench_storm_many(dsn, args.storm_listeners, args.procs, args.storm_tasks)
        asyncio.run(bench_due(dsn, args.due_flips))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
