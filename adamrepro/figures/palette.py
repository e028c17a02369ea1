"""The one place that names colors: one fixed color per algorithm, told apart by everyone.

Adam is black: the most salient line on a white page, for every reader (no form of color
blindness changes it). The ten others were searched (max-min over an 18-level sRGB grid) so
that every pair differs by at least 15 CIEDE2000 units under normal vision and under simulated
protanopia, deuteranopia and tritanopia, and every color stays at least 30 units from the
white page; tests/test_palette.py checks both and says why 15. A method label is `<optimizer>`
or `<optimizer>+<variant>`; a variant keeps its optimizer's color and changes the line style
(dashed for +dropout), so a reader learns one color per algorithm.
"""

from __future__ import annotations

import warnings

COLORS: dict[str, str] = {
    "adam": "#000000",  # black
    "adagrad": "#F0A500",  # amber
    "sgd_nesterov": "#5AA5FF",  # sky blue
    "rmsprop": "#F04B69",  # rose red
    "adadelta": "#004B00",  # dark green
    "sfo": "#960FFF",  # violet
    "adamax": "#1E00B4",  # ultramarine
    "amsgrad": "#5A7800",  # olive
    "adamw": "#964B69",  # raspberry brown
    "nadam": "#A578A5",  # mauve
    "adam_two_horizons": "#5A1E4B",  # plum
}
UNKNOWN = "#777777"
BAND_ALPHA = 0.2
LINESTYLES: dict[str, str] = {"": "-", "dropout": "--", "nobias": ":", "avg": "-."}


def color(optimizer: str) -> str:
    if optimizer not in COLORS:
        warnings.warn(f"no color assigned to {optimizer!r}; add it to COLORS in palette.py",
                      stacklevel=2)
    return COLORS.get(optimizer, UNKNOWN)


def style(method: str, optimizer: str) -> dict:
    """Matplotlib line keywords for a method label such as `adam+dropout`."""
    variant = method.split("+", 1)[1] if "+" in method else ""
    return {"color": color(optimizer), "linestyle": LINESTYLES.get(variant, "-.")}
