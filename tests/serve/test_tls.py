"""``serve --tls-cert/--tls-key``: HTTPS and WSS with a certificate, and a relay client that
verifies it (through the system's trust settings: SSL_CERT_FILE here)."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.serve.conftest import REPO, SCRIPT, next_json, served, token_file


def _certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "server.crt", tmp / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    key.chmod(0o600)
    return cert, key


@pytest.mark.asyncio
async def test_wss_and_https_with_a_certificate(db_dsn: str, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    tokens = token_file(tmp_path)
    async with served(db_dsn, tmp_path, tls_cert=str(cert), tls_key=str(key)) as srv:
        assert srv.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"wss{srv.url[5:]}/api/system-stability",
                                       headers=srv.headers(), ssl=trust)
            assert (await next_json(ws))["stable"] is True
            await ws.close()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(f"{srv.url}/healthz")  # not trusted without the cert
            with pytest.raises((aiohttp.ClientError, ConnectionError)):
                await http.ws_connect(f"ws{srv.url[5:]}/api/system-stability")  # plain: no

        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT), "status", "--json", "--relay", srv.url, "--token-file", tokens,
            env={"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "SSL_CERT_FILE": str(cert)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert json.loads(out)["source"] == "relay"


def test_tls_options_refused_clearly(db_dsn: str, tmp_path: Path) -> None:
    from tests.serve.conftest import ServeProcess

    for args, words in (
        (["--tls-cert", str(tmp_path / "c")], "together"),
        (["--tls-cert", str(tmp_path / "c"), "--tls-key", str(tmp_path / "k")], "cannot use"),
    ):
        p = ServeProcess("--dsn", db_dsn, "--listen", "127.0.0.1:0", "--no-auth", *args)
        _, err = p.proc.communicate(timeout=60)
        assert p.proc.returncode == 2 and words in err and len(err.strip().splitlines()) == 1
