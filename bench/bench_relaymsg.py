"""Benchmark of checking a traystatus server's messages (core/relay/_messages.py), in-process.

Every state message a relay client receives goes through ``parse_message()``: JSON with
NaN/Infinity refused, each field checked against the protocol's tables, contradictions
refused, every text made printable. This measures what that costs per message against
``json.loads`` alone (the floor), for:

* a stable message (what most messages are);
* a processing message with ``--jobs`` import jobs, a derive phase and a review hold;
* a malformed message (the check fails on a contradiction at the end);
* a 3 MB ``reason`` (the cap bounds the work).

Prints the median microseconds per message over ``--rounds`` rounds of ``--n`` messages,
and the ratio to ``json.loads``.
    .venv/bin/python bench/bench_relaymsg.py [--n 2000] [--rounds 5] [--jobs 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from traystatus.core.model.state import utcnow
from traystatus.core.relay._messages import ProtocolError, parse_message

NOW = "2026-12-06T04:00:00+00:00"


def message(**kw: Any) -> str:
    d: dict[str, Any] = {
        "stable": True, "state": "stable", "since": NOW, "problem": None, "reason": "",
        "attempt": 0, "next_retry_at": None, "source": "installed", "review": None,
        "blocked_by_review": [], "note": "", "progress": None,
    }
    d.update(kw)
    return json.dumps(d)


def processing(jobs: int) -> str:
    return message(
        stable=False, state="processing",
        review={"waiting": [{"id": 1, "slug": "lu_review"}], "queued_behind": 2},
        blocked_by_review=[1],
        progress={
            "overall_pct": 42, "text": f"{jobs} imports (42 % overall)",
            "imports_running": jobs, "imports_queued": 0, "imports_pct": 42,
            "derive": {"phase": "derive", "step": "derive_statistical_unit",
                       "completed": 120, "total": 412},
            "jobs": [{"id": 100 + i, "slug": f"import_{i}", "state": "processing_data",
                      "pct": 42, "total_rows": 20000, "user_id": 3, "mine": True}
                     for i in range(jobs)],
            "me": 3,
        })


def per_message(fn: Callable[[str], object], raw: str, n: int, rounds: int) -> float:
    """Median microseconds per call over ``rounds`` rounds of ``n`` calls."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            fn(raw)
        times.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=20)
    args = ap.parse_args()
    now = utcnow()

    def parse(raw: str) -> object:
        try:
            return parse_message(raw, where="ws://relay.example:8765", now=now)
        except ProtocolError as ex:
            return ex

    cases = {
        "stable": message(),
        f"processing, {args.jobs} jobs": processing(args.jobs),
        "contradiction": json.dumps({**json.loads(message()), "state": "processing"}),
        "3 MB reason": message(stable=None, state="error", problem="internal",
                               reason="A" * 3_000_000),
    }
    print(f"{'message':<22} {'parse_message':>14} {'json.loads':>12} {'ratio':>7}")
    for name, raw in cases.items():
        n = max(5, args.n // 200) if len(raw) > 100_000 else args.n
        ours = per_message(parse, raw, n, args.rounds)
        floor = per_message(json.loads, raw, n, args.rounds)
        print(f"{name:<22} {ours:>11.1f} µs {floor:>9.1f} µs {ours / floor:>6.1f}x")


if __name__ == "__main__":
    main()
