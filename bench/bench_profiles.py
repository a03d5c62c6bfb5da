"""What a profiles-file change costs now that it is a locked transaction, and how many
writers can share the file.

1. One change (``ProfileStore.put``): lock, re-read, write a temporary file, fsync it,
   rename, fsync the folder; with 20 profiles in the file. Median and p90 over
   ``--rounds``, next to the plain read (``ProfileStore.load``) for scale.
2. Contention: ``--writers`` processes each add ``--each`` profiles at once, plus this one:
   the total time and that nothing was lost.

Prints figures; exits 1 when a profile was lost.
    .venv/bin/python bench/bench_profiles.py [--rounds 200] [--writers 4] [--each 25]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from traystatus.core.config.profiles import ConnectionProfile, ProfileStore

REPO = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
    path, who, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = ProfileStore(path)
    for i in range(n):
        store.add(ConnectionProfile(name=f"{who}-{i}", host="h.example.org"))
""")


def _ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[int(len(xs) * 0.9)]
    return f"median {statistics.median(xs) * 1000:.2f} ms, p90 {p90 * 1000:.2f} ms"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--each", type=int, default=25)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "profiles.toml"
        store = ProfileStore(path)
        for i in range(20):
            store.put(ConnectionProfile(name=f"p{i}", host=f"h{i}.example.org", port="3015",
                                        dbname="statbus", user="ana"))
        puts, loads = [], []
        for i in range(args.rounds):
            t = time.perf_counter()
            store.put(ConnectionProfile(name="p0", host=f"x{i}.example.org"))
            puts.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.load()
            loads.append(time.perf_counter() - t)
        print(f"one change (lock, re-read, write, fsync x2, rename), 20 profiles: {_ms(puts)}")
        print(f"one read (load), 20 profiles: {_ms(loads)}")

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "profiles.toml"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        t = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{k}",
                                   str(args.each)], env=env) for k in range(args.writers)]
        mine = ProfileStore(path)
        for i in range(args.each):
            mine.add(ConnectionProfile(name=f"me-{i}", host="h.example.org"))
        codes = [p.wait() for p in procs]
        took = time.perf_counter() - t
        names = set(ProfileStore(path).names())
        want = (args.writers + 1) * args.each
        print(f"{args.writers + 1} processes x {args.each} adds at once: {took:.2f} s "
              f"(process start-up included), {len(names)} of {want} profiles kept, "
              f"exit codes {codes}")
        return 0 if len(names) == want and not any(codes) else 1


if __name__ == "__main__":
    sys.exit(main())
