"""JSON into our types: the one set of coercers for what a database and a relay send. Pure.

A check takes a value and where it is ("review.waiting[0].id") and returns the value in
our types, or raises ``BadValue``: one printable line, "where: what is wrong". The
database's JSON (details, work summary, progress) and a relay's messages
(core/relay/_messages.py's tables) are read through these same checks; they differ only
where the sources honestly differ, and say so with ``loose``:

* a relay's message is a hint from the network: a whole number is a JSON integer in
  range, a number is finite and in range, a text is made printable and capped
  (core/words/safetext.py), a time carries its UTC offset and is plausible;
* a database's JSON comes from our SQL and StatBus's columns: a ``numeric`` column may
  arrive as a float or as text (``loose`` numbers), and a number that is not finite
  reads as unknown (None) rather than failing the whole snapshot.

``get(d, key, check)`` reads one optional key of an object (absent or null: None);
``obj(table)`` checks a whole object against a table of ``(required, check)`` rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

from traystatus.core.words.safetext import MAX_CHARS, printable

MAX_INT = 2**63 - 1  # StatBus ids and counts are bigint at most
MAX_ITEMS = 10_000  # items in one list; a busy StatBus has tens of jobs
MAX_TIME_CHARS = 64  # an ISO 8601 time is about 32

REQUIRED = True
OPTIONAL = False


class BadValue(ValueError):
    """A value is not what the contract says; ``str()`` says where and why, one line."""


Check = Callable[[Any, str], Any]
"""Validates one value at a path: the value in our types, or BadValue."""

Table = Mapping[str, tuple[bool, Check]]


def fail(path: str, what: str) -> NoReturn:
    raise BadValue(f"{path}: {what}")


def kind(value: Any) -> str:
    """What a JSON value is, in words ("a number", "text", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def show(value: Any) -> str:
    """A value, short and printable, for an error message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return printable(text, 40)


# -- numbers --------------------------------------------------------------------------------
def _loose_number(value: Any, path: str) -> float | None:
    """A database's number: an int, a float or numeric text; not finite reads as None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        fail(path, f"expected a number, got {kind(value)}")
    if isinstance(value, int):
        return float(value) if abs(value) < 2**1000 else None
    try:
        out = float(value)
    except ValueError:
        fail(path, f"not a number: {show(value)}")
    return out if math.isfinite(out) else None


def integer(lo: int = 0, hi: int = MAX_INT, *, loose: bool = False) -> Check:
    """A whole number in ``lo..hi``. ``loose`` (a database's): a float or numeric text
    is cut to a whole number and a number that is not finite is None."""

    def check(value: Any, path: str) -> int | None:
        if loose:
            if isinstance(value, int) and not isinstance(value, bool):
                out: int | None = value
            else:
                number = _loose_number(value, path)
                out = None if number is None else int(number)
            if out is not None and not lo <= out <= hi:
                fail(path, f"{show(value)} is out of range ({lo} to {hi})")
            return out
        if isinstance(value, bool) or not isinstance(value, int):
            fail(path, f"expected a whole number, got {kind(value)}")
        if not lo <= value <= hi:
            fail(path, f"{show(value)} is out of range ({lo} to {hi})")
        return value

    return check


def number(lo: float = -math.inf, hi: float = math.inf, *, loose: bool = False) -> Check:
    """A finite number in ``lo..hi``, as a float. ``loose`` (a database's): numeric text
    counts, and a number that is not finite is None."""

    def check(value: Any, path: str) -> float | None:
        if loose:
            out = _loose_number(value, path)
            if out is not None and not lo <= out <= hi:
                fail(path, f"{show(value)} is out of range ({lo:g} to {hi:g})")
            return out
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(path, f"expected a number, got {kind(value)}")
        out = float(value) if abs(value) < 1e300 else math.inf
        if not (math.isfinite(out) and lo <= out <= hi):
            fail(path, f"{show(value)} is out of range ({lo:g} to {hi:g})")
        return out

    return check


def percentage(*, loose: bool = False) -> Check:
    """A percentage. Strict (a relay's): 0 to 100 or refused. ``loose`` (a database's
    progress column): held to 0..100, not finite is None."""
    if not loose:
        return number(0, 100)
    inner = number(loose=True)

    def check(value: Any, path: str) -> float | None:
        out = inner(value, path)
        return None if out is None else max(0.0, min(100.0, out))

    return check


# -- texts, words, flags --------------------------------------------------------------------
def text(limit: int = MAX_CHARS, *, raw: bool = False) -> Check:
    """Text made printable and at most ``limit`` characters (core/words/safetext.py).
    ``raw`` (a database's own text, kept as written: an error's first line is its
    first line): only the type is checked."""

    def check(value: Any, path: str) -> str:
        if not isinstance(value, str):
            fail(path, f"expected text, got {kind(value)}")
        return value if raw else printable(value, limit)

    return check


def word(values: Collection[str]) -> Check:
    """One of ``values`` exactly (an enum's value: a State, a Problem, a phase)."""
    allowed = frozenset(values)

    def check(value: Any, path: str) -> str:
        if not isinstance(value, str):
            fail(path, f"expected text, got {kind(value)}")
        if value not in allowed:
            fail(path, f"{show(value)} is not one of {', '.join(sorted(allowed))}")
        return value

    return check


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        fail(path, f"expected true/false, got {kind(value)}")
    return value


# -- times ----------------------------------------------------------------------------------
def timestamp(value: Any, path: str) -> datetime:
    """An ISO 8601 time with its UTC offset, as UTC (a time without one is ambiguous)."""
    if not isinstance(value, str):
        fail(path, f"expected a time, got {kind(value)}")
    try:
        when = datetime.fromisoformat(value) if len(value) <= MAX_TIME_CHARS else None
    except ValueError:
        when = None
    if when is None:
        fail(path, f"{show(value)} is not an ISO 8601 time")
    if when.utcoffset() is None:
        fail(path, f"{show(value)} has no UTC offset")
    try:
        return when.astimezone(UTC)
    except OverflowError:
        fail(path, f"{show(value)} is out of range")


def db_time(value: Any, path: str) -> datetime:
    """A database's time: a datetime (a row) or ISO 8601 text (JSON), kept as written."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        fail(path, f"expected a timestamp, got {kind(value)}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        fail(path, f"not a timestamp: {show(value)}")


def offset_time(value: Any, path: str) -> datetime:
    """A time that must carry its UTC offset: a datetime or ISO 8601 text, kept as written."""
    if isinstance(value, str) and len(value) > MAX_TIME_CHARS:
        fail(path, f"{show(value)} is not an ISO 8601 time")
    when = db_time(value, path)
    if when.utcoffset() is None:
        fail(path, f"{show(value)} has no UTC offset")
    return when


# -- shapes ---------------------------------------------------------------------------------
def nullable(inner: Check) -> Check:
    def check(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return check


def forgiving(inner: Check) -> Check:
    """``inner``, with None for a value it refuses: for a value only a guess depends on
    (the estimate's start times), where an unusable one makes the guess say less."""

    def check(value: Any, path: str) -> Any:
        try:
            return inner(value, path)
        except BadValue:
            return None

    return check


def array(item: Check, max_items: int = MAX_ITEMS) -> Check:
    def check(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            fail(path, f"expected a list, got {kind(value)}")
        if len(value) > max_items:
            fail(path, f"{len(value)} items, more than {max_items}")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return check


def obj(table: Table) -> Check:
    """An object checked field by field; unknown fields are left out (a newer sender)."""

    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            fail(path or "message", f"expected an object, got {kind(value)}")
        out: dict[str, Any] = {}
        for name, (required, inner) in table.items():
            where = f"{path}.{name}" if path else name
            if name in value:
                out[name] = inner(value[name], where)
            elif required:
                fail(where, "missing")
        return out

    return check


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    """An object (any mapping: a database row's JSON)."""
    if not isinstance(value, Mapping):
        fail(what, f"expected an object, got {kind(value)}")
    return value


def items(value: Any, what: str) -> list[Any]:
    """A list; absent (None) is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        fail(what, f"expected a list, got {kind(value)}")
    return value


def get(d: Mapping[str, Any], key: str, check: Check) -> Any:
    """``d[key]`` through ``check``; absent or null is None (a newer or older SQL)."""
    value = d.get(key)
    return None if value is None else check(value, key)


# The database's own kinds (our SQL's JSON and StatBus's columns).
DB_INT = integer(-MAX_INT, MAX_INT, loose=True)
DB_NUMBER = number(loose=True)
DB_TEXT = text(raw=True)
DB_TIME = db_time


def need(d: Mapping[str, Any], key: str, check: Check) -> Any:
    """``d[key]`` through ``check``; absent or null is BadValue."""
    value = d.get(key)
    if value is None:
        fail(key, "missing")
    return check(value, key)
