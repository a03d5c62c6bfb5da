"""A tiny QSystemTrayIcon (a solid disc of the colour given as argv[1]) for harness tests.

Prints "activated <reason>" on stdout when the icon is clicked, so a test can tell that
an xdotool click reached it.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QSystemTrayIcon


def disc(color: str) -> QIcon:
    pm = QPixmap(64, 64)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(color))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(2, 2, 60, 60)
    p.end()
    return QIcon(pm)


def main() -> int:
    app = QApplication(sys.argv[:1])
    if not QSystemTrayIcon.isSystemTrayAvailable():
        print("no tray", flush=True)
        return 3
    icon = QSystemTrayIcon(disc(sys.argv[1]))
    icon.activated.connect(
        lambda reason: print(f"activated {reason.name}", flush=True)
    )
    icon.show()
    print("shown", flush=True)
    if len(sys.argv) > 2:  # switch colour after a delay, to test pixel sampling
        QTimer.singleShot(int(float(sys.argv[3]) * 1000), lambda: icon.setIcon(disc(sys.argv[2])))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
