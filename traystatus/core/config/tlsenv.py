"""Make ``sslrootcert=system`` work with psycopg-binary.

libpq's ``sslrootcert=system`` asks OpenSSL for its default CA store. psycopg-binary ships
its own OpenSSL, whose default store is a path inside the build machine
(``/usr/lib/psycopg-openssl``) that does not exist on an analyst's computer, so
verification fails with "certificate verify failed" although the certificate is fine.
OpenSSL honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``: when neither is set, point
``SSL_CERT_FILE`` at the operating system's CA bundle. A user's own setting always wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

# Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine/macOS (Homebrew and system).
CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
)


def use_system_ca_bundle(env: MutableMapping[str, str] | None = None) -> str | None:
    """Set SSL_CERT_FILE to the system CA bundle unless the user chose a store.

    Returns the bundle set, or None when nothing was changed.
    """
    environ = os.environ if env is None else env
    if environ.get("SSL_CERT_FILE") or environ.get("SSL_CERT_DIR"):
        return None
    for candidate in CA_BUNDLES:
        if Path(candidate).is_file():
            environ["SSL_CERT_FILE"] = candidate
            return candidate
    return None
