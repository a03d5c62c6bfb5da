"""Regression test for the PySide6 bool-signal crash.

PySide6 6.12.0 on Python 3.11 steals a reference to True on every Signal(bool).emit; after
about a thousand emits the interpreter aborts at exit ("Fatal Python error: bool_dealloc",
exit 134) - after pytest already printed "passed". Only a subprocess can see that exit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QObject, Signal

    class Emitter(QObject):
        flag = Signal(bool)

    app = QCoreApplication([])
    e = Emitter()
    seen = []
    e.flag.connect(seen.append)
    for i in range(5000):
        e.flag.emit(i % 2 == 0)
    assert len(seen) == 5000 and seen[:2] == [True, False], seen[:4]
    print("emitted", len(seen))
    """
)


def test_thousands_of_bool_signals_exit_cleanly() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "emitted 5000" in proc.stdout
    assert "bool_dealloc" not in proc.stderr
