"""Where the packaged data lives.

``sql/`` and ``resources/`` stay at the top of the source tree; the wheel
carries them as ``traystatus/_data/sql`` and ``traystatus/_data/resources``. Both layouts
are looked up here, so an installed traystatus needs no source checkout.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"traystatus cannot find its {name}/ folder (looked in {_PACKAGE / '_data'} and "
        f"{_PACKAGE.parent}); the installation is incomplete: reinstall traystatus"
    )


def sql_dir() -> Path:
    return _find("sql")


def resources_dir() -> Path:
    return _find("resources")


def linux_data_dir() -> Path:
    """Desktop entry, metainfo and autostart templates (packaging/linux in a checkout)."""
    for candidate in (_PACKAGE / "_data" / "linux", _PACKAGE.parent / "packaging" / "linux"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("traystatus cannot find its desktop files; reinstall traystatus")
