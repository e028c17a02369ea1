"""Every pair of built-in colors can be told apart, by readers with normal color vision and by
readers with each common form of color blindness, and every line shows on the white page.

Distances are CIEDE2000 (ΔE00) in CIELAB, computed here from sRGB in a few lines of numpy;
color blindness is simulated with Machado, Oliveira & Fernandes (2009)'s matrices at full
severity (dichromacy: protanopia, deuteranopia, tritanopia), applied to linear RGB.

Why ΔE00 >= 15 for every pair: a ΔE00 of about 1-2 is a just-noticeable difference between two
large patches side by side; plot lines are thin, drawn apart, and matched to a legend, which
takes several times more. 11 colors cannot be spread much further under all four visions at
once: a max-min search over an 18-level sRGB grid (black fixed, every color >= 30 from white)
found 15.8 at best, the palette's own worst pair. The old palette failed it: its Adam and
AdaDelta (two oranges) were 12.5 apart under deuteranopia, and its worst pair 3.5.
Why >= 30 from white: a color nearer the page (a pale yellow, say) makes a line that fades.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from adamrepro.figures.palette import COLORS, EXTRA, PAGE
from adamrepro.optim import OPTIMIZERS

MIN_PAIR = 15.0  # ΔE00 between any two built-in colors, in every vision (see the docstring)
MIN_PAGE = 30.0  # ΔE00 between any built-in color and the white page, in every vision
# ΔE00 between a color of EXTRA (a user's optimizer) and any other color, built-in or extra,
# in every vision: what is left beside eleven built-ins 15 apart (palette.py says how); from
# Adam's, as far as the built-ins are from each other.
MIN_EXTRA = 9.25

# Machado et al. 2009, severity 1.0, on linear RGB.
MACHADO = {
    "protanopia": [[0.152286, 1.052583, -0.204868],
                   [0.114503, 0.786281, 0.099216],
                   [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968],
                     [0.280085, 0.672501, 0.047413],
                     [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779],
                   [-0.078411, 0.930809, 0.147602],
                   [0.004733, 0.691367, 0.303900]],
}
VISIONS = ("normal", *MACHADO)
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],  # D65
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


def linear_rgb(hex_color: str) -> np.ndarray:
    srgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def lab(linear: np.ndarray) -> np.ndarray:
    xyz = SRGB_TO_XYZ @ linear / SRGB_TO_XYZ.sum(axis=1)  # relative to the D65 white
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def seen(hex_color: str, vision: str) -> np.ndarray:
    """The CIELAB color a reader with `vision` sees."""
    linear = linear_rgb(hex_color)
    if vision != "normal":
        linear = np.clip(np.array(MACHADO[vision]) @ linear, 0.0, 1.0)
    return lab(linear)


def delta_e2000(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """CIEDE2000 (Sharma, Wu & Dalal 2005, whose test data checks it below)."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1, h2 = np.degrees(np.arctan2(b1, a1)) % 360, np.degrees(np.arctan2(b2, a2)) % 360
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    d_hue = 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh) / 2)
    l_mean, c_mean = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        h_mean = h1 + h2
    elif abs(h1 - h2) <= 180:
        h_mean = (h1 + h2) / 2
    else:
        h_mean = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_mean, 1 + 0.015 * c_mean * t
    r_t = (-2 * np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7))
           * np.sin(np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2)))))
    dl, dc, dh_ = (l2 - l1) / s_l, (c2 - c1) / s_c, d_hue / s_h
    return float(np.sqrt(dl**2 + dc**2 + dh_**2 + r_t * dc * dh_))


def test_the_color_science_is_right():
    assert lab(linear_rgb("#FF0000")) == pytest.approx([53.24, 80.09, 67.20], abs=0.01)
    assert lab(linear_rgb("#FFFFFF")) == pytest.approx([100, 0, 0], abs=1e-6)
    # Sharma et al. (2005), table 1, pairs 1, 7 and 17
    assert delta_e2000(np.array([50, 2.6772, -79.7751]),
                       np.array([50, 0, -82.7485])) == pytest.approx(2.0425, abs=1e-4)
    assert delta_e2000(np.array([50, 0, 0]),
                       np.array([50, -1, 2])) == pytest.approx(2.3669, abs=1e-4)
    assert delta_e2000(np.array([50, 2.5, 0]),
                       np.array([73, 25, -18])) == pytest.approx(27.1492, abs=1e-4)
    for vision, matrix in MACHADO.items():  # white stays white, so the page is the same
        assert np.sum(matrix, axis=1) == pytest.approx([1, 1, 1], abs=1e-5), vision


def test_every_built_in_optimizer_has_a_color():
    assert set(OPTIMIZERS) <= set(COLORS)


@pytest.mark.parametrize("vision", VISIONS)
def test_every_pair_is_distinguishable(vision):
    too_close = []
    for (name1, hex1), (name2, hex2) in combinations(COLORS.items(), 2):
        distance = delta_e2000(seen(hex1, vision), seen(hex2, vision))
        if distance < MIN_PAIR:
            too_close.append(f"{name1}/{name2}: {distance:.1f}")
    assert not too_close, f"ΔE00 < {MIN_PAIR} under {vision}: {', '.join(too_close)}"


