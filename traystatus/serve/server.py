"""``traystatus serve``: one state source, the endpoints of app.py, a clean stop on SIGTERM.

Start-up checks (each a one-line refusal, exit 2): the listen address parses; ``--no-auth``
only on a loopback address (every address the host name resolves to is loopback);
without it, a token file and/or a JWT secret file that can be read; TLS certificate and
key together. Then the source runs (the core's monitor: one database connection,
reconnecting on its own) and the site listens; what goes wrong with the database in the
first seconds (a failing login, a missing grant) is a WARNING on stderr, so a service
manager's log shows it. SIGTERM or SIGINT: close frames (1001) to every WebSocket
client, the source closes its connection, exit 0. SIGHUP: the token file is read again
and every open socket's credential checked at once.

Misuse: a request head must be complete within ``header_timeout`` seconds (and an idle
keep-alive connection is closed after as long); connections without a valid credential
yet are limited per address and in all (guard.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from traystatus.core.model.state import Problem
from traystatus.serve.app import AppOptions, close_all, make_app, reload_credentials
from traystatus.serve.auth import (
    AuthConfigError,
    Authenticator,
    JwtVerifier,
    TokenFile,
    own_origins,
)
from traystatus.serve.credentials import CredentialChecker
from traystatus.serve.guard import ConnectionGuard, GuardedAppRunner
from traystatus.serve.hub import Hub, HubOptions, Source

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765


class ServeConfigError(ValueError):
    """The options cannot work together; the message says what to change."""


class RunnableSource(Source, Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token_file: str | None = None
    jwt_secret_file: str | None = None
    no_auth: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_origins: list[str] = field(default_factory=list)
    max_clients: int = 10_000
    heartbeat: float = 30.0
    send_timeout: float = 10.0
    recheck: float = 5.0  # open sockets' credentials checked again every N s
    header_timeout: float = 10.0  # a request head within N s; idle keep-alive as long
    max_unauthenticated: int = 1024  # connections without a valid credential yet, in all
    max_unauthenticated_per_address: int = 64
    # The database for StatBus's own checks of JWTs (revoked API keys, deleted users):
    # the same one the source watches. None: JWTs are checked without the database.
    credential_conninfo: str | None = None
    startup_grace: float = 10.0  # how long to wait for the database before warning

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``, ``:PORT`` (all interfaces) or ``HOST``."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ServeConfigError(f"--listen {text!r}: write an IPv6 address as [::1]:8765")
        port_text = rest[1:] if rest else str(DEFAULT_PORT)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ServeConfigError(f"--listen {text!r}: write an IPv6 address as [::1]:8765")
    else:
        host, port_text = text, str(DEFAULT_PORT)
    try:
        port = int(port_text)
    except ValueError:
        raise ServeConfigError(f"--listen {text!r}: the port must be a number") from None
    if not 0 <= port <= 65535:
        raise ServeConfigError(f"--listen {text!r}: the port must be 0..65535")
    return host or "0.0.0.0", port


def is_loopback(host: str) -> bool:
    """True when every address ``host`` means is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


def build_auth(config: ServeConfig) -> Authenticator:
    if config.no_auth:
        if config.token_file or config.jwt_secret_file:
            raise ServeConfigError("--no-auth cannot be combined with --token-file or "
                                   "--jwt-secret-file")
        if not is_loopback(config.host):
            raise ServeConfigError(
                f"--no-auth is refused on {config.host}: it is allowed only on a loopback "
                "address (127.0.0.1, ::1); elsewhere give --token-file or --jwt-secret-file"
            )
        return Authenticator(no_auth=True)
    try:
        tokens = TokenFile(config.token_file) if config.token_file else None
        jwt = JwtVerifier(config.jwt_secret_file) if config.jwt_secret_file else None
        return Authenticator(tokens, jwt)
    except AuthConfigError as ex:
        raise ServeConfigError(str(ex)) from None


def build_ssl(config: ServeConfig) -> ssl.SSLContext | None:
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise ServeConfigError("give --tls-cert and --tls-key together")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as ex:
        raise ServeConfigError(
            f"cannot use --tls-cert {config.tls_cert} / --tls-key {config.tls_key}: {ex}"
        ) from None
    return ctx


@dataclass(frozen=True)
class Running:
    """A started server, handed to ``serve(ready=...)``."""

    url: str
    hub: Hub
    app: web.Application | None = None  # for benchmarks: app.recheck_sockets(app)


