"""Who may talk to ``traystatus serve``: shared tokens, StatBus JWTs, origins, hosts.

Pure (files and the clock only, no network), so every rule is tested without a server.
What needs the database (has an API key been revoked, does its user still exist) is
credentials.py's; a :class:`Credential` says what it must ask.

* Shared tokens (``--token-file``): one per line, ``TOKEN [NAME]`` (the name, if any, is
  what the log shows), blank lines and ``#`` comments skipped, 16+ characters each.
  Compared in constant time: both sides hashed with SHA-256 and the digests compared with
  ``hmac.compare_digest`` against every token (no early exit). The file is read again
  when it changes (modification time, size or inode), and what it holds then is the whole
  truth: an empty, all-commented or deleted file withdraws every token, and a bad line is
  skipped (with a warning) without keeping any token of the file before.
* StatBus JWTs (``--jwt-secret-file``): the access tokens StatBus's login hands out (the
  ``statbus`` cookie) and its API keys (``"type": "api_key"`` with a ``jti``). Strict:
  canonical unpadded base64url in all three parts, a JSON object header whose ``alg`` is
  ``HS256`` (nothing else, whatever the token names), ``typ`` absent or ``JWT``, the
  signature checked in constant time, ``exp`` a finite number in the future, ``nbf`` (when
  present) in the past, ``type`` ``access`` or ``api_key`` (a refresh token, or a token
  of no known type, is refused), and an API key must carry its ``jti``.
* Origin (WebSocket handshakes from browsers): scheme, host and port must equal one of the
  server's own origins (its listen address) or an ``--allow-origin``; the request's
  ``Host`` is never taken as our origin (DNS rebinding forges it). A handshake without
  Origin is not from a browser page: the token decides.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 8192  # a StatBus JWT is ~500 bytes; anything far longer is not a token
COOKIE_NAME = "statbus"  # StatBus's access-token cookie (Path=/, HttpOnly)
JWT_TYPES = ("access", "api_key")  # StatBus's token types that open a session


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


@dataclass(frozen=True)
class Credential:
    """What an accepted request showed: enough to check it again later, never the secret.

    ``kind``: ``token`` (from the token file), ``jwt`` (a StatBus access token),
    ``api_key`` (a StatBus API key) or ``no-auth``. ``who``: for the log (the token's
    name, the JWT's email). ``digest``: a shared token's SHA-256 (to see whether the file
    still holds it). ``claims``: a JWT's. ``expires``: a JWT's ``exp`` (epoch seconds).
    """

    kind: str
    who: str
    digest: bytes = b""
    claims: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    expires: float | None = None

    @property
    def key(self) -> str:
        """One string per credential, for caching database checks."""
        if self.kind in ("jwt", "api_key"):
            return f"{self.kind}:{self.claims.get('jti') or self.claims.get('sub')}:{self.expires}"
        return f"{self.kind}:{self.digest.hex()}"

    @property
    def user_id(self) -> int | None:
        """The StatBus user (``auth.user.id``, the JWT's ``uid``) for a StatBus token."""
        uid = self.claims.get("uid")
        return uid if isinstance(uid, int) and not isinstance(uid, bool) else None

    @property
    def role(self) -> str | None:
        role = self.claims.get("role")
        return role if isinstance(role, str) else None


_TOKEN_LINE = re.compile(r"(\S+)(?:\s+(.*))?")


class TokenFile:
    """Shared tokens, one per line, re-read when the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._signature: tuple[int, int, int] | None = None
        self._tokens: tuple[tuple[bytes, str], ...] = ()
        self.generation = 0  # +1 on every change of the set of tokens
        self._load(strict=True)  # AuthConfigError at start: the server refuses to run
        _warn_if_readable_by_others(self.path)

    def __len__(self) -> int:
        return len(self._tokens)

    def _parse(self, text: str, strict: bool) -> list[tuple[bytes, str]]:
        tokens = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = _TOKEN_LINE.fullmatch(line)
            token, name = (m.group(1), (m.group(2) or "").strip()) if m else (line, "")
            if len(token) < MIN_TOKEN_CHARS or len(token) > MAX_TOKEN_CHARS:
                problem = (
                    f"{self.path} line {number}: a token must have {MIN_TOKEN_CHARS} to "
                    f"{MAX_TOKEN_CHARS} characters and no spaces (make one with "
                    "`openssl rand -hex 32`)"
                )
                if strict:
                    raise AuthConfigError(problem)
                log.warning("%s; that line is skipped", problem)
                continue
            tokens.append((_digest(token), name or f"line {number}"))
        return tokens

    def _load(self, *, strict: bool) -> None:
        try:
            st = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as ex:
            if strict:
                raise AuthConfigError(
                    f"cannot read the token file {self.path}: {ex}") from None
            log.warning("cannot read the token file %s (%s): no shared token is accepted "
                        "until it can be read", self.path, ex)
            self._set((), None)
            return
        tokens = self._parse(text, strict)
        if not tokens:
            if strict:
                raise AuthConfigError(
                    f"{self.path} holds no token: put one per line (`openssl rand -hex 32`)"
                )
            log.warning("%s holds no token now: no shared token is accepted", self.path)
        self._set(tuple(tokens), (st.st_mtime_ns, st.st_size, st.st_ino))

    def _set(self, tokens: tuple[tuple[bytes, str], ...],
             signature: tuple[int, int, int] | None) -> None:
        if tokens != self._tokens:
            self.generation += 1
        self._tokens = tokens
        self._signature = signature

    def refresh(self, force: bool = False) -> bool:
        """Read the file again if it changed (or ``force``). True when the tokens changed."""
        try:
            st = self.path.stat()
            signature: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            signature = None
        if not force and signature == self._signature and (signature or not self._tokens):
            return False
        before = self.generation
        self._load(strict=False)
        if self.generation != before:
            log.info("token file %s re-read: %d token(s)", self.path, len(self._tokens))
        return self.generation != before

    def lookup(self, token: str) -> str | None:
        """The token's name when the file holds it, else None (constant time)."""
        self.refresh()
        candidate = _digest(token)
        found: str | None = None
        for digest, name in self._tokens:
            if hmac.compare_digest(candidate, digest):
                found = name
        return found

    def holds(self, digest: bytes) -> bool:
        """Does the file (as last read) still hold the token with this digest?"""
        return any(hmac.compare_digest(digest, d) for d, _ in self._tokens)

    def accepts(self, token: str) -> bool:
        return self.lookup(token) is not None


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64url(part: str) -> bytes:
    """Strict, canonical, unpadded base64url (RFC 7515 section 2): one encoding per value,
    so a token cannot be altered (``==``, ``!!``, other trailing bits) and still pass."""
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != part:
        raise ValueError("not canonical base64url")
    return data


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _json_object(data: bytes) -> dict[str, object] | None:
    value = json.loads(data, parse_constant=_no_constants)
    return value if isinstance(value, dict) else None


def _epoch(value: object) -> float | None:
    """A finite number of seconds, or None (bools, strings, NaN, infinities, huge ints)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


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
            header = _json_object(_b64url(head_b64))
            signature = _b64url(sig_b64)
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            return None
        if header is None or header.get("alg") != "HS256":
            return None
        if header.get("typ", "JWT") != "JWT" or "crit" in header:
            return None
        expected = hmac.new(
            self._secret, f"{head_b64}.{body_b64}".encode("ascii"), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            body = _json_object(_b64url(body_b64))
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            return None
        if body is None:
            return None
        now = time.time() if now is None else now
        exp = _epoch(body.get("exp"))
        if exp is None or exp + self.leeway <= now:
            return None
        if "nbf" in body:
            nbf = _epoch(body["nbf"])
            if nbf is None or nbf - self.leeway > now:
                return None
        kind = body.get("type")
        if kind not in JWT_TYPES:
            return None  # a refresh token, or not one of StatBus's
        if kind == "api_key" and not (isinstance(body.get("jti"), str) and body["jti"]):
            return None  # StatBus refuses an API key without its jti too
        return body


@dataclass(frozen=True)
class Verdict:
    ok: bool
    credential: Credential | None = None
    reason: str = ""  # for the refusal: what is wrong, what to do

    @property
    def who(self) -> str:
        return self.credential.who if self.credential else ""


NO_TOKEN = ("no token: send `Authorization: Bearer <token>` or add ?token=<token> to the "
            "address")
BAD_TOKEN = "the token is not valid (wrong, expired or revoked)"


class Authenticator:
    """The server's one place that says yes or no to a request's token (without the
    database: credentials.py then asks it about API keys and users)."""

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
            return Verdict(True, Credential("no-auth", "no-auth"))
        seen = False
        for token in candidates:
            if not token:
                continue
            seen = True
            if len(token) > MAX_TOKEN_CHARS:
                continue
            if self.tokens is not None:
                name = self.tokens.lookup(token)
                if name is not None:
                    return Verdict(True, Credential("token", f"token:{name}", _digest(token)))
            if self.jwt is not None:
                claims = self.jwt.claims(token)
                if claims is not None:
                    kind = "api_key" if claims.get("type") == "api_key" else "jwt"
                    email = claims.get("email") or claims.get("role") or claims.get("sub")
                    who = f"{kind}:{email}"
                    if kind == "api_key":
                        who += f" (key {claims.get('jti')})"
                    return Verdict(True, Credential(kind, who, claims=claims,
                                                    expires=_epoch(claims.get("exp"))))
        return Verdict(False, reason=BAD_TOKEN if seen else NO_TOKEN)

    def still_valid(self, credential: Credential, now: float | None = None) -> str | None:
        """None while ``credential`` holds without the database; else why it no longer
        does (the close reason: short, nothing of the secret)."""
        if credential.kind == "token":
            if self.tokens is None or not self.tokens.holds(credential.digest):
                return "token withdrawn"
        elif credential.kind in ("jwt", "api_key"):
            now = time.time() if now is None else now
            leeway = self.jwt.leeway if self.jwt else 0.0
            if credential.expires is None or credential.expires + leeway <= now:
                return "token expired"
        return None


def origin_allowed(origin: str | None, own: Iterable[str], allowed: Iterable[str]) -> bool:
    """May a browser page from ``origin`` open a WebSocket here? ``own``: the server's own
    origins (from its listen address, never from a request's Host)."""
    if origin is None:
        return True  # not a browser page; the token decides
    allowed = list(allowed)
    if "*" in allowed:
        return True
    origin_norm = normalize_origin(origin)
    if origin_norm is None:
        return False  # "null" (sandboxed frames, file://) or garbage
    return origin_norm in {normalize_origin(a) for a in [*own, *allowed]}


_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, default port dropped; None if not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def own_origins(scheme: str, host: str, port: int) -> list[str]:
    """The origins of pages this server itself serves on ``host:port``; on a loopback
    address also ``localhost`` and the other loopback spellings."""
    names = [host]
    if host_is_loopback(host):
        names += ["localhost", "127.0.0.1", "[::1]"]
    out = []
    for name in names:
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        out.append(f"{scheme}://{name}:{port}")
    return out


def host_is_loopback(host: str) -> bool:
    """A ``Host`` value (``name[:port]``) naming this machine's loopback: ``localhost``
    or a loopback address. Any other name may be DNS rebinding to 127.0.0.1."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        name = host.partition(":")[0]
    else:
        name = host
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
