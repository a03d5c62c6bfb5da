"""A real, private desktop: Xvfb, session D-Bus, trayer, dunst. The end-to-end tests and
scripts/record_demo.py (the README's screenshots) run the app in it.

Everything a person would see is checked through the same programs a person's desktop
runs: the X server's pixels (``import -window root``), the tray host's embedded windows
(``xwininfo``), the notification server (``dbus-monitor`` on the bus, ``dunstctl``), mouse
clicks (``xdotool``). Each piece gets its own address (Xvfb picks a free display with
-displayfd; the bus listens on a socket in the session folder, without service
activation), so parallel test runs and a developer's desktop never meet.

A missing program is a failure that names the Debian package to install, never a skip:
the e2e tests are part of CI (.ci/apt-packages.txt lists the packages).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

STARTUP_TIMEOUT = 30.0  # generous: a loaded CI machine starts X slowly
SCREEN = (1024, 768)
TRAY_HEIGHT = 32

# program -> Debian package
REQUIRED_PROGRAMS = {
    "Xvfb": "xvfb",
    "trayer": "trayer",
    "dunst": "dunst",
    "dunstctl": "dunst",
    "dbus-daemon": "dbus-daemon",
    "dbus-monitor": "dbus-bin",
    "dbus-send": "dbus-bin",
    "xdotool": "xdotool",
    "xwininfo": "x11-utils",
    "import": "imagemagick",
    "notify-send": "libnotify-bin",
}

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# dunst keeps closed notifications in its history; short timeouts move them there.
DUNSTRC = """[global]
    font = DejaVu Sans 10
    width = 360
    height = 200
    origin = top-right
    offset = 10x{offset}
    frame_width = 2
    frame_color = "#555555"
    history_length = 100
    sticky_history = yes
    show_indicators = no
[urgency_low]
    background = "#263238"
    foreground = "#ffffff"
    timeout = 0
[urgency_normal]
    background = "#263238"
    foreground = "#ffffff"
    timeout = 0
[urgency_critical]
    background = "#5d1414"
    foreground = "#ffffff"
    timeout = 0
