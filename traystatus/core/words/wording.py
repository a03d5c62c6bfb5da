"""How numbers and durations read in every message: one plural rule, one duration format.

Pure functions, no locale: the tray, the notifications, the CLI and the details window all
say "1,412 analytics tasks" and "4 min 12 s" the same way.
"""

from __future__ import annotations


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 import', '2 imports', '1,412 analytics tasks' (``many`` defaults to one + 's')."""
    word = one if n == 1 else (many if many is not None else one + "s")
    return f"{n:,} {word}"


def format_duration(seconds: float) -> str:
    """'12 s', '4 min 12 s', '4 min', '1 h 3 min', '1 h': as a person says it."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"
