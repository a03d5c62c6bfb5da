"""Fan-out of ``traystatus serve`` at 1k-10k WebSocket clients on one process. Prints figures.

    .venv/bin/python bench/bench_fanout.py [--clients 1000,5000,10000] [--procs 4]
                                           [--flips 40] [--idle 60]

* An embedded PostgreSQL with the StatBus stand-in and install.sql; ``traystatus serve``
  as a child process on 127.0.0.1 (``--no-auth``), as a user runs it.
* Clients: raw WebSocket over asyncio protocols (a handshake, then frames read by hand,
  pings answered), so that a client costs microseconds per message and the server is
  what is measured. They are spread over ``--procs`` processes, each from its own
  loopback source address (127.0.0.1x: the server's per-address limit on connections
  still handshaking is not the bottleneck).
* Latency: a writer flips the system ``--flips`` times, ``--gap`` s apart; per flip, the
  time from the writer's COMMIT returning to the LAST client having the new state (and
  to each client's). Median and p99.
* Memory: the server's RSS before the clients and with all connected, per client; and the
  kernel's TCP memory (/proc/net/sockstat, both ends of every loopback connection).
* Idle CPU: the server's CPU time over ``--idle`` seconds with every client connected and
  nothing happening (its heartbeat pings and the credential re-check included), as a
  share of one core.
* The load average before and after: the machine's other work competes for the cores.

Every loop here is bounded: each round ends after its flips and its idle time.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_serve import (
    FINISH,
    START,
    cpu_seconds,
    ms,
    pct,
    rss_kib,
    start_db,
    wait_known,
)

SCRIPT = Path(sys.executable).parent / "traystatus"
REPO = Path(__file__).resolve().parents[1]


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tcp_mem_kib() -> int:
    """The kernel's TCP socket memory (all sockets on this machine), KiB."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


# -- the clients ------------------------------------------------------------------------------
def client_main(host: str, port: int, source: str, n: int, conn: Connection) -> None:
    """``n`` WebSocket clients on one epoll loop, by hand (a handshake, then frames parsed
    here, pings answered with a masked pong): microseconds a message, so the server is
    what is measured. Records (time seen, stable: 1 / 0 / -1) per text frame."""
    import select
    import socket

    raise_nofile()
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /api/system-stability HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    ep = select.epoll()
    socks: dict[int, socket.socket] = {}
    bufs: dict[int, bytes] = {}
    upgraded: set[int] = set()
    logs: dict[int, list[tuple[float, int]]] = {}
    retries = 0
    batch = 32
    made = 0
    while made < n:  # connect and handshake in batches (bounded: at most n + retries)
        group = []
        for _ in range(min(batch, n - made)):
            s = socket.socket()
            s.bind((source, 0))
            s.connect((host, port))
            s.sendall(request)
            group.append(s)
        for s in group:
            s.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                retries += 1
                s.close()
                if retries > n:
                    raise SystemExit(f"handshakes keep failing: {head[:200]!r}")
                continue
            s.setblocking(False)
            fd = s.fileno()
            socks[fd] = s
            bufs[fd] = head[head.index(b"\r\n\r\n") + 4:]
            logs[fd] = []
            upgraded.add(fd)
            ep.register(fd, select.EPOLLIN)
            made += 1
    ep.register(conn.fileno(), select.EPOLLIN)
    conn.send(("ready", retries))
    stop = False
    while not stop:
        events = ep.poll(5.0)
        now = time.monotonic()
        for fd, _ in events:
            if fd == conn.fileno():
                stop = True
                continue
            s = socks[fd]
            try:
                data = s.recv(1 << 16)
            except BlockingIOError:
                continue
            if not data:
                ep.unregister(fd)
                continue
            buf = bufs[fd] + data
            log = logs[fd]
            while len(buf) >= 2:
                opcode, size, start = buf[0] & 0x0F, buf[1] & 0x7F, 2
                if size == 126:
                    if len(buf) < 4:
                        break
                    size, start = int.from_bytes(buf[2:4], "big"), 4
                elif size == 127:
                    if len(buf) < 10:
                        break
                    size, start = int.from_bytes(buf[2:10], "big"), 10
                if len(buf) < start + size:
                    break
                if opcode == 1:  # {"stable":true / false / null
                    c = buf[start + 10:start + 11]
                    log.append((now, 1 if c == b"t" else 0 if c == b"f" else -1))
                elif opcode == 9:  # ping: a masked pong
                    s.send(bytes((0x8A, 0x80 | size)) + b"\0\0\0\0"
                           + buf[start:start + size])
                buf = buf[start + size:]
            bufs[fd] = buf
    conn.recv()  # "stop"
    conn.send(list(logs.values()))
    for s in socks.values():
        s.close()