"""


def missing_programs() -> list[str]:
    """``program (Debian package)`` for every program the e2e tests need and cannot find."""
    return [f"{p} ({pkg})" for p, pkg in REQUIRED_PROGRAMS.items() if shutil.which(p) is None]


def wait_for(predicate: Callable[[], object], what: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout:g} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@dataclass(frozen=True)
class Box:
    """A rectangle on the screen, in root-window pixels."""

    x: int
    y: int
    w: int
    h: int

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.w // 2, self.y + self.h // 2


@dataclass
class Notification:
    """One org.freedesktop.Notifications.Notify call seen on the bus."""

    app_name: str
    replaces_id: int
    summary: str
    body: str
    actions: list[str]


@dataclass
class Desktop:
    """A running private desktop session (start with :meth:`start`, end with :meth:`close`)."""

    root: Path
    artifacts: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)
    white_root: bool = False  # Xvfb -wr: a white background (screenshots for the docs)
    tray_width: int | None = None  # a fixed-width panel instead of one sized to its icons

    # -- processes -------------------------------------------------------------------
    def full_env(self, **extra: str) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS",
                         "QT_QPA_PLATFORM")
        }
        base["XDG_RUNTIME_DIR"] = str(self.root / "runtime")
        base.update(self.env)
        base.update(extra)
        return base

    def spawn(self, argv: list[str], name: str | None = None,
              env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name or Path(argv[0]).name}.log").open("ab")
        self.logs.append(log)
        proc = subprocess.Popen(
            argv, env=env or self.full_env(), stdout=log, stderr=subprocess.STDOUT, **kw
        )
        self.procs.append(proc)
        return proc

    def run(self, *argv: str, timeout: float = 30, check: bool = True) -> str:
        out = subprocess.run(
            argv, env=self.full_env(), capture_output=True, text=True, timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr}")
        return out.stdout

    def start(self) -> None:
        missing = missing_programs()
        if missing:
            raise RuntimeError(
                "the end-to-end tests need these programs: " + ", ".join(missing)
                + "; install them with apt-get install (see .ci/apt-packages.txt)"
            )
        (self.root / "runtime").mkdir(mode=0o700, exist_ok=True)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self._start_bus()
        self._start_x()
        self._start_dunst()
        self._start_monitor()

    def _start_bus(self) -> None:
        # No service activation: only what we start is on this bus (Debian's session.conf
        # would D-Bus-activate some other notification daemon).
        address = f"unix:path={self.root / 'bus'}"
        config = self.root / "session-bus.conf"
        config.write_text(BUS_CONFIG.format(address=address))
        self.spawn(["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={config}"])
        wait_for((self.root / "bus").is_socket, "the session bus socket")
        self.env["DBUS_SESSION_BUS_ADDRESS"] = address

    def _start_x(self, attempts: int = 3) -> None:
        """Xvfb, then trayer on it. On a loaded machine running other tests' X servers,
        trayer was seen (2 runs in 10) failing to open the display Xvfb had just announced
        ("cannot open display: :0", Xvfb's log empty): the pair is then started again on a
        new display, and each failed attempt is said in the log, not hidden."""
        failures: list[str] = []
        for _ in range(attempts):
            xvfb = self._start_xvfb()
            trayer = self._start_trayer()
            with contextlib.suppress(TimeoutError):
                wait_for(self._x_settled(xvfb, trayer), "trayer's window")
            if self.tray_window() is not None:
                return
            failures.append(
                f"display {self.env['DISPLAY']}: Xvfb "
                + (f"exited ({xvfb.returncode})" if xvfb.poll() is not None else "running")
                + ", trayer "
                + (f"exited ({trayer.returncode})" if trayer.poll() is not None
                   else "without a window"))
            sys.stderr.write(f"virtual_desktop: the X server and tray host did not come up "
                             f"({failures[-1]}); starting them again\n")
            for proc in (trayer, xvfb):
                stop_process(proc)
                self.procs.remove(proc)
        raise TimeoutError(f"trayer's window did not appear in {attempts} attempts: "
                           + "; ".join(failures) + f" (logs in {self.root})")

    def _x_settled(self, xvfb: subprocess.Popen[bytes],
                   trayer: subprocess.Popen[bytes]) -> Callable[[], bool]:
        """Trayer's window is up, or one of the two has exited (no use waiting then)."""
        return lambda: (self.tray_window() is not None or trayer.poll() is not None
                        or xvfb.poll() is not None)

    def _start_xvfb(self) -> subprocess.Popen[bytes]:
        r, w = os.pipe()
        proc = self.spawn(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
             "-nolisten", "tcp", *(["-wr"] if self.white_root else [])],
            pass_fds=(w,),
        )
        os.close(w)
        with os.fdopen(r) as f:
            number = f.readline().strip()  # written once Xvfb accepts connections
        if not number:
            raise RuntimeError(f"Xvfb did not start; see {self.root / 'Xvfb.log'}")
        self.env["DISPLAY"] = f":{number}"
        return proc

    def _start_trayer(self) -> subprocess.Popen[bytes]:
        return self.spawn([
            "trayer", "--edge", "top", "--align", "right",
            *(["--widthtype", "pixel", "--width", str(self.tray_width)] if self.tray_width
              else ["--widthtype", "request"]),
            "--height", str(TRAY_HEIGHT), "--transparent", "true", "--alpha", "0",
            "--tint", "0x30343a", "--SetDockType", "true", "--expand", "true",
            "--padding", "4", "--iconspacing", "4",
        ])

    def _start_dunst(self) -> None:
        conf = self.root / "dunstrc"
        conf.write_text(DUNSTRC.format(offset=TRAY_HEIGHT + 10))
        self.spawn(["dunst", "-config", str(conf)])
        wait_for(lambda: self.has_bus_name("org.freedesktop.Notifications"), "dunst on the bus")

    def _start_monitor(self) -> None:
        self.monitor_log = self.root / "notify-calls.log"
        self.spawn(
            ["dbus-monitor", "--session",
             "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"],
            name="notify-calls",
        )
        # dbus-monitor prints its own NameAcquired signal once it listens.
        wait_for(lambda: self.monitor_log.exists() and self.monitor_log.stat().st_size > 0,
                 "dbus-monitor")

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        for log in self.logs:
            log.close()

    # -- bus and notifications -------------------------------------------------------
    def has_bus_name(self, name: str) -> bool:
        out = self.run(
            "dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{name}",
            check=False,
        )
        return "boolean true" in out

    def notifications(self) -> list[Notification]:
        """Every Notify call made on the bus so far, parsed from dbus-monitor's log."""
        text = self.monitor_log.read_text(errors="replace")
        found = []
        for block in text.split("method call ")[1:]:
            if "member=Notify" not in block.splitlines()[0]:
                continue
            strings = re.findall(r'^\s+string "((?:[^"\\]|\\.)*)"', block, re.M | re.S)
            uints = re.findall(r"^\s+uint32 (\d+)", block, re.M)
            arr = block.split("array [", 1)
            actions = (
                re.findall(r'string "([^"]*)"', arr[1].split("]", 1)[0]) if len(arr) > 1 else []
            )
            if len(strings) < 4:
                continue
            # Notify(app_name s, replaces_id u, app_icon s, summary s, body s, actions as, ...)
            found.append(Notification(strings[0], int(uints[0]) if uints else 0,
                                      strings[2], strings[3], actions))
        return found

    def dunst_history(self) -> list[dict[str, str]]:
        """dunst's own record: (summary, body, appname) of closed notifications."""
        data = json.loads(self.run("dunstctl", "history"))
        return [
            {k: str(n[k]["data"]) for k in ("summary", "body", "appname") if k in n}
            for n in data["data"][0]
        ]

    def dunst_close_all(self) -> None:
        self.run("dunstctl", "close-all", check=False)

    # -- X windows and pixels --------------------------------------------------------
    def tray_window(self) -> int | None:
        """trayer's top-level window id (the panel), or None while it is not mapped."""
        out = self.run("xdotool", "search", "--onlyvisible", "--class", "trayer", check=False)
        ids = [int(x) for x in out.split()]
        return ids[0] if ids else None

    def geometry(self, window: int) -> Box:
        out = self.run("xwininfo", "-id", str(window))
        def num(label: str) -> int:
            m = re.search(rf"{label}:\s+(-?\d+)", out)
            assert m, out
            return int(m.group(1))
        return Box(num("Absolute upper-left X"), num("Absolute upper-left Y"),
                   num("Width"), num("Height"))

    def tray_icons(self) -> list[Box]:
        """Boxes of the icons embedded in the tray (XEmbed client windows, left to right)."""
        tray = self.tray_window()
        if tray is None:
            return []
        out = self.run("xwininfo", "-tree", "-id", str(tray), check=False)
        boxes = []
        pattern = r"^\s+(0x[0-9a-f]+) .*?(\d+)x(\d+)\+(-?\d+)\+(-?\d+)\s+\+(-?\d+)\+(-?\d+)"
        for m in re.finditer(pattern, out, re.M):
            w, h = int(m.group(2)), int(m.group(3))
            ax, ay = int(m.group(6)), int(m.group(7))
            # trayer wraps each client in a socket window of the icon's size; keep one per spot
            if 12 <= w <= 64 and 12 <= h <= 64:
                box = Box(ax, ay, w, h)
                if box not in boxes:
                    boxes.append(box)
        return sorted(boxes, key=lambda b: b.x)

    def screenshot(self, name: str, box: Box | None = None) -> Path:
        """Save the screen (or ``box`` of it) as test-artifacts/e2e/<name>.png."""
        path = self.artifacts / f"{name}.png"
        args = ["import", "-window", "root"]
        if box is not None:
            args += ["-crop", f"{box.w}x{box.h}+{box.x}+{box.y}", "+repage"]
        self.run(*args, str(path))
        return path

    def colors(self, box: Box, name: str = "sample") -> dict[str, int]:
        """Pixel counts by colour family (green/amber/grey/red/other) inside ``box``."""
        path = self.screenshot(name, box)
        return classify_png(path)

    def click(self, x: int, y: int, button: int = 1) -> None:
        self.run("xdotool", "mousemove", str(x), str(y), "click", str(button))

    def find_windows(self, name: str, by: str = "--name") -> list[int]:
        """Visible windows whose title (or, with by="--class", class) matches ``name``."""
        out = self.run("xdotool", "search", "--onlyvisible", by, name, check=False)
        return [int(x) for x in out.split()]


