"""Text from the network, made safe to show: the one helper every place that prints it uses.

A server's ``reason``, a job's slug, a note: a terminal obeys the escape sequences in them
(clear the screen, recolour, ``\\r\\n`` to fake a line of our own), bidi controls reorder
what a person reads, a lone surrogate makes ``print`` raise, and a 3 MB reason floods a
terminal or a tooltip. ``printable()`` drops escape sequences and control and format
characters, turns line breaks and tabs into spaces, and caps the length. Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 1000
"""Longest text kept: a database's diagnosis with its advice is a few hundred characters."""

# ESC [ ... final (CSI), ESC ] ... BEL or ESC \ (OSC), ESC + one byte, and the 8-bit CSI.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -~]?|\x9b[0-?]*[ -/]*[@-~]?"
)
_BREAKS = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]+")
_DROPPED = frozenset(("Cc", "Cf", "Cs"))


def printable(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` as one line a terminal shows as written: no escape sequences, no control,
    format or surrogate characters, line breaks as spaces, at most ``limit``
    characters (cut with "…")."""
    if not text:
        return ""
    cut = len(text) > limit
    text = text[: limit * 2]  # bound the work on a huge text: far more than is kept
    text = _BREAKS.sub(" ", _ESCAPES.sub("", text))
    if not text.isascii() or not text.isprintable():
        text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROPPED)
    text = text.strip()
    if cut or len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text
