"""``traystatus``: parse the command line and run one sub-command.

Without a sub-command the tray app starts (imported lazily, so the scriptable commands
never load Qt). Every sub-command takes --dsn, --profile and -v as well, after its name.

Exit codes are :class:`traystatus.cli.exitcodes.ExitCode`; environment problems become a
one-paragraph message on stderr and exit 3, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from traystatus import __version__
from traystatus.cli.exitcodes import CliError, ExitCode
from traystatus.core.config.logsetup import setup_stderr_logging
from traystatus.core.config.tlsenv import use_system_ca_bundle

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]

EPILOG = """\
exit codes: 0 stable (or done), 1 processing (wait: timed out), 2 usage error,
3 database not reachable or not usable (doctor: a check failed).

examples:
  traystatus status --json
  traystatus wait --timeout 3600 && run-report
  traystatus watch --json          # one JSON line per change, for Waybar/Polybar
  traystatus profile add prod --host statbus.example.org --port 3015 \\
      --dbname statbus --user me@example.org --sslmode verify-full --sslnegotiation direct
"""


def _connection_options(
    parser: argparse.ArgumentParser, *, top: bool, many_profiles: bool = False
) -> None:
    """--dsn/--profile/-v on the top parser and again on every sub-command.

    On sub-commands the defaults are SUPPRESS, so ``traystatus -v status`` is not undone by
    the sub-parser's own default (an argparse pitfall).
    """
    dflt: object = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--dsn",
        default=dflt,
        help="libpq conninfo or URL; overrides the profile's keywords (no password on the "
        "command line: it shows in `ps`; use the keychain, PGPASSWORD or ~/.pgpass)",
    )
    if many_profiles:
        parser.add_argument(
            "--profile", "-p", action="append", default=dflt,
            help="connection profile name (default: the default one); give it again to "
            "wait until every one of those deployments is stable",
        )
    else:
        parser.add_argument(
            "--profile", "-p", default=dflt,
            help="connection profile name (default: the default one)",
        )
    parser.add_argument(
        "--source",
        choices=("installed", "builtin", "auto"),
        default=dflt,
        help="how to read the database: traystatus's installed SQL, StatBus's own channels "
        "(builtin), or auto (default: the profile's setting, else auto: installed when present "
        "and current, else builtin)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="more logging on stderr (-v info, -vv debug)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traystatus",
        description="Is the StatBus register stable, or processing data? Without a command, "
        "starts the tray icon.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"traystatus {__version__}")
    _connection_options(parser, top=True)
    parser.add_argument(
        "--replace", action="store_true", help="tray app: take over from a running instance"
    )
    parser.set_defaults(handler=None)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(
        name: str, handler_path: str, help_text: str, many_profiles: bool = False
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _connection_options(p, top=False, many_profiles=many_profiles)
        p.set_defaults(handler=handler_path)
        return p

    p = command(
        "status", "watching:cmd_status",
        "print the state once (exit 0 stable, 1 processing, 3 unusable)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--details", action="store_true", help="also import jobs and analytics tasks")
    p.add_argument("--all", action="store_true",
                   help="every stored profile: one line each (--json: an array), exit code "
                   "the worst of them")
    p.add_argument("--timeout", type=_seconds, default=30.0, metavar="S",
                   help="seconds to wait, once connected, for the answer (and --details) "
                   "(default 30); connecting has its own limit, connect_timeout (10 s)")
    _relay_options(p)

    p = command(
        "wait", "watching:cmd_wait",
        "block until the system is stable (exit 0) or the timeout passes (exit 1); a job "
        "waiting for review holds StatBus's import queue and counts as stable (nothing runs "
        "until a person acts): --until-reviewed waits for the review too; several "
        "--profile: until all of them are stable",
        many_profiles=True,
    )
    p.add_argument("--timeout", type=_seconds, default=None, metavar="S",
                   help="seconds to wait after the first answer (default: no limit); "
                   "0: exit 0 if stable now, else 1. Connecting has its own limit, "
                   "connect_timeout (10 s)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing while waiting")
    p.add_argument("--until-reviewed", action="store_true",
                   help="also wait until no import job waits for review (by default a review "
                   "that holds StatBus's import queue counts as stable: nothing runs until "
                   "a person acts)")
    _relay_options(p)

    p = command(
        "watch", "watching:cmd_watch",
        "print one line per state change until interrupted",
    )
    p.add_argument("--json", action="store_true",
                   help="JSON lines: state, since, reason (+ text, class, tooltip for Waybar)")
    _relay_options(p)

    p = command(
        "serve", "servecmd:cmd_serve",
        "serve the state to many clients over WebSocket and HTTP, from one database "
        "connection (docs/serve.md)",
    )
    from traystatus.cli.servecmd import add_arguments as serve_arguments

    serve_arguments(p)

    p = command(
        "install-sql", "sqlcmd:cmd_install",
        "install or upgrade the traystatus SQL (as a StatBus administrator)",
    )
    p.add_argument("--json", action="store_true", help="print versions before/after as JSON")
    p.add_argument("--check", action="store_true",
                   help="run the whole install in a transaction and roll it back: say "
                   "'would install version N', or each problem and what to do")
    p.add_argument("--print", dest="print_sql", action="store_true",
                   help="write the exact SQL to stdout (review it, run it with psql)")
    _lock_timeout_option(p)
    p = command(
        "uninstall-sql", "sqlcmd:cmd_uninstall",
        "remove the traystatus SQL (StatBus's own objects stay)",
    )
    p.add_argument("--json", action="store_true", help="print versions before/after as JSON")
    _lock_timeout_option(p)

    p = command(
        "doctor", "doctor:cmd_doctor",
        "check everything and say what to fix, one line each",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per check, in a list")

    p = command("profile", "profilecmd:cmd_profile_help", "manage connection profiles")
    psub = p.add_subparsers(title="profile commands", metavar="ACTION")
    pa = psub.add_parser("add", help="add a profile (password goes to the keychain); a taken "
                         "name is refused unless --replace")
    _connection_options(pa, top=False)
    pa.set_defaults(handler="profilecmd:cmd_add")
    pa.add_argument("name")
    for key in ("host", "port", "dbname", "user", "sslmode", "sslrootcert", "sslnegotiation",
                "sslsni"):
        pa.add_argument(f"--{key}", default=None)
    pa.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                    help="any other libpq keyword (service, connect_timeout, ...); repeatable")
    pa.add_argument("--relay", metavar="URL", default=None,
                    help="a traystatus server (ws://HOST:8765, wss://..., https://...) instead "
                    "of a database; its token goes to the keychain like a password "
                    "(--password-stdin)")
    pa.add_argument("--default", action="store_true", help="make it the default profile")
    pa.add_argument("--replace", action="store_true",
                    help="replace the profile of that name if there is one (its settings and, "
                    "when a password is given, its keychain entry)")
    pw = pa.add_mutually_exclusive_group()
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of stdin")
    pw.add_argument("--no-password", action="store_true",
                    help="store no password (libpq's PGPASSWORD/~/.pgpass, or none needed)")
    pw.add_argument("--ask-password", action="store_true",
                    help="ask for the password each session (tray: once per start; CLI: on "
                    "the terminal) and keep it in memory only: never stored")
    pl = psub.add_parser("list", help="list profiles")
    _connection_options(pl, top=False)
    pl.set_defaults(handler="profilecmd:cmd_list")
    pl.add_argument("--json", action="store_true")
    pr = psub.add_parser("remove", help="remove a profile and its keychain entry")
    _connection_options(pr, top=False)
    pr.set_defaults(handler="profilecmd:cmd_remove")
    pr.add_argument("name")
    pn = psub.add_parser("rename", help="rename a profile (its keychain entry moves along); "
                         "a taken name is refused")
    _connection_options(pn, top=False)
    pn.set_defaults(handler="profilecmd:cmd_rename")
    pn.add_argument("old")
    pn.add_argument("new")
    pd = psub.add_parser("set-default", help="make a profile the default")
    _connection_options(pd, top=False)
    pd.set_defaults(handler="profilecmd:cmd_set_default")
    pd.add_argument("name")

    p = command(
        "demo", "main:cmd_demo",
        "run a simulated StatBus on an embedded PostgreSQL and watch it",
    )
    p.add_argument("--speed", type=float, default=None, help="simulation speed factor")
    p.add_argument(
        "--no-tray", action="store_true",
        help="no tray app: run only the database and the simulator, and print the "
        "connection string to watch it with (traystatus --dsn ..., status, watch); "
        "-v also prints every simulated step",
    )
    p.add_argument("--datadir", default=None, help="keep the embedded database in this folder")
    return parser


def _relay_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--relay", metavar="URL",
                   help="ask a `traystatus serve` server (ws://HOST:8765, wss://..., or "
                   "https://...) instead of the database; same output and exit codes")
    p.add_argument("--token-file", metavar="FILE",
                   help="with --relay: the server's token (first line of FILE)")


def _lock_timeout_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lock-timeout", type=_seconds, default=None, metavar="S",
                   help="wait at most S seconds for each of StatBus's table locks, then "
                   "give up with nothing changed (default 10; 0 waits as long as it takes)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be a finite number >= 0, not {text!r}")
    return value


def cmd_demo(args: argparse.Namespace) -> int:
    """Delegate to the demo's entry point, imported only when asked for."""
    from traystatus.demo import cli as demo_cli  # lazy: pulls in the embedded server

    return int(demo_cli.main(args) or 0)


def run_tray(args: argparse.Namespace) -> int:
    """No sub-command: the tray app; Qt is imported only here."""
    import importlib

    app_main = importlib.import_module("traystatus.app.main")
    return int(app_main.run_app(args) or 0)


def _resolve(handler: str) -> Handler:
    module_name, func = handler.split(":")
    module = __import__(f"traystatus.cli.{module_name}", fromlist=[func])
    result: Handler = getattr(module, func)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_stderr_logging(args.verbose)
    use_system_ca_bundle()  # sslrootcert=system with psycopg-binary's own OpenSSL
    try:
        if args.handler is None:
            return run_tray(args)
        return int(_resolve(args.handler)(args))
    except CliError as ex:
        print(f"traystatus: {ex}", file=sys.stderr)
        return int(ex.code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # `traystatus watch | head -1`: the reader left; not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
