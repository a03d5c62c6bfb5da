"""Start at login: one switch, three platform mechanisms.

- Linux (and other XDG desktops): a ``.desktop`` file in ``$XDG_CONFIG_HOME/autostart``
  (default ``~/.config/autostart``), written from the packaged template
  ``io.github.statbus.traystatus.desktop.autostart.desktop.in``. Desktop environments also let the
  user switch an entry off without deleting it (``Hidden=true`` or
  ``X-GNOME-Autostart-enabled=false``); we read those as "off".
- Windows: a value named ``traystatus`` under ``HKCU\\...\\CurrentVersion\\Run``. Task
  Manager's "Disable" leaves the value and marks it in ``Explorer\\StartupApproved\\Run``;
  we read that too.
- macOS: a LaunchAgent plist in ``~/Library/LaunchAgents`` (RunAtLoad). launchd reads it at
  the next login; no ``launchctl`` call is needed for that.

The command written is the one that started *this* traystatus (``launch_command``): the
PyInstaller bundle's executable, the ``traystatus`` script of the venv we run in, or
``python -m traystatus`` with the same interpreter, so that autostart starts the same
installation the user switched it on from, not whichever ``traystatus`` is first on PATH
at login (PATH at login often lacks ``~/.local/bin``).

No Qt here: the tray app's "Start at login" toggle and the CLI both call ``is_enabled()`` /
``set_enabled()``. The content builders (``desktop_exec``, ``autostart_desktop_entry``,
``launch_agent_plist``, ``run_key_value``) are pure functions, testable on any platform.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from traystatus._paths import linux_data_dir

APP_ID = "io.github.statbus.traystatus"
AUTOSTART_TEMPLATE = f"{APP_ID}.autostart.desktop.in"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
STARTUP_APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
RUN_VALUE_NAME = "traystatus"


class AutostartError(OSError):
    """Start at login could not be switched (the file or registry value was not writable)."""


# -- which command starts this installation -------------------------------------------------


def launch_command(
    args: Sequence[str] = (),
    *,
    executable: str | None = None,
    frozen: bool | None = None,
    platform: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The argv that starts the traystatus installation this code runs from.

    The keyword arguments default to the running process; tests pass them explicitly.
    """
    executable = executable or sys.executable
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    platform = platform or sys.platform
    env = os.environ if env is None else env
    if env.get("FLATPAK_ID"):
        # Inside the sandbox our paths mean nothing to the host's session manager.
        return ["flatpak", "run", env["FLATPAK_ID"], *args]
    if frozen:
        if platform == "win32":
            # The bundle's windowed twin (packaging/pyinstaller/traystatus.spec): the console
            # traystatus.exe would open a console window at login.
            windowed = Path(executable).with_name("traystatusw.exe")
            if windowed.is_file():
                return [str(windowed), *args]
        return [executable, *args]
    bindir = Path(executable).parent
    if platform == "win32":
        # traystatus.exe is a console launcher: at login it would open a console window.
        pythonw = bindir / "pythonw.exe"
        python = str(pythonw) if pythonw.is_file() else executable
        return [python, "-m", "traystatus", *args]
    script = bindir / "traystatus"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), *args]
    return [executable, "-m", "traystatus", *args]


# -- pure content builders -------------------------------------------------------------------

_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def _exec_arg(arg: str) -> str:
    """Quote one argument by the Desktop Entry spec's Exec rules."""
    arg = arg.replace("%", "%%")  # field codes
    if arg and not (set(arg) & _EXEC_RESERVED):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'


def desktop_exec(argv: Sequence[str]) -> str:
    """The value of an ``Exec=`` key that runs ``argv``, as it must appear in the file.

    Two layers of escaping (spec "The Exec key"): first the Exec quoting of each argument,
    then the general string escaping of the value, which doubles every backslash.
    """
    if not argv:
        raise ValueError("desktop_exec needs at least the program")
    value = " ".join(_exec_arg(a) for a in argv)
    return value.replace("\\", "\\\\")


def autostart_desktop_entry(argv: Sequence[str], template: str | None = None) -> str:
    """The autostart ``.desktop`` file's text for ``argv``, from the packaged template."""
    if template is None:
        template = (linux_data_dir() / AUTOSTART_TEMPLATE).read_text(encoding="utf-8")
    if "@EXEC@" not in template:
        raise ValueError(f"the autostart template has no @EXEC@ placeholder: {AUTOSTART_TEMPLATE}")
    return template.replace("@EXEC@", desktop_exec(argv))


def launch_agent_plist(argv: Sequence[str], label: str = APP_ID) -> bytes:
    """A macOS LaunchAgent that starts ``argv`` once at login, in the GUI session."""
    return plistlib.dumps(
        {
            "Label": label,
            "ProgramArguments": list(argv),
            "RunAtLoad": True,
            # Quit from the menu means quit: launchd must not restart it.
            "KeepAlive": False,
            "ProcessType": "Interactive",
            "LimitLoadToSessionType": ["Aqua"],
        }
    )


def run_key_value(argv: Sequence[str]) -> str:
    """The command line stored in the Windows Run key (quoted by the MS C runtime rules)."""
    return subprocess.list2cmdline(list(argv))


def startup_approved_enabled(data: bytes | None) -> bool:
    """Read Task Manager's StartupApproved flag: absent or an even first byte is enabled.

    Windows writes 12 bytes: first byte 0x02 (enabled) or 0x03 (disabled), then a FILETIME.
    """
    return not data or data[0] % 2 == 0


