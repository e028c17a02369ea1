"""The step bound of Sec. 2.1, measured: for every run that recorded `max_step_ratio` (Adam
with `track_step_ratio`), the largest |Δθ|/α_t over all parameters and steps of each pass,
against the bound α·(1 − β1)/√(1 − β2) when (1 − β1) > √(1 − β2), else α (ε = 0; a thin
solid grey guide line, `palette.GUIDE_LINE`, so that no variant's line style is read into
it). One panel per method, one line per step size (the largest over its seeds), in the
method's fixed color. A grid over (β1, β2) draws one line per cell, each bound said with
the cells it belongs to (their maximum was drawn against six bounds, and a cell above its
own hidden); the cells whose runs diverged are named in the legend (they ended unmarked, or
were absent when they diverged in their first pass)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# The object-oriented API, not pyplot: no backend to choose (none is touched on import, a
# user's MPLBACKEND included) and no global figure state.
from matplotlib.figure import Figure

from adamrepro.config import recorded_config
from adamrepro.figures.common import (
    as_written,
    experiment_palette,
    figure_title,
    legend,
    run_tag,
    save_figure,
    whole_passes,
)
from adamrepro.figures.palette import GUIDE_LINE, POINT_MARKERS, REFERENCE, style
from adamrepro.results.measures import STEP_RATIO as COLUMN
from adamrepro.results.measures import step_bound, with_betas
from adamrepro.results.tables import Tables, read_results, variant_of


def draw(folder: Path, tables: Tables | None = None,
         data_dir: Path | None = None) -> list[Path]:
    """step_bound.png/.pdf (nothing when no run recorded the ratio)."""
    curves, _, meta = tables or read_results(folder, recorded_config)
    if COLUMN not in curves.columns:
        return []
    tracked = with_betas(curves[curves[COLUMN].notna() & (curves["epoch"] > 0)])
    order = [m for m in meta["config"].methods if m in set(tracked["method"])]
    if not order:
        return []
    palette = experiment_palette(curves)
    # A bound holds for every run: each point is the largest over the seeds, not their mean.
    seeds = tracked["seed"].nunique()
    fig = Figure(figsize=(4.6 * len(order), 4.0), layout="constrained")
    axes = fig.subplots(1, len(order), squeeze=False, sharey=True)
    highest = 0.0  # the highest bound drawn
    for ax, method in zip(axes[0], order, strict=True):
        runs = tracked[tracked["method"] == method]
        first = runs.iloc[0]
        line = style(first["optimizer"], variant_of(first), palette)
        several = len(runs[["beta1", "beta2"]].drop_duplicates()) > 1
        bounds: dict[str, tuple[float, list[str]]] = {}  # by the value as printed
        for i, ((b1, b2, lr), run) in enumerate(runs.groupby(["beta1", "beta2", "lr"])):
            per_pass = run.groupby("epoch")[COLUMN].max()
            cell = f"β1={b1:g}, β2={b2:g}"
            ax.plot(per_pass.index, per_pass.values, marker=POINT_MARKERS[i % len(POINT_MARKERS)],
                    markersize=4, label=f"α={lr:g}" + (f", {cell}" if several else ""),
                    **line)
            bound = step_bound(b1, b2)
            # 10 from (1 - 0.9)/√(1 - 0.9999) and from 1/√(1 - 0.99): one line, both cells
            _, cells = bounds.setdefault(f"{bound:.3g}", (bound, []))
            if cell not in cells:
                cells.append(cell)
        for printed, (bound, cells) in sorted(bounds.items(), key=lambda item: item[1][0]):
            highest = max(highest, bound)
            ax.axhline(bound, color=REFERENCE, **GUIDE_LINE,
                       label=f"Sec. 2.1 bound: |Δθ| ≤ {printed}·α"
                       + (f" ({'; '.join(cells)})" if several else ""))
        lost = diverged_cells(curves[curves["method"] == method], several)
        if lost:
            ax.plot([], [], marker="x", linestyle="none", label=f"diverged: {'; '.join(lost)}",
                    **{key: value for key, value in line.items() if key == "color"})
        ax.set(title=as_written(method), xlabel="iterations over entire dataset")
        whole_passes(ax)  # not 0.25, 0.50, ... at a few passes
        legend(ax, *ax.get_legend_handles_labels(), frameon=False, fontsize=8)
    # The axis is shared: its label once, and room above the highest bound, which sat on the
    # frame and read as a double border when no step came near it.
    axes[0][0].set_ylabel("largest |Δθ| / α in the pass" + (" and seeds" if seeds > 1 else ""))
    axes[0][0].set_ylim(0, max(axes[0][0].get_ylim()[1], 1.1 * highest))
    title = (f"{meta['config'].title}: the largest step of each pass against the bound "
             f"of Sec. 2.1  {run_tag(meta, seeds, curves)}")
    figure_title(fig, title)
    return save_figure(fig, folder, "step_bound")


def diverged_cells(runs: pd.DataFrame, several: bool) -> list[str]:
    """The cells (α, and (β1, β2) where the grid varies them) of the runs that diverged."""
    gone = runs.groupby("run_id").agg(diverged=("diverged", "any"), lr=("lr", "first"),
                                      beta1=("beta1", "first"), beta2=("beta2", "first"))
    cells = gone[gone["diverged"]].drop_duplicates(["beta1", "beta2", "lr"]).sort_values(
        ["beta1", "beta2", "lr"])
    return [f"α={row.lr:g}" + (f", β1={row.beta1:g}, β2={row.beta2:g}" if several else "")
            for row in cells.itertuples()]