@pytest.mark.parametrize("vision", VISIONS)
def test_adam_is_the_most_salient_and_every_line_shows(vision):
    """Salience = distance from the white page: Adam's line stands out most, for everyone."""
    page = seen(to_hex(PAGE).upper(), vision)
    contrast = {name: delta_e2000(seen(hex_color, vision), page)
                for name, hex_color in COLORS.items()}
    assert max(contrast, key=contrast.get) == "adam"
    faint = {name: round(value, 1) for name, value in contrast.items() if value < MIN_PAGE}
    assert not faint, f"too near the white page under {vision}: {faint}"


@pytest.mark.parametrize("vision", VISIONS)
def test_a_users_optimizer_gets_a_color_apart_from_every_other(vision):
    page = seen("#FFFFFF", vision)
    named = {**COLORS, **{f"extra {color}": color for color in EXTRA}}
    too_close = []
    for (name1, hex1), (name2, hex2) in combinations(named.items(), 2):
        distance = delta_e2000(seen(hex1, vision), seen(hex2, vision))
        least = MIN_PAIR if "adam" in (name1, name2) else MIN_EXTRA
        if "extra" in name1 + name2 and distance < least:
            too_close.append(f"{name1}/{name2}: {distance:.1f}")
    faint = [color for color in EXTRA if delta_e2000(seen(color, vision), page) < MIN_PAGE]
    assert not too_close and not faint, (too_close, faint)


def test_every_variant_of_the_bundled_configs_has_its_own_line_style():
    """A line style means one variant in every figure: the variants the configs use each have
    an entry of their own, no two alike, and one from elsewhere still gets a valid style."""
    from matplotlib.lines import Line2D

    from adamrepro.config import CONFIG_DIR, load_experiment
    from adamrepro.figures.palette import LINESTYLES, style

    used = {method.variant or "" for path in CONFIG_DIR.glob("*.yaml")
            for method in load_experiment(path).methods.values()}
    assert used <= set(LINESTYLES), sorted(used - set(LINESTYLES))
    patterns = [str(linestyle) for linestyle in LINESTYLES.values()]
    assert len(set(patterns)) == len(patterns)
    Line2D([], [], **style("adam", "a_variant_of_mine"))  # matplotlib accepts it


