"""Fixtures for the demo tests."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from traystatus.demo.embedded import EmbeddedPostgres


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A folder for an embedded server's data, OUTSIDE pytest's temporary root.

    As root, the server runs as the user ``pgserver``, which must be able to enter every
    parent folder. pytest re-restricts /tmp/pytest-of-<user> to 0700 whenever any pytest
    session starts (other test runs on the machine included), which would lock a later
    ``pg_ctl start`` out of a folder below it.
    """
    base = Path(tempfile.mkdtemp(prefix="traystatus-demo-test-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        # A test that failed half-way may have left a server running: never leak one.
        for pid_file in base.rglob("postmaster.pid"):
            with contextlib.suppress(Exception):
                EmbeddedPostgres(pid_file.parent).stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
