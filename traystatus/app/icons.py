"""Tray icons: one SVG per state, each with its own colour AND shape.

stable = green disc with a check, processing = amber disc with an hourglass (and a ring
that fills with the overall progress when it is known), disconnected / stale = grey disc
with a slashed plug, error = red disc with a cross, connecting = grey disc with dots,
review = blue rounded SQUARE with a pause sign (stable, but an import waits for a person's
review and StatBus holds the imports behind it: nothing runs until someone acts),
upgrading = purple HEXAGON with an up arrow (StatBus's own software upgrade runs: data
unavailable or changing, also while its database is down for the backup).
Shapes as well as colours, so colour-blind users can tell them apart.

The SVGs (resources/icons/) are rendered with QSvgRenderer at every size the platform
asks for, times the device pixel ratio, so they stay sharp from 16 px to 64 px and on
HiDPI panels. Monochrome variants are single-colour SVGs whose placeholder colour
``#010101`` is replaced at load time by the panel's colour (dark or light).

The Settings choice "Automatic" (``resolve_style``) draws what the desktop expects in its
panel: a template image on macOS (the menu bar recolours it), light one-colour glyphs in
GNOME's top bar (dark in its light and dark styles alike), one-colour glyphs following
Plasma's light or dark colour scheme on KDE, and colour everywhere else (Windows, XFCE,
Cinnamon, MATE, LXQt, plain XEmbed trays), where colour icons are the norm and read on
light and dark panels alike. The style is the tray icon's only: windows draw in colour
on the window's own background.
"""

from __future__ import annotations

import enum
import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPen, QPixmap
from PySide6.QtSvg import QSvgRenderer

from traystatus._paths import resources_dir
from traystatus.app import palette
from traystatus.app.palette import Tone
from traystatus.core.model.progress import percent
from traystatus.core.model.state import Problem, State, Status

MONO_PLACEHOLDER = palette.GLYPH_PLACEHOLDER
# The sizes tray hosts and window managers ask for; Qt scales between them.
SIZES = (16, 20, 22, 24, 32, 40, 44, 48, 64, 96, 128)


class IconKind(enum.Enum):
    CONNECTING = "connecting"
    STABLE = "stable"
    PROCESSING = "processing"
    DISCONNECTED = "disconnected"
    ERROR = "error"
    REVIEW = "review"
    UPGRADING = "upgrading"


class IconStyle(enum.Enum):
    """How the tray icon is drawn: colour, or one colour for panels that want that."""

    COLOR = "color"
    MONO_LIGHT = "mono-light"  # light glyph, for dark panels
    MONO_DARK = "mono-dark"  # dark glyph, for light panels
    TEMPLATE = "template"  # macOS: a black glyph marked as a mask; the menu bar colours it


MONO_COLORS = {
    IconStyle.MONO_LIGHT: palette.GLYPH_ON_DARK_PANEL,
    IconStyle.MONO_DARK: palette.GLYPH_ON_LIGHT_PANEL,
    IconStyle.TEMPLATE: palette.GLYPH_TEMPLATE,
}
# XDG_CURRENT_DESKTOP names whose top bar shows symbolic icons on a dark bar (GNOME Shell's
# top bar is dark in its light style too; Ubuntu's is GNOME Shell).
DARK_SYMBOLIC_BARS = ("gnome", "unity", "ubuntu")
# Desktops whose tray shows one-colour icons in the panel's own light or dark scheme.
SCHEMED_SYMBOLIC_BARS = ("kde",)


def resolve_style(
    setting: str | None,
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    dark: bool | None = None,
) -> IconStyle:
    """The tray icon's style for the Settings value ``setting``.

    "color", "mono-light" and "mono-dark" are what they say. "auto" (and anything unknown)
    asks the platform: macOS -> TEMPLATE; GNOME/Unity -> MONO_LIGHT; KDE -> MONO_LIGHT on a
    dark colour scheme, MONO_DARK on a light one (``dark``: Qt's colour scheme, None when
    the platform does not say, then COLOR); else COLOR.
    """
    for style in (IconStyle.COLOR, IconStyle.MONO_LIGHT, IconStyle.MONO_DARK):
        if style.value == setting:
            return style
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return IconStyle.TEMPLATE
    if platform.startswith(("win", "cygwin")):
        return IconStyle.COLOR
    env = os.environ if env is None else env
    desktops = [d.strip().lower() for d in env.get("XDG_CURRENT_DESKTOP", "").split(":")]
    if any(d in DARK_SYMBOLIC_BARS for d in desktops):
        return IconStyle.MONO_LIGHT
    if any(d in SCHEMED_SYMBOLIC_BARS for d in desktops) and dark is not None:
        return IconStyle.MONO_LIGHT if dark else IconStyle.MONO_DARK
    return IconStyle.COLOR


def platform_dark_scheme() -> bool | None:
    """Qt's colour scheme: True dark, False light, None when the platform does not say."""
    app = QGuiApplication.instance()
    if not isinstance(app, QGuiApplication):
        return None
    scheme = app.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    return None


