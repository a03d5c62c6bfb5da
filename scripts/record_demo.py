#!/usr/bin/env python3
"""Record the README's screenshots: ``traystatus demo`` on a private virtual desktop.

    .venv/bin/python scripts/record_demo.py [--out docs/screenshots] [--speed 1]

Starts Xvfb, a session bus, trayer and dunst (scripts/virtual_desktop.py, the harness the
end-to-end tests use too), runs the real ``traystatus demo`` in it, follows the
simulator's own log lines, and saves small cropped PNGs of what a person sees:

    tray-stable.png         the tray with the green icon, nothing running
    tray-processing.png     the amber icon while an import job is processed
    tray-tooltip.png        its tooltip (hovered)
    details-import.png      the details window (opened by a click on the icon) mid-import
    details-analytics.png   the details window while the derive run's tasks are worked on
    notification.png        dunst's "Processing finished" bubble

Everything is stopped at the end (the demo by Ctrl-C, as a user would).
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from scripts.virtual_desktop import Box, Desktop, dominant, wait_for

ROOT = Path(__file__).resolve().parent.parent

TIMEOUT = 240.0


class DemoRun:
    """The demo process and its output, read as it comes."""

    def __init__(self, desktop: Desktop, workdir: Path, speed: float) -> None:
        home = workdir / "home"
        self.log = workdir / "demo.log"
        env = desktop.full_env(
            QT_QPA_PLATFORM="xcb", HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
            XDG_DATA_HOME=str(home / "data"), XDG_STATE_HOME=str(home / "state"),
            XDG_CACHE_HOME=str(home / "cache"), PYTHONUNBUFFERED="1",
        )
        exe = Path(sys.executable).with_name("traystatus")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(exe), "demo", "-v", "--speed", str(speed), "--datadir",
                 str(workdir / "pg")],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )

    def saw(self, pattern: str) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the demo exited: {self.log.read_text()[-3000:]}")
        return re.search(pattern, self.log.read_text(), re.M) is not None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(60)


def grow(box: Box, left: int, down: int, screen: tuple[int, int] = (1024, 768)) -> Box:
    """``box`` widened to the left and downwards, clipped to the screen."""
    x = max(0, box.x - left)
    return Box(x, box.y, min(screen[0] - x, box.w + left), min(screen[1] - box.y, box.h + down))


def shrink_png(path: Path, scale: int = 1) -> None:
    """Fewer colours and bytes for the repository; optional integer upscale for tiny crops."""
    args = ["convert", str(path)]
    if scale > 1:
        args += ["-filter", "point", "-resize", f"{scale * 100}%"]
    args += ["-strip", "-colors", "128", str(path)]
    subprocess.run(args, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--speed", type=float, default=1.0)
    opts = ap.parse_args()
    out: Path = opts.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f} s] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="traystatus-record-") as tmp:
        work = Path(tmp)
        desktop = Desktop(work / "desktop", out, white_root=True, tray_width=200)
        (work / "desktop").mkdir()
        desktop.start()
        demo = DemoRun(desktop, work, opts.speed)
        try:
            before = desktop.tray_icons()
            wait_for(lambda: demo.saw("simulating") and len(desktop.tray_icons()) > len(before),
                     "the demo's icon", TIMEOUT)
            icon = next(b for b in desktop.tray_icons() if b not in before)
            tray_window = desktop.tray_window()
            assert tray_window is not None
            tray = desktop.geometry(tray_window)
            wait_for(lambda: dominant(desktop.colors(icon, "_probe")) == "green",
                     "a green icon", TIMEOUT)
            shrink_png(desktop.screenshot("tray-stable", tray), scale=2)
            say("tray-stable.png")

            # Mid-import: the first job is processing; the icon turns amber.
            wait_for(lambda: demo.saw(r"demo_1_legal_units: processing_data"),
                     "the first import processing", TIMEOUT)
            wait_for(lambda: dominant(desktop.colors(icon, "_probe")) == "amber",
                     "an amber icon", TIMEOUT)
            shrink_png(desktop.screenshot("tray-processing", tray), scale=2)
            say("tray-processing.png")
            desktop.run("xdotool", "mousemove", *map(str, icon.center))
            time.sleep(2.5)  # the tooltip shows after a hover
            shrink_png(desktop.screenshot("tray-tooltip", grow(tray, 260, 90)))
            say("tray-tooltip.png")

            desktop.click(*icon.center)
            wait_for(lambda: desktop.find_windows("StatBus status: details"),
                     "the details window", TIMEOUT)
            window = desktop.find_windows("StatBus status: details")[0]
            time.sleep(3.0 / opts.speed)  # a few progress steps further
            shrink_png(desktop.screenshot("details-import", desktop.geometry(window)))
            say("details-import.png")

            wait_for(lambda: demo.saw(r"analytics: derive run of \d+ tasks"),
                     "the derive run", TIMEOUT)
            time.sleep(4.0 / opts.speed)
            shrink_png(desktop.screenshot("details-analytics", desktop.geometry(window)))
            say("details-analytics.png")
            desktop.run("xdotool", "windowclose", str(window), check=False)
            desktop.run("xdotool", "mousemove", "500", "500")

            def finished_notice() -> bool:
                return any(n.summary == "Processing finished" for n in desktop.notifications())

            try:
                wait_for(finished_notice, "the 'Processing finished' notification", TIMEOUT)
            except TimeoutError:
                say(f"notifications so far: {desktop.notifications()}")
                raise
            wait_for(lambda: desktop.find_windows("Dunst", by="--class"), "dunst's bubble", 30)
            time.sleep(1.0)  # drawn just after it maps
            bubble = desktop.geometry(desktop.find_windows("Dunst", by="--class")[0])
            framed = Box(bubble.x - 6, bubble.y - 6, bubble.w + 12, bubble.h + 12)
            shrink_png(desktop.screenshot("notification", framed))
            say("notification.png")
        finally:
            code = demo.stop()
            desktop.close()
            (out / "_probe.png").unlink(missing_ok=True)
        say(f"demo stopped (exit {code}); screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
