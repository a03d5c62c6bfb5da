"""The tray's log names hosts, databases and users: owner only (0600), like the settings."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from traystatus.core.config.logsetup import LOG_FILE, setup_file_logging


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_log_files_are_0600_also_after_rotation_and_when_older(tmp_path: Path) -> None:
    old = tmp_path / LOG_FILE
    old.write_text("from an older version\n")
    old.chmod(0o644)
    path = setup_file_logging(directory=tmp_path, max_bytes=200, backups=2)
    logger = logging.getLogger("traystatus")
    try:
        for i in range(30):
            logger.info("host=db.example.org user=me@example.org line %d", i)
    finally:
        setup_file_logging(directory=tmp_path / "other")  # release the file
    files = sorted(tmp_path.glob(LOG_FILE + "*"))
    assert path in files and len(files) == 3, files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, (f, oct(f.stat().st_mode))
