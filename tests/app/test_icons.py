"""Icons: one per state, different in colour AND shape, sharp at every size and on HiDPI.
Also renders the icon sheet to test-artifacts/ (and docs/images/) for people to look at."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS, publish_doc_image
from traystatus.app.icons import (
    IconCache,
    IconKind,
    IconStyle,
    accessible_name,
    quantize,
    render_pixmap,
)
from traystatus.core.model.state import Problem, State, Status

SIZES = (16, 22, 32, 64)


def _img(kind: IconKind, size: int, style: IconStyle = IconStyle.COLOR,
         progress: float | None = None, dpr: float = 1.0) -> QImage:
    return render_pixmap(kind, size, style, progress, dpr).toImage()


def _alpha_mask(img: QImage) -> bytes:
    """Shape only: which pixels are opaque (colour ignored)."""
    return bytes(
        1 if img.pixelColor(x, y).alpha() > 128 else 0
        for y in range(img.height()) for x in range(img.width())
    )


def _mono_shape(img: QImage) -> bytes:
    """Shape of the glyph in a monochrome icon."""
    return _alpha_mask(img)


def test_every_state_has_its_own_colour(qapp: QApplication) -> None:
    centre_ring = {}
    for kind in IconKind:
        img = _img(kind, 64)
        # A point on the disc, off the glyph: the state's colour.
        centre_ring[kind] = img.pixelColor(32, 58).name()
    assert centre_ring[IconKind.STABLE] != centre_ring[IconKind.PROCESSING]
    assert centre_ring[IconKind.ERROR] != centre_ring[IconKind.STABLE]
    c = {k: QColor(v) for k, v in centre_ring.items()}
    assert c[IconKind.STABLE].green() > c[IconKind.STABLE].red()  # green
    assert c[IconKind.ERROR].red() > 150 and c[IconKind.ERROR].green() < 100  # red
    assert c[IconKind.PROCESSING].red() > 200 and c[IconKind.PROCESSING].blue() < 80  # amber
    grey = c[IconKind.DISCONNECTED]
    assert abs(grey.red() - grey.blue()) < 30  # grey


@pytest.mark.parametrize("size", SIZES)
def test_every_state_has_its_own_shape_even_without_colour(qapp: QApplication, size: int) -> None:
    shapes = {kind: _mono_shape(_img(kind, size, IconStyle.MONO_DARK)) for kind in IconKind}
    assert len(set(shapes.values())) == len(IconKind)


def test_monochrome_uses_one_colour(qapp: QApplication) -> None:
    for style, expected in ((IconStyle.MONO_DARK, "#202020"), (IconStyle.MONO_LIGHT, "#f2f2f2")):
        img = _img(IconKind.STABLE, 64, style)
        colours = {
            img.pixelColor(x, y).name()
            for y in range(64) for x in range(64) if img.pixelColor(x, y).alpha() == 255
        }
        assert colours == {expected}


def test_hidpi_pixmaps_have_device_pixels(qapp: QApplication) -> None:
    pm = render_pixmap(IconKind.STABLE, 16, dpr=2.0)
    assert (pm.width(), pm.height(), pm.devicePixelRatio()) == (32, 32, 2.0)
    # Rendered at 32 device pixels, not a 16 px image scaled up: same as a 32 px render.
    assert pm.toImage() == render_pixmap(IconKind.STABLE, 32).toImage()


def test_progress_ring_shows_on_processing(qapp: QApplication) -> None:
    none = _img(IconKind.PROCESSING, 32)
    half = _img(IconKind.PROCESSING, 32, progress=50)
    full = _img(IconKind.PROCESSING, 32, progress=100)
    assert none != half != full
    # 50 %: the right half of the rim is drawn (clockwise from 12), the left half is not.
    right = half.pixelColor(30, 16)
    left = half.pixelColor(1, 16)
    assert right.red() < 120 and left.red() > 140  # ring colour vs the plain rim
    assert quantize(42.9) == 42 and quantize(None) is None and quantize(130) == 100


def test_icon_cache_reuses_icons(qapp: QApplication) -> None:
    cache = IconCache()
    st = Status(State.PROCESSING)
    a = cache.for_status(st, progress=41.2)
    b = cache.for_status(st, progress=41.9)  # the same whole percent, as the tooltip says
    assert a.cacheKey() == b.cacheKey()
    assert cache.for_status(st, progress=60).cacheKey() != a.cacheKey()
    assert not a.isNull() and a.availableSizes()
    # A whole run: only the last few ring icons are kept (8); an older one is drawn again.
    kept = {p: cache.for_status(st, progress=p).cacheKey() for p in range(100)}
    again = [p for p in range(99, -1, -1)
             if cache.for_status(st, progress=p).cacheKey() == kept[p]]
    assert again == list(range(99, 91, -1))


def test_accessible_names_say_the_state_in_words() -> None:
    assert "stable" in accessible_name(Status(State.STABLE))
    assert "42 percent" in accessible_name(Status(State.PROCESSING), 42.0)
    assert "stale" in accessible_name(Status(State.DISCONNECTED, problem=Problem.STALE))
    assert "error" in accessible_name(Status(State.ERROR))


def test_render_icon_sheet(qapp: QApplication) -> None:
    """Every state at 16, 22, 32, 64 px, colour and monochrome, on light and dark panels."""
    rows = [(k, None) for k in IconKind] + [(IconKind.PROCESSING, 65.0)]
    styles = [
        (IconStyle.COLOR, "#e8e8e8"),
        (IconStyle.COLOR, "#2b2b2b"),
        (IconStyle.MONO_DARK, "#e8e8e8"),
        (IconStyle.MONO_LIGHT, "#2b2b2b"),
    ]
    col_w = sum(s + 10 for s in SIZES) + 10
    label_w, row_h, head_h = 150, 76, 24
    scale = 2
    sheet = QPixmap((label_w + col_w * len(styles)) * scale, (head_h + row_h * len(rows)) * scale)
    sheet.fill(QColor("#ffffff"))
    p = QPainter(sheet)
    p.scale(scale, scale)
    p.setFont(QFont("DejaVu Sans", 9))
    for i, (style, bg) in enumerate(styles):
        x0 = label_w + i * col_w
        p.fillRect(QRectF(x0, 0, col_w - 4, head_h + row_h * len(rows)), QColor(bg))
        p.setPen(QColor("#ffffff" if bg == "#2b2b2b" else "#000000"))
        p.drawText(QRectF(x0, 0, col_w, head_h), Qt.AlignmentFlag.AlignCenter, style.value)
        for r, (kind, progress) in enumerate(rows):
            x = x0 + 8
            for size in SIZES:
                pm = render_pixmap(kind, size, style, progress, dpr=scale)
                p.drawPixmap(int(x), int(head_h + r * row_h + (row_h - size) / 2), pm)
                x += size + 10
    p.setPen(QColor("#000000"))
    for r, (kind, progress) in enumerate(rows):
        label = kind.value + (f" {progress:.0f} %" if progress is not None else "")
        p.drawText(QRectF(6, head_h + r * row_h, label_w, row_h),
                   Qt.AlignmentFlag.AlignVCenter, label)
    p.end()
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "icons.png"
    assert sheet.save(str(out))
    for size in SIZES:
        for kind in IconKind:
            for style in (IconStyle.COLOR, IconStyle.MONO_DARK):
                render_pixmap(kind, size, style).save(
                    str(ARTIFACTS / f"icon-{kind.value}-{style.value}-{size}.png"))
    publish_doc_image(out, "icons.png")
    assert QImage(str(out)).width() > 0


def test_a_review_holding_the_queue_has_its_own_icon_and_tooltip_line() -> None:
    from datetime import UTC, datetime

    from traystatus.app import texts
    from traystatus.app.icons import accessible_name, kind_for
    from traystatus.core.model.state import ReviewBlock, State, Status

    block = ReviewBlock(((7, "lu_2026"),), queued_behind=2)
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    held = Status(State.STABLE, since=t, review=block)
    assert kind_for(held) is IconKind.REVIEW
    assert kind_for(Status(State.PROCESSING, since=t, review=block)) is IconKind.PROCESSING
    assert kind_for(Status(State.STABLE, since=t)) is IconKind.STABLE
    assert "waits for review" in accessible_name(held)
    assert texts.tooltip(held, t).splitlines()[-1] == (
        "Waiting for review: lu_2026; 2 imports queued behind it")
