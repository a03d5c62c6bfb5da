"""Run the real ``traystatus`` console script in a subprocess, in an isolated home.

Each test gets its own HOME (no stray ~/.pgpass), config folder and test keychain file
(tests/cli/keyrings.py FileKeyring through PYTHON_KEYRING_BACKEND), and no PG* variables
from the outer environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "traystatus"


@dataclass
class Cli:
    env: dict[str, str]
    home: Path

    @property
    def config_file(self) -> Path:
        return Path(self.env["TRAYSTATUS_CONFIG_DIR"]) / "profiles.toml"

    @property
    def keyring_file(self) -> Path:
        return Path(self.env["TRAYSTATUS_TEST_KEYRING"])

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args],
            env={**self.env, **(env or {})},
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
            check=False,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(SCRIPT), *args],
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=self.home,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        TRAYSTATUS_CONFIG_DIR=str(tmp_path / "config"),
        TRAYSTATUS_TEST_KEYRING=str(tmp_path / "keyring.json"),
        PYTHON_KEYRING_BACKEND="tests.cli.keyrings.FileKeyring",
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return Cli(env, home)


@pytest.fixture
def analyst_dsn(db_dsn: str, login_role: tuple[str, str]) -> str:
    """The analyst's conninfo to the test database, without the password."""
    return make_conninfo(db_dsn, user=login_role[0])


@pytest.fixture
def make_role(db_dsn: str) -> Iterator[Callable[..., tuple[str, str]]]:
    """Create extra login roles (dropped afterwards): make_role(*member_of) -> (name, pw)."""
    made: list[str] = []

    def make(*member_of: str) -> tuple[str, str]:
        name = f"cli_{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        query = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)
        )
        if member_of:
            query += sql.SQL(" IN ROLE {}").format(
                sql.SQL(", ").join(sql.Identifier(r) for r in member_of)
            )
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute(query)
        made.append(name)
        return name, password

    yield make
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        # DROP OWNED revokes, and StatBus's sql_saga event trigger (the stand-in has one too)
        # rejects every REVOKE: clean up with event triggers off
        conn.execute("SET session_replication_role = replica")
        for name in made:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def start_job(conn: psycopg.Connection[tuple[object, ...]], slug: str = "job1",
              state: str = "processing_data") -> None:
    conn.execute(
        "INSERT INTO public.import_job (slug, definition_id, state) VALUES (%s, 1, %s)",
        (slug, state),
    )


def finish_job(conn: psycopg.Connection[tuple[object, ...]], slug: str = "job1") -> None:
    conn.execute("UPDATE public.import_job SET state = 'finished' WHERE slug = %s", (slug,))
