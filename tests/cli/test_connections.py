"""One connection per one-shot command (issue 23).

``status`` and ``wait`` used to open two: the password probe (does libpq find a password
on its own?), closed at once, and then the monitor's. On a remote TLS StatBus that is the
TCP, TLS and start-up round trips twice. Now the probe's connection is the monitor's.
Counted in a TCP proxy in front of the test server: every connection the command opens
passes through it.
"""

from __future__ import annotations

import psycopg

from tests.cli.conftest import Cli
from tests.fix_proxy import Proxy


def _proxied(proxy_factory: type[Proxy], dsn: str) -> tuple[Proxy, str]:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    proxy = proxy_factory(str(params.get("host") or "/tmp"), int(params.get("port") or 5432))
    proxy.start()
    return proxy, proxy.dsn(dsn)


def test_status_opens_one_connection(cli: Cli, db_dsn: str, proxy_factory: type[Proxy]) -> None:
    proxy, dsn = _proxied(proxy_factory, db_dsn)
    r = cli.run("status", "--dsn", dsn)
    assert (r.returncode, r.stdout.strip()) == (0, "stable"), r.stderr
    assert proxy.accepted == 1


def test_status_asks_no_more_than_it_uses(
    cli: Cli, db_dsn: str, proxy_factory: type[Proxy]
) -> None:
    """Round trips of `status` after the connection: it reads once, so no LISTEN; in auto
    mode the version check that chose the reader is not asked again. Counted in the proxy
    (client turns): libpq's SSL request, the start-up message, the version check, StatBus's
    upgrade table, the stability read, the goodbye: 6 (11 before issue 23: a second
    connection, a LISTEN, and the first read in two queries)."""
    proxy, dsn = _proxied(proxy_factory, db_dsn)
    r = cli.run("status", "--dsn", dsn)
    assert (r.returncode, r.stdout.strip()) == (0, "stable"), r.stderr
    assert proxy.turns <= 6, proxy.turns


def test_status_with_a_password_libpq_finds_opens_one_connection(
    cli: Cli, analyst_dsn: str, login_role: tuple[str, str], proxy_factory: type[Proxy]
) -> None:
    """PGPASSWORD (or ~/.pgpass): the probe connects, and that connection is the one used."""
    proxy, dsn = _proxied(proxy_factory, analyst_dsn)
    r = cli.run("status", "--json", "--details", "--dsn", dsn,
                env={"PGPASSWORD": login_role[1]})
    assert r.returncode == 0, r.stderr
    assert '"details": {' in r.stdout
    assert proxy.accepted == 1


def test_wait_opens_one_connection(cli: Cli, db_dsn: str, proxy_factory: type[Proxy]) -> None:
    proxy, dsn = _proxied(proxy_factory, db_dsn)
    r = cli.run("wait", "--timeout", "0", "--dsn", dsn)
    assert r.returncode == 0, r.stderr
    assert proxy.accepted == 1


def test_a_keychain_password_costs_one_refused_attempt(
    cli: Cli, analyst_dsn: str, login_role: tuple[str, str], proxy_factory: type[Proxy]
) -> None:
    """The keychain's password is used only when libpq has none: the probe's attempt is
    refused at authentication (the server asks, libpq has nothing), then one connection."""
    proxy, dsn = _proxied(proxy_factory, analyst_dsn)
    added = cli.run("profile", "add", "kc", "--dsn", dsn, "--password-stdin",
                    input=login_role[1] + "\n")
    assert added.returncode == 0, added.stderr
    before = proxy.accepted
    r = cli.run("status", "--profile", "kc")
    assert (r.returncode, r.stdout.strip()) == (0, "stable"), r.stderr
    assert proxy.accepted - before == 2
