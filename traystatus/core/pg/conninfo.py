"""Connection settings checked before anything connects: one line naming the bad setting.

libpq reports a bad value (``port=99999``, ``sslmode=bogus``) only when a connection is
tried, as a connection failure, and psycopg resolves host names itself, so a URL with
``port=notaport`` fails as "Servname not supported". Both read like a network problem.
:func:`problems` checks the settings first and says which one is wrong and what it may be,
so the CLI, ``profile add``, the profiles file and the monitor all report it as a setting.

The keyword list is libpq's own (``PQconndefaults``), so a newer libpq's keywords pass.
Only the values with a fixed set of choices or a number range are checked here; anything
else (host names, file paths) is left to libpq.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from psycopg import pq

# keyword -> the values libpq accepts (libpq's fe-connect.c and the PostgreSQL manual).
CHOICES: dict[str, tuple[str, ...]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "sslnegotiation": ("postgres", "direct"),
    "sslsni": ("0", "1"),
    "sslcompression": ("0", "1"),
    "sslcertmode": ("disable", "allow", "require"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "keepalives": ("0", "1"),
    "target_session_attrs": (
        "any", "read-write", "read-only", "primary", "standby", "prefer-standby",
    ),
    "load_balance_hosts": ("disable", "random"),
    "gssdelegation": ("0", "1"),
}
# keyword -> (lowest, highest) for whole numbers.
NUMBERS: dict[str, tuple[int, int]] = {
    "port": (1, 65535),
    "connect_timeout": (0, 2_147_483),  # seconds; libpq keeps it in an int of ms-ish range
    "keepalives_idle": (0, 2_147_483),
    "keepalives_interval": (0, 2_147_483),
    "keepalives_count": (0, 2_147_483),
    "tcp_user_timeout": (0, 2_147_483_647),
}


@cache
def libpq_keywords() -> frozenset[str]:
    """Every keyword this libpq knows."""
    return frozenset(opt.keyword.decode() for opt in pq.Conninfo.get_defaults())


def _number_problem(key: str, value: str) -> str:
    low, high = NUMBERS[key]
    # port (and host) may be comma-separated lists for multi-host connections.
    parts = value.split(",") if key == "port" else [value]
    for part in parts:
        text = part.strip()
        if key == "port" and text == "" and len(parts) > 1:
            continue  # an empty entry means the default port
        try:
            number = int(text)
        except ValueError:
            return f"{key}={value!r} is not valid: it must be a whole number from {low} to {high}"
        if not low <= number <= high:
            return f"{key}={value!r} is not valid: it must be a whole number from {low} to {high}"
    return ""


def problems(params: Mapping[str, object]) -> list[str]:
    """What is wrong with these libpq keywords, one sentence each (empty: nothing found)."""
    found: list[str] = []
    known = libpq_keywords()
    for key, raw in params.items():
        if raw is None:
            continue
        if key not in known:
            found.append(f"{key!r} is not a libpq connection setting")
            continue
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            found.append(f"{key} must be text, not {type(raw).__name__} ({raw!r})")
            continue
        value = str(raw)
        if key in NUMBERS:
            why = _number_problem(key, value)
            if why:
                found.append(why)
        elif key in CHOICES and value not in CHOICES[key]:
            found.append(f"{key}={value!r} is not valid: use one of {', '.join(CHOICES[key])}")
    return found


def first_problem(params: Mapping[str, object]) -> str:
    """The first problem, or "" when the settings look valid."""
    found = problems(params)
    return found[0] if found else ""
