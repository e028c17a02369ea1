"""The one place that names colors: one fixed color per algorithm, told apart by everyone.

Adam is black: the most salient line on a white page, for every reader (no form of color
blindness changes it). The ten others were searched (max-min over an 18-level sRGB grid) so
that every pair differs by at least 15 CIEDE2000 units under normal vision and under simulated
protanopia, deuteranopia and tritanopia, and every color stays at least 30 units from the
white page; tests/test_palette.py checks both and says why 15.

A method's color is its optimizer's; its `variant` (a config field, never parsed from the
label) keeps that color and changes the line style (dashed for dropout; each variant its own,
the same in every figure), so a reader learns one color per algorithm. The one exception is
a variant that is another algorithm of the paper (`DRAWN_AS`: Adam's `nobias` is RMSProp with
momentum), drawn in that algorithm's color. An optimizer without
a color of its own (a user's, named by import path) gets one of `EXTRA`, chosen by a hash of
its name (stable across figures) and, if two in one experiment land on the same, the one
later in sorted order moved to the next free one (`adamrepro plot` says so).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

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
# For optimizers from elsewhere. The eleven built-ins leave no color 15 ΔE00 from all of them
# in every vision (12.7 at best), so these were picked greedily over the same 18-level grid
# for the largest distance to the built-ins and to each other, in every vision, among the
# colors 30 from the white page and 15 from Adam's black (a user's optimizer is raced against
# Adam above all, and Adam's wide black line lies beneath it: an unconstrained search gave
# two near-blacks, 11.6 and 14.2 from it): every one is at least 9.25 from any other color
# here (tests/test_palette.py). The six colors kept keep their places, and so the hash's pick.
EXTRA: tuple[str, ...] = (
    "#4B3C3C", "#4B5A96", "#5A9678", "#5A5A3C", "#000069", "#788787", "#B4871E", "#78784B",
)
# Not an algorithm: reference lines (a bound) and the generic markers of a legend.
REFERENCE = "#555555"
# The page every color is chosen against (tests/test_palette.py); a mark drawn over another
# of its color takes it as its rim (the sensitivity figure's stacked stars).
PAGE = "white"
# Pictures of digits (the VAE's samples and reconstructions) as MNIST stores them: strokes
# near 1 in white on a background of 0 in black.
IMAGE_CMAP = "gray"
BAND_ALPHA = 0.2
# The spread over seeds of a curve of a few passes, as a bar at each pass: more opaque than a
# band, being thin, yet lighter than the curve it belongs to.
BAR_ALPHA = 0.55
# Adam, the method every other is compared with, is drawn wider than the others and beneath
# them (matplotlib's lines are 1.5 points wide, at zorder 2; bands at 1): a method whose curve
# lies on Adam's shows over it with a black edge, where it was hidden under it (Fig. 1's
# adagrad_constant+dropout under adam+dropout). Matplotlib scales a dash pattern with the
# width: Adam's dashes are its variant's pattern, longer.
REFERENCE_OPTIMIZER = "adam"
REFERENCE_LINE: dict = {"linewidth": 2.6, "zorder": 1.9}
# Lines that are no method's curve (the Sec. 2.1 bound, a fitted line): thin and solid, so
# that no variant's line style (dashed is dropout, dotted no bias correction) is read into them.
GUIDE_LINE: dict = {"linestyle": "-", "linewidth": 0.8}
# One line style per variant, the same in every figure (dash-dot is "averaged" wherever it
# appears): each variant of the bundled configs has its own (tests/test_palette.py), and a
# variant that adds to dropout keeps dropout's long dashes in its pattern. Matplotlib dash
# patterns: (offset, (on, off, ...)) in points.
LINESTYLES: dict[str, str | tuple] = {
    "": "-",
    "dropout": "--",
    "nobias": ":",
    "avg": "-.",
    "constant_lr": (0, (1, 1, 1, 1, 4, 1)),  # dot-dot-dash
    "dropout+constant_lr": (0, (8, 2, 1, 2, 1, 2)),  # a long dash, then dot-dot
    # Dash-dash-dot, not dash-dot-dot: that is dot-dot-dash begun elsewhere, and a reader
    # took constant α (Fig. 1) and α/√t (Fig. 2a) for one style.
    "sqrt_decay": (0, (4, 1.5, 4, 1.5, 1, 1.5)),  # dash-dash-dot
    "batched": (0, (8, 2)),  # long dashes
    "memory": (0, (1, 3)),  # sparse dots
}
# For variants from elsewhere (a user's config): chosen by a hash of the name, as EXTRA, and
# moved to the next free one where two of an experiment land on the same. No dash-dot among
# them: that is "averaged" wherever it appears.
EXTRA_LINESTYLES: tuple[tuple, ...] = (
    (0, (3, 3)), (0, (1, 1, 1, 4)), (0, (10, 2, 2, 2)), (0, (1, 3, 1, 3, 6, 3)),
    (0, (6, 3, 2, 3)), (0, (12, 2, 12, 6)),
)


# A curve of a point or two shows no line style (one pass: a single marker), so there its
# marker tells the variants apart, one per line style, in the order above (adam and its
# variants were the same black dot).
POINT_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "p", "<", ">", "d", "H", "8")


def point_marker(linestyle) -> str:
    """The marker of a curve of few points in this line style (LINESTYLES, EXTRA_LINESTYLES)."""
    styles = [*LINESTYLES.values(), *EXTRA_LINESTYLES]
    index = styles.index(linestyle) if linestyle in styles else 0
    return POINT_MARKERS[index % len(POINT_MARKERS)]


def _hashed(name: str, choices: int = len(EXTRA)) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % choices


def _spread(names: Iterable[str], fixed: dict, extra: tuple) -> dict:
    """Every name its `fixed` entry, or one of `extra` chosen by a hash of the name; where
    two land on the same, the first (sorted) keeps it and the other takes the next one that
    no name holds by its own hash (while any is free), so that a name moved off its choice
    moves no third one off its own."""
    names = sorted(set(names))
    hashed = {name: _hashed(name, len(extra)) for name in names if name not in fixed}
    own: dict = {}
    for name, index in hashed.items():
        if extra[index] not in own.values():
            own[name] = extra[index]
    chosen = {**{name: fixed[name] for name in names if name in fixed}, **own}
    taken = list(own.values())
    for name, index in hashed.items():
        if name not in own:
            probes = (extra[(index + probe) % len(extra)] for probe in range(len(extra)))
            chosen[name] = next((c for c in probes if c not in taken), extra[index])
            taken.append(chosen[name])
    return {name: chosen[name] for name in names}


def moved_colors(optimizers: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Each optimizer drawn in another color than its own hash's, with that color and the
    optimizer that holds it: a user racing a second optimizer of their own sees the first
    one change color only where `adamrepro plot` says so."""
    drawn = colors(optimizers)
    holder = {color: name for name, color in drawn.items()}
    own = {name: EXTRA[_hashed(name)] for name in drawn if name not in COLORS}
    return {name: (color, holder[color]) for name, color in own.items()
            if drawn[name] != color}


