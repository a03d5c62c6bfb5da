"""The tray's log file on a full disk: one line on stderr, not a traceback per log line.

The disk is "full" for real: the child process runs with RLIMIT_FSIZE (writes past it fail
with EFBIG, SIGXFSZ ignored), so every write of the rotating file handler fails as it does
with ENOSPC.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from traystatus.core.config.logsetup import LOG_ENV

CHILD = r"""
import logging, resource, signal
from traystatus.core.config.logsetup import setup_file_logging
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = setup_file_logging()  # in TRAYSTATUS_LOG_DIR
log = logging.getLogger("traystatus.test")
log.info("before the disk filled up")
logging.getLogger("traystatus").handlers[0].flush()
size = path.stat().st_size
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
for n in range(200):
    log.warning("line %d of a long session", n)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
log.warning("space again")
logging.getLogger("traystatus").handlers[0].flush()
text = path.read_text()
print(text.count("\n"), "space again" in text)
"""


def test_a_full_disk_is_said_once_not_per_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                       timeout=60, check=False, env={**os.environ, LOG_ENV: str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Logging error" not in r.stderr, r.stderr[:2000]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("traystatus: cannot write the log file ")
    assert "dropped until it can be written again" in lines[0]
    assert lines[1].endswith("can be written again")
    count, again = r.stdout.split()
    assert again == "True" and int(count) <= 3  # before, maybe one buffered line, after
