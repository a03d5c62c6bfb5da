"""Fixtures for the built-in source: the real StatBus from the kit, fresh per test.

The kit is found exactly as tests/statbus_real/ finds it (the ``STATBUS_REAL_*`` variables
when set, else the in-repository ``tests/statbus_real/kit/build.sh --env``). Without it
these tests are skipped with the reason; with ``CI=true`` a missing kit fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.builtin.kit import Kit, KitDb
from tests.statbus_real import conftest as real


@pytest.fixture(scope="session")
def kit() -> Kit:
    reason = real._missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the real StatBus tests: {reason}")
        pytest.skip(reason)
    found = Kit.from_env(real.kit_env())
    if found is None:
        pytest.fail("the real StatBus kit gave no analyst login (STATBUS_REAL_ANALYST_DSN)")
    return found


@pytest.fixture
def kit_db(kit: Kit) -> Iterator[KitDb]:
    """A fresh copy of the StatBus template, traystatus's SQL NOT installed."""
    with kit.database() as db:
        yield db


OLDEST_TEMPLATE = f"statbus_template_{real.OLDEST}"  # before worker_task_changed
