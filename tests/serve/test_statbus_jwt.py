"""StatBus's own access tokens, made by a real StatBus's functions, checked by auth.py.

Runs where a real StatBus database is at hand (STATBUS_REAL_DSN, a superuser conninfo);
skipped elsewhere. The tokens come from auth.build_jwt_claims() + auth.generate_jwt(), the
functions StatBus's login uses; the secret from auth.secrets, as docs/serve.md says.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

from traystatus.serve.auth import JwtVerifier

DSN = os.environ.get("STATBUS_REAL_DSN")
pytestmark = pytest.mark.skipif(not DSN, reason="no real StatBus (STATBUS_REAL_DSN)")


def test_statbus_access_tokens_pass_and_others_do_not(tmp_path: Path) -> None:
    assert DSN is not None
    with psycopg.connect(DSN, autocommit=True) as c:
        secret = c.execute(
            "SELECT value FROM auth.secrets WHERE key = 'jwt_secret'"
        ).fetchone()
        email = c.execute(
            "SELECT email FROM auth.user WHERE deleted_at IS NULL ORDER BY id LIMIT 1"
        ).fetchone()
        assert secret is not None and email is not None

        def token(expires: str | None, kind: str) -> str:
            row = c.execute(
                "SELECT auth.generate_jwt(auth.build_jwt_claims(%s, %s::timestamptz, %s))",
                (email[0], expires, kind),
            ).fetchone()
            assert row is not None
            return str(row[0])

        access = token(None, "access")
        api_key = token(None, "api_key")
        refresh = token(None, "refresh")
        expired = token("2020-01-01T00:00:00Z", "access")
    path = tmp_path / "jwt-secret"
    path.write_text(str(secret[0]) + "\n")
    path.chmod(0o600)
    verifier = JwtVerifier(path)
    claims = verifier.claims(access)
    assert claims is not None and claims["email"] == email[0]
    assert verifier.claims(api_key) is not None
    assert verifier.claims(refresh) is None  # not an access token
    assert verifier.claims(expired) is None
    assert verifier.claims(access, now=time.time() + 10 * 24 * 3600) is None  # expires
    tampered = access[:-2] + ("AA" if not access.endswith("AA") else "BB")
    assert verifier.claims(tampered) is None
