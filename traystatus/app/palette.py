"""The app's colours: named tones, one table for light windows and one for dark ones.

Every colour the app draws in text, frames and the icon painter comes from here (the
state icons' own art lives in resources/icons/*.svg). A tone names what a colour means
(a problem, a person must act, done and good), never what it looks like, so a widget
asks for ``Tone.PROBLEM`` and the reader gets the same red everywhere.

Windows follow the desktop: ``dark_window(widget)`` reads the window colour of the
palette Qt got from the desktop, and the dark table has lighter variants that read on a
dark background. The tray icon's one-colour glyphs follow the panel instead
(icons.IconStyle), so they have their own names below.

No Qt here (the callers pass the colour they read from Qt), so it is tested without it.
"""

from __future__ import annotations

import enum
from typing import Protocol


class Tone(enum.Enum):
    """What a colour says."""

    PLAIN = "plain"  # the window's own text colour
    STABLE = "stable"  # done and good: finished, saved, the check passed
    PROCESSING = "processing"  # work under way (the processing icon's amber)
    PROGRESS = "progress"  # the ring that fills over the processing icon
    PROBLEM = "problem"  # failed, errors, not saved
    WARNING = "warning"  # warnings: it went in, have a look
    PERSON = "person"  # a person must act: upload, review
    HELD = "held"  # held back behind a review (the review icon's blue)
    MUTED = "muted"  # secondary text (slugs, notes)
    FOCUS = "focus"  # the frame around what a notice pointed at


# ``None``: the window's own text colour (the style decides).
LIGHT: dict[Tone, str | None] = {
    Tone.PLAIN: None,
    Tone.STABLE: "#2e7d32",
    Tone.PROCESSING: "#9a6400",
    Tone.PROGRESS: "#5a3600",
    Tone.PROBLEM: "#c62828",
    Tone.WARNING: "#8a6d00",
    Tone.PERSON: "#b35c00",
    Tone.HELD: "#2f6fb5",
    Tone.MUTED: "#666666",
    Tone.FOCUS: "#1565c0",
}
DARK: dict[Tone, str | None] = {
    Tone.PLAIN: None,
    Tone.STABLE: "#81c784",
    Tone.PROCESSING: "#f0a81c",
    Tone.PROGRESS: "#5a3600",  # drawn over the amber disc, whatever the window
    Tone.PROBLEM: "#ff8a80",
    Tone.WARNING: "#e6c84f",
    Tone.PERSON: "#ffb74d",
    Tone.HELD: "#82b1ff",
    Tone.MUTED: "#a6a6a6",
    Tone.FOCUS: "#64b5f6",
}
# A note box that asks for attention (the review holding the imports): (background, text).
NOTE = {False: ("#fff3e0", "#7a3e00"), True: ("#4a2e0c", "#ffd8a8")}

# The tray icon's one-colour glyphs follow the panel, not the window.
GLYPH_ON_DARK_PANEL = "#f2f2f2"
GLYPH_ON_LIGHT_PANEL = "#202020"
GLYPH_TEMPLATE = "#000000"  # macOS: a mask, the menu bar colours it
# The colour the *-mono.svg files are drawn in, replaced by one of the glyph colours.
GLYPH_PLACEHOLDER = "#010101"


class Lightness(Protocol):
    """A colour that knows its lightness, 0-255 (QColor)."""

    def lightness(self) -> int: ...


class _Brush(Protocol):
    def color(self) -> Lightness: ...


class _Palette(Protocol):
    def window(self) -> _Brush: ...


class Painted(Protocol):
    """Something with a palette (a QWidget)."""

    def palette(self) -> _Palette: ...


def is_dark(window: Lightness) -> bool:
    """Whether a window of this background colour needs the dark table."""
    return window.lightness() < 128


def dark_window(widget: Painted) -> bool:
    """Whether ``widget``'s window colour (the desktop's palette, through Qt) is dark."""
    return is_dark(widget.palette().window().color())


def color(tone: Tone, dark: bool = False) -> str | None:
    """The tone's colour as #rrggbb, None for the window's own text colour."""
    return (DARK if dark else LIGHT)[tone]


def solid(tone: Tone, dark: bool = False) -> str:
    """The tone's colour where one must be drawn (the icon's ring): PLAIN has none."""
    value = color(tone, dark)
    if value is None:
        raise ValueError(f"{tone.name} has no colour of its own")
    return value


def text_css(tone: Tone, dark: bool = False, bold: bool = False) -> str:
    """A label's style sheet: 'color: #c62828; font-weight: bold;' ("" for plain text)."""
    value = color(tone, dark)
    parts = [f"color: {value};"] if value is not None else []
    if bold:
        parts.append("font-weight: bold;")
    return " ".join(parts)


def note_css(dark: bool = False) -> str:
    """The attention box's style sheet (background and text)."""
    background, text = NOTE[dark]
    return f"background: {background}; color: {text}; padding: 6px; border-radius: 4px;"


def focus_css(object_name: str, dark: bool = False, side: bool = False) -> str:
    """The frame around what a notice pointed at: all round, or a bar on the left."""
    value = color(Tone.FOCUS, dark)
    if side:
        return (f"#{object_name} {{ border: none; border-left: 3px solid {value}; "
                "padding-left: 6px; }")
    return f"#{object_name} {{ border: 2px solid {value}; }}"


def span(text: str, tone: Tone, dark: bool = False) -> str:
    """Rich text in a tone (``text`` already escaped)."""
    value = color(tone, dark)
    return f'<span style="color:{value}">{text}</span>' if value is not None else text
