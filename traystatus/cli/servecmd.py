"""``traystatus serve``: the command-line front end of traystatus.serve (imported lazily:
other commands never load aiohttp). Bad options are one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import asyncio
import logging

from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.cli.target import resolve_conninfo, resolve_target

log = logging.getLogger(__name__)

# As the tray clamps its settings (core/config/profiles.py SECONDS_MIN / SECONDS_MAX): a health
# read every 1e-9 s would keep a core busy, one every year would never notice anything.
HEALTH_INTERVAL_RANGE = (1.0, 3600.0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:8765; [::1]:8765 for IPv6; "
                   "port 0 picks a free one)")
    p.add_argument("--token-file", metavar="FILE",
                   help="shared tokens, one per line (at least 16 characters each); clients "
                   "send one as `Authorization: Bearer ...` or ?token=...")
    p.add_argument("--jwt-secret-file", metavar="FILE",
                   help="StatBus's JWT secret: accept StatBus's own access tokens (HS256, "
                   "expiry checked), also from its `statbus` cookie")
    p.add_argument("--no-auth", action="store_true",
                   help="no tokens at all; refused unless --listen is a loopback address")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS/WSS with this certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin (https://statbus.example.org) whose pages may open the "
                   "WebSockets, besides the server's own; repeatable; * allows any")
    p.add_argument("--max-clients", type=_positive_int, default=10_000, metavar="N",
                   help="WebSocket clients at most; more are refused with 503 (default 10000)")
    p.add_argument("--health-interval", type=_positive_float, default=15.0, metavar="S",
                   help="read the state at least every S seconds; a database that stops "
                   "answering is reported to clients (stable: null) within S + 5 s "
                   "(default 15)")
    p.add_argument("--heartbeat", type=_positive_float, default=30.0, metavar="S",
                   help="ping every client every S seconds; no pong within S/2 closes it "
                   "(default 30)")
    p.add_argument("--recheck-interval", type=_positive_float, default=5.0, metavar="S",
                   help="check every open socket's credential again every S seconds "
                   "(token file, expiry, revoked StatBus API keys, deleted users); one "
                   "that no longer holds is closed with code 4401 (default 5)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {text!r}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    from traystatus.core.source import SourceError, is_relay, open_source
    from traystatus.core.watch.options import MonitorOptions
    from traystatus.serve.server import (
        ServeConfig,
        ServeConfigError,
        announce,
        build_auth,
        build_ssl,
        parse_listen,
        serve,
    )

    low, high = HEALTH_INTERVAL_RANGE
    health_interval = min(max(args.health_interval, low), high)
    if health_interval != args.health_interval:
        log.warning("--health-interval %g is out of range; using %g (%g to %g s)",
                    args.health_interval, health_interval, low, high)
    try:
        host, port = parse_listen(args.listen)
        config = ServeConfig(
            host=host,
            port=port,
            token_file=args.token_file,
            jwt_secret_file=args.jwt_secret_file,
            no_auth=args.no_auth,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            allow_origins=list(args.allow_origin),
            max_clients=args.max_clients,
            heartbeat=args.heartbeat,
            recheck=min(max(args.recheck_interval, 0.5), 3600.0),
        )
        # Checked before the database is asked for a password: a refusal comes at once.
        build_auth(config)
        build_ssl(config)
    except ServeConfigError as ex:
        raise CliError(str(ex), ExitCode.USAGE) from None
    conninfo = resolve_conninfo(resolve_target(args.dsn, args.profile))
    if not is_relay(conninfo):
        config.credential_conninfo = conninfo  # StatBus's own checks of its JWTs
    try:
        source = open_source(conninfo, MonitorOptions(health_interval=health_interval))
    except SourceError as ex:
        raise CliError(str(ex), ExitCode.USAGE) from None
    try:
        return asyncio.run(serve(config, source, ready=announce))
    except ServeConfigError as ex:
        raise CliError(str(ex), ExitCode.UNUSABLE) from None