@dataclass(frozen=True)
class Palette:
    """The colors of an experiment's optimizers and the line styles of its variants, from
    all of them (its curves.csv's), so that every figure of it draws a method alike."""

    colors: dict[str, str]
    linestyles: dict[str, str | tuple]


def palette_of(optimizers: Iterable[str], variants: Iterable[str]) -> Palette:
    """The palette of these optimizers and variants; a figure passes all of its experiment's
    (`figures.common.experiment_palette`), drawn there or not."""
    return Palette(colors(optimizers), _spread(variants, LINESTYLES, EXTRA_LINESTYLES))


def colors(optimizers: Iterable[str]) -> dict[str, str]:
    """The color of every optimizer of an experiment: built-ins their own, every other one a
    distinct color of EXTRA (as long as it has at most len(EXTRA) of them). Every figure of
    an experiment passes all of its optimizers (its curves.csv's), drawn there or not, so
    that a collision moves the same one to the same color in each."""
    return _spread(optimizers, COLORS, EXTRA)


# A variant that *is* another algorithm of the paper is drawn in that algorithm's color:
# Adam without bias correction is RMSProp with momentum (Sec. 5, 6.4).
DRAWN_AS: dict[tuple[str, str], str] = {("adam", "nobias"): "rmsprop"}


def style(optimizer: str, variant: str | None, palette: Palette | None = None) -> dict:
    """Matplotlib line keywords for a method: its optimizer's color and its variant's line
    style (from `palette`, the experiment's `palette_of(...)`, when given; DRAWN_AS for a
    variant that is another algorithm), and REFERENCE_LINE's width and depth for Adam's."""
    if not isinstance(variant, str):  # None, or a table's empty cell (NaN)
        variant = ""
    palette = palette or palette_of([optimizer], [variant])
    other = DRAWN_AS.get((optimizer, variant))
    color = COLORS[other] if other else palette.colors[optimizer]
    reference = optimizer == REFERENCE_OPTIMIZER and not other
    return {"color": color, "linestyle": palette.linestyles[variant],
            **(REFERENCE_LINE if reference else {})}
