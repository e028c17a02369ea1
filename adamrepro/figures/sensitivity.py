"""Sensitivity to the learning rate, drawn from a results folder alone: the final training
cost (the selection metric, mean over seeds) of each grid point against its learning rate,
one line per method in its fixed style. Where a method's grid also varies other
hyperparameters, each learning rate shows the best of them. A learning rate at which every
grid point diverged is an 'x' at the top edge; the selected point is a star."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

# The object-oriented API, not pyplot: no backend to choose (none is touched on import, a
# user's MPLBACKEND included) and no global figure state.
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from adamrepro.config import recorded_config
from adamrepro.figures.common import (
    as_written,
    experiment_palette,
    fitted,
    label_notes,
    legend,
    log_y,
    run_tag,
    same_curve,
    save_figure,
    seeds_of,
    untrained_cost,
)
from adamrepro.figures.palette import PAGE, style
from adamrepro.metrics import column_of, metric_set
from adamrepro.results.select import point_summary
from adamrepro.results.tables import Tables, in_config_order, read_results, variant_of

LOG_Y_SPAN = 10.0  # log y-axis once the finite costs span more than this factor


def sensitivity_table(curves: pd.DataFrame, meta: dict) -> tuple[pd.DataFrame, dict]:
    """One row per (method, lr): the mean final cost of the best point over the method's
    other grid hyperparameters, best by the selection rule (`selection.rule`: the final cost,
    or the cost over passes 1-N, as best.csv chose; NaN where every point diverged), and per
    method the names of those other hyperparameters; None for a method without a learning
    rate (`lr`), which is left out of the table and named in the caption."""
    metric, rule = meta["config"].selection.metric, meta["config"].selection.rule
    lower = column_of(meta, metric).lower_is_better
    cols = list(meta["hparam_columns"])
    points = point_summary(curves, cols, metric_set(meta).columns())
    trained = ~points["diverged"] & np.isfinite(points[f"final_{metric}"])
    points["cost"] = points[f"final_{metric}"].where(trained)
    # ranked as best.csv ranks, so the selected point is the one drawn at its α (under the
    # mean rule the best final cost was drawn there, and the selected point's star was not)
    points["rank"] = points[f"{rule}_{metric}"].where(trained)
    # Above the untrained cost ('^' at the top edge: a run that blew up without reaching inf)
    # is judged on the whole-set objective where the tables hold it: a metric of minibatches
    # with dropout sits above the untrained whole-set cost after a pass that improved it
    # (Fig. 2a's MLP at smoke scale: 3.06 against 2.37, its whole-set cost 1.73), and every
    # point of every method read as blown up.
    whole = f"final_train_{metric_set(meta).objective}_full"
    measure = points[whole] if whole in points.columns else points[f"final_{metric}"]
    points["above"] = trained & (measure > untrained_cost(curves, meta))
    rows, others = [], {}
    for method, grid in points.groupby("method", sort=False):
        if "lr" not in grid or grid["lr"].isna().all():
            others[method] = None  # a step size of another name: said, not dropped silently
            continue
        others[method] = [c for c in cols if c != "lr" and grid[c].nunique(dropna=True) > 1]
        for lr, at_lr in grid.groupby("lr"):
            finite = at_lr.dropna(subset=["rank"])
            if len(finite):
                chosen = finite.loc[finite["rank"].idxmin() if lower
                                    else finite["rank"].idxmax()]
            else:
                chosen = at_lr.iloc[0]
            rows.append({"method": method, "optimizer": chosen["optimizer"],
                         "variant": variant_of(chosen), "lr": lr,
                         "cost": chosen["cost"],  # NaN where none is finite
                         "above": bool(chosen["above"]),
                         "point_id": chosen["point_id"],
                         **{c: chosen[c] for c in others[method]}})
    table = pd.DataFrame(rows)
    if len(table):  # methods in the config's order, the order of every other figure's legend
        table = in_config_order(table, meta)
    order = list(in_config_order(pd.DataFrame({"method": list(others)}), meta)["method"])
    return table, {method: others[method] for method in order}


def caption(meta: dict, others: dict, seeds: int, above: bool = False) -> str:
    metric = meta["config"].selection.metric
    over = f" (mean over {seeds} seeds)" if seeds > 1 else ""
    text = (f"Final {metric}{over} against the learning rate, one line per method. "
            f"x at the top edge: every grid point at that learning rate diverged"
            f"{' (in one seed or more)' if seeds > 1 else ''}. "
            + ("^ at the top edge: a final cost above the untrained one. " if above else "")
            + "Star: the selected grid point.")
    left_out = [m for m, names in others.items() if names is None]
    if left_out:
        text += (f" Not drawn, without an lr hyperparameter to plot against: "
                 f"{', '.join(left_out)}.")
    varied = {m: names for m, names in others.items() if names}
    if varied:
        by = (f" (by {metric} over passes 1-N, the selection rule)"
              if meta["config"].selection.rule == "mean" else "")
        text += f" Each point is the best{by} over " + "; ".join(
            f"{', '.join(names)} for {m}" for m, names in varied.items()) + "."
    return text


def draw(folder: Path, tables: Tables | None = None,
         data_dir: Path | None = None) -> list[Path]:
    """sensitivity.png/.pdf; `tables` saves reading the folder again (`read_results`)."""
    curves, best, meta = tables or read_results(folder, recorded_config)
    table, others = sensitivity_table(curves, meta)
    fig = Figure(figsize=(8.5, 4.8))
    ax = fig.subplots()
    ax.set_xscale("log")
    top_edge = blended_transform_factory(ax.transData, ax.transAxes)
    selected = set(best["point_id"])
    palette = experiment_palette(curves)
    stars: list[tuple[str, float, float, str, int]] = []  # (method, α, cost, color, rank)
    # A final cost above the untrained one (a run that blew up without reaching inf) is a '^'
    # at the top edge, as in Fig. 4: drawn, it stretched a log axis to 10^4 and pressed every
    # other method into its bottom (Sec. 7's two horizons at α = 1e-4).
    above_any = False
    drawn: dict[str, pd.Series] = {}  # each method's line, for same_curve
    edges_of = (best.set_index("method")["at_grid_edge"].to_dict()
                if "at_grid_edge" in best.columns else {})
    for rank, (method, rows) in enumerate(table.groupby("method", sort=False)):
        line = style(rows["optimizer"].iloc[0], rows["variant"].iloc[0], palette)
        rows = rows.sort_values("lr")
        ok = rows.dropna(subset=["cost"])
        above = ok[ok["above"]]
        ok = ok[~ok["above"]]
        above_any = above_any or len(above) > 0
        costs = ok.set_index("lr")["cost"]
        # selected at the end of what was tried, as curves.png's legend and the report say
        said = label_notes(edges_of.get(method), same_curve(costs, drawn))
        drawn[method] = costs
        label = as_written(f"{method} ({'; '.join(said)})" if said else method)
        ax.plot(ok["lr"], ok["cost"], marker="o", markersize=4, label=label, **line)
        ax.plot(above["lr"], np.ones(len(above)), linestyle="none", marker="^",
                markersize=8, color=line["color"], transform=top_edge, clip_on=False)
        chosen = ok[ok["point_id"].isin(selected)]
        stars += [(method, float(lr), float(cost), line["color"], rank)
                  for lr, cost in zip(chosen["lr"], chosen["cost"], strict=True)]
        failed = rows[rows["cost"].isna()]
        ax.plot(failed["lr"], np.ones(len(failed)), linestyle="none", marker="x",
                markersize=9, markeredgewidth=2, color=line["color"], transform=top_edge,
                clip_on=False)
    tried = table["lr"].unique()
    if len(tried) == 1:
        # One step size (every smoke scale of Sec. 7): the top edge's marks, their x taken
        # through the log axis and back, widened its data a few ulps, and matplotlib took
        # that for a range: an axis a few ulps wide (a warning, and no axes or points drawn).
        ax.set_xlim(tried[0] / 10, tried[0] * 10)
    finite = (table.loc[~table["above"], "cost"].dropna() if len(table)
              else pd.Series(dtype=float))
    finite = finite[finite > 0]
    if meta["config"].plot.logy or (
            len(finite) and finite.max() > LOG_Y_SPAN * finite.min()):
        log_y(ax)
    metric = meta["config"].selection.metric
    seeds = seeds_of(best, curves)
    over = f" (mean over {seeds} seeds)" if seeds > 1 else ""
    ax.set(xlabel="learning rate (alpha)", ylabel=f"final {metric}{over}")
    # beside the axes: inside, it may hide a star or an x (a selected or diverged point)
    legend(ax, *ax.get_legend_handles_labels(), frameon=False, loc="upper left",
           bbox_to_anchor=(1.01, 1.0), fontsize=8)
    # over the axes alone, about 60% of the figure's width (the legend is to their right)
    ax.set_title(fitted(0.6 * fig.get_figwidth(), f"{meta['config'].title}: sensitivity",
                        run_tag(meta, seeds, curves), fontsize=9), fontsize=9)
    fig.text(0.01, 0.01, as_written(textwrap.fill(caption(meta, others, seeds, above_any),
                                                  110)),
             fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _draw_stars(ax, stars)
    return save_figure(fig, folder, "sensitivity")


STAR_SIZES = (16, 10, 6)  # points: a star over another shows a wide ring of the one beneath


def _draw_stars(ax, stars: list[tuple[str, float, float, str, int]]) -> None:
    """Each selected point's star, once the axes are final: a star drawn where one is
    already (within half a star, on the page) is smaller, edged in white and over it, so two
    methods selected at one α with about the same cost show as nested stars, not as one
    hiding the other (Fig. 1's Adam and constant-α AdaGrad at α = 0.1: their costs differ by
    0.07%, and a step of 3 points left Adam a rim too thin to see)."""
    ax.autoscale(False)  # the stars sit on drawn points: the limits stay as they are
    to_points = 72 / ax.figure.dpi
    placed: list[np.ndarray] = []
    for method, lr, cost, color, rank in stars:
        at = ax.transData.transform((lr, cost)) * to_points
        beneath = sum(np.hypot(*(at - other)) < STAR_SIZES[0] / 2 for other in placed)
        placed.append(at)
        ax.plot([lr], [cost], linestyle="none", marker="*",
                markersize=STAR_SIZES[min(beneath, len(STAR_SIZES) - 1)], color=color,
                markeredgecolor=color if not beneath else PAGE,
                markeredgewidth=1.0 if not beneath else 0.8, zorder=3 + rank,
                label=f"_{method} selected")  # '_': no legend entry
