"""Fixtures of the end-to-end tests: one private desktop per session, artifacts kept.

Every test in this folder is marked ``e2e``. Screenshots go to test-artifacts/e2e/ at the
top of the checkout (CI keeps that folder), so a person can look at what the test saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.virtual_desktop import Desktop

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parent.parent / "test-artifacts" / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    """Xvfb + private session bus + trayer + dunst (+ dbus-monitor on Notify calls)."""
    d = Desktop(tmp_path_factory.mktemp("desktop"), ARTIFACTS)
    try:
        d.start()
        yield d
    finally:
        d.close()
