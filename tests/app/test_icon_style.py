"""Icon style "Automatic": what the desktop expects in its panel, not always colour.

Real QIcons and pixmaps; the controller's tray icon compared pixel by pixel with what
each style renders. Also renders test-artifacts/icon-style-auto.png: each desktop's
panel colour with the icons "Automatic" gives it, for a person to look at.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS, MemoryKeyring, publish_doc_image
from traystatus.app.controller import Controller
from traystatus.app.icons import IconCache, IconKind, IconStyle, render_pixmap, resolve_style
from traystatus.core.config.profiles import ProfileStore, Settings
from traystatus.core.model.state import State, Status

GNOME = {"XDG_CURRENT_DESKTOP": "ubuntu:GNOME"}
KDE = {"XDG_CURRENT_DESKTOP": "KDE"}
XFCE = {"XDG_CURRENT_DESKTOP": "XFCE"}


@pytest.mark.parametrize(
    ("setting", "env", "platform", "dark", "expected"),
    [
        ("auto", GNOME, "linux", None, IconStyle.MONO_LIGHT),  # GNOME's top bar is dark
        ("auto", GNOME, "linux", False, IconStyle.MONO_LIGHT),  # ... in the light style too
        ("auto", KDE, "linux", True, IconStyle.MONO_LIGHT),
        ("auto", KDE, "linux", False, IconStyle.MONO_DARK),
        ("auto", KDE, "linux", None, IconStyle.COLOR),  # the platform does not say
        ("auto", XFCE, "linux", True, IconStyle.COLOR),
        ("auto", {}, "linux", None, IconStyle.COLOR),
        ("auto", {}, "darwin", None, IconStyle.TEMPLATE),
        ("auto", GNOME, "win32", True, IconStyle.COLOR),
        ("color", GNOME, "linux", None, IconStyle.COLOR),  # an explicit choice wins
        ("mono-dark", GNOME, "darwin", True, IconStyle.MONO_DARK),
        ("neon", XFCE, "linux", None, IconStyle.COLOR),
    ],
)
def test_automatic_follows_the_desktop(
    setting: str, env: dict[str, str], platform: str, dark: bool | None, expected: IconStyle
) -> None:
    assert resolve_style(setting, env, platform, dark) == expected


def _tray_image(ctl: Controller) -> QImage:
    return ctl.tray.tray.icon().pixmap(32, 32).toImage()


def test_the_tray_icon_is_drawn_in_the_automatic_style(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = ProfileStore()
    store.save_settings(Settings(icon_style="auto"))
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "GNOME")
    gnome = Controller(store, tray_available=lambda: False, use_desktop_notifier=False)
    gnome.tray.set_status(Status(State.STABLE))
    assert gnome.style is IconStyle.MONO_LIGHT
    assert _tray_image(gnome) == render_pixmap(IconKind.STABLE, 32, IconStyle.MONO_LIGHT).toImage()
    assert _tray_image(gnome) != render_pixmap(IconKind.STABLE, 32).toImage()
    # The windows keep colour: they have a window's background, not the panel's.
    gnome.window.set_status(Status(State.STABLE))
    window_icon = gnome.window.icon.pixmap().toImage()
    assert window_icon == render_pixmap(IconKind.STABLE, 32, dpr=gnome.window.devicePixelRatioF()
                                        ).toImage()

    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "XFCE")
    xfce = Controller(store, tray_available=lambda: False, use_desktop_notifier=False)
    xfce.tray.set_status(Status(State.STABLE))
    assert _tray_image(xfce) == render_pixmap(IconKind.STABLE, 32).toImage()

    # An explicit choice in Settings is kept on any desktop.
    store.save_settings(Settings(icon_style="mono-dark"))
    gnome._settings_saved()  # (restarts the monitor: the icon says Connecting)
    gnome.tray.set_status(Status(State.STABLE))
    assert _tray_image(gnome) == render_pixmap(IconKind.STABLE, 32, IconStyle.MONO_DARK).toImage()
    for ctl in (gnome, xfce):
        qloop.run_until_complete(ctl.shutdown())


def test_template_icons_are_masks_for_the_macos_menu_bar(qapp: QApplication) -> None:
    cache = IconCache()
    assert cache.icon(IconKind.STABLE, IconStyle.TEMPLATE).isMask()
    assert not cache.icon(IconKind.STABLE, IconStyle.COLOR).isMask()


def test_render_automatic_icons_on_each_panel(qapp: QApplication) -> None:
    panels = [
        ("GNOME", "#1d1d1d", resolve_style("auto", GNOME, "linux", False)),
        ("KDE dark", "#31363b", resolve_style("auto", KDE, "linux", True)),
        ("KDE light", "#eff0f1", resolve_style("auto", KDE, "linux", False)),
        ("macOS", "#e8e8e8", resolve_style("auto", {}, "darwin", False)),
        ("XFCE", "#3c3c3c", resolve_style("auto", XFCE, "linux", None)),
        ("Windows", "#f3f3f3", resolve_style("auto", {}, "win32", False)),
    ]
    size, pad, label_w = 32, 10, 150
    width = label_w + len(IconKind) * (size + pad) + pad
    sheet = QPixmap(width, len(panels) * (size + pad))
    sheet.fill(Qt.GlobalColor.white)
    p = QPainter(sheet)
    p.setFont(QFont("DejaVu Sans", 9))
    for row, (name, colour, style) in enumerate(panels):
        y = row * (size + pad)
        bg = QColor(colour)
        p.fillRect(0, y, width, size + pad, bg)
        p.setPen(Qt.GlobalColor.white if bg.lightness() < 128 else Qt.GlobalColor.black)
        p.drawText(6, y + 26, f"{name}: {style.value}")
        for col, kind in enumerate(IconKind):
            # macOS draws a template in the menu bar's text colour: black on a light bar.
            p.drawPixmap(label_w + col * (size + pad), y + pad // 2,
                         render_pixmap(kind, size, style))
    p.end()
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "icon-style-auto.png"
    assert sheet.save(str(out))
    publish_doc_image(out, "icon-style-auto.png")
    # On each panel the glyph stands out from the bar: a one-colour icon never takes the
    # bar's own lightness (light glyphs on dark bars, dark on light).
    for name, colour, style in panels:
        if style in (IconStyle.MONO_LIGHT, IconStyle.MONO_DARK, IconStyle.TEMPLATE):
            glyph = QColor(render_pixmap(IconKind.STABLE, 64, style).toImage().pixelColor(32, 4))
            assert abs(glyph.lightness() - QColor(colour).lightness()) > 120, name
