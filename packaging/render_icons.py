"""Render the application icon for every platform from resources/icons/traystatus.svg.

    .venv/bin/python packaging/render_icons.py          # (re)write the files below
    .venv/bin/python packaging/render_icons.py --check  # exit 1 if any is missing or stale

Writes (all committed, so packagers need no Qt to install icons):
- packaging/linux/icons/hicolor/<N>x<N>/apps/io.github.statbus.traystatus.png for the
  hicolor sizes desktop environments look up (16..256), and scalable/apps/<id>.svg;
- packaging/windows/traystatus.ico: one file with 16, 20, 24, 32, 40, 48, 64, 256 px images
  (Explorer and the taskbar pick per DPI: 20/40 are the 125 %/250 % small-icon sizes);
- packaging/macos/traystatus.icns: 16..1024 px including the @2x variants.

The SVG is drawn by hand (resources/icons/); Qt's own SVG renderer (QtSvg, already a dependency)
rasterises it, so no Inkscape/rsvg is needed. ICO and ICNS are written here by hand: both
formats accept PNG-compressed images, and the containers are a few header bytes (Qt's ICO
writer stores a single size only).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_ID = "io.github.statbus.traystatus"
SOURCE = ROOT / "resources" / "icons" / "traystatus.svg"
LINUX_ICONS = ROOT / "packaging" / "linux" / "icons" / "hicolor"
WINDOWS_ICO = ROOT / "packaging" / "windows" / "traystatus.ico"
MACOS_ICNS = ROOT / "packaging" / "macos" / "traystatus.icns"

HICOLOR_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 256)
# ICNS element types holding PNG data, by pixel size (Apple's "icns" type list).
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic09", 512),
    (b"ic10", 1024),  # 512@2x
    (b"ic11", 32),  # 16@2x
    (b"ic12", 64),  # 32@2x
    (b"ic13", 256),  # 128@2x
    (b"ic14", 512),  # 256@2x
)


def render_png(svg: bytes, size: int) -> bytes:
    """The SVG rasterised to a ``size`` x ``size`` PNG with alpha."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    renderer = QSvgRenderer(QByteArray(svg))
    if not renderer.isValid():
        raise ValueError("the icon SVG is not valid")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    buf.close()
    return bytes(data.data())


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    w, h = struct.unpack(">II", png[16:24])
    return int(w), int(h)


def build_ico(pngs: Iterable[bytes]) -> bytes:
    """A Windows .ico holding the PNGs (PNG entries: Windows Vista and later)."""
    images = list(pngs)
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries = b""
    for png in images:
        w, h = png_size(png)
        # A width/height byte of 0 means 256.
        entries += struct.pack("<BBBBHHII", w % 256, h % 256, 0, 0, 1, 32, len(png), offset)
        offset += len(png)
    return header + entries + b"".join(images)


def read_ico(data: bytes) -> list[tuple[int, int, bytes]]:
    """(width, height, image bytes) of each entry: the inverse of ``build_ico``."""
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    if reserved != 0 or kind != 1:
        raise ValueError("not an .ico file")
    out = []
    for i in range(count):
        w, h, _c, _r, _p, _bpp, size, off = struct.unpack(
            "<BBBBHHII", data[6 + 16 * i : 22 + 16 * i]
        )
        out.append((w or 256, h or 256, data[off : off + size]))
    return out


def build_icns(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns from PNGs by pixel size (every size in ICNS_TYPES must be present)."""
    body = b"".join(
        kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES
    )
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def read_icns(data: bytes) -> dict[bytes, bytes]:
    """Element type -> data: the inverse of ``build_icns``."""
    if data[:4] != b"icns" or struct.unpack(">I", data[4:8])[0] != len(data):
        raise ValueError("not an .icns file")
    out, pos = {}, 8
    while pos < len(data):
        kind, length = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        out[kind] = data[pos + 8 : pos + length]
        pos += length
    return out


def outputs(svg: bytes) -> dict[Path, bytes]:
    """Every file this script writes, with its content."""
    sizes = sorted({*HICOLOR_SIZES, *ICO_SIZES, *(s for _, s in ICNS_TYPES)})
    png = {s: render_png(svg, s) for s in sizes}
    files = {
        LINUX_ICONS / f"{s}x{s}" / "apps" / f"{APP_ID}.png": png[s] for s in HICOLOR_SIZES
    }
    files[LINUX_ICONS / "scalable" / "apps" / f"{APP_ID}.svg"] = svg
    files[WINDOWS_ICO] = build_ico(png[s] for s in ICO_SIZES)
    files[MACOS_ICNS] = build_icns(png)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the files are current")
    args = parser.parse_args(argv)
    svg = SOURCE.read_bytes()
    stale = []
    for path, data in outputs(svg).items():
        current = path.read_bytes() if path.exists() else None
        if current == data:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    for path in stale:
        verb = "stale or missing" if args.check else "wrote"
        print(f"{verb}: {path.relative_to(ROOT)}")
    if args.check and stale:
        print("run: .venv/bin/python packaging/render_icons.py", file=sys.stderr)
        return 1
    digest = hashlib.sha256(svg).hexdigest()[:12]
    print(f"icons current for {SOURCE.relative_to(ROOT)} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
