"""The palette (app/palette.py), without Qt: every tone in both tables, text tones that
read on their background (WCAG contrast), and the tones the icons' art shares."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from traystatus._paths import resources_dir
from traystatus.app import palette
from traystatus.app.palette import DARK, LIGHT, Tone

TEXT_TONES = [t for t in Tone if t not in (Tone.PLAIN, Tone.PROGRESS)]


def _luminance(color: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@dataclass
class Grey:
    """A window colour as Qt gives it (only its lightness is read)."""

    value: int

    def lightness(self) -> int:
        return self.value


def test_every_tone_is_in_both_tables() -> None:
    assert set(LIGHT) == set(DARK) == set(Tone)
    assert LIGHT[Tone.PLAIN] is None and DARK[Tone.PLAIN] is None  # the style's own text


@pytest.mark.parametrize("tone", TEXT_TONES, ids=[t.value for t in TEXT_TONES])
def test_text_tones_read_on_their_window(tone: Tone) -> None:
    """Fusion's light window (#efefef) and a dark one (#2b2b2b, Breeze Dark's is #31363b).
    The light table on the dark window was 2.5-3.0:1 (the colours before this palette)."""
    light, dark = LIGHT[tone], DARK[tone]
    assert light is not None and dark is not None
    assert contrast(light, "#efefef") >= 4.0
    assert contrast(dark, "#2b2b2b") >= 4.5 and contrast(dark, "#31363b") >= 4.5


def test_dark_is_told_by_the_window_colour() -> None:
    assert palette.is_dark(Grey(43)) and not palette.is_dark(Grey(239))
    assert palette.text_css(Tone.PROBLEM, dark=False, bold=True) == (
        "color: #c62828; font-weight: bold;")
    assert palette.text_css(Tone.PLAIN) == ""
    assert palette.span("x &amp; y", Tone.PROBLEM, dark=True) == (
        f'<span style="color:{DARK[Tone.PROBLEM]}">x &amp; y</span>')
    with pytest.raises(ValueError):
        palette.solid(Tone.PLAIN)


def test_the_icons_art_shares_the_palettes_tones() -> None:
    """The blue of 'held behind a review' is the review icon's; the mono SVGs are drawn
    in the placeholder the icon painter replaces."""
    icons = resources_dir() / "icons"
    review = (icons / "review.svg").read_text(encoding="utf-8")
    assert f'fill="{LIGHT[Tone.HELD]}"' in review
    for mono in icons.glob("*-mono.svg"):
        colours = set(re.findall(r"#[0-9a-fA-F]{6}", mono.read_text(encoding="utf-8")))
        assert colours == {palette.GLYPH_PLACEHOLDER}, mono.name
