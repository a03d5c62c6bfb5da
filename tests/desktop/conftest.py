"""The desktop session fixture (tests/fix_desktop.py) for this folder."""

from tests.fix_desktop import Session, session

__all__ = ["Session", "session"]
