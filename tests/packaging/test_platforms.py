"""What Windows, macOS and Flatpak need, checked from here (none of them can be built here)."""

from __future__ import annotations

import ast
import json
import plistlib
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PySide6.QtGui import QImage

from traystatus import __version__

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
APP_ID = "io.github.statbus.traystatus"


@pytest.fixture(scope="module")
def render_icons() -> ModuleType:
    sys.path.insert(0, str(PACKAGING))
    try:
        import render_icons as module
    finally:
        sys.path.remove(str(PACKAGING))
    return module


def test_windows_ico_has_every_size_as_a_real_image(render_icons: ModuleType) -> None:
    entries = render_icons.read_ico((PACKAGING / "windows" / "traystatus.ico").read_bytes())
    assert [(w, h) for w, h, _ in entries] == [(s, s) for s in render_icons.ICO_SIZES]
    for w, _h, data in entries:
        image = QImage.fromData(data)
        assert (image.width(), image.height()) == (w, w)


def test_ico_writer_round_trips(render_icons: ModuleType) -> None:
    svg = render_icons.SOURCE.read_bytes()
    pngs = [render_icons.render_png(svg, s) for s in (16, 256)]
    entries = render_icons.read_ico(render_icons.build_ico(pngs))
    assert [(w, h, d) for w, h, d in entries] == [(16, 16, pngs[0]), (256, 256, pngs[1])]


def test_macos_icns_holds_all_retina_sizes(render_icons: ModuleType) -> None:
    elements = render_icons.read_icns((PACKAGING / "macos" / "traystatus.icns").read_bytes())
    assert set(elements) == {kind for kind, _ in render_icons.ICNS_TYPES}
    for kind, size in render_icons.ICNS_TYPES:
        image = QImage.fromData(elements[kind])
        assert (image.width(), image.height()) == (size, size), kind


def test_macos_info_plist_is_a_menu_bar_app() -> None:
    info = plistlib.loads((PACKAGING / "macos" / "Info.plist").read_bytes())
    assert info["CFBundleIdentifier"] == APP_ID
    assert info["LSUIElement"] is True  # no Dock icon, no app menu: a menu-bar extra
    assert info["NSHighResolutionCapable"] is True
    assert info["CFBundleIconFile"] == "traystatus.icns"
    assert info["CFBundleShortVersionString"] == __version__


def test_windows_version_resource_matches_the_package() -> None:
    text = (PACKAGING / "windows" / "version_info.txt").read_text()
    tree = ast.parse(text, mode="eval")  # PyInstaller evaluates it: it must be an expression
    strings = {
        call.args[0].value: call.args[1].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "StringStruct"
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[1], ast.Constant)
    }
    assert strings["FileVersion"] == strings["ProductVersion"] == __version__
    description = strings["FileDescription"]
    assert isinstance(description, str) and "StatBus" in description
    filevers = next(
        kw.value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        for kw in call.keywords
        if kw.arg == "filevers"
    )
    assert isinstance(filevers, ast.Tuple)
    numbers = tuple(e.value for e in filevers.elts if isinstance(e, ast.Constant))
    assert ".".join(str(n) for n in numbers[:3]) == __version__


def test_pyinstaller_spec_uses_files_that_exist() -> None:
    spec = (PACKAGING / "pyinstaller" / "traystatus.spec").read_text()
    ast.parse(spec)
    for rel in re.findall(r'ROOT / "packaging" / "(\w+)" / "([\w.]+)"', spec):
        assert (PACKAGING / rel[0] / rel[1]).is_file(), rel
    for folder in ("sql", "resources"):
        assert f'(str(ROOT / "{folder}"), "traystatus/_data/{folder}")' in spec


def flatpak_finish_args() -> list[str]:
    text = (PACKAGING / "flatpak" / f"{APP_ID}.yml").read_text()
    block = text.split("finish-args:", 1)[1].split("\nmodules:", 1)[0]
    return re.findall(r"^\s+- (--\S+)", block, flags=re.M)


def test_flatpak_manifest_grants_what_a_tray_app_needs() -> None:
    text = (PACKAGING / "flatpak" / f"{APP_ID}.yml").read_text()
    assert f"app-id: {APP_ID}" in text
    args = flatpak_finish_args()
    for needed in (
        "--share=network",
        "--talk-name=org.kde.StatusNotifierWatcher",
        "--talk-name=org.freedesktop.Notifications",
        "--talk-name=org.freedesktop.secrets",
        "--filesystem=xdg-config/autostart:create",
    ):
        assert needed in args, needed
    # Nothing broader than needed.
    assert not any(
        a in args for a in ("--filesystem=home", "--filesystem=host", "--socket=session-bus")
    )
    json.loads((PACKAGING / "flatpak" / "python3-deps.json").read_text())


def test_install_docs_list_the_flatpak_permissions() -> None:
    doc = (ROOT / "docs" / "install.md").read_text()
    for arg in flatpak_finish_args():
        assert arg in doc, f"docs/install.md does not explain {arg}"
