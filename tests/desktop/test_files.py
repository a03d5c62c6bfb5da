"""The Linux desktop files: valid by the freedesktop validators, icons present, installable."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from traystatus import __version__
from traystatus._paths import linux_data_dir, resources_dir
from traystatus.desktop import files as desktop_files
from traystatus.desktop.autostart import APP_ID

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
HICOLOR_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


def validate_desktop(path: Path) -> None:
    proc = subprocess.run(
        ["desktop-file-validate", str(path)], capture_output=True, text=True, check=False
    )
    # desktop-file-validate exits 0 on hints too; any "error:" or "warning:" line fails us.
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "error:" not in out and "warning:" not in out, out


def test_desktop_entry_validates() -> None:
    validate_desktop(LINUX / f"{APP_ID}.desktop")


def test_desktop_entry_names_the_icon_and_the_command() -> None:
    text = (LINUX / f"{APP_ID}.desktop").read_text()
    assert f"Icon={APP_ID}\n" in text
    assert "Exec=traystatus\n" in text  # no sub-command: the tray app


def test_metainfo_validates_and_matches_the_package() -> None:
    path = LINUX / f"{APP_ID}.metainfo.xml"
    proc = subprocess.run(
        ["appstreamcli", "validate", "--no-net", "--explain", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "E:" not in proc.stdout and "W:" not in proc.stdout, proc.stdout
    text = path.read_text()
    assert f"<id>{APP_ID}</id>" in text
    assert f'<launchable type="desktop-id">{APP_ID}.desktop</launchable>' in text
    assert f'<release version="{__version__}"' in text, "add a <release> for the new version"


@pytest.mark.parametrize("size", HICOLOR_SIZES)
def test_hicolor_png_icons_have_their_size(size: int) -> None:
    png = LINUX / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
    image = QImage(str(png))
    assert not image.isNull(), png
    assert (image.width(), image.height()) == (size, size)
    assert image.hasAlphaChannel()
    # Transparent corners, opaque centre: a round icon, not a square on a background.
    assert image.pixelColor(0, 0).alpha() == 0
    assert image.pixelColor(size // 2, size // 2).alpha() == 255


def test_scalable_icon_is_the_app_svg() -> None:
    svg = LINUX / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    assert svg.read_bytes() == (resources_dir() / "icons" / "traystatus.svg").read_bytes(), (
        "resources/icons/traystatus.svg changed: run .venv/bin/python packaging/render_icons.py"
    )


def test_rendered_icons_follow_the_svg(qapp: QApplication) -> None:
    """The committed 48 px PNG is what the current SVG renders to (within antialiasing).

    ``qapp``: pytest-qt's QApplication, made before render_icons would make a bare
    QGuiApplication, which every later Qt test in the session would then trip over.
    """
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import render_icons
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    fresh = QImage.fromData(render_icons.render_png(render_icons.SOURCE.read_bytes(), 48))
    committed = QImage(str(LINUX / "icons" / "hicolor" / "48x48" / "apps" / f"{APP_ID}.png"))
    worst = max(
        abs(fresh.pixelColor(x, y).red() - committed.pixelColor(x, y).red())
        + abs(fresh.pixelColor(x, y).green() - committed.pixelColor(x, y).green())
        + abs(fresh.pixelColor(x, y).alpha() - committed.pixelColor(x, y).alpha())
        for x in range(48)
        for y in range(48)
    )
    assert worst <= 24, "icons are stale: run .venv/bin/python packaging/render_icons.py"


def test_packaged_linux_data_is_found() -> None:
    assert (linux_data_dir() / f"{APP_ID}.desktop").is_file()


def test_user_install_and_uninstall(tmp_path: Path) -> None:
    written = desktop_files.install(tmp_path)
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert f"applications/{APP_ID}.desktop" in names
    assert f"metainfo/{APP_ID}.metainfo.xml" in names
    for size in HICOLOR_SIZES:
        assert f"icons/hicolor/{size}x{size}/apps/{APP_ID}.png" in names
    assert f"icons/hicolor/scalable/apps/{APP_ID}.svg" in names
    entry = tmp_path / "applications" / f"{APP_ID}.desktop"
    validate_desktop(entry)
    text = entry.read_text()
    # A user install names this installation's executable by absolute path.
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert exec_line.split("=", 1)[1].startswith("/"), exec_line
    removed = desktop_files.uninstall(tmp_path)
    assert sorted(removed) == sorted(written)
    assert not any(p.is_file() for p in tmp_path.rglob("*") if APP_ID in p.name)


def test_system_install_keeps_the_plain_command(tmp_path: Path) -> None:
    desktop_files.install(tmp_path, system=True)
    text = (tmp_path / "applications" / f"{APP_ID}.desktop").read_text()
    assert "Exec=traystatus\n" in text


def test_desktop_entry_for_quotes_paths_with_spaces(tmp_path: Path) -> None:
    template = (LINUX / f"{APP_ID}.desktop").read_text()
    text = desktop_files.desktop_entry_for(["/opt/Tray Status/traystatus"], template)
    assert 'Exec="/opt/Tray Status/traystatus"\n' in text
    path = tmp_path / f"{APP_ID}.desktop"
    path.write_text(text)
    if shutil.which("desktop-file-validate"):
        validate_desktop(path)


def test_module_command_line_lists_and_installs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "traystatus.desktop.files", "install", "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert f"installed {tmp_path}/share/applications/{APP_ID}.desktop" in out
    assert (
        tmp_path / "share" / "icons" / "hicolor" / "256x256" / "apps" / f"{APP_ID}.png"
    ).is_file()
