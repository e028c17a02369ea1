"""Fig. 4 of the paper, drawn from a results folder alone, laid out as the paper lays it out:
the training cost after 10% of the passes (left; the paper's 10 of 100 epochs) and at the end
(right), each a grid of one panel per (beta1, beta2), beta1 a row and beta2 a column, x =
log10 of the step size, one line per method in its fixed style (Adam in its color; without
bias correction, the `nobias` variant, in RMSProp's color, dotted: it is RMSProp with
momentum).

Each point is the mean over seeds of the cost at that pass of one grid cell. A cell that
diverged by then is an 'x' at the top edge, never dropped; a cost above the top of the axis
(the untrained model's cost) is a '^' there."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The object-oriented API, not pyplot: no backend to choose (none is touched on import, a
# user's MPLBACKEND included) and no global figure state.
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MultipleLocator
from matplotlib.transforms import blended_transform_factory

from adamrepro.config import recorded_config
from adamrepro.errors import UserError
from adamrepro.figures.common import (
    as_written,
    experiment_palette,
    figure_title,
    legend,
    run_tag,
    save_figure,
    untrained_cost,
)
from adamrepro.figures.palette import REFERENCE, style
from adamrepro.metrics import column_of, metric_set
from adamrepro.results.measures import CELLS, Measured, cell_costs, early_pass
from adamrepro.results.tables import Tables, read_results, variant_of
from adamrepro.wording import count

EARLY = 0.1  # the left block: 10% of the passes, the paper's 10 of 100 epochs


def checkpoints(passes: int) -> list[int]:
    """The passes of the two blocks, left and right: 10% of the passes (at least 1) and the
    last."""
    return [early_pass(passes, EARLY), passes]


def draw(folder: Path, tables: Tables | None = None,
         data_dir: Path | None = None) -> list[Path]:
    """bias_correction.png/.pdf; `tables` saves reading the folder again."""
    curves, best, meta = tables or read_results(folder, recorded_config)
    measured = Measured(folder.name, curves, best, meta)
    y = column_of(meta, meta["config"].plot.y)
    words = next(m.label or m.name for m in metric_set(meta).metrics if m.name == y.metric)
    untrained = untrained_cost(curves, meta)  # the same init for every run
    palette = experiment_palette(curves)
    # Fig. 4 compares Adam with and without bias correction over a (β1, β2) grid: the
    # methods with betas are drawn, the others have no panel to be in
    if not {"beta1", "beta2"} <= set(curves.columns) or curves["beta1"].isna().all():
        raise UserError(f"{folder}: bias_correction draws methods over a (beta1, beta2) grid, "
                        f"and no method here has betas; remove bias_correction from "
                        f"plot.figures")
    curves = curves.dropna(subset=["beta1", "beta2"])
    order = list(meta["config"].methods)
    methods = curves.drop_duplicates("method").set_index("method")
    methods = methods.loc[[m for m in order if m in methods.index]]
    beta1s, beta2s = sorted(curves["beta1"].unique()), sorted(curves["beta2"].unique())
    ran = set(curves[["beta1", "beta2"]].drop_duplicates().itertuples(index=False, name=None))
    checkpoints_drawn = checkpoints(measured.passes)
    seeds = int(curves["seed"].nunique())
    marks: set[str] = set()  # the keys of marks no panel shows are left out
    # at least 9 inches: one β pair left 6.2, where the blocks' titles overprinted each
    # other and the legend ran off both edges
    fig = Figure(figsize=(max(2.6 * len(beta2s) * len(checkpoints_drawn) + 1, 9.0),
                          2.6 * len(beta1s) + 1.6), layout="constrained")
    for half, epoch in zip(fig.subfigures(1, len(checkpoints_drawn), wspace=0.04),
                           checkpoints_drawn, strict=True):
        # `plot.y` is the mean minibatch objective *of* the pass, not the cost after it
        half.suptitle(f"training {words} in pass {epoch} (mean minibatch objective), "
                      f"mean over {count(seeds, 'seed')}", fontsize=10)
        axes = half.subplots(len(beta1s), len(beta2s), sharex=True, sharey=True,
                             squeeze=False)
        cells = cell_costs(measured, epoch, CELLS)
        finite = cells["cost"][np.isfinite(cells["cost"])]
        top = min(finite.max(), untrained) if len(finite) else untrained
        low = finite.min() if len(finite) else 0.0
        margin = 0.04 * (top - low) if top > low else 1.0
        for r, beta1 in enumerate(beta1s):
            for c, beta2 in enumerate(beta2s):
                ax = axes[r, c]
                ax.set_title(f"β1={beta1:g}, β2={beta2:g}", fontsize=9)
                ax.set_ylim(low - margin, top + margin)
                # whole decades: half-decade ticks (-3.5) sat where a grid of 1e-4, 1e-3,
                # 1e-2 has no point, and read as α values run
                ax.xaxis.set_major_locator(MultipleLocator(1))
                if r == len(beta1s) - 1:
                    ax.set_xlabel("log10(α)")
                if (beta1, beta2) not in ran:  # a grid that leaves this pair out
                    ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
                    continue
                here = cells[(cells["beta1"] == beta1) & (cells["beta2"] == beta2)]
                marks |= _draw_panel(ax, here, methods, palette, top)
        for ax in axes[:, 0]:
            ax.set_ylabel(f"training {words}", fontsize=9)
    # Adam without bias correction is RMSProp with momentum (PAPER.md, Fig. 4), drawn in
    # RMSProp's color (palette.py): its key says so
    handles = [Line2D([], [], marker="o", markersize=4, label=as_written(method) + (
                   " (RMSProp with momentum)" if variant_of(row) == "nobias" else ""),
                      **style(row["optimizer"], variant_of(row), palette))
               for method, row in methods.iterrows()]
    handles += [Line2D([], [], linestyle="none", marker=marker, color=REFERENCE, label=label)
                for marker, label in (("x", "diverged"), ("^", "above the untrained cost"))
                if marker in marks]
    legend(fig, handles, [handle.get_label() for handle in handles], loc="outside lower center",
           ncol=len(handles), frameon=False)
    # a grid over more than the cell: each cell is its best point (cell_costs), said so
    others = [c for c in meta.get("hparam_columns", []) if c not in CELLS and c in curves
              and curves.groupby(["method", *CELLS])[c].nunique().max() > 1]
    figure_title(fig, f"{meta['config'].title}  {run_tag(meta, seeds, curves)}",
                 *([f"each (β1, β2, α) cell: its best point over {', '.join(others)} "
                    f"at that pass"] if others else []))
    return save_figure(fig, folder, "bias_correction")


def _draw_panel(ax, here, methods, palette, top: float) -> set[str]:
    """One (β1, β2) panel: each method's cost over log10 α, a cell that diverged an 'x' at
    the top edge and a cost above the axis a '^' there (never dropped). The marks it drew."""
    edge = blended_transform_factory(ax.transData, ax.transAxes)
    drawn = set()
    for i, (method, row) in enumerate(methods.iterrows()):
        line = style(row["optimizer"], variant_of(row), palette)
        points = here[here["method"] == method].sort_values("lr")
        x, cost = np.log10(points["lr"]), points["cost"]
        shown = np.isfinite(cost) & (cost <= top)
        ax.plot(x[shown], cost[shown], marker="o", markersize=4, **line)
        for mask, marker in ((~np.isfinite(cost), "x"),
                             (np.isfinite(cost) & (cost > top), "^")):
            jitter = 0.08 * (i - (len(methods) - 1) / 2)  # both methods' marks show
            ax.plot(x[mask] + jitter, np.ones(int(mask.sum())), linestyle="none",
                    marker=marker, markersize=8, markeredgewidth=2, color=line["color"],
                    transform=edge, clip_on=False, in_layout=False)
            if mask.any():
                drawn.add(marker)
    return drawn