def classify_png(path: Path) -> dict[str, int]:
    """Count pixels by the families the tray icons use (resources/icons/*.svg):
    green #2e9d47 stable, amber #f0a81c processing, grey #8a9099 disconnected/connecting,
    red #d32f2f error; blue is Qt's highlight (progress bars). Tolerant of
    anti-aliasing: hue and saturation decide, not exact RGB.
    """
    from PySide6.QtGui import QColor, QImage

    img = QImage(str(path))
    if img.isNull():
        raise RuntimeError(f"cannot read {path}")
    counts = {"green": 0, "amber": 0, "grey": 0, "red": 0, "blue": 0, "other": 0}
    for y in range(img.height()):
        for x in range(img.width()):
            c = QColor(img.pixel(x, y))
            h, s, v = c.hsvHue(), c.hsvSaturationF(), c.valueF()
            if s > 0.45 and v > 0.45:
                if 100 <= h <= 160:
                    counts["green"] += 1
                elif 30 <= h <= 50:
                    counts["amber"] += 1
                elif h <= 10 or h >= 350:
                    counts["red"] += 1
                elif 190 <= h <= 230:  # Qt's Fusion highlight: progress bar chunks
                    counts["blue"] += 1
                else:
                    counts["other"] += 1
            elif s < 0.15 and 0.45 < v < 0.7:
                counts["grey"] += 1
            else:
                counts["other"] += 1
    return counts


def dominant(counts: dict[str, int], minimum: int = 20) -> str | None:
    """The icon's colour family: the largest of green/amber/grey/red with enough pixels."""
    family = max(("green", "amber", "grey", "red"), key=lambda k: counts[k])
    return family if counts[family] >= minimum else None