# -- where the time goes: the floor -----------------------------------------------------------
def floor(n: int) -> None:
    """In this process, without the server: what one message costs per client in its parts.
    JSON encoding (once per message, not per client), the hub's own loop over ``n`` sinks
    that take the frame without a system call, and a bare ``socket.send()`` of the same
    frame to ``n`` loopback TCP connections (nobody reading: no wake-ups)."""
    import socket

    from traystatus.core.model.state import State, Status
    from traystatus.serve.hub import Hub, dumps, status_message, text_frame

    status = Status(State.PROCESSING, message="")
    t0 = time.perf_counter()
    for _ in range(1000):
        text = dumps(status_message(status))
        frame = text_frame(text)
    encode = (time.perf_counter() - t0) / 1000

    class Sink:
        __slots__ = ("n",)

        def __init__(self) -> None:
            self.n = 0

        def try_write(self, frame: bytes) -> bool:
            self.n += 1
            return True

    class Source:
        status = Status(State.STABLE)

        def add_listener(self, cb: object) -> None: ...
        def add_details_listener(self, cb: object) -> None: ...
        def add_summary_listener(self, cb: object) -> None: ...
        def subscribe_details(self) -> None: ...
        def unsubscribe_details(self) -> None: ...

    from traystatus.serve.hub import Client

    hub = Hub(Source())
    for _ in range(n):
        hub._status_clients.add(Client(Sink(), False, lambda: None))
    t0 = time.perf_counter()
    for _ in range(10):
        hub._broadcast(frame, details=False)
    loop_s = (time.perf_counter() - t0) / 10

    pairs = min(n, 4000)  # both ends in this process
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(pairs)
    ends = []
    for _ in range(pairs):
        c = socket.create_connection(listener.getsockname())
        a, _ = listener.accept()
        a.setblocking(False)
        ends.append((a, c))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(10):
        for a, _ in ends:
            a.send(frame)
    send = (time.perf_counter() - t0) / 10 / pairs
    send_cpu = (time.process_time() - c0) / 10 / pairs
    for a, c in ends:
        a.close()
        c.close()
    listener.close()
    print(f"floor: JSON + frame of one {len(frame)}-byte message {encode * 1e6:.1f} us (once "
          f"per message); the hub's loop {loop_s / n * 1e6:.2f} us a client; socket.send() "
          f"to a loopback TCP connection {send * 1e6:.1f} us a client ({send_cpu * 1e6:.1f} us "
          f"of CPU; nobody waiting to read); so {n} clients: "
          f"{(loop_s + send * n) * 1000:.0f} ms a message before any wake-up of a reader",
          flush=True)


# -- the run ----------------------------------------------------------------------------------
def start_serve(dsn: str, extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *([os.environ["BENCH_SERVE_PATH"]] if "BENCH_SERVE_PATH" in os.environ
                      else [])])
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--dsn", dsn, "--listen", "127.0.0.1:0", "--no-auth",
         "--max-clients", "100000", *extra],
        env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"serve did not start (exit {proc.wait()})")
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if m:
            return proc, f"http://{m.group(1)}:{m.group(2)}"


