"""The demo's tray child: the real ``traystatus`` tray app, pointed at the demo database.

``traystatus demo`` starts this module as its own process with the analyst's conninfo in
the environment variable TRAYSTATUS_DEMO_DSN. The password goes to libpq through
PGPASSWORD (never on a command line, where ``ps`` shows it) and the rest becomes
``traystatus --dsn ...``: from there on it is exactly what a user runs against a real
StatBus.
"""

from __future__ import annotations

import os
import sys

from psycopg.conninfo import conninfo_to_dict, make_conninfo

DSN_ENV = "TRAYSTATUS_DEMO_DSN"


def tray_argv(dsn: str, verbose: int = 0) -> tuple[list[str], str | None]:
    """``traystatus`` arguments for ``dsn`` and the password taken out of it."""
    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    argv = ["--dsn", make_conninfo(**params)] + ["-v"] * verbose  # type: ignore[arg-type]
    return argv, str(password) if password is not None else None


def main() -> int:
    dsn = os.environ.pop(DSN_ENV, "")
    if not dsn:
        print(f"traystatus.demo.tray: {DSN_ENV} is not set; start `traystatus demo` instead",
              file=sys.stderr)
        return 2
    argv, password = tray_argv(dsn, int(os.environ.pop("TRAYSTATUS_DEMO_VERBOSE", "0") or 0))
    if password is not None:
        os.environ["PGPASSWORD"] = password
    from traystatus.cli.main import main as traystatus_main

    return int(traystatus_main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