def _desktop_entry_says_enabled(text: str) -> bool:
    in_main = False
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            in_main = line == "[Desktop Entry]"
        elif in_main and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return (
        values.get("Hidden", "false").lower() != "true"
        and values.get("X-GNOME-Autostart-enabled", "true").lower() != "false"
    )


# -- platform back ends ----------------------------------------------------------------------


class AutostartBackend(Protocol):
    """One platform's start-at-login mechanism."""

    @property
    def location(self) -> str:
        """Where the setting lives, for messages and ``doctor``."""
        ...

    def is_enabled(self) -> bool: ...

    def set_enabled(self, enabled: bool, argv: Sequence[str] | None = None) -> None: ...


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as ex:
        raise AutostartError(
            f"could not write {path}: {ex.strerror or ex}; start at login stays off. "
            f"Check that {path.parent} is writable by you."
        ) from ex


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as ex:
        raise AutostartError(
            f"could not remove {path}: {ex.strerror or ex}; start at login stays on. "
            f"Delete the file by hand."
        ) from ex


@dataclass
class XdgAutostart:
    """``$XDG_CONFIG_HOME/autostart/io.github.statbus.traystatus.desktop``."""

    config_home: Path

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, home: Path | None = None
    ) -> XdgAutostart:
        env = os.environ if env is None else env
        xdg = env.get("XDG_CONFIG_HOME", "")
        # The spec: a relative XDG_CONFIG_HOME is invalid and must be ignored.
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else (home or Path.home()) / ".config"
        return cls(base)

    @property
    def path(self) -> Path:
        return self.config_home / "autostart" / f"{APP_ID}.desktop"

    @property
    def location(self) -> str:
        return str(self.path)

    def is_enabled(self) -> bool:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        except OSError:
            return False
        return _desktop_entry_says_enabled(text)

    def set_enabled(self, enabled: bool, argv: Sequence[str] | None = None) -> None:
        if enabled:
            entry = autostart_desktop_entry(argv or launch_command())
            _write_atomically(self.path, entry.encode("utf-8"))
        else:
            _remove(self.path)


@dataclass
class LaunchAgentAutostart:
    """``~/Library/LaunchAgents/io.github.statbus.traystatus.plist``."""

    home: Path = field(default_factory=Path.home)

    @property
    def path(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{APP_ID}.plist"

    @property
    def location(self) -> str:
        return str(self.path)

    def is_enabled(self) -> bool:
        try:
            data = plistlib.loads(self.path.read_bytes())
        except (OSError, plistlib.InvalidFileException, ValueError):
            return False
        return isinstance(data, dict) and not data.get("Disabled", False)

    def set_enabled(self, enabled: bool, argv: Sequence[str] | None = None) -> None:
        if enabled:
            _write_atomically(self.path, launch_agent_plist(argv or launch_command()))
        else:
            _remove(self.path)


if sys.platform == "win32":
    import winreg

    def _run_key_is_enabled() -> bool:
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.QueryValueEx(key, RUN_VALUE_NAME)
        except OSError:
            return False
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, STARTUP_APPROVED_KEY) as key:
                approved, _ = winreg.QueryValueEx(key, RUN_VALUE_NAME)
        except OSError:
            return True
        return startup_approved_enabled(approved if isinstance(approved, bytes) else None)

    def _run_key_set(value: str | None) -> None:
        hkcu = winreg.HKEY_CURRENT_USER
        with winreg.CreateKeyEx(hkcu, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            if value is not None:
                winreg.SetValueEx(key, RUN_VALUE_NAME, 0, winreg.REG_SZ, value)
            else:
                with contextlib.suppress(FileNotFoundError):
                    winreg.DeleteValue(key, RUN_VALUE_NAME)
        if value is not None:
            # A stale "disabled" mark from Task Manager would silently keep it off.
            with (
                contextlib.suppress(FileNotFoundError),
                winreg.OpenKey(hkcu, STARTUP_APPROVED_KEY, 0, winreg.KEY_SET_VALUE) as key,
            ):
                winreg.DeleteValue(key, RUN_VALUE_NAME)


class RunKeyAutostart:
    """``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``, value ``traystatus``.

    The registry calls sit in functions defined only on Windows; ``mypy --platform win32``
    checks them from Linux (tests/desktop/test_autostart.py).
    """

    @property
    def location(self) -> str:
        return f"HKEY_CURRENT_USER\\{RUN_KEY}\\{RUN_VALUE_NAME}"

    def is_enabled(self) -> bool:
        if sys.platform == "win32":
            return _run_key_is_enabled()
        raise AutostartError("the Windows Run key exists only on Windows")

    def set_enabled(self, enabled: bool, argv: Sequence[str] | None = None) -> None:
        value = run_key_value(argv or launch_command()) if enabled else None
        if sys.platform == "win32":
            try:
                _run_key_set(value)
            except OSError as ex:
                raise AutostartError(
                    f"could not change {self.location}: {ex}; start at login is unchanged"
                ) from ex
            return
        raise AutostartError("the Windows Run key exists only on Windows")


def backend(
    platform: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> AutostartBackend:
    """The start-at-login mechanism of ``platform`` (default: this one)."""
    platform = platform or sys.platform
    if platform == "win32":
        return RunKeyAutostart()
    if platform == "darwin":
        return LaunchAgentAutostart(home or Path.home())
    return XdgAutostart.from_env(env, home)


def is_enabled() -> bool:
    """True when this user's session starts traystatus at login."""
    return backend().is_enabled()


def set_enabled(enabled: bool, argv: Sequence[str] | None = None) -> None:
    """Switch start at login on (with ``argv``, default ``launch_command()``) or off.

    Raises ``AutostartError`` (an ``OSError``) with a message a person can act on.
    """
    backend().set_enabled(enabled, argv)
