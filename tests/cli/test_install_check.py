"""``traystatus install-sql --check`` (the whole install, rolled back) and ``--print``."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo

from tests.cli.conftest import Cli
from tests.sql.test_install import snapshot
from traystatus._paths import sql_dir
from traystatus.core.pg.sqlfiles import EXPECTED_SQL_VERSION


def _snap(dsn: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as c:
        return snapshot(c)


def test_print_writes_the_exact_file(cli: Cli) -> None:
    r = cli.run("install-sql", "--print")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (sql_dir() / "install.sql").read_text(encoding="utf-8")


def test_check_says_what_it_would_install_and_leaves_nothing(cli: Cli, bare_db_dsn: str) -> None:
    before = _snap(bare_db_dsn)
    r = cli.run("install-sql", "--check", "--dsn", bare_db_dsn)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"install-sql --check: would install version {EXPECTED_SQL_VERSION} "
                        "(installed now: not installed); nothing was changed\n")
    assert _snap(bare_db_dsn) == before
    j = cli.run("install-sql", "--check", "--json", "--dsn", bare_db_dsn)
    out = json.loads(j.stdout)
    assert (out["ok"], out["would_install"]) == (True, EXPECTED_SQL_VERSION)
    assert "interrupted" in out["generated_for"]["task_state"]
    assert _snap(bare_db_dsn) == before


def test_check_with_a_failure_midway_leaves_nothing(cli: Cli, bare_db_dsn: str) -> None:
    """A view where our table goes: the install fails after it has created functions."""
    with psycopg.connect(bare_db_dsn, autocommit=True) as c:
        c.execute("CREATE VIEW public.system_stability_commit_hook AS SELECT 1 AS x")
    before = _snap(bare_db_dsn)
    r = cli.run("install-sql", "--check", "--dsn", bare_db_dsn)
    assert r.returncode == 3
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "install-sql --check: the install would fail" in lines[0], r.stderr
    assert _snap(bare_db_dsn) == before


def test_check_lists_each_missing_privilege(
    cli: Cli, bare_db_dsn: str, make_role: Callable[..., tuple[str, str]]
) -> None:
    name, password = make_role("authenticated", "regular_user")
    before = _snap(bare_db_dsn)
    r = cli.run("install-sql", "--check", "--dsn",
                make_conninfo(bare_db_dsn, user=name, password=password))
    assert r.returncode == 3
    lines = r.stderr.strip().splitlines()
    assert "does not own public.import_job" in lines[0] and "run install.sql as" in lines[0]
    assert any("does not own worker.tasks" in ln for ln in lines[1:]), lines
    assert any("schema public" in ln for ln in lines[1:]), lines
    assert _snap(bare_db_dsn) == before
    # and the real install says the first in one line, changing nothing
    r = cli.run("install-sql", "--dsn", make_conninfo(bare_db_dsn, user=name, password=password))
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _snap(bare_db_dsn) == before
