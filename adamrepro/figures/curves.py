"""The paper's figure for one experiment, drawn from its results folder alone:
training cost against passes for each method's selected run (mean over seeds with a band),
and test accuracy beside it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is ever needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from adamrepro.figures.palette import BAND_ALPHA, style  # noqa: E402
from adamrepro.results.store import Tables, read_results  # noqa: E402

Y_LABELS = {"train_loss": "training cost (mean minibatch loss of the pass)",
            "train_loss_full": "training cost (full training set)"}


def band(frame: pd.DataFrame, column: str, kind: str) -> pd.DataFrame:
    """Mean and band over seeds at every pass."""
    by_epoch = frame.groupby("epoch")[column]
    mean = by_epoch.mean()
    if kind == "minmax":
        low, high = by_epoch.min(), by_epoch.max()
    else:
        spread = by_epoch.std().fillna(0.0)
        low, high = mean - spread, mean + spread
    return pd.DataFrame({"mean": mean, "low": low, "high": high})


# No date and no version in the files: re-drawing unchanged results gives the same bytes, so
# `adamrepro plot` on committed results leaves `git status` clean (no SOURCE_DATE_EPOCH needed).
METADATA = {"png": {"Software": None},
            "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}


def save_figure(fig, folder: Path, stem: str) -> list[Path]:
    """Write <folder>/<stem>.png and .pdf through temporary names, then close the figure."""
    written = []
    for suffix in ("png", "pdf"):
        path = folder / f"{stem}.{suffix}"
        tmp = path.with_name(f".{stem}.tmp.{suffix}")
        fig.savefig(tmp, dpi=130, metadata=METADATA[suffix])
        tmp.replace(path)
        written.append(path)
    plt.close(fig)
    return written


def draw(folder: Path, tables: Tables | None = None) -> list[Path]:
    """curves.png/.pdf; `tables` saves reading the folder again (`read_results`)."""
    curves, best, meta = tables or read_results(folder)
    plot_cfg = meta["config"]["plot"]
    y = plot_cfg["y"]
    fig, (ax_cost, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for _, chosen in best.iterrows():
        runs = curves[curves["point_id"] == chosen["point_id"]]
        if plot_cfg.get("max_epoch") is not None:
            runs = runs[runs["epoch"] <= plot_cfg["max_epoch"]]
        line = style(chosen["method"], chosen["optimizer"])
        for ax, column in ((ax_cost, y), (ax_acc, "test_acc")):
            shown = runs.dropna(subset=[column])
            if column == "test_acc":  # the untrained epoch-0 accuracy (~chance) squashes the axis
                shown = shown[shown["epoch"] > 0]
            stats = band(shown, column, plot_cfg["band"])
            ax.plot(stats.index, stats["mean"], label=chosen["method"], **line)
            if chosen["n_seeds"] > 1:
                ax.fill_between(stats.index, stats["low"], stats["high"],
                                color=line["color"], alpha=BAND_ALPHA, linewidth=0)
    ax_cost.set(xlabel="iterations over entire dataset", ylabel=Y_LABELS[y])
    ax_acc.set(xlabel="iterations over entire dataset", ylabel="test accuracy")
    if plot_cfg["logy"]:
        ax_cost.set_yscale("log")
    ax_cost.legend(frameon=False)
    seeds = int(best["n_seeds"].max()) if len(best) else 0
    fig.suptitle(f"{meta['config']['title']}  [{meta['scale']} scale, {seeds} seed(s), "
                 f"{meta['provenance']['device']}]", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, folder, "curves")
