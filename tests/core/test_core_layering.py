"""traystatus.core must stay importable and usable without Qt (CLI, headless servers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "traystatus" / "core"


def test_core_imports_no_pyside6() -> None:
    modules = sorted(
        ".".join(("traystatus", *p.relative_to(CORE.parent).with_suffix("").parts))
        for p in CORE.rglob("*.py")
        if p.stem != "__init__"
    )
    code = (
        "import sys\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "qt = ('PySide6', 'shiboken6', 'qasync')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in qt)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", f"traystatus.core pulled in {out.stdout.strip()}"
    assert len(modules) >= 8  # the test really imported the package
