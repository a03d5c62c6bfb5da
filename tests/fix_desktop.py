"""Real desktop pieces for the desktop and packaging tests: a private session bus, Xvfb,
trayer, dunst, a StatusNotifierWatcher.

Each piece is a real program started in tmp_path with its own address (no shared state with
other tests running at the same time or a developer's desktop), waited for until it answers, and
stopped at the end. Nothing is faked: traystatus.desktop.check talks to these processes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from scripts.virtual_desktop import BUS_CONFIG, wait_for
from scripts.virtual_desktop import stop_process as stop

SNI_WATCHER = Path(__file__).resolve().parent / "desktop" / "sni_watcher.py"
@dataclass
class Session:
    """Environment variables of a desktop session under construction, and its processes."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def full_env(self) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")
        }
        base["XDG_RUNTIME_DIR"] = str(self.root / "runtime")
        base.update(self.env)
        return base

    def spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        log = (self.root / f"{Path(argv[0]).name}-{len(self.procs)}.log").open("wb")
        self.logs.append(log)
        proc = subprocess.Popen(
            argv, env=self.full_env(), stdout=log, stderr=subprocess.STDOUT, **kw
        )
        self.procs.append(proc)
        return proc

    def start_bus(self) -> str:
        """A session bus with no service activation: only what a test starts is on it.

        (Debian's session.conf would D-Bus-activate dunst from /usr/share/dbus-1/services.)
        """
        address = f"unix:path={self.root / 'bus'}"
        config = self.root / "session-bus.conf"
        config.write_text(BUS_CONFIG.format(address=address))
        self.spawn(["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={config}"])
        wait_for((self.root / "bus").is_socket, "dbus-daemon")
        self.env["DBUS_SESSION_BUS_ADDRESS"] = address
        return address

    def start_xvfb(self) -> str:
        r, w = os.pipe()
        self.spawn(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
            pass_fds=(w,),
        )
        os.close(w)
        with os.fdopen(r) as f:
            number = f.readline().strip()  # Xvfb writes it once it accepts connections
        if not number:
            raise RuntimeError("Xvfb did not start (see its log in tmp_path)")
        self.env["DISPLAY"] = f":{number}"
        return self.env["DISPLAY"]

    def start_trayer(self, attempts: int = 3) -> None:
        """trayer on this session's display. Under parallel load trayer was seen exiting with
        "cannot open display: :1" just after Xvfb announced :1 (2 fresh-clone CI runs in
        10): a trayer that exits is started again (said on stderr), the last try waited
        for as before."""
        for attempt in range(1, attempts + 1):
            proc = self.spawn(["trayer", "--edge", "top", "--align", "right", "--height", "24"])
            if attempt == attempts:
                self.wait(proc, self._tray_owned, "trayer")
                return
            with contextlib.suppress(TimeoutError):
                wait_for(self._trayer_settled(proc), "trayer")
            if self._tray_owned():
                return
            self.logs[-1].flush()
            log = Path(self.logs[-1].name).read_text(errors="replace")[-300:]
            state = "still running" if proc.poll() is None else f"exit {proc.returncode}"
            sys.stderr.write(f"fix_desktop: trayer did not come up on {self.env['DISPLAY']} "
                             f"({state}; its log: {log!r}); starting it again\n")
            stop(proc)
            time.sleep(0.5)

    def _tray_owned(self) -> bool:
        from traystatus.desktop.check import xembed_tray_owner

        return xembed_tray_owner(self.env["DISPLAY"])[1] != 0

    def _trayer_settled(self, proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
        return lambda: self._tray_owned() or proc.poll() is not None

    def start_dunst(self) -> None:
        conf = self.root / "dunstrc"
        conf.write_text("[global]\n    font = DejaVu Sans 9\n")
        proc = self.spawn(["dunst", "-config", str(conf)])
        self.wait(proc, lambda: self._has_name("org.freedesktop.Notifications"), "dunst")

    def start_sni_watcher(self, *args: str) -> None:
        self.spawn([sys.executable, str(SNI_WATCHER), *args])
        wait_for(lambda: self._has_name("org.kde.StatusNotifierWatcher"), "the SNI watcher")

    def wait(self, proc: subprocess.Popen[bytes], predicate: Callable[[], object],
             what: str) -> None:
        """wait_for ``predicate``; a timeout says whether ``proc`` still runs and what it
        logged (a failed start is otherwise lost with tmp_path)."""
        try:
            wait_for(predicate, what)
        except TimeoutError as ex:
            self.logs[-1].flush()
            log = Path(self.logs[-1].name).read_text(errors="replace")[-1500:]
            state = "still running" if proc.poll() is None else f"exit {proc.returncode}"
            raise TimeoutError(f"{ex} ({what} {state}; its log: {log!r})") from None

    def _has_name(self, name: str) -> bool:
        out = subprocess.run(
            [
                "dbus-send",
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                f"string:{name}",
            ],
            env=self.full_env(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return "boolean true" in out.stdout

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        for log in self.logs:
            log.close()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    """An empty desktop session: start the pieces a test needs with ``session.start_*``."""
    (tmp_path / "runtime").mkdir(mode=0o700)
    s = Session(tmp_path)
    try:
        yield s
    finally:
        s.close()
