"""sslrootcert=system with psycopg-binary: the system CA bundle is found, a user's choice wins."""

from __future__ import annotations

import os

import pytest

from traystatus.core.config.tlsenv import CA_BUNDLES, use_system_ca_bundle


def test_sets_the_first_existing_system_bundle() -> None:
    env: dict[str, str] = {}
    chosen = use_system_ca_bundle(env)
    expected = next((p for p in CA_BUNDLES if os.path.isfile(p)), None)
    assert chosen == expected
    if expected:
        assert env["SSL_CERT_FILE"] == expected


def test_a_users_store_wins() -> None:
    for var in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        env = {var: "/my/ca"}
        assert use_system_ca_bundle(env) is None
        assert env == {var: "/my/ca"}


def test_the_cli_sets_it_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command (and the tray, started by the same main) gets the bundle."""
    from traystatus.cli.main import main

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    code = main(["status", "--dsn", "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2"])
    assert code == 3  # nothing listens on port 1: not reachable
    expected = next((p for p in CA_BUNDLES if os.path.isfile(p)), None)
    assert os.environ.get("SSL_CERT_FILE") == expected
