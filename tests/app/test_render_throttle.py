"""Progress streams in; the icon, the tooltip and the windows repaint a few times a second
and end on the last state. The notification policy still sees every Status.

Real Controller and Monitor against a real database; the burst is fed through the
running source's adapter, as the monitor would when its progress reads come fast."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS, Delivered, MemoryKeyring, run, wait_until
from traystatus.app.controller import Controller
from traystatus.app.throttle import Throttle
from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
from traystatus.core.model.progress import JobProgress, Progress
from traystatus.core.model.state import ReviewBlock, State, Status, utcnow


def busy(pct: float, since: object) -> Status:
    job = JobProgress(1, "lu_2026", "Legal units 2026", "processing_data", total_rows=10_000,
                      pct=pct)
    assert isinstance(since, type(utcnow()))
    return Status(State.PROCESSING, since=since, progress=Progress(jobs=(job,)))


def test_a_burst_of_progress_repaints_a_handful_of_times_and_ends_on_the_last(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str,
) -> None:
    store = ProfileStore()
    store.put(ConnectionProfile(name="work", dsn=db_dsn), make_default=True)
    store.save_settings(replace(store.settings, notify_min_processing_s=0.0))
    ctl = Controller(store, tray_available=lambda: False, use_desktop_notifier=False)
    told = Delivered(ctl.notifier)

    async def scenario() -> None:
        ctl.start()
        try:
            await wait_until(lambda: ctl.status.state is State.STABLE)
            ctl.show_details()
            window = ctl.details_window
            adapter = ctl.adapter
            assert window is not None and adapter is not None
            await asyncio.sleep(0.4)
            renders: list[int] = []
            section = window.main
            render = section._render

            def counted() -> None:
                renders.append(1)
                render()

            section._render = counted  # type: ignore[method-assign]  # counts the renders
            t0 = utcnow() - timedelta(minutes=2)
            statuses = [busy(i / 5, t0) for i in range(500)]
            # Halfway, for one Status only, a job waits for review: the policy must see it
            # (and announce it) even if no repaint ever shows that Status.
            held = ReviewBlock(((7, "se_2026"),), 1)
            statuses[250] = replace(statuses[250], review=held)
            last = statuses[-1]
            for i, status in enumerate(statuses):
                adapter.statusChanged.emit(status)
                if i % 25 == 0:
                    await asyncio.sleep(0.01)  # the burst spreads over a fraction of a second
            await asyncio.sleep(0.4)  # the throttle's interval: the last one is drawn
            assert len(renders) <= 8, len(renders)
            # The last state is what shows: icon, ring, tooltip, both windows.
            assert ctl.tray.status == last and ctl.window.status == last
            assert window.status == last
            assert ctl.tray.progress == 99
            assert "1 import (99 %)" in ctl.tray.tooltip_text()
            want = ctl.icons.for_status(last, ctl.style, 99).pixmap(64, 64).toImage()
            assert ctl.tray.tray.icon().pixmap(64, 64).toImage() == want
            # The policy saw every Status: the review in the middle was announced.
            await wait_until(lambda: any(n.title == held.text for n in told),
                             within=5)
            ARTIFACTS.mkdir(exist_ok=True)
            assert ctl.window.grab().save(str(ARTIFACTS / "status-window-throttled.png"))
            window.resize(640, 420)
            assert window.grab().save(str(ARTIFACTS / "details-throttled.png"))
        finally:
            await ctl.shutdown()

    run(qloop, scenario(), timeout=120)


def test_the_throttle_calls_at_once_then_once_per_interval_and_never_drops_the_last(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop,
) -> None:
    seen: list[int] = []
    value = [0]
    throttle = Throttle(lambda: seen.append(value[0]), 100)

    async def scenario() -> None:
        for i in range(1, 51):
            value[0] = i
            throttle.request()
        assert seen == [1]  # the first at once
        await wait_until(lambda: seen[-1] == 50, within=2)
        assert len(seen) == 2
        value[0] = 51
        throttle.request(urgent=True)  # a change of state: at once
        assert seen[-1] == 51
        await asyncio.sleep(0.25)
        assert len(seen) == 3  # nothing pending: no extra call
        throttle.stop()

    run(qloop, scenario())
