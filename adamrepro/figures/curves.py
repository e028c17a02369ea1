"""The paper's figure for one experiment, drawn from its results folder alone:
training cost against passes for each method's selected run (mean over seeds with a band),
and beside it the test objective (test loss) and the first other test metric the model
declares (test accuracy for a classifier), as PAPER.md asks beyond the paper."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from adamrepro.config import recorded_config
from adamrepro.figures.common import (
    axis_label,
    band,
    cut_first_pass,
    experiment_palette,
    few_points,
    figure_title,
    how_chosen,
    legend_below,
    legend_label,
    log_y,
    run_tag,
    same_curve,
    save_figure,
    seeds_of,
    short_curves,
    spread,
    test_columns,
    whole_passes,
)
from adamrepro.figures.palette import style
from adamrepro.metrics import column_of
from adamrepro.results.measures import subfunction_sweeps
from adamrepro.results.tables import Tables, in_config_order, read_results, variant_of


def draw(folder: Path, tables: Tables | None = None,
         data_dir: Path | None = None) -> list[Path]:
    """curves.png/.pdf; `tables` saves reading the folder again (`read_results`)."""
    curves, best, meta = tables or read_results(folder, recorded_config)
    plot_cfg = meta["config"].plot
    y, tests = column_of(meta, plot_cfg.y), test_columns(meta)
    palette = experiment_palette(curves)
    fig = Figure(figsize=(5.2 * (1 + len(tests)), 4.8), layout="constrained")
    ax_cost, *ax_tests = fig.subplots(1, 1 + len(tests))
    panels = [(ax_cost, y), *zip(ax_tests, tests, strict=True)]
    # A sweep of SFO's number of subfunctions is Fig. 2b's memory panel (sfo.py), not a
    # curve: its best N would race Adam with other minibatches than SFO's own, and looked
    # like the better SFO here while sfo.png leaves it out.
    sweeps = subfunction_sweeps(curves)
    drawn: list[list] = [[] for _ in panels]  # each panel's (method, band) for cut_first_pass
    raced = [chosen for _, chosen in in_config_order(best, meta).iterrows()
             if chosen["method"] not in sweeps]
    bars = short_curves(curves, raced)
    costs: dict[str, pd.Series] = {}  # each method's training cost as drawn, for same_curve
    for place, chosen in enumerate(raced):
        runs = curves[curves["point_id"] == chosen["point_id"]]
        line = style(chosen["optimizer"], variant_of(chosen), palette)
        label = None
        for (ax, column), mine in zip(panels, drawn, strict=True):
            shown = runs.dropna(subset=[column.name])
            if ax is not ax_cost:  # the untrained epoch 0 (chance accuracy) squashes the axis
                shown = shown[shown["epoch"] > 0]
            stats = band(shown, column.name, plot_cfg.band,
                         plot_cfg.logy and column.metric == y.metric)
            mine.append((chosen["method"], stats))
            if label is None:  # the cost panel's, first: its legend is the figure's
                label = legend_label(chosen, meta, same_curve(stats["mean"], costs))
                costs[chosen["method"]] = stats["mean"]
            ax.plot(stats.index, stats["mean"], label=label,
                    **few_points(len(stats), line), **line)
            if chosen["n_seeds"] > 1:
                spread(ax, stats, line["color"], (place, len(raced)) if bars else None)
    for ax, column in panels:
        whole_passes(ax)
        ax.set(xlabel="iterations over entire dataset", ylabel=axis_label(column.label))
        if column.percent:  # a rate, in percent as the report gives it (92.5%, not 0.925)
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    if plot_cfg.logy:  # the test objective too: it is on the training cost's scale
        for ax, column in panels:
            if column.metric == y.metric:
                log_y(ax)
    cuts = [cut_first_pass(ax, mine, column.label.split(" (")[0])
            for (ax, column), mine in zip(panels, drawn, strict=True)
            if column.metric == y.metric and not plot_cfg.logy]
    legend_below(fig, ax_cost)
    seeds = seeds_of(best, curves)
    figure_title(fig, f"{meta['config'].title}  {run_tag(meta, seeds, curves)}",
                 how_chosen(best, plot_cfg.band, curves, plot_cfg.logy, bars)
                 + (f"; not drawn, a sweep of SFO's subfunctions (sfo.png's memory panel): "
                    f"{', '.join(sorted(sweeps))}" if sweeps else "")
                 + "".join(f"; {cut}" for cut in cuts if cut))
    return save_figure(fig, folder, "curves")
