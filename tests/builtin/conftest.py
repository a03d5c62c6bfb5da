"""Fixtures for the built-in source: the real StatBus from the kit, fresh per test.

Without the kit's environment (``eval "$(bash statbus-real/build.sh --env)"``) these tests
are skipped with a reason; CI builds the kit first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.builtin.kit import Kit, KitDb


@pytest.fixture(scope="session")
def kit() -> Kit:
    found = Kit.from_env()
    if found is None:
        pytest.skip("the real StatBus kit is not set up (STATBUS_REAL_DSN etc.)")
    return found


@pytest.fixture
def kit_db(kit: Kit) -> Iterator[KitDb]:
    """A fresh copy of the StatBus template, traystatus's SQL NOT installed."""
    with kit.database() as db:
        yield db
