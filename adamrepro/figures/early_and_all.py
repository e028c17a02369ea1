"""Fig. 3's two panels, drawn from a results folder alone: the training cost over the first
`plot.max_epoch` passes with detail within each pass (steps.csv, recorded every
`training.log_every` steps; linear axis, as the paper's, cut as Fig. 1's where the first pass
would squeeze the rest: `curves.cut_first_pass`), and over every pass (curves.csv; log axis
when `plot.logy`). Each method's selected run (best.csv), mean over seeds; its
optimizer's color, dashed for dropout (palette.py)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

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
    save_figure,
    seeds_of,
    short_curves,
    spread,
    whole_passes,
)
from adamrepro.figures.palette import style
from adamrepro.metrics import column_of
from adamrepro.results.tables import Tables, in_config_order, read_results, read_steps, variant_of
from adamrepro.wording import count

DEFAULT_EARLY_PASSES = 3
FEW_POINTS = 5  # curves this short (the small scales) get markers: one point draws no line


def draw(folder: Path, tables: Tables | None = None,
         data_dir: Path | None = None) -> list[Path]:
    """early_and_all.png/.pdf; without steps.csv the left panel uses the per-pass means."""
    curves, best, meta = tables or read_results(folder, recorded_config)
    plot_cfg = meta["config"].plot
    y = column_of(meta, plot_cfg.y)
    early = plot_cfg.max_epoch or DEFAULT_EARLY_PASSES
    passes = curves["epoch"].max()
    if passes > 0:  # a run of fewer passes (smoke): its passes, not an empty axis beyond them
        early = min(early, int(passes))
    first = "first pass" if early == 1 else f"first {early:g} passes"
    steps = read_steps(Path(folder), meta)
    palette = experiment_palette(curves)
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax_early, ax_all = fig.subplots(1, 2)
    early_drawn = []  # each method's (method, band) on the early panel, for cut_first_pass
    chosen_rows = [chosen for _, chosen in in_config_order(best, meta).iterrows()]
    bars = short_curves(curves, chosen_rows)
    within_passes = steps is not None and y.name in steps.columns  # the early panel's blocks
    seeds = seeds_of(best, curves)
    for place, chosen in enumerate(chosen_rows):
        line = style(chosen["optimizer"], variant_of(chosen), palette)
        runs = curves[curves["point_id"] == chosen["point_id"]].dropna(subset=[y.name])
        if within_passes:
            within = steps[(steps["point_id"] == chosen["point_id"])
                           & (steps["epoch_fraction"] <= early)]
            early_stats = band(within.rename(columns={"epoch_fraction": "epoch"}), y.name,
                               plot_cfg.band)
        else:
            early_stats = band(runs[runs["epoch"] <= early], y.name, plot_cfg.band)
        early_drawn.append((chosen["method"], early_stats))
        for ax, stats in ((ax_all, band(runs, y.name, plot_cfg.band, plot_cfg.logy)),
                          (ax_early, early_stats)):
            ax.plot(stats.index, stats["mean"], label=legend_label(chosen, meta), **line,
                    **few_points(len(stats), line, FEW_POINTS, 3))
            # steps.csv's blocks on the early panel: no band. Six of them, at every block,
            # overlapped into one grey area that hid the curves; the every-pass panel
            # beside it shows the spread over seeds.
            if chosen["n_seeds"] > 1 and (ax is ax_all or not within_passes):
                spread(ax, stats, line["color"], (place, len(chosen_rows)) if bars else None)
    for ax in (ax_early, ax_all):
        ax.set(xlabel="iterations over entire dataset", ylabel=axis_label(y.label))
    every = meta["config"].training.log_every
    if steps is not None and y.name in steps.columns and every:
        # steps.csv's blocks of `log_every` steps, not the passes the label names
        blocks = "each step" if every == 1 else f"each {count(every, 'step')}"
        ax_early.set_ylabel(axis_label(y.label.replace("of the pass)", f"of {blocks})")))
    ax_early.set_xlim(0, early)
    whole_passes(ax_all)
    ax_early.set_title(first, fontsize=10)
    ax_all.set_title("every pass", fontsize=10)
    if plot_cfg.logy:
        log_y(ax_all)
    cut = cut_first_pass(ax_early, early_drawn, first)
    if within_passes and seeds > 1:
        whose = f"{first}'s" if early == 1 else f"{first}'"
        cut = "; ".join(part for part in (f"no band on the {whose} blocks "
                                          f"(every pass shows the spread)", cut) if part)
    # the legend of the panel whose lines have markers (a curve of few passes), so that its
    # keys show them
    marked = any(line.get_marker() not in (None, "", " ", "None") for line in ax_all.lines)
    legend_below(fig, ax_all if marked else ax_early)
    figure_title(fig, f"{meta['config'].title}  {run_tag(meta, seeds, curves)}",
                 how_chosen(best, plot_cfg.band, curves, plot_cfg.logy, bars)
                 + (f"; {cut}" if cut else ""))
    return save_figure(fig, folder, "early_and_all")
