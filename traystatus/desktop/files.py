"""Install the desktop entry, AppStream metainfo and icons from an installed traystatus.

A wheel cannot put files in ``~/.local/share/applications``, so after ``pipx install`` the
app has no menu entry and no icon. This copies them from the packaged data
(``traystatus/_data/linux``, i.e. packaging/linux) into the XDG data folders:

    python -m traystatus.desktop.files install            # for this user (~/.local/share)
    python -m traystatus.desktop.files install --prefix /usr/local --system
    python -m traystatus.desktop.files uninstall

For a user install the ``Exec=`` line names this installation's executable by absolute path
(``autostart.launch_command``): at login and in menus PATH often lacks ``~/.local/bin``.
For a system install (``--system``, used by distribution packages) it stays ``traystatus``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from traystatus._paths import linux_data_dir
from traystatus.desktop.autostart import APP_ID, desktop_exec, launch_command

DESKTOP = f"{APP_ID}.desktop"
METAINFO = f"{APP_ID}.metainfo.xml"


def data_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME`` or ``~/.local/share`` (a relative value is ignored, per the spec)."""
    env = os.environ if env is None else env
    value = env.get("XDG_DATA_HOME", "")
    if value and Path(value).is_absolute():
        return Path(value)
    return Path(env.get("HOME") or Path.home()) / ".local" / "share"


def planned_files(dest: Path) -> dict[Path, Path]:
    """Target path -> packaged source, for everything ``install`` writes under ``dest``."""
    src = linux_data_dir()
    files = {
        dest / "applications" / DESKTOP: src / DESKTOP,
        dest / "metainfo" / METAINFO: src / METAINFO,
    }
    icons = src / "icons" / "hicolor"
    for icon in sorted(icons.glob(f"*/apps/{APP_ID}.*")):
        files[dest / "icons" / "hicolor" / icon.relative_to(icons)] = icon
    return files


def desktop_entry_for(argv: Sequence[str] | None, template: str) -> str:
    """The desktop entry with Exec/TryExec pointing at ``argv`` (None: keep ``traystatus``)."""
    if argv is None:
        return template
    lines = []
    for line in template.splitlines():
        if line.startswith("Exec="):
            line = "Exec=" + desktop_exec(argv)
        elif line.startswith("TryExec="):
            line = "TryExec=" + argv[0].replace("\\", "\\\\")
        lines.append(line)
    return "\n".join(lines) + "\n"


def install(dest: Path | None = None, *, system: bool = False) -> list[Path]:
    """Copy the desktop files under ``dest`` (default: the user's data home); the paths."""
    dest = dest or data_home()
    argv = None if system else launch_command()
    written = []
    for target, source in planned_files(dest).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.name == DESKTOP:
            text = desktop_entry_for(argv, source.read_text(encoding="utf-8"))
            target.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(source, target)
        written.append(target)
    _refresh_caches(dest)
    return written


def uninstall(dest: Path | None = None) -> list[Path]:
    """Remove what ``install`` wrote under ``dest``; the paths removed."""
    dest = dest or data_home()
    removed = []
    for target in planned_files(dest):
        if target.exists():
            target.unlink()
            removed.append(target)
    _refresh_caches(dest)
    return removed


def _refresh_caches(dest: Path) -> None:
    """Tell menus and icon themes, where the tools exist; harmless when they do not."""
    for argv in (
        ["update-desktop-database", "-q", str(dest / "applications")],
        ["gtk-update-icon-cache", "-q", "-t", "-f", str(dest / "icons" / "hicolor")],
    ):
        if shutil.which(argv[0]) and Path(argv[-1]).is_dir():
            subprocess.run(argv, check=False, capture_output=True, timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m traystatus.desktop.files",
        description="Install or remove traystatus's menu entry, metainfo and icons.",
    )
    parser.add_argument("action", choices=("install", "uninstall", "list"))
    parser.add_argument(
        "--prefix",
        type=Path,
        default=None,
        help="data folder root (e.g. /usr/local); "
        "files go to PREFIX/share/...; default: $XDG_DATA_HOME or ~/.local/share",
    )
    parser.add_argument(
        "--system", action="store_true", help="keep Exec=traystatus (for distribution packages)"
    )
    args = parser.parse_args(argv)
    dest = args.prefix / "share" if args.prefix else None
    if args.action == "list":
        for target in planned_files(dest or data_home()):
            print(target)
        return 0
    try:
        paths = install(dest, system=args.system) if args.action == "install" else uninstall(dest)
    except OSError as ex:
        print(
            f"traystatus: could not {args.action} the desktop files: {ex}; some may be in "
            "place. Run it again with --prefix pointing at a folder you may write to, or as "
            "the owner of that folder.",
            file=sys.stderr,
        )
        return 1
    for p in paths:
        print(f"{'installed' if args.action == 'install' else 'removed'} {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
