"""Secrets out of what is shown: one helper for connection strings, one for server URLs.

Every message, log line and printed command that names a connection goes through here,
so a password, an sslpassword, an OAuth secret or a server token never reaches a screen,
a log file or ``ps``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

SECRET_KEYS = frozenset({"password", "sslpassword", "oauth_client_secret"})
"""libpq keywords that hold a secret."""

SECRET_QUERY = frozenset({"token", "access_token", "password"})
"""URL query parameters that hold a secret."""

MASK = "***"


def redact_conninfo(conninfo: str) -> str:
    """``conninfo`` (keywords or a postgresql:// URI) with every secret replaced by ``***``."""
    try:
        params = conninfo_to_dict(conninfo)
    except Exception:
        return "(unparsable conninfo)"
    shown = {k: (MASK if k in SECRET_KEYS else str(v)) for k, v in params.items() if v is not None}
    return make_conninfo("", **shown)


def redact_url(url: str) -> str:
    """``url`` with a password in it (``user:pw@``) and secret query values replaced."""
    try:
        parts = urlsplit(url.strip())
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}:{MASK}@{host}"
        query = urlencode(
            [(k, MASK if k.lower() in SECRET_QUERY else v) for k, v in parse_qsl(parts.query)],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "(unparsable URL)"
