"""Applying the packaged SQL through psycopg, and reading the installed version."""

from __future__ import annotations

import psycopg
import pytest

from tests.core.conftest import with_params
from traystatus.core.pg import sqlfiles


def test_reads_the_packaged_files() -> None:
    assert "CREATE OR REPLACE FUNCTION public.is_system_stable()" in sqlfiles.read("install")
    assert "DROP FUNCTION IF EXISTS public.is_system_stable()" in sqlfiles.read("uninstall")
    with pytest.raises(ValueError):
        sqlfiles.read("drop_everything")  # type: ignore[arg-type]  # on purpose


@pytest.mark.asyncio
async def test_install_uninstall_round_trip(bare_db_dsn: str) -> None:
    v = sqlfiles.EXPECTED_SQL_VERSION
    assert await sqlfiles.apply(bare_db_dsn, "install") == (None, v)
    assert await sqlfiles.apply(bare_db_dsn, "install") == (v, v)  # idempotent
    async with await psycopg.AsyncConnection.connect(bare_db_dsn, autocommit=True) as c:
        cur = await c.execute("SELECT public.is_system_stable()")
        assert await cur.fetchone() == (True,)
    assert await sqlfiles.apply(bare_db_dsn, "uninstall") == (v, None)


@pytest.mark.asyncio
async def test_installed_version_leaves_an_open_transaction_usable(bare_db_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(bare_db_dsn) as c:  # not autocommit
        assert await sqlfiles.installed_version(c) is None
        cur = await c.execute("SELECT 1")  # the transaction is not aborted
        assert await cur.fetchone() == (1,)


@pytest.mark.asyncio
async def test_a_failed_install_changes_nothing(
    bare_db_dsn: str, login_role: tuple[str, str]
) -> None:
    """A role that may not create functions: the whole file rolls back."""
    dsn = with_params(bare_db_dsn, user=login_role[0])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await sqlfiles.apply(dsn, "install", password=login_role[1])
    async with await psycopg.AsyncConnection.connect(bare_db_dsn, autocommit=True) as c:
        assert await sqlfiles.installed_version(c) is None
