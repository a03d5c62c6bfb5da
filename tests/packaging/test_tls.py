"""docs/tls.md's settings, tried for real, through a TLS front like a StatBus deployment's.

A StatBus deployment puts a proxy (Caddy layer4) in front of PostgreSQL that terminates
TLS started directly (``sslnegotiation=direct``, ALPN "postgresql") and routes by SNI. The
embedded PostgreSQL build has no SSL support, so the test does the same: a small TLS
terminating proxy in front of the shared test server, with a certificate for
``localhost`` signed by a throw-away CA. What the docs promise:
verify-full + sslnegotiation=direct + sslrootcert=<CA file> connects with TLS; a wrong host
name or an unknown CA is refused; ``sslrootcert=system`` takes its CAs from SSL_CERT_FILE
(psycopg-binary's own OpenSSL does not look in the distribution's CA folder by itself);
``traystatus doctor`` says the certificate and host name are verified.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict


@dataclass
class TlsServer:
    port: int
    ca: Path
    sni: list[str]  # the server names clients sent, in order

    def dsn(self, **kw: str) -> str:
        params = {
            "host": "localhost",
            "hostaddr": "127.0.0.1",
            "port": str(self.port),
            "dbname": "postgres",
            "user": "postgres",
            "connect_timeout": "10",
        }
        params.update(kw)
        return " ".join(f"{k}={v}" for k, v in params.items())


class TlsFront:
    """Accept TLS (direct, ALPN postgresql), forward the plain bytes to the backend."""

    def __init__(self, certs: Path, backend: tuple[str, int]) -> None:
        self.backend = backend
        self.sni: list[str] = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certs / "server.crt", certs / "server.key")
        self.ctx.set_alpn_protocols(["postgresql"])
        self.ctx.sni_callback = self._on_sni
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def _on_sni(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.sni.append(name or "")

    def start(self) -> None:
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            client = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # e.g. a plain SSLRequest: not TLS, refused like the real proxy
            return
        client.settimeout(None)
        upstream = socket.create_connection(self.backend, timeout=10)
        upstream.settimeout(None)
        self._spawn(self._pump, client, upstream)
        self._pump(upstream, client)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        for t in self.threads:
            t.join(5)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(folder: Path) -> None:
    """A CA and a server certificate for localhost/127.0.0.1 signed by it (EC keys: fast)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=traystatus test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
        cwd=folder,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> Iterator[TlsServer]:
    certs = tmp_path_factory.mktemp("tls")
    make_certs(certs)
    params = conninfo_to_dict(pg_server.admin_dsn)
    front = TlsFront(certs, (str(params["host"]), int(str(params["port"]))))
    front.start()
    try:
        yield TlsServer(front.port, certs / "ca.crt", front.sni)
    finally:
        front.stop()


@pytest.fixture
def no_default_certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ~/.postgresql/root.crt and no OpenSSL overrides from the environment."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("SSL_CERT_FILE", "SSL_CERT_DIR", "PGSSLROOTCERT", "PGSSLMODE"):
        monkeypatch.delenv(var, raising=False)


def test_verify_full_with_direct_negotiation_connects(
    tls_server: TlsServer, no_default_certs: None
) -> None:
    dsn = tls_server.dsn(
        sslmode="verify-full", sslnegotiation="direct", sslrootcert=str(tls_server.ca)
    )
    with psycopg.connect(dsn) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert tls_server.sni[-1] == "localhost"  # SNI sent: the proxy can route by it


def test_the_default_negotiation_fails_on_a_direct_tls_port(
    tls_server: TlsServer, no_default_certs: None
) -> None:
    """sslnegotiation=postgres sends a plain SSLRequest first, which a TLS-only front refuses."""
    dsn = tls_server.dsn(sslmode="verify-full", sslrootcert=str(tls_server.ca))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn).close()


def test_verify_full_refuses_a_wrong_host_name(
    tls_server: TlsServer, no_default_certs: None
) -> None:
    dsn = tls_server.dsn(
        host="statbus.invalid",
        sslmode="verify-full",
        sslnegotiation="direct",
        sslrootcert=str(tls_server.ca),
    )
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn).close()
    # verify-ca would accept it: the reason the docs insist on verify-full.
    psycopg.connect(
        tls_server.dsn(
            host="statbus.invalid",
            sslmode="verify-ca",
            sslnegotiation="direct",
            sslrootcert=str(tls_server.ca),
        )
    ).close()


def test_verify_full_refuses_an_unknown_ca(tls_server: TlsServer, no_default_certs: None) -> None:
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(tls_server.dsn(sslmode="verify-full", sslnegotiation="direct")).close()


def test_sslrootcert_system_reads_ssl_cert_file(
    tls_server: TlsServer, no_default_certs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = tls_server.dsn(sslrootcert="system", sslnegotiation="direct")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn).close()  # our CA is in no system store
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.ca))
    with psycopg.connect(dsn) as conn:
        assert conn.pgconn.ssl_in_use


def test_doctor_reports_verified_tls(tls_server: TlsServer, tmp_path: Path) -> None:
    dsn = tls_server.dsn(
        sslmode="verify-full", sslnegotiation="direct", sslrootcert=str(tls_server.ca)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DBUS_"))}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = subprocess.run(
        [sys.executable, "-m", "traystatus", "doctor", "--dsn", dsn, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    checks = {c["check"]: c for c in json.loads(proc.stdout)}
    assert checks["TLS"]["level"] == "ok", checks["TLS"]
    assert "verified" in checks["TLS"]["detail"]