def _shape(linestyle) -> tuple:
    """What a reader sees of a dash pattern: each mark a dot, a dash or a long dash, each gap
    tight or wide, as the smallest repeating unit, wherever the line happens to begin."""
    import matplotlib as mpl

    named = {"--": "dashed", ":": "dotted", "-.": "dashdot"}
    dashes = (mpl.rcParams[f"lines.{named[linestyle]}_pattern"] if isinstance(linestyle, str)
              else linestyle[1])
    marks = tuple(("dot" if on <= 1.5 else "dash" if on <= 4.5 else "long",
                   "tight" if off <= 2.5 else "wide")
                  for on, off in zip(dashes[::2], dashes[1::2], strict=True))
    size = next(k for k in range(1, len(marks) + 1)
                if len(marks) % k == 0 and marks[:k] * (len(marks) // k) == marks)
    unit = marks[:size]
    return min(unit[i:] + unit[:i] for i in range(size))


def test_no_two_line_styles_look_alike():
    """Two patterns that differ only in where they begin, or by a point in a mark, look the
    same on a page: dash-dot-dot (α/√t, Fig. 2a) was once dot-dot-dash (constant α, Fig. 1)
    begun elsewhere. Every built-in and every style a user's variant may get has a shape of
    its own."""
    from adamrepro.figures.palette import EXTRA_LINESTYLES, LINESTYLES

    styles = [s for s in (*LINESTYLES.values(), *EXTRA_LINESTYLES) if s != "-"]
    shapes = [_shape(s) for s in styles]
    alike = [(a, b) for i, a in enumerate(styles) for b in styles[i + 1:]
             if _shape(a) == _shape(b)]
    assert not alike, alike
    assert len(set(shapes)) == len(styles)


def test_two_variants_of_a_users_config_never_share_a_line_style():
    """Variants from elsewhere are styled by a hash of their name: two that land on the same
    style (`warmup` and another found here) get two, the same in every figure of the
    experiment, none a built-in's and none dash-dot (which says "averaged")."""
    from adamrepro.figures.palette import EXTRA_LINESTYLES, LINESTYLES, _hashed, palette_of

    slots = len(EXTRA_LINESTYLES)
    twin = next(f"v{i}" for i in range(1000)
                if _hashed(f"v{i}", slots) == _hashed("warmup", slots))
    palette = palette_of(["adam"], ["", "dropout", "warmup", twin])
    assert palette.linestyles["warmup"] != palette.linestyles[twin]
    assert palette.linestyles["dropout"] == LINESTYLES["dropout"]
    again = palette_of(["adam"], [twin, "dropout", "warmup", ""]).linestyles  # order-free
    assert (again["warmup"], again[twin]) == (palette.linestyles["warmup"],
                                              palette.linestyles[twin])
    assert not {str(s) for s in EXTRA_LINESTYLES} & {str(s) for s in LINESTYLES.values()}
    for pattern in EXTRA_LINESTYLES:  # no dash then a lone dot, as "-." draws
        dashes = pattern[1]
        assert not any(on > 2 and nxt <= 1 for on, nxt in zip(dashes[::2], dashes[2::2],
                                                               strict=False)), pattern


def _lines_outside_the_palette(pattern: str) -> list[str]:
    """`file:line: text` of every line of the package but palette.py that `pattern` finds."""
    import re

    package = Path(__file__).resolve().parent.parent / "adamrepro"
    naming = re.compile(pattern)
    return [f"{path.relative_to(package)}:{number}: {line.strip()}"
            for path in package.rglob("*.py") if path.name != "palette.py"
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if naming.search(line)]


def test_no_module_but_the_palette_names_a_color():
    """STYLE: one palette module decides every color. A hex color, a named color keyword or
    a colormap written anywhere else in the package is a second source of colors."""
    found = _lines_outside_the_palette(
        r"""["']#[0-9A-Fa-f]{6}["']|\b(?:color|cmap|facecolor|edgecolor)=["']""")
    assert not found, "\n".join(found)


def test_no_module_but_the_palette_names_a_line_style():
    """A line style means a variant in every figure (dashed is dropout, dotted no bias
    correction): one written elsewhere, as the Sec. 2.1 bound's dashes were, reads as one.
    Only "none" (markers alone) may be written outside the palette."""
    found = _lines_outside_the_palette(r"""\b(?:linestyle|ls)=(?!["']none["'])["'(]""")
    assert not found, "\n".join(found)


def test_each_optimizer_keeps_the_color_the_readme_promises_it():
    """A reader learns one color per algorithm from the README's table and from earlier
    figures: a palette edit that swaps two colors (AdaGrad's amber for SGD's sky blue) would
    still pass every distance test, and silently recolor every figure drawn since. The table
    and the palette must agree, row for row, on every built-in optimizer."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    promised = dict(re.findall(r"^\| `(\w+)` \| [a-z ]+ \| `(#[0-9A-F]{6})` \|$", readme, re.M))
    assert promised == COLORS


def test_a_color_collision_moves_one_optimizer_and_no_third():
    """Two user optimizers on one hashed color: the later (sorted) moves, and not onto the
    color a third one holds by its own hash, which would move that one too; `moved_colors`
    names the one moved and who holds its color."""
    from adamrepro.figures.palette import EXTRA, _hashed, colors, moved_colors

    names = [f"pkg.opt{i}:Opt" for i in range(200)]
    first, second = next((a, b) for a in names for b in names
                         if a < b and _hashed(a) == _hashed(b))
    after = EXTRA[(_hashed(first) + 1) % len(EXTRA)]
    third = next(n for n in names if EXTRA[_hashed(n)] == after and n > second)
    drawn = colors([first, second, third])
    assert drawn[first] == EXTRA[_hashed(first)] and drawn[third] == after
    assert drawn[second] not in (drawn[first], drawn[third])
    assert moved_colors([first, second, third, "adam"]) == {
        second: (EXTRA[_hashed(second)], first)}
    assert moved_colors([first, third, "adam"]) == {}


def test_methods_drawn_alike_are_said():
    """Two methods of one optimizer and variant share color and line style: `adamrepro
    plot` says so, naming them and the fix. The committed tables have none such."""
    import pandas as pd

    from adamrepro.figures.common import palette_notes

    curves = pd.read_csv(Path(__file__).resolve().parent.parent / "results" / "quick-cpu"
                         / "mlp" / "curves.csv")
    assert palette_notes(curves) == []
    adam = curves[curves["method"] == "adam"].assign(method="adam_tuned")
    assert palette_notes(pd.concat([curves, adam])) == [
        "methods adam, adam_tuned are all adam, drawn alike; give each a variant of its own "
        "in the config to tell their lines apart"]
    decay = curves[curves["variant"] == "sqrt_decay"]
    assert not decay.empty
    assert palette_notes(pd.concat([curves, decay.assign(method="again")])) == [
        "methods adam_decay, again are all adam (sqrt_decay), drawn alike; give each a "
        "variant of its own in the config to tell their lines apart"]


def test_a_curve_of_one_pass_tells_variants_apart_by_its_marker():
    """One pass draws each curve as a single marker, where no line style shows: adam and
    its variants were the same dot. Every line style has its own marker, and a figure of
    one pass draws each variant's."""
    from adamrepro.figures.common import few_points
    from adamrepro.figures.palette import EXTRA_LINESTYLES, LINESTYLES, point_marker, style

    styles = [*LINESTYLES.values(), *EXTRA_LINESTYLES]
    assert len({point_marker(s) for s in styles}) == len(styles)
    plain, nobias = style("adam", None), style("adam", "nobias")
    assert few_points(1, plain)["marker"] != few_points(1, nobias)["marker"]
    assert few_points(10, plain) == {}  # a line of many passes needs none
