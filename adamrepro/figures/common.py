"""What every figure shares: bands over seeds, legends and labels, axes, titles, the
experiment's palette, and saving a figure with the digest of the tables it was drawn from
(so `plot` redraws only what changed and `report` knows which tables a PNG shows)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import textwrap
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import pandas as pd

# The object-oriented API, not pyplot: no backend to choose (none is touched on import, a
# user's MPLBACKEND included) and no global figure state.
from matplotlib import rcParams
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatterSciNotation, MaxNLocator

from adamrepro.atomic import atomic_file
from adamrepro.figures.palette import (
    BAND_ALPHA,
    BAR_ALPHA,
    Palette,
    moved_colors,
    palette_of,
    point_marker,
)
from adamrepro.metrics import Column, metric_set
from adamrepro.results.tables import hparam_columns, variants


def test_columns(meta: dict) -> list[Column]:
    """The panels beside the training cost (PAPER.md, beyond the paper: test loss and test
    accuracy next to every training curve): the test objective, then the first other test
    metric the model declares (a classifier's accuracy), if any."""
    declared = metric_set(meta)
    tests = [c for c in declared.columns() if c.split == "test"]
    objective = [c for c in tests if c.metric == declared.objective]
    return objective + [c for c in tests if c.metric != declared.objective][:1]


def untrained_cost(curves: pd.DataFrame, meta: dict) -> float:
    """The training objective over the whole training set before any step (every run starts
    from it), or +inf where the tables lack it."""
    full = f"train_{metric_set(meta).objective}_full"
    if full not in curves.columns:
        return math.inf
    start = curves.loc[curves["epoch"] == 0, full].dropna()
    return float(start.max()) if len(start) else math.inf


def band(frame: pd.DataFrame, column: str, kind: str, log: bool = False) -> pd.DataFrame:
    """Mean and band over seeds at every pass; `log`: for a log axis (how_chosen says so)."""
    by_epoch = frame.groupby("epoch")[column]
    mean = by_epoch.mean()
    if kind == "minmax":
        low, high = by_epoch.min(), by_epoch.max()
    else:
        spread = by_epoch.std().fillna(0.0)
        low, high = mean - spread, mean + spread
        if log:
            # never below the lowest seed's value: with a spread larger than the mean (seeds
            # that differ a lot), mean − std is under zero, which a log axis cannot show but
            # as a band down to its edge. On a linear axis the band is ±1 std as it says:
            # clipped there too, it sat above the curve at half the passes of 3 seeds.
            low = low.clip(lower=by_epoch.min())
    return pd.DataFrame({"mean": mean, "low": low, "high": high})


BARS_UP_TO = 5  # passes: a curve this short shows its spread as bars, not a band
BAR_DODGE = 0.05  # passes between the bars of two neighbouring curves at one pass


def short_curves(curves: pd.DataFrame, chosen) -> bool:
    """Whether a figure draws its per-pass spread as bars (`spread`): its curves are at
    most BARS_UP_TO passes long and some method of `chosen` (best.csv rows) has seeds to
    spread over. Linear bands between so few points are wide polygons, and six of them
    (Fig. 3 at quick scale) overlapped into one muddy area; a band of a single pass draws
    nothing at all."""
    return (int(curves["epoch"].max()) <= BARS_UP_TO
            and any(row["n_seeds"] > 1 for row in chosen))


def spread(ax, stats: pd.DataFrame, color: str, bars: tuple[int, int] | None = None):
    """One curve's spread over seeds (`band`'s low and high): a band, or, with `bars` (the
    curve's place among the figure's, and how many there are), a bar at each pass, the
    curves' bars side by side (BAR_DODGE apart, centred on the pass) so that none hides
    another's."""
    if bars is None:
        return ax.fill_between(stats.index, stats["low"], stats["high"], color=color,
                               alpha=BAND_ALPHA, linewidth=0)
    place, count = bars
    x = stats.index.to_numpy(float) + (place - (count - 1) / 2) * BAR_DODGE
    # beneath every line as a band is (Adam's, the reference, lies at 1.9: palette.py)
    return ax.vlines(x, stats["low"], stats["high"], color=color, alpha=BAR_ALPHA,
                     linewidth=2, zorder=1)


# No date and no version in the files: re-drawing unchanged results gives the same bytes, so
# `adamrepro plot` on committed results leaves `git status` clean (no SOURCE_DATE_EPOCH needed).
METADATA = {"png": {"Software": None},
            "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}


# The shortest legend line, in font sizes (matplotlib's 2.0 shows a dash-dot as a dash).
HANDLE_LENGTH = 3.5
MARKERLESS = (None, "", " ", "None", "none")  # a line's marker that draws none


def handle_length(handles, fontsize: float | str | None = None) -> float:
    """A legend's handle length, in font sizes, that shows every handle's whole dash pattern
    twice, once on each side of a marker in its middle (a fixed 3.5 showed dropout then
    dot-dot, 19.5 points, as a dash beside a marker), and never under HANDLE_LENGTH."""
    points = FontProperties(size=rcParams["legend.fontsize"] if fontsize is None
                            else fontsize).get_size_in_points()
    longest = 0.0
    for handle in (h for h in handles if isinstance(h, Line2D)):
        # Matplotlib has no getter for a line's dash pattern (in points, scaled by its width;
        # None for a solid line): this attribute is what Line2D draws.
        period = sum(getattr(handle, "_dash_pattern", (0, None))[1] or ())
        marker = handle.get_markersize() if handle.get_marker() not in MARKERLESS else 0
        longest = max(longest, 2 * period + marker)
    return max(HANDLE_LENGTH, longest / points)


def legend(where, handles, labels, **keywords):
    """`where.legend` (an axes' or a figure's) with handles long enough for their patterns."""
    return where.legend(handles, labels, **keywords,
                        handlelength=handle_length(handles, keywords.get("fontsize")))


# A linear cost axis is cut to the range after the first pass where the first pass would
# stretch it more than this factor: Fig. 1's SGD starts at 1.1 and pressed every method into
# 0.26-0.4 of an axis to 1.35.
FIRST_PASS_STRETCH = 2.0
CUT_MARGIN = 0.05  # of the range after the first pass, above and below it


def cut_first_pass(ax, drawn: list[tuple[str, pd.DataFrame]], panel: str) -> str:
    """Cut a linear axis (`drawn`: each method's band() frame, x in passes) to the range of
    the means and bands after the first pass (x > 1), with a margin, where the first pass would
    stretch it more than FIRST_PASS_STRETCH times. What the line under the title says of it:
    the methods above the cut and the highest mean of each ("" where not cut)."""
    if not drawn:
        return ""
    every = pd.concat([stats for _, stats in drawn]).replace([np.inf, -np.inf], np.nan)
    later = every.loc[every.index > 1, "mean"].dropna()
    if later.empty:
        return ""
    # the bands after the first pass too: the line under the title says that only the first
    # pass is above the cut (a band of Fig. 1's AdaGrad at pass 2 reached above it)
    low = every[["mean", "low"]].min().min()
    top = max(later.max(), every.loc[every.index > 1, "high"].max(skipna=True))
    stretched = every[["mean", "high"]].max().max() - low > FIRST_PASS_STRETCH * (top - low)
    if not stretched or top <= low:  # nothing after the first pass spans a range to cut to
        return ""
    margin = CUT_MARGIN * (top - low)
    ax.set_ylim(low - margin, top + margin)
    highest = {name: stats["mean"].max() for name, stats in drawn}
    above = {name: value for name, value in highest.items() if value > top + margin}
    # only first-pass means can be above: every later one is under the cut
    if len(above) == len(drawn) > 1:  # Fig. 3's first steps: six names said nothing more
        peak = max(above, key=above.get)
        said = f"every method (highest: {peak}, {above[peak]:.3g})"
    else:
        said = ", ".join(f"{name} ({value:.3g})" for name, value in above.items())
    return (f"{panel}: axis cut at {top + margin:.3g}, above it in the first pass: "
            f"{said or 'bands only'}")


# How the hyperparameters a grid searches are named in a legend (the paper's symbols).
SYMBOLS = {"lr": "α", "beta1": "β1", "beta2": "β2", "eps": "ε"}


def searched(meta: dict, method: str) -> list[str]:
    """The table columns of the hyperparameters method `method`'s grid searched (config
    order; a pair such as `betas` is its two columns, beta1 and beta2)."""
    spec = meta["config"].methods.get(method)
    grid = spec.grid if spec is not None else {}
    return [column for key, values in grid.items()
            for column in hparam_columns({key: values[0]})]


def as_written(text: str) -> str:
    """A method's name or a config's title as matplotlib shows it as written. Each `$` is
    escaped: a pair is mathtext to it (`$x$y` was an italic xy, and `$\\x$` a ValueError as
    the figure was saved). A leading underscore follows an invisible word joiner (U+2060):
    matplotlib leaves out of a legend every line whose label starts with one."""
    text = text.replace("$", "\\$")
    return "\u2060" + text if text.startswith("_") else text


def same_curve(points: pd.Series, drawn: dict[str, pd.Series]) -> str | None:
    """The first method of `drawn` whose curve this one is, point for point: a reader sees one
    line where two lie (Fig. 2b's adam+batched trains as adam does and differs only in its
    seconds), so the legend says it rather than show a line that is nowhere."""
    if points.empty:  # no line drawn: nothing to lie on, nor to be lain on
        return None
    return next((method for method, other in drawn.items()
                 if other.index.equals(points.index)
                 and np.array_equal(other.to_numpy(), points.to_numpy(), equal_nan=True)),
                None)


def legend_label(chosen: pd.Series, meta: dict, same_as: str | None = None) -> str:
    """A method's label with the grid point it was selected at, e.g. `adam (α=0.1/√t)`: a
    reader sees which step size each curve is, and that a decaying one decays; and which of
    them was selected at the end of its grid (`adam (α=0.003; grid edge: α)`), as the
    report cautions, since a wider grid might select another; `same_as` names the method
    whose curve this one is, drawn over it (`same_curve`)."""
    values = []
    for name in searched(meta, chosen["method"]):
        value = chosen.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        text = f"{SYMBOLS.get(name, name)}={value:g}" if isinstance(value, float) else \
            f"{SYMBOLS.get(name, name)}={value}"
        if name == "lr" and chosen.get("lr_decay") == "sqrt":
            text += "/√t"
        values.append(text)
    text = "; ".join(filter(None, [", ".join(values),
                                   *label_notes(chosen.get("at_grid_edge"), same_as)]))
    return as_written(f"{chosen['method']} ({text})" if text else chosen["method"])


def label_notes(at_grid_edge, same_as: str | None = None) -> list[str]:
    """What a legend entry says beyond the method's settings: the grid axes it was selected
    at the edge of (best.csv's `at_grid_edge`, "lr;beta2", NaN or "" for none) and the
    method whose curve it lies on (`same_curve`)."""
    edges = at_grid_edge.split(";") if isinstance(at_grid_edge, str) and at_grid_edge else []
    return ([f"grid edge: {', '.join(SYMBOLS.get(name, name) for name in edges)}"] if edges
            else []) + ([f"the same curve as {same_as}"] if same_as is not None else [])


def how_chosen(best: pd.DataFrame, band_kind: str, curves: pd.DataFrame | None = None,
               log: bool = False, bars: bool = False) -> str:
    """One line under a figure's title: which run of each method is drawn, the band (`log`:
    a log axis shows it, band() with log; `bars`: a panel drew it as bars, `spread`), and
    the methods of `curves` not drawn because every grid point of theirs diverged (else a
    reader could not tell them from methods not run)."""
    rules = sorted(set(best["selected_by"].dropna())) if "selected_by" in best else []
    seeds = seeds_of(best, curves)
    line = f"each method at its grid point of {rules[0]}" if len(rules) == 1 else \
        "each method at its selected grid point (best.csv)"
    if seeds > 1:
        line += "; band: " + ("min to max" if band_kind == "minmax" else "±1 std") + \
            f" over {seeds} seeds"
        if log and band_kind != "minmax":
            line += " (on a log axis, not below the lowest seed)"
        if bars:
            line += (f", drawn as bars side by side at each pass on per-pass curves of "
                     f"{BARS_UP_TO} passes or fewer")
    gone = [] if curves is None else [m for m in dict.fromkeys(curves["method"])
                                      if m not in set(best["method"])]
    if gone:  # a point with a seed that diverged is never selected
        some = " (in one seed or more)" if seeds > 1 else ""
        line += f"; not drawn, every grid point diverged{some}: {', '.join(gone)}"
    return line


def seeds_of(best: pd.DataFrame, curves: pd.DataFrame | None) -> int:
    """Seeds a figure's runs had: best.csv's, or, where every method diverged and best.csv
    is empty, curves.csv's (a title read "0 seed(s)" of runs trained with 2)."""
    if len(best):
        return int(best["n_seeds"].max())
    return 0 if curves is None else int(curves["seed"].nunique())


def run_tag(meta: dict, seeds: int | None = None, curves: pd.DataFrame | None = None) -> str:
    """What every figure's title says of its runs: the scale, the seeds, the device, and
    whether the data was read unverified (`run --unverified-data`). The device is each one
    the runs of `curves` trained on (a sweep resumed on another machine, runs reused from
    another command: the device is not in a run's id); config.json's is the last command's
    alone, which the title gave as every run's."""
    prov = meta["provenance"]
    devices = ([] if curves is None or "device" not in curves.columns
               else sorted(curves["device"].dropna().astype(str).unique()))
    device = (f"{len(devices)} devices: {'; '.join(devices)}" if len(devices) > 1
              else devices[0] if devices else prov["device"])
    parts = [f"{meta['scale']} scale", *([f"{seeds} seed(s)"] if seeds is not None else []),
             device, *([] if prov.get("data_verified", True) else ["data unverified"])]
    return f"[{', '.join(parts)}]"


class PlainLogFormatter(LogFormatterSciNotation):
    """A log axis's labels as plain numbers between 0.001 and 10,000 ('0.3', '2.5'), as
    matplotlib chooses which ticks to label: a cost axis of less than a decade read
    '6×10⁻¹, 4×10⁻¹, 3×10⁻¹' (Fig. 1 right) or '2.8×10⁰' (Fig. 3)."""

    def __call__(self, x, pos=None):
        text = super().__call__(x, pos)
        return f"{x:g}" if text and 1e-3 <= abs(x) < 1e4 else text


def log_y(ax, which: str = "y") -> None:
    """A log y axis (or x: `which`), labelled in plain numbers where they are short
    (PlainLogFormatter)."""
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


def whole_passes(ax) -> None:
    """Passes are whole numbers; one pass gets a range around it, not fractions of it. Steps
    of 1, 2, 5 or 10 (times a power of ten): matplotlib's own choice ticked 20 passes at 3,
    6, ..., 18, neither the first pass nor the last, the one selection reads."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    low, high = ax.get_xlim()
    if high - low < 1:
        middle = round((low + high) / 2)
        ax.set_xlim(middle - 1, middle + 1)


def axis_label(text: str) -> str:
    """A long label on two lines rather than cut off at the figure's edges."""
    return textwrap.fill(text, 42)


def few_points(count: int, line: dict, most: int = 3, size: float = 4) -> dict:
    """Markers for a curve of at most `most` points (one pass is a single point, which a
    line alone does not show), one per variant's line style (`line`: `style`'s keywords)."""
    if count > most:
        return {}
    return {"marker": point_marker(line.get("linestyle", "-")), "markersize": size}


def fitted(inches: float, *lines: str, fontsize: float = 10) -> str:
    """Lines of a title, each wrapped to `inches` of width: a long one (a narrowed network's
    name, a device's, "data unverified") is never cut off at a figure's edges."""
    # About 13 characters of 10-point DejaVu Sans per inch; fewer of a larger size.
    width = int(13 * inches * 10 / fontsize)
    return "\n".join(as_written(textwrap.fill(line, width)) for line in lines)


def experiment_palette(curves: pd.DataFrame) -> Palette:
    """The palette of every optimizer and variant in an experiment's curves.csv, drawn in a
    figure or not, so that every figure of the experiment draws a method alike."""
    return palette_of(curves["optimizer"], variants(curves))


def palette_notes(curves: pd.DataFrame) -> list[str]:
    """What a reader of an experiment's figures could misread from its palette alone: a
    user's optimizer drawn in another color than its own (another of theirs holds it here),
    and methods of one optimizer and variant, whose lines only the legend's order tells
    apart."""
    notes = [f"{optimizer} is drawn in another color than its own ({own}), which {holder} "
             f"has in this experiment"
             for optimizer, (own, holder) in moved_colors(curves["optimizer"]).items()]
    methods = pd.DataFrame({"method": curves["method"], "optimizer": curves["optimizer"],
                            "variant": variants(curves)}).drop_duplicates("method")
    for (optimizer, variant), same in methods.groupby(["optimizer", "variant"], sort=True):
        if len(same) > 1:
            notes.append(f"methods {', '.join(sorted(same['method']))} are all {optimizer}"
                         f"{' (' + variant + ')' if variant else ''}, drawn alike; give each "
                         f"a variant of its own in the config to tell their lines apart")
    return notes


def figure_title(fig, *lines: str, fontsize: float = 10) -> None:
    """The figure's title, `fitted` to its width."""
    fig.suptitle(fitted(fig.get_figwidth(), *lines, fontsize=fontsize), fontsize=fontsize)


def legend_below(fig, ax) -> None:
    """The methods' legend under the panels, in rows of 3, rather than inside one of them,
    where it hid curves (a figure with `layout="constrained"` makes room for it)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        legend(fig, handles, labels, loc="outside lower center", ncol=min(len(handles), 3),
               frameon=False)


# Inside `staged_figures()`, save_figure keeps each file's bytes here rather than write it:
# `plot` draws every figure of the command before it replaces any file, so a figure that fails
# (a damaged runs/*.pt) leaves the others as they were, not half of them redrawn.
_STAGED: ContextVar[dict[Path, bytes] | None] = ContextVar("staged_figures", default=None)


@contextlib.contextmanager
def staged_figures():
    """The files the figures drawn inside save, path -> bytes, for the caller to write."""
    staged: dict[Path, bytes] = {}
    token = _STAGED.set(staged)
    try:
        yield staged
    finally:
        _STAGED.reset(token)


# A PNG's text key naming the tables it was drawn from (tables_digest): `report` tells a
# figure drawn from other tables (a run since, without `plot`) from one of these.
TABLES_KEY = "adamrepro-tables"


def tables_digest(folder: Path) -> str | None:
    """A digest of a folder's curves.csv and best.csv, what every figure is drawn from (None
    where one is missing)."""
    digest = hashlib.sha256()
    for name in ("curves.csv", "best.csv"):
        try:
            digest.update((folder / name).read_bytes())
        except OSError:
            return None
    return digest.hexdigest()[:16]


def drawn_from(png: Path) -> str | None:
    """The tables digest a PNG of ours records, or None (drawn before figures recorded it,
    or unreadable: the report then says nothing of it)."""
    from PIL import Image  # matplotlib's own dependency

    try:
        with Image.open(png) as image:
            return image.text.get(TABLES_KEY)
    except (OSError, ValueError, SyntaxError):  # PIL's errors for a damaged file
        return None


def save_figure(fig, folder: Path, stem: str) -> list[Path]:
    """Write <folder>/<stem>.png and .pdf through temporary names, or stage them (above).
    (A `Figure` made without pyplot belongs to no figure manager: nothing to close, and
    garbage collected.)"""
    staged = _STAGED.get()
    digest = tables_digest(folder)
    metadata = {**METADATA, "png": {**METADATA["png"], **({TABLES_KEY: digest} if digest
                                                           else {})}}
    written = []
    for suffix in ("png", "pdf"):
        path = folder / f"{stem}.{suffix}"
        if staged is not None:
            buffer = io.BytesIO()
            fig.savefig(buffer, format=suffix, dpi=130, metadata=metadata[suffix])
            staged[path] = buffer.getvalue()
        else:
            with atomic_file(path, "wb") as f:
                fig.savefig(f, format=suffix, dpi=130, metadata=metadata[suffix])
        written.append(path)
    return written
