"""Start at login: the Linux path for real in a temp XDG_CONFIG_HOME, the others as content."""

from __future__ import annotations

import os
import plistlib
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.desktop.test_files import validate_desktop
from traystatus.desktop import autostart
from traystatus.desktop.autostart import (
    APP_ID,
    LaunchAgentAutostart,
    RunKeyAutostart,
    XdgAutostart,
    autostart_desktop_entry,
    backend,
    desktop_exec,
    launch_agent_plist,
    launch_command,
    run_key_value,
    startup_approved_enabled,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config


def test_linux_enable_writes_a_valid_entry_and_disable_removes_it(xdg: Path) -> None:
    path = xdg / "autostart" / f"{APP_ID}.desktop"
    assert not autostart.is_enabled()
    autostart.set_enabled(True)
    assert path.is_file()
    assert autostart.is_enabled()
    validate_desktop(path)
    text = path.read_text()
    assert "X-GNOME-Autostart-enabled=true" in text
    exec_value = next(line for line in text.splitlines() if line.startswith("Exec="))[5:]
    assert shlex.split(exec_value) == launch_command()
    autostart.set_enabled(False)
    assert not path.exists()
    assert not autostart.is_enabled()
    autostart.set_enabled(False)  # switching off twice is fine


def test_linux_entry_runs_this_installation(xdg: Path) -> None:
    """The Exec line, run as a session manager would (no PATH help), starts *this* traystatus."""
    autostart.set_enabled(True, [*launch_command(), "--version"])
    text = (xdg / "autostart" / f"{APP_ID}.desktop").read_text()
    exec_value = next(line for line in text.splitlines() if line.startswith("Exec="))[5:]
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        shlex.split(exec_value), env=env, capture_output=True, text=True, timeout=120, check=True
    )
    from traystatus import __version__

    assert out.stdout.strip() == f"traystatus {__version__}"


def test_linux_user_switched_off_in_the_desktop_settings_reads_as_off(xdg: Path) -> None:
    autostart.set_enabled(True)
    path = xdg / "autostart" / f"{APP_ID}.desktop"
    path.write_text(
        path.read_text().replace(
            "X-GNOME-Autostart-enabled=true", "X-GNOME-Autostart-enabled=false"
        )
    )
    assert not autostart.is_enabled()
    path.write_text(path.read_text() + "Hidden=true\n")
    assert not autostart.is_enabled()
    autostart.set_enabled(True)  # switching on again rewrites it
    assert autostart.is_enabled()


def test_linux_unwritable_folder_raises_a_clear_error(xdg: Path) -> None:
    if os.geteuid() == 0:
        # root ignores file modes: block the folder with a file instead.
        xdg.mkdir(parents=True)
        (xdg / "autostart").write_text("not a folder")
    else:
        xdg.mkdir(parents=True, mode=0o500)
    with pytest.raises(autostart.AutostartError, match="start at login stays off"):
        autostart.set_enabled(True)


def test_relative_xdg_config_home_is_ignored(tmp_path: Path) -> None:
    b = XdgAutostart.from_env({"XDG_CONFIG_HOME": "relative/dir"}, home=tmp_path)
    assert b.path == tmp_path / ".config" / "autostart" / f"{APP_ID}.desktop"


def test_desktop_exec_quoting_follows_the_spec() -> None:
    assert desktop_exec(["/usr/bin/traystatus"]) == "/usr/bin/traystatus"
    assert desktop_exec(["/opt/My Apps/traystatus", "--profile", "prod"]) == (
        '"/opt/My Apps/traystatus" --profile prod'
    )
    # " ` $ \ are escaped inside quotes, then the string layer doubles the backslashes.
    assert desktop_exec(['/a"b$c']) == '"/a\\\\"b\\\\$c"'
    assert desktop_exec(["100%"]) == "100%%"
    with pytest.raises(ValueError):
        desktop_exec([])


@pytest.mark.parametrize(
    "argv",
    [["/opt/Tray Status/bin/traystatus"], ["/x/python3", "-m", "traystatus", "--profile", "a b"]],
)
def test_autostart_entry_with_odd_paths_validates(tmp_path: Path, argv: list[str]) -> None:
    path = tmp_path / f"{APP_ID}.desktop"
    path.write_text(autostart_desktop_entry(argv))
    validate_desktop(path)


