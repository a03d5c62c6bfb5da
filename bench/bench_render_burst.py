"""Benchmark of the tray app's repaint throttle: a burst of progress updates.

The real Controller (offscreen Qt, the fallback status window shown, the details window
open) receives ``--updates`` processing Statuses with a changing percentage through its
running source's adapter, spread over about a second (as fast progress reads and NOTIFYs
would bring them). Measured per round: how many repaints ran (``Throttle.calls``) and the
CPU seconds of the burst, with the throttle (250 ms) and without it (every update
repainted, as before issue 18.10). No database is needed: the source points at a closed
port and keeps retrying meanwhile.

Prints medians over ``--rounds`` and the ratio.
    .venv/bin/python bench/bench_render_burst.py [--updates 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["TRAYSTATUS_CONFIG_DIR"] = tempfile.mkdtemp(prefix="bench-render-")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import qasync  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from traystatus.app.controller import Controller  # noqa: E402
from traystatus.app.main import close_loop  # noqa: E402
from traystatus.app.throttle import Throttle  # noqa: E402
from traystatus.core.config.profiles import ProfileStore  # noqa: E402
from traystatus.core.model.progress import JobProgress, Progress  # noqa: E402
from traystatus.core.model.state import State, Status, utcnow  # noqa: E402

DSN = "host=127.0.0.1 port=1 dbname=statbus user=nobody connect_timeout=1"


def statuses(n: int) -> list[Status]:
    since = utcnow() - timedelta(minutes=2)
    out = []
    for i in range(n):
        job = JobProgress(1, "lu_2026", "Legal units 2026", "processing_data",
                          total_rows=10_000, pct=100 * i / n)
        out.append(Status(State.PROCESSING, since=since, progress=Progress(jobs=(job,))))
    return out


async def burst(throttled: bool, updates: int) -> tuple[int, float]:
    ctl = Controller(ProfileStore(), dsn=DSN, tray_available=lambda: False,
                     use_desktop_notifier=False)
    if not throttled:
        ctl._render_throttle = Throttle(ctl._render, 0, ctl)  # every update repainted
    ctl.start()
    try:
        started = asyncio.Event()
        ctl.slot.adapterChanged.connect(lambda a: started.set() if a is not None else None)
        if ctl.adapter is None:
            await started.wait()
        ctl.show_details()
        await asyncio.sleep(0.3)
        adapter = ctl.adapter
        assert adapter is not None
        calls0 = ctl._render_throttle.calls
        cpu0 = time.process_time()
        for i, status in enumerate(statuses(updates)):
            adapter.statusChanged.emit(status)
            # Over about a second; the unthrottled run's 0 ms timer fires in between.
            await asyncio.sleep(5.0 / updates if i % 5 == 0 else 0)
        await asyncio.sleep(0.3)
        cpu = time.process_time() - cpu0
        return ctl._render_throttle.calls - calls0, cpu
    finally:
        await ctl.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    app = QApplication([])
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    results: dict[bool, list[tuple[int, float]]] = {True: [], False: []}
    try:
        for _ in range(args.rounds):
            for throttled in (True, False):  # interleaved: load drifts hit both alike
                results[throttled].append(loop.run_until_complete(burst(throttled,
                                                                        args.updates)))
    finally:
        close_loop(loop)
    for throttled in (True, False):
        rows = results[throttled]
        print(f"{'throttled  ' if throttled else 'unthrottled'}: "
              f"repaints median {statistics.median(r for r, _ in rows):.0f}, "
              f"CPU median {statistics.median(c for _, c in rows):.3f} s "
              f"({args.updates} updates, {args.rounds} rounds)")
    on = statistics.median(c for _, c in results[True])
    off = statistics.median(c for _, c in results[False])
    print(f"CPU ratio unthrottled/throttled: {off / on:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
