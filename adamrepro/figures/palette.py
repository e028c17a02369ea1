"""The one place that names colors: one fixed, colorblind-safe color per algorithm.

Okabe & Ito's eight colors first, then Paul Tol's muted scheme for the extra rows. A method
label is `<optimizer>` or `<optimizer>+<variant>`; a variant keeps its optimizer's color and
changes the line style (dashed for +dropout), so a reader learns one color per algorithm.
"""

from __future__ import annotations

import warnings

COLORS: dict[str, str] = {
    "adam": "#D55E00",  # vermillion
    "adagrad": "#0072B2",  # blue
    "sgd_nesterov": "#009E73",  # bluish green
    "rmsprop": "#CC79A7",  # reddish purple
    "adadelta": "#E69F00",  # orange
    "sfo": "#000000",  # black
    "adamax": "#56B4E9",  # sky blue
    "amsgrad": "#882255",  # wine
    "adamw": "#999933",  # olive
    "nadam": "#332288",  # indigo
    "adam_two_horizons": "#44AA99",  # teal
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