def test_launch_command_choices(tmp_path: Path) -> None:
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    python = bindir / "python"
    python.touch()
    # No script beside the interpreter: python -m traystatus.
    assert launch_command(executable=str(python), frozen=False, platform="linux", env={}) == [
        str(python),
        "-m",
        "traystatus",
    ]
    script = bindir / "traystatus"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert launch_command(executable=str(python), frozen=False, platform="linux", env={}) == [
        str(script)
    ]
    # The PyInstaller bundle: its own executable.
    assert launch_command(
        ["--replace"], executable="/opt/traystatus/traystatus", frozen=True, env={}
    ) == ["/opt/traystatus/traystatus", "--replace"]
    # Flatpak: the host must start the sandbox.
    assert launch_command(env={"FLATPAK_ID": APP_ID}) == ["flatpak", "run", APP_ID]
    # Windows: pythonw (no console window at login) when it exists.
    (bindir / "pythonw.exe").touch()
    assert launch_command(
        executable=str(bindir / "python.exe"), frozen=False, platform="win32", env={}
    ) == [str(bindir / "pythonw.exe"), "-m", "traystatus"]


def test_launch_agent_plist_content(tmp_path: Path) -> None:
    data = plistlib.loads(
        launch_agent_plist(["/Applications/traystatus.app/Contents/MacOS/traystatus"])
    )
    assert data["Label"] == APP_ID
    assert data["ProgramArguments"] == ["/Applications/traystatus.app/Contents/MacOS/traystatus"]
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] is False
    assert data["LimitLoadToSessionType"] == ["Aqua"]
    if Path("/usr/bin/plutil").exists():  # pragma: no cover - macOS only
        path = tmp_path / "a.plist"
        path.write_bytes(launch_agent_plist(["/bin/true"]))
        subprocess.run(["/usr/bin/plutil", "-lint", str(path)], check=True)


def test_launch_agent_backend_writes_and_removes_the_plist(tmp_path: Path) -> None:
    b = backend("darwin", home=tmp_path)
    assert isinstance(b, LaunchAgentAutostart)
    assert not b.is_enabled()
    b.set_enabled(True, ["/opt/traystatus/traystatus"])
    path = tmp_path / "Library" / "LaunchAgents" / f"{APP_ID}.plist"
    assert plistlib.loads(path.read_bytes())["ProgramArguments"] == ["/opt/traystatus/traystatus"]
    assert b.is_enabled()
    b.set_enabled(False)
    assert not path.exists() and not b.is_enabled()


def test_run_key_value_quotes_like_the_windows_runtime() -> None:
    assert run_key_value([r"C:\Program Files\traystatus\traystatus.exe"]) == (
        r'"C:\Program Files\traystatus\traystatus.exe"'
    )
    assert run_key_value([r"C:\Python311\pythonw.exe", "-m", "traystatus"]) == (
        r"C:\Python311\pythonw.exe -m traystatus"
    )


def test_startup_approved_flag() -> None:
    assert startup_approved_enabled(None)
    assert startup_approved_enabled(b"\x02" + b"\x00" * 11)
    assert not startup_approved_enabled(b"\x03" + b"\x00" * 11)


def test_platform_dispatch(tmp_path: Path) -> None:
    assert isinstance(backend("win32"), RunKeyAutostart)
    assert isinstance(backend("darwin", home=tmp_path), LaunchAgentAutostart)
    linux = backend("linux", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert isinstance(linux, XdgAutostart)
    assert linux.location == str(tmp_path / "autostart" / f"{APP_ID}.desktop")
    if sys.platform != "win32":
        with pytest.raises(autostart.AutostartError, match="only on Windows"):
            backend("win32").is_enabled()


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_other_platform_code_type_checks(platform: str) -> None:
    """The winreg/launchd code cannot run here, but mypy can check it as that platform."""
    mypy = Path(sys.executable).with_name("mypy")
    proc = subprocess.run(
        [
            str(mypy),
            "--cache-dir",
            os.devnull,  # leave the shared .mypy_cache (checked for Linux) alone
            "--platform",
            platform,
            "traystatus/desktop/autostart.py",
            "traystatus/desktop/check.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_windows_bundle_autostarts_its_windowed_twin(tmp_path: Path) -> None:
    console = tmp_path / "traystatus.exe"
    console.touch()
    assert launch_command(executable=str(console), frozen=True, platform="win32", env={}) == [
        str(console)
    ]
    (tmp_path / "traystatusw.exe").touch()
    assert launch_command(executable=str(console), frozen=True, platform="win32", env={}) == [
        str(tmp_path / "traystatusw.exe")
    ]
