"""Pick the best grid point of each method from the tidy curves table.

Rule (PAPER.md; the metric is a config value): the best mean over seeds of the metric at
the last pass (lowest, or highest for a metric its model declares higher-is-better); a grid
point with any diverged seed (NaN or inf) is never selected.
"""

from __future__ import annotations

import pandas as pd

from adamrepro.metrics import Column
from adamrepro.results.store import variants


def final_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """The last recorded pass of every run, with whether the run diverged."""
    last = curves.sort_values("epoch").groupby("run_id", sort=False).tail(1).copy()
    diverged = curves.groupby("run_id")["diverged"].any()
    last["diverged"] = last["run_id"].map(diverged)
    return last


def point_summary(curves: pd.DataFrame, hparam_cols: list[str],
                  columns: tuple[Column, ...]) -> pd.DataFrame:
    """One row per (method, grid point): mean and std over seeds of each final metric."""
    last = final_rows(curves)
    names = [c.name for c in columns]
    keys = ["experiment", "method", "optimizer", "point_id"]
    if "variant" in last.columns:
        keys.insert(3, "variant")
        last["variant"] = variants(last)
    grouped = last.groupby(keys, sort=False)
    summary = grouped.agg(
        n_seeds=("seed", "nunique"),
        run_ids=("run_id", lambda ids: ";".join(ids)),
        diverged=("diverged", "any"),
        epochs=("epoch", "max"),
        **{f"final_{m}": (m, "mean") for m in names},
        **{f"final_{m}_std": (m, "std") for m in names},
    ).reset_index()
    hparams = grouped[hparam_cols].first().reset_index() if hparam_cols else None
    if hparams is not None:
        summary = summary.merge(hparams, on=keys)
    return summary


def select_best(curves: pd.DataFrame, metric: str, hparam_cols: list[str],
                columns: tuple[Column, ...]) -> pd.DataFrame:
    """best.csv: the selected grid point per method (methods whose every point diverged are
    absent)."""
    summary = point_summary(curves, hparam_cols, columns)
    lower = next(c.lower_is_better for c in columns if c.name == metric)
    ok = summary[~summary["diverged"]].dropna(subset=[f"final_{metric}"])
    by_method = ok.groupby("method", sort=False)[f"final_{metric}"]
    best = ok.loc[by_method.idxmin() if lower else by_method.idxmax()]
    best = best.assign(selected_by=f"{'lowest' if lower else 'highest'} mean final {metric} "
                                   f"over seeds")
    best["at_grid_edge"] = [_at_edge(summary, row, hparam_cols) for _, row in best.iterrows()]
    return best.reset_index(drop=True)


def _at_edge(summary: pd.DataFrame, best: pd.Series, hparam_cols: list[str]) -> str:
    """Names of the swept hyperparameters whose selected value is the smallest or largest
    tried: the optimum may lie outside the grid, which a reader must be told."""
    points = summary[summary["method"] == best["method"]]
    edges = []
    for col in hparam_cols:
        values = points[col].dropna().unique()
        if len(values) > 1 and best[col] in (values.min(), values.max()):
            edges.append(col)
    return ";".join(edges)
