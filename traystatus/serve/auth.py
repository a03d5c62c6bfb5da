"""Who may talk to ``traystatus serve``: shared tokens, StatBus access tokens, origins.

Pure (files and the clock only, no network), so every rule is tested without a server.

* Shared tokens (``--token-file``): one per line, blank lines and ``#`` comments skipped,
  at least 16 characters each. Compared in constant time: both sides are hashed with
  SHA-256 and the digests compared with ``hmac.compare_digest``, against every token in
  the file (no early exit, so timing tells neither which token nor how much matched).
  The file is read again when its modification time changes, so tokens can be rotated
  without a restart.
* StatBus access tokens (``--jwt-secret-file``): the JWTs StatBus's login hands out (the
  ``statbus`` cookie; PostgREST's secret). Only HS256 is accepted (never ``none`` or an
  asymmetric algorithm named by the token), the signature is checked in constant time,
  ``exp`` is required and must lie in the future, ``nbf`` (when present) in the past, and
  a token whose ``type`` claim is ``refresh`` is refused (it is not an access token).
* Origin (WebSocket handshakes from browsers): allowed when it is the server's own
  origin (the request's Host), or in the ``--allow-origin`` list, or the list holds
  ``*``. A handshake without Origin is not from a browser page and is let through:
  the token is what protects it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 8192  # a StatBus JWT is ~500 bytes; anything far longer is not a token
COOKIE_NAME = "statbus"  # StatBus's access-token cookie (Path=/, HttpOnly)


class AuthConfigError(ValueError):
    """A token or secret file is unusable; the message says what to fix."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s is readable by other users; chmod 600 it", path)


class TokenFile:
    """Shared tokens, one per line, re-read when the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._mtime: int | None = None
        self._digests: tuple[bytes, ...] = ()
        self._load()  # AuthConfigError at start: the server refuses to run
        _warn_if_readable_by_others(self.path)

    def _load(self) -> None:
        try:
            st = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as ex:
            raise AuthConfigError(f"cannot read the token file {self.path}: {ex}") from None
        digests = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if len(line) < MIN_TOKEN_CHARS or len(line) > MAX_TOKEN_CHARS:
                raise AuthConfigError(
                    f"{self.path} line {number}: a token must have {MIN_TOKEN_CHARS} to "
                    f"{MAX_TOKEN_CHARS} characters (make one with `openssl rand -hex 32`)"
                )
            digests.append(_digest(line))
        if not digests:
            raise AuthConfigError(
                f"{self.path} holds no token: put one per line (`openssl rand -hex 32`)"
            )
        self._digests = tuple(digests)
        self._mtime = st.st_mtime_ns

    def _refresh(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return  # keep the tokens we have; a missing file is logged once it reappears
        if mtime != self._mtime:
            try:
                self._load()
                log.info("token file %s re-read: %d token(s)", self.path, len(self._digests))
            except AuthConfigError as ex:
                self._mtime = mtime  # do not retry (and log) on every request
                log.warning("%s; keeping the tokens read before", ex)

    def accepts(self, token: str) -> bool:
        self._refresh()
        candidate = _digest(token)
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(candidate, digest)
        return found


def _b64url(part: str) -> bytes:
    padded = part + "=" * (-len(part) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


class JwtVerifier:
    """HS256 JWTs signed with StatBus's JWT secret (the one PostgREST verifies with)."""

    def __init__(self, path: str | os.PathLike[str], leeway: float = 0.0) -> None:
        self.path = Path(path)
        try:
            secret = self.path.read_bytes().strip()
        except OSError as ex:
            raise AuthConfigError(f"cannot read the JWT secret file {self.path}: {ex}") from None
        if len(secret) < 32:
            raise AuthConfigError(
                f"{self.path}: the JWT secret is shorter than 32 bytes; use StatBus's own "
                "(its .env JWT_SECRET, or auth.secrets key jwt_secret)"
            )
        self._secret = secret
        self.leeway = leeway
        _warn_if_readable_by_others(self.path)

    def claims(self, token: str, now: float | None = None) -> dict[str, object] | None:
        """The token's claims when it is valid now, else None (never raises)."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            return None
        head_b64, body_b64, sig_b64 = token.split(".")
        try:
            header = json.loads(_b64url(head_b64))
            signature = _b64url(sig_b64)
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            return None
        expected = hmac.new(
            self._secret, f"{head_b64}.{body_b64}".encode("ascii", "replace"), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            body = json.loads(_b64url(body_b64))
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            return None
        if not isinstance(body, dict):
            return None
        now = time.time() if now is None else now
        exp = body.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float) or exp + self.leeway <= now:
            return None
        nbf = body.get("nbf")
        if nbf is not None and (
            isinstance(nbf, bool) or not isinstance(nbf, int | float) or nbf - self.leeway > now
        ):
            return None
        if body.get("type") == "refresh":
            return None
        return body


@dataclass(frozen=True)
class Verdict:
    ok: bool
    who: str = ""  # for the log: "token", "jwt:<email>", "no-auth"
    reason: str = ""  # for the refusal: what is wrong, what to do


class Authenticator:
    """The server's one place that says yes or no to a request's token."""

    def __init__(
        self,
        tokens: TokenFile | None = None,
        jwt: JwtVerifier | None = None,
        *,
        no_auth: bool = False,
    ) -> None:
        if not (tokens or jwt or no_auth):
            raise AuthConfigError(
                "no way to authenticate clients: give --token-file and/or --jwt-secret-file "
                "(or --no-auth, on a loopback address only)"
            )
        self.tokens = tokens
        self.jwt = jwt
        self.no_auth = no_auth

    def check(self, candidates: Iterable[str]) -> Verdict:
        if self.no_auth:
            return Verdict(True, "no-auth")
        seen = False
        for token in candidates:
            if not token:
                continue
            seen = True
            if len(token) > MAX_TOKEN_CHARS:
                continue
            if self.tokens is not None and self.tokens.accepts(token):
                return Verdict(True, "token")
            if self.jwt is not None:
                claims = self.jwt.claims(token)
                if claims is not None:
                    email = claims.get("email") or claims.get("role") or claims.get("sub")
                    return Verdict(True, f"jwt:{email}")
        if not seen:
            return Verdict(
                False,
                reason="no token: send `Authorization: Bearer <token>` or add ?token=<token> "
                "to the address",
            )
        return Verdict(False, reason="the token is not valid (wrong, expired or revoked)")


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """May a browser page from ``origin`` open a WebSocket to the server at ``host``?"""
    if origin is None:
        return True  # not a browser page; the token decides
    allowed = list(allowed)
    if "*" in allowed:
        return True
    origin_norm = normalize_origin(origin)
    if origin_norm is None:
        return False  # "null" (sandboxed frames, file://) or garbage
    if origin_norm in {normalize_origin(a) for a in allowed}:
        return True
    if host:
        netloc = urlsplit(origin_norm).netloc
        return netloc.lower() == _with_default_port(host.lower(), urlsplit(origin_norm).scheme)
    return False


_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _with_default_port(host: str, scheme: str) -> str:
    """Host header without the scheme's default port, as the normalized origin has it."""
    port = _DEFAULT_PORTS.get(scheme)
    if port and host.endswith(f":{port}"):
        return host[: -len(port) - 1]
    return host


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, default port dropped; None if not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"
