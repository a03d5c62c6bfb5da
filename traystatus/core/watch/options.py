"""MonitorOptions: the timing (and reading mode) of a source, shared by the Monitor and the
relay client. Pure data, validated when made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from traystatus.core.model.estimate import HISTORY_MAX_AGE

ReaderMode = Literal["installed", "builtin", "auto"]
READER_MODES: tuple[ReaderMode, ...] = ("installed", "builtin", "auto")


@dataclass(frozen=True)
class MonitorOptions:
    """Timing of the monitor, in seconds. The defaults suit a tray app on a laptop.

    ``reader``: how to read the database: ``installed`` (our SQL), ``builtin`` (StatBus's
    own channels) or ``auto`` (installed when present and current, else built-in).
    """

    health_interval: float = 15.0
    health_timeout: float = 5.0
    connect_timeout: float = 10.0
    coalesce_window: float = 0.2
    backoff_initial: float = 1.0
    backoff_cap: float = 60.0
    backoff_jitter: float = 0.2
    error_retry: float = 60.0
    details_interval: float = 3.0
    progress_interval: float = 1.0
    progress_refresh: float = 10.0
    # The estimate's history (core/model/estimate.py): read again at most this often, and only
    # while processing; kept per connection.
    history_interval: float = HISTORY_MAX_AGE
    keepalives_idle: int = 30
    keepalives_interval: int = 10
    keepalives_count: int = 3
    application_name: str = "traystatus"
    reader: ReaderMode = "auto"
    # False: no LISTEN (a one-shot ``status`` reads once and stops: each LISTEN would be a
    # round trip it does not use; issue 23). Changes are then seen at the next read only.
    listen: bool = True
    # Where import listeners' ledger of which jobs ended is kept across restarts
    # (core/watch/endings.py: one file per database and login); None: this run only.
    endings_dir: str | None = None
    # The built-in reader on a StatBus too old to announce task changes (no
    # worker_task_changed, before 2026-03-20) reads the whole rule this often.
    old_statbus_interval: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "health_interval",
            "health_timeout",
            "connect_timeout",
            "backoff_initial",
            "error_retry",
            "details_interval",
            "progress_interval",
            "progress_refresh",
            "history_interval",
            "old_statbus_interval",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"MonitorOptions.{name} must be > 0")
        if self.coalesce_window < 0 or self.backoff_cap < self.backoff_initial:
            raise ValueError("MonitorOptions: coalesce_window >= 0 and backoff_cap >= initial")
        if self.reader not in READER_MODES:
            raise ValueError(f"MonitorOptions.reader must be one of {', '.join(READER_MODES)}")
