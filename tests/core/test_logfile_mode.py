"""The tray's log names hosts, databases and users: owner only (0600), like the settings."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from traystatus.core.config.logsetup import (
    BACKUPS,
    LOG_ENV,
    LOG_FILE,
    MAX_BYTES,
    setup_file_logging,
)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_log_files_are_0600_also_after_rotation_and_when_older(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / LOG_FILE
    old.write_text("from an older version\n")
    old.chmod(0o644)
    monkeypatch.setenv(LOG_ENV, str(tmp_path))
    path = setup_file_logging()
    logger = logging.getLogger("traystatus")
    line = "host=db.example.org user=me@example.org " + "x" * 10_000
    try:
        for _ in range(2 * MAX_BYTES // len(line) + 5):  # rotates twice
            logger.info(line)
    finally:
        monkeypatch.setenv(LOG_ENV, str(tmp_path / "other"))
        setup_file_logging()  # release the file
    files = sorted(tmp_path.glob(LOG_FILE + "*"))
    assert path in files and len(files) == min(BACKUPS, 2) + 1, files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, (f, oct(f.stat().st_mode))
