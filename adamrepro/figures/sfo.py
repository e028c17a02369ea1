"""Fig. 2b, drawn from a results folder alone: Adam against SFO on the deterministic MLP.

Three panels: the training cost of each method's selected run against passes, and against
its training seconds (evaluation excluded; a batched run's share of its group's time), and
SFO's optimizer-state memory against its number of subfunctions (the `num_subfunctions`
points of any SFO method that varies it), with a least-squares line. Below them, a table of
seconds per pass and memory for every method.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

# The object-oriented API, not pyplot: no backend to choose (none is touched on import, a
# user's MPLBACKEND included) and no global figure state.
from matplotlib.figure import Figure

from adamrepro.config import recorded_config
from adamrepro.figures.common import (
    as_written,
    axis_label,
    band,
    experiment_palette,
    figure_title,
    how_chosen,
    legend,
    legend_label,
    log_y,
    run_tag,
    same_curve,
    save_figure,
    seeds_of,
    short_curves,
    spread,
    whole_passes,
)
from adamrepro.figures.palette import BAND_ALPHA, GUIDE_LINE, REFERENCE, style
from adamrepro.metrics import column_of
from adamrepro.results.measures import (
    memory_by_subfunctions,
    method_costs,
    subfunction_sweeps,
)
from adamrepro.results.tables import Tables, in_config_order, read_results, variant_of

MB = 2.0**20
TABLE_FONTSIZE = 9  # the axes' tick labels are 10 points: a table of numbers a little less


def _mb(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value / MB:,.1f}"


def draw(folder: Path, tables: Tables | None = None,
         data_dir: Path | None = None) -> list[Path]:
    """sfo.png/.pdf; `tables` saves reading the folder again (`read_results`)."""
    curves, best, meta = tables or read_results(folder, recorded_config)
    y = column_of(meta, meta["config"].plot.y)
    palette = experiment_palette(curves)
    fig = Figure(figsize=(15, 7.2))
    grid = fig.add_gridspec(2, 3, height_ratios=(3, 1.3))
    ax_pass, ax_time, ax_memory = (fig.add_subplot(grid[0, i]) for i in range(3))
    rows = []
    memory = memory_by_subfunctions(curves)
    # A method sweeping N is the memory panel's: its best N among the curves would race
    # Adam with other minibatches than SFO's own (at small scales it wins by that alone).
    sweeps = subfunction_sweeps(curves)
    chosen_rows = [chosen for _, chosen in in_config_order(best, meta).iterrows()]
    raced = [chosen["method"] for chosen in chosen_rows if chosen["method"] not in sweeps]
    # bars on a few passes, as curves.png has them; seconds differ per method: bands there
    bars = short_curves(curves, chosen_rows)
    drawn: dict[str, pd.Series] = {}  # each method's curve per pass, for same_curve
    for chosen in chosen_rows:
        line = style(chosen["optimizer"], variant_of(chosen), palette)
        costs = method_costs(curves, chosen, y.name)
        if chosen["method"] not in sweeps:
            label = legend_label(chosen, meta, same_curve(costs[y.name], drawn))
            drawn[chosen["method"]] = costs[y.name]
            ax_pass.plot(costs.index, costs[y.name], label=label, **line)
            timed = costs[costs["run_seconds"] > 0]  # pass 0, at 0 s, is the guide line
            ax_time.plot(timed["run_seconds"], timed[y.name], label=as_written(chosen["method"]),
                         **line)
            if chosen["n_seeds"] > 1:  # the band the line under the title names
                runs = curves[curves["point_id"] == chosen["point_id"]]
                over = band(runs, y.name, meta["config"].plot.band, log=True).dropna()
                spread(ax_pass, over, line["color"],
                       (raced.index(chosen["method"]), len(raced)) if bars else None)
                kept = over.reindex(timed.index)
                ax_time.fill_between(timed["run_seconds"], kept["low"], kept["high"],
                                     color=line["color"], alpha=BAND_ALPHA, linewidth=0)
        last = costs.iloc[-1]
        passes = max(int(costs.index.max()), 1)
        rows.append((chosen["method"], "batched" if last["group_size"] > 1 else "alone",
                     f"{last['run_seconds'] / passes:.3g}", _mb(last["state_bytes"]),
                     _mb(last["peak_memory_bytes"])))
    for ax in (ax_pass, ax_time):
        log_y(ax)
        ax.set_ylabel(axis_label(y.label))
    ax_pass.set_xlabel("iterations over entire dataset")
    whole_passes(ax_pass)  # not 0.25, 0.50, ... at a few passes
    # Seconds on a log axis: SFO's 5-10x per pass is a shift, and both curves keep their
    # shape (on a linear one, Adam's was a near-vertical line beside SFO's). Pass 0, at 0 s,
    # has no place on it: the untrained cost every run starts from is a guide line instead.
    log_y(ax_time, "x")
    start = curves.loc[(curves["epoch"] == 0) & ~curves["method"].isin(sweeps), y.name].mean()
    if math.isfinite(start):
        # beneath the curves: SFO with dropout stays at the untrained cost, on this line
        guide = ax_time.axhline(start, color=REFERENCE, zorder=1.5, **GUIDE_LINE)
        ax_time.legend([guide], [f"pass 0, untrained: {start:.3g} (mean)"], frameon=False,
                       fontsize=8)
    ax_time.set_xlabel("training seconds of one run (log; evaluation excluded)")
    legend(ax_pass, *ax_pass.get_legend_handles_labels(), frameon=False, fontsize=8)

    for (method, optimizer, variant), points in memory.groupby(
            ["method", "optimizer", "variant"], sort=False):
        line = style(optimizer, variant or None, palette)
        ax_memory.plot(points["num_subfunctions"], points["state_bytes"] / MB, marker="o",
                       linestyle="none", color=line["color"], label=as_written(method))
        if len(points) > 1:
            slope, intercept = np.polyfit(points["num_subfunctions"], points["state_bytes"], 1)
            xs = np.linspace(0, points["num_subfunctions"].max(), 20)
            ax_memory.plot(xs, (intercept + slope * xs) / MB, color=line["color"], **GUIDE_LINE,
                           label=f"fit: {intercept / MB:.1f} + {slope / MB:.2f}·N MiB")
    ax_memory.set(xlabel="number of subfunctions N (minibatches)",
                  ylabel="optimizer state (MiB)")
    if len(memory):
        legend(ax_memory, *ax_memory.get_legend_handles_labels(), frameon=False, fontsize=8)
    else:
        ax_memory.text(0.5, 0.5, "no SFO run varies num_subfunctions", ha="center",
                       transform=ax_memory.transAxes)

    ax_table = fig.add_subplot(grid[1, :])
    ax_table.axis("off")
    # measured on a GPU alone (torch.cuda.max_memory_allocated): a column of '-' says why
    peak = ("peak device memory of its group (MiB)"
            if any(row[-1] != "-" for row in rows) else
            "peak device memory of its group (MiB; a GPU's only)")
    labels = ("method", "trained", "seconds per pass (one run)", "optimizer state (MiB)", peak)
    table = ax_table.table(cellText=rows, loc="center", cellLoc="center", colLabels=labels)
    # Matplotlib's table spreads its columns over the axes' width and shrinks its font to
    # fit them (about 6 points in cells of 2.9 inches): a readable font, in columns as wide
    # as what they hold.
    table.auto_set_font_size(False)
    table.set_fontsize(TABLE_FONTSIZE)
    table.auto_set_column_width(range(len(labels)))
    table.scale(1, 1.5)
    seeds = seeds_of(best, curves)
    figure_title(fig, f"{meta['config'].title}  {run_tag(meta, seeds, curves)}",
                 how_chosen(best, meta["config"].plot.band, curves, log=True, bars=bars))
    fig.tight_layout()
    return save_figure(fig, folder, "sfo")