def server_clients(url: str) -> int:
    import json
    import urllib.request

    req = urllib.request.Request(f"{url}/healthz", headers={"Authorization": "Bearer bench"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return int(json.load(r)["clients"])


def run_round(args: argparse.Namespace, dsn: str, clients: int) -> dict[str, float]:
    proc, url = start_serve(dsn, args.serve_args.split())
    try:
        wait_known(url)
        time.sleep(1.0)
        rss_before, tcp_before = rss_kib(proc.pid), tcp_mem_kib()
        host, port = url[len("http://"):].split(":")
        per = [clients // args.procs + (1 if i < clients % args.procs else 0)
               for i in range(args.procs)]
        ctx = mp.get_context("spawn")
        pipes, workers = [], []
        t_connect = time.monotonic()
        for i, n in enumerate(per):
            parent, child = ctx.Pipe()
            w = ctx.Process(target=client_main,
                            args=(host, int(port), f"127.0.0.{10 + i}", n, child), daemon=True)
            w.start()
            pipes.append(parent)
            workers.append(w)
        retries = 0
        for p in pipes:
            what, failures = p.recv()
            assert what == "ready"
            retries += failures
        connect_s = time.monotonic() - t_connect
        time.sleep(2.0)
        rss_after, tcp_after = rss_kib(proc.pid), tcp_mem_kib()
        connected = server_clients(url)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle)
        idle_cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)

        commits: list[tuple[float, int]] = []
        cpu_flips0 = cpu_seconds(proc.pid)
        with psycopg.connect(dsn, autocommit=True) as writer:
            for i in range(args.flips):
                stable_after = 1 if i % 2 == 1 else 0
                writer.execute(FINISH if stable_after else START)
                commits.append((time.monotonic(), stable_after))
                time.sleep(args.gap)
        cpu_per_flip = (cpu_seconds(proc.pid) - cpu_flips0) / args.flips
        still = server_clients(url)
        for p in pipes:
            p.send("stop")
        received: list[list[tuple[float, int]]] = []
        for p in pipes:
            received.extend(p.recv())
        for w in workers:
            w.join(10)
    finally:
        proc.terminate()
        proc.wait(30)

    last_latency: list[float] = []
    all_latency: list[float] = []
    missed = 0
    for k, (t_commit, stable) in enumerate(commits):
        # up to the commit after next (the next with the same state): a late message counts
        t_next = commits[k + 2][0] if k + 2 < len(commits) else float("inf")
        times = []
        for msgs in received:
            got = [t for t, s in msgs if s == stable and t_commit - 0.05 <= t < t_next]
            if got:
                times.append(got[0] - t_commit)
            else:
                missed += 1
        if times:
            last_latency.append(max(times))
            all_latency.extend(times)
    final = commits[-1][1]
    not_latest = sum(1 for msgs in received if not msgs or msgs[-1][1] != final)
    return {
        "not_latest": float(not_latest),
        "connect_s": connect_s,
        "connected": float(connected),
        "still": float(still),
        "retries": float(retries),
        "last_p50": statistics.median(last_latency),
        "last_p99": pct(last_latency, 99),
        "last_max": max(last_latency),
        "each_p50": statistics.median(all_latency),
        "each_p99": pct(all_latency, 99),
        "missed": float(missed),
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_after / 1024,
        "kib_per_client": (rss_after - rss_before) / clients,
        "tcp_kib_per_client": (tcp_after - tcp_before) / clients,
        "idle_cpu_pct": idle_cpu * 100,
        "cpu_per_flip_ms": cpu_per_flip * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1000,5000,10000",
                        help="comma-separated client counts, one round each")
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--flips", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between flips")
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--serve-args", default="", help="more options for serve")
    args = parser.parse_args()
    raise_nofile()
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}", flush=True)
    floor(max(int(c) for c in args.clients.split(",")))
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        db, dsn = start_db(Path(tmp))
        try:
            for clients in (int(c) for c in args.clients.split(",")):
                res = run_round(args, dsn, clients)
                print(
                    f"{clients} clients over {args.procs} processes (connected in "
                    f"{res['connect_s']:.1f} s, {res['retries']:.0f} retries); COMMIT -> "
                    f"last client: median {ms(res['last_p50'])}, p99 {ms(res['last_p99'])}, "
                    f"max {ms(res['last_max'])}; COMMIT -> each client: median "
                    f"{ms(res['each_p50'])}, p99 {ms(res['each_p99'])}; missed "
                    f"{res['missed']:.0f} (a client without a flip's state by the flip "
                    f"after); the server counted {res['connected']:.0f} clients before the "
                    f"flips, {res['still']:.0f} after; {res['not_latest']:.0f} clients not on the "
                    "final state", flush=True,
                )
                print(
                    f"  server RSS {res['rss_before_mib']:.1f} -> {res['rss_after_mib']:.1f} "
                    f"MiB: {res['kib_per_client']:.1f} KiB per client (kernel TCP memory "
                    f"{res['tcp_kib_per_client']:.2f} KiB per client, both ends); idle CPU "
                    f"{res['idle_cpu_pct']:.3f} % of one core over {args.idle:.0f} s; "
                    f"server CPU per flip {res['cpu_per_flip_ms']:.1f} ms; load average "
                    f"now {os.getloadavg()[0]:.2f}", flush=True,
                )
        finally:
            db.destroy()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