async def serve(
    config: ServeConfig,
    source: RunnableSource,
    *,
    ready: Callable[[Running], None] | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set). Returns the exit code."""
    raise_fd_limit(config.max_clients)
    auth = build_auth(config)
    ssl_ctx = build_ssl(config)
    hub = Hub(source, HubOptions(max_clients=config.max_clients,
                                 send_timeout=config.send_timeout))
    checker = (
        CredentialChecker(config.credential_conninfo, ttl=config.recheck)
        if auth.jwt is not None and config.credential_conninfo else None
    )
    guard = ConnectionGuard(config.max_unauthenticated_per_address,
                            config.max_unauthenticated)
    options = AppOptions(allow_origins=config.allow_origins, heartbeat=config.heartbeat,
                         recheck=config.recheck)
    app = make_app(hub, auth, options, checker=checker, guard=guard)
    server_log = logging.getLogger("aiohttp.server")
    if _QUIET not in server_log.filters:
        server_log.addFilter(_QUIET)
    # keepalive_timeout bounds the time to a complete request head, on a new connection
    # and between requests alike (aiohttp closes a connection still waiting for one).
    runner = GuardedAppRunner(app, guard=guard, access_log=None, handle_signals=False,
                              shutdown_timeout=5.0, keepalive_timeout=config.header_timeout)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_ctx, backlog=2048,
                       reuse_address=True)
    try:
        await site.start()
    except OSError as ex:
        await runner.cleanup()
        raise ServeConfigError(
            f"cannot listen on {config.host}:{config.port}: {ex.strerror or ex}"
        ) from None
    port = _bound_port(site, config)
    options.own_origins = _own_origins(config, port)
    source_task = asyncio.create_task(source.run(), name="traystatus-serve-source")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if handle_signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, reload_credentials, app)
    url = _bound_url(site, config)
    log.info("listening on %s", url)
    if ready is not None:
        ready(Running(url, hub, app))
    startup = asyncio.create_task(_warn_at_start(source, checker, config.startup_grace),
                                  name="traystatus-serve-startup-check")
    try:
        await stop.wait()
    finally:
        startup.cancel()
        log.info("stopping: closing clients")
        await close_all(app)
        source.stop()
        await runner.cleanup()
        try:
            await asyncio.wait_for(source_task, 10.0)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("the state source did not stop within 10 s")
        if checker is not None:
            await checker.close()
        for sig in (*signals, *((signal.SIGHUP,) if handle_signals else ())):
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                loop.remove_signal_handler(sig)
    return 0


def raise_fd_limit(clients: int) -> int:
    """Every client is a file descriptor: raise the soft RLIMIT_NOFILE to the hard one
    (systemd's LimitNOFILE; a shell's ``ulimit -Hn``), and warn when even that is below
    ``clients`` and a margin. Returns the soft limit now."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, clients + 1024)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    except (OSError, ValueError) as ex:
        log.warning("cannot raise the open-file limit: %s", ex)
        return -1
    if soft != resource.RLIM_INFINITY and soft < clients + 64:
        log.warning("the open-file limit is %d: fewer than --max-clients %d need (one file "
                    "a client); raise it (systemd: LimitNOFILE=; a shell: ulimit -n)",
                    soft, clients)
    return int(soft)


# What a first status can say that waiting will not fix: worth a WARNING at start.
_START_PROBLEMS = {Problem.AUTH_FAILED, Problem.PERMISSION, Problem.SQL_MISSING,
                   Problem.SQL_OUTDATED, Problem.SQL_NEWER, Problem.NO_PASSWORD,
                   Problem.CONFIG, Problem.TLS, Problem.UNREACHABLE}


async def _warn_at_start(source: Source, checker: CredentialChecker | None,
                         grace: float) -> None:
    """A failing login or a missing grant, said on stderr at start (not only with -v):
    a service manager's log should not show a healthy start of a server that serves
    nothing."""
    deadline = asyncio.get_running_loop().time() + grace
    while asyncio.get_running_loop().time() < deadline:
        status = source.status
        if status.is_known or status.problem in _START_PROBLEMS:
            break
        await asyncio.sleep(0.1)
    status = source.status
    if not status.is_known:
        why = status.message or f"the state is still {status.state.value}"
        problem = status.problem.value if status.problem else status.state.value
        log.warning("the database is not usable yet (%s): %s; clients get stable: null "
                    "until it is", problem, why)
    if checker is not None:
        problem_text = await checker.probe()
        if problem_text:
            log.warning("%s", problem_text)


class _QuietBadRequests(logging.Filter):
    """aiohttp logs a malformed request (a header over 8 KiB, garbage instead of HTTP) at
    ERROR with a traceback and the start of the offending line, which may be a token.
    Such requests are the client's problem: one INFO line, nothing of their content."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and getattr(exc, "code", 500) < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "bad request refused (%s %s)", (
                getattr(exc, "code", 400), type(exc).__name__,
            )
            record.exc_info = None
            record.exc_text = None
            return logging.getLogger("aiohttp.server").isEnabledFor(logging.INFO)
        return True


_QUIET = _QuietBadRequests()


def _bound_port(site: web.TCPSite, config: ServeConfig) -> int:
    server: Any = site._server  # the asyncio Server: the real port when 0 was asked for
    port = config.port
    with contextlib.suppress(AttributeError, IndexError, TypeError):
        port = int(server.sockets[0].getsockname()[1])
    return port


def _own_origins(config: ServeConfig, port: int) -> list[str]:
    """Origins of the pages this server serves itself: its listen address (and the other
    loopback spellings on loopback); on every interface, this machine's name."""
    host = config.host
    if host in ("0.0.0.0", "::", ""):
        return own_origins(config.scheme, socket.gethostname(), port) + own_origins(
            config.scheme, "127.0.0.1", port)
    return own_origins(config.scheme, host, port)


def _bound_url(site: web.TCPSite, config: ServeConfig) -> str:
    port = _bound_port(site, config)
    host = config.host
    if ":" in host:
        host = f"[{host}]"
    if host in ("0.0.0.0", "[::]"):
        host = socket.gethostname()
    return f"{config.scheme}://{host}:{port}"


def announce(running: Running) -> None:
    """The one line a person (or a test) reads to find the server."""
    print(f"traystatus serve: listening on {running.url}", file=sys.stderr, flush=True)
