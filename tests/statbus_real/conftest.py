"""A REAL StatBus for the tests in this folder.

The kit in ``tests/statbus_real/kit/`` (part of the repository, README.md there) builds a
StatBus database from StatBus's own migrations, with its extensions (sql_saga and its event
triggers), roles, worker procedures and demo files, on an embedded PostgreSQL 18, and caches
it. The session fixture ``kit`` takes the ``STATBUS_REAL_*`` variables from the environment
when they are set (another kit chosen on purpose, or .ci/run's), else runs the in-repository
``build.sh --env`` (minutes the first time, under a second when cached). Every test works on
its own copy of a template database (about 0.3 s).

When the kit cannot be built, the tests here fail with its one-line reason (what is missing,
what to install); they are skipped only when the kit is not in the checkout at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.statbus_real.statbus import run_worker, setup_sql_lock

REPO = Path(__file__).resolve().parents[2]
KIT_SCRIPT = REPO / "tests" / "statbus_real" / "kit" / "build.sh"
HEAD = "head"
OLDEST = "20260301000000"  # StatBus as of 2026-03-01 (newest migration 20260227102355)
MIDDLE = "20260328092344"  # v2026.03.0, the first tagged release
VERSIONS = (OLDEST, MIDDLE, HEAD)
ENV_KEYS = ("STATBUS_REAL_DSN", "STATBUS_REAL_HOST", "STATBUS_REAL_PORT", "STATBUS_REAL_SRC",
            "STATBUS_REAL_BIN")


def _missing() -> str | None:
    if all(os.environ.get(k) for k in ENV_KEYS) or KIT_SCRIPT.exists():
        return None
    return (f"no real StatBus: {KIT_SCRIPT} is not there and STATBUS_REAL_DSN is not set "
            "(docs/statbus-compat.md says how to get one)")


def kit_env() -> dict[str, str]:
    """The ``STATBUS_REAL_*`` variables of the kit to use: the environment's when complete,
    else the in-repository kit's, built or started now (and its older templates), and then
    exported to this process too, as ``eval "$(build.sh --env)"`` would have (tests that
    read the analyst's or admin's login from the environment find it)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("STATBUS_REAL_")}
    if all(env.get(k) for k in ENV_KEYS) or not KIT_SCRIPT.exists():
        return env
    proc = subprocess.run(["bash", str(KIT_SCRIPT), "--env", "--at", f"{OLDEST},{MIDDLE}"],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the real StatBus kit did not build: {proc.stderr.strip()[-2000:]}")
    built = _parse_env(proc.stdout)
    os.environ.update(built)
    env.update(built)
    return env


def _require_kit() -> None:
    # Raised here, not as a mark, so that every test reports the same location: one line.
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the real StatBus tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _needs_the_kit() -> None:
    _require_kit()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the kit (and not in CI): one test stands for the folder and is skipped with
    the reason; the others are deselected, so the report says why in one line."""
    if _missing() is None or os.environ.get("CI") == "true":
        return
    here = Path(__file__).parent
    ours = [i for i in items if here in Path(str(i.path)).parents]
    if len(ours) > 1:
        config.hook.pytest_deselected(items=ours[1:])
        items[:] = [i for i in items if i not in ours[1:]]


@dataclass
class Kit:
    """The running real StatBus: its superuser, sources and databases."""

    env: dict[str, str]
    made: list[str] = field(default_factory=list)

    @property
    def src(self) -> Path:
        return Path(self.env["STATBUS_REAL_SRC"])

    @property
    def bin(self) -> Path:
        return Path(self.env["STATBUS_REAL_BIN"])

    def dsn(self, dbname: str = "postgres", **kw: str) -> str:
        base = dict(host=self.env["STATBUS_REAL_HOST"], port=self.env["STATBUS_REAL_PORT"],
                    user="postgres", dbname=dbname)
        base.update(kw)
        return make_conninfo(**base)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn(), autocommit=True)

    def template(self, version: str) -> str:
        base = self.env.get("STATBUS_REAL_TEMPLATE", "statbus_template")
        return base if version == HEAD else f"{base}_{version}"

    def copy(self, template: str, prefix: str = "tsr") -> str:
        """A new database copied from ``template``; dropped at the end of the session."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.admin() as c:
            c.execute(sql.SQL(
                "CREATE DATABASE {} TEMPLATE {} OWNER statbus_app STRATEGY FILE_COPY"
            ).format(sql.Identifier(name), sql.Identifier(template)))
        self.made.append(name)
        return name

    def drop(self, name: str) -> None:
        with self.admin() as c:
            c.execute("UPDATE pg_database SET datistemplate = false WHERE datname = %s",
                      (name,))
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
        if name in self.made:
            self.made.remove(name)

    def make_template(self, name: str) -> None:
        with self.admin() as c:
            c.execute("UPDATE pg_database SET datistemplate = true WHERE datname = %s", (name,))

    def psql(self, dsn: str, *args: str, cwd: Path | None = None,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, dsn],
            input=stdin, capture_output=True, text=True, timeout=300, check=False, cwd=cwd,
            env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})


def _parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        m = re.fullmatch(r"export (STATBUS_REAL_\w+)='(.*)'", line.strip())
        if m:
            env[m.group(1)] = m.group(2).replace("'\\''", "'")
    return env


@pytest.fixture(scope="session")
def kit() -> Iterator[Kit]:
    _require_kit()
    k = Kit(kit_env())
    yield k
    for name in list(k.made):
        k.drop(name)


def _setup_demo(kit: Kit, dbname: str) -> None:
    """StatBus's test users and its getting-started settings (regions, activity categories,
    sectors, legal forms), as an administrator does in the app; then the worker until idle."""
    script = ("BEGIN;\n\\i test/setup.sql\n"
              "CALL test.set_user_from_email('test.admin@statbus.org');\n"
              "\\i samples/demo/getting-started.sql\nCOMMIT;\n")
    with setup_sql_lock(kit.dsn()):
        proc = kit.psql(kit.dsn(dbname), cwd=kit.src, stdin=script)
    assert proc.returncode == 0, proc.stderr
    run_worker(kit.dsn(dbname))


@pytest.fixture(scope="session")
def demo_template(kit: Kit) -> str:
    """HEAD StatBus with its demo settings loaded and the worker idle: a template."""
    name = kit.copy(kit.template(HEAD), prefix="tsr_demo")
    _setup_demo(kit, name)
    kit.make_template(name)
    return name


@pytest.fixture
def new_db(kit: Kit) -> Iterator[Callable[..., str]]:
    """new_db(template=HEAD) -> dsn of a fresh copy (superuser), dropped after the test."""
    mine: list[str] = []

    def make(template: str | None = None) -> str:
        name = kit.copy(template or kit.template(HEAD))
        mine.append(name)
        return kit.dsn(name)

    yield make
    for name in mine:
        kit.drop(name)