def kind_for(status: Status) -> IconKind:
    """The icon of a Status. A review that holds the import queue while nothing else runs
    gets its own (the register is stable, but a person must act); while analytics still run
    the hourglass stays, which is true too."""
    if status.state is State.STABLE and status.review is not None:
        return IconKind.REVIEW
    return IconKind(status.state.value)


_WORDS = {
    IconKind.CONNECTING: "connecting to the database",
    IconKind.STABLE: "stable, all data processing complete",
    IconKind.PROCESSING: "processing data",
    IconKind.DISCONNECTED: "disconnected from the database",
    IconKind.ERROR: "error, cannot watch the database",
    IconKind.REVIEW: "stable, an import waits for review",
    IconKind.UPGRADING: "is being upgraded, data unavailable for a while",
}


def accessible_name(status: Status, progress: float | None = None) -> str:
    """What a screen reader says for the icon: the state in words, never only a colour."""
    text = f"StatBus {_WORDS[kind_for(status)]}"
    if status.state == State.DISCONNECTED and status.problem == Problem.STALE:
        text = "StatBus connection stale, the database stopped answering"
    pct = percent(progress)
    if status.state == State.PROCESSING and pct is not None:
        text += f", {pct} percent done"
    return text


@functools.cache
def _svg_bytes(kind: IconKind, style: IconStyle, folder: Path | None = None) -> bytes:
    base = folder or resources_dir() / "icons"
    if style is IconStyle.COLOR:
        return (base / f"{kind.value}.svg").read_bytes()
    text = (base / f"{kind.value}-mono.svg").read_text(encoding="utf-8")
    return text.replace(MONO_PLACEHOLDER, MONO_COLORS[style]).encode()


def quantize(progress: float | None) -> int | None:
    """The ring's whole percentage: the same rounding as every number shown
    (core.progress.percent), so ring, tooltip and details agree. The progress is read at
    most once a second, so the icon changes at most that often."""
    return percent(progress)


def render_pixmap(
    kind: IconKind,
    size: int,
    style: IconStyle = IconStyle.COLOR,
    progress: float | None = None,
    dpr: float = 1.0,
) -> QPixmap:
    """One crisp pixmap of ``size`` logical pixels at device pixel ratio ``dpr``."""
    px = max(1, round(size * dpr))
    pixmap = QPixmap(px, px)
    pixmap.fill(Qt.GlobalColor.transparent)
    renderer = QSvgRenderer(QByteArray(_svg_bytes(kind, style)))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, px, px))
    q = quantize(progress)
    if kind is IconKind.PROCESSING and q is not None:
        _draw_ring(painter, px, q, style)
    painter.end()
    pixmap.setDevicePixelRatio(dpr)
    return pixmap


def _draw_ring(painter: QPainter, px: int, pct: int, style: IconStyle) -> None:
    """The done share of the work as an arc over the disc's rim, clockwise from 12."""
    width = max(2.0, px / 9.0)
    inset = width / 2 + px * 0.02
    rect = QRectF(inset, inset, px - 2 * inset, px - 2 * inset)
    # Colour: the progress tone over the amber disc; one-colour: the glyph's own colour.
    ring = palette.solid(Tone.PROGRESS) if style is IconStyle.COLOR else MONO_COLORS[style]
    color = QColor(ring)
    pen = QPen(color, width)
    pen.setCapStyle(Qt.PenCapStyle.FlatCap)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawArc(rect, 90 * 16, -round(pct / 100 * 360 * 16))


def device_pixel_ratio() -> float:
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication):
        return float(app.devicePixelRatio())
    return 1.0


PROGRESS_ICONS_KEPT = 8


class IconCache:
    """QIcons per (state, style, progress): built once, reused on every repaint. Icons
    with a ring are kept only for the last few percentages (a run passes through up to
    101 of them; each holds a pixmap per size)."""

    def __init__(self) -> None:
        self._icons: dict[tuple[IconKind, IconStyle, int | None, float], QIcon] = {}

    def icon(
        self, kind: IconKind, style: IconStyle = IconStyle.COLOR, progress: float | None = None
    ) -> QIcon:
        q = quantize(progress) if kind is IconKind.PROCESSING else None
        dpr = device_pixel_ratio()
        key = (kind, style, q, dpr)
        icon = self._icons.get(key)
        if icon is None:
            icon = QIcon()
            for size in SIZES:
                icon.addPixmap(render_pixmap(kind, size, style, q, 1.0))
                if dpr > 1.0:
                    icon.addPixmap(render_pixmap(kind, size, style, q, dpr))
            icon.setIsMask(style is IconStyle.TEMPLATE)
            self._icons[key] = icon
            rings = [k for k in self._icons if k[2] is not None]
            for old in rings[: max(0, len(rings) - PROGRESS_ICONS_KEPT)]:
                del self._icons[old]
        return icon

    def for_status(
        self, status: Status, style: IconStyle = IconStyle.COLOR, progress: float | None = None
    ) -> QIcon:
        return self.icon(kind_for(status), style, progress)


def app_icon() -> QIcon:
    """The application's own icon (window title bars, About, notifications)."""
    icon = QIcon()
    for size in SIZES:
        icon.addPixmap(render_pixmap(IconKind.STABLE, size))
    return icon
