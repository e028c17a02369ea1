"""Pick the best grid point of each method from the tidy curves table.

Rule (PAPER.md; the metric and the rule are config values, `selection.metric` and
`selection.rule`): the best mean over seeds of the metric (lowest, or highest for a metric
its model declares higher-is-better), where a run's value is
- `final`: the metric at the last pass (the default), or
- `mean`: the metric's mean over passes 1..N (the area under the curve / N: how fast the
  run gets there, the measure the report's "converges faster" claims are judged by).
A grid point with any diverged seed (NaN or inf) is never selected.
"""

from __future__ import annotations

import pandas as pd

from adamrepro.metrics import Column
from adamrepro.results.tables import variants

RULES = ("final", "mean")  # selection.rule: the metric at the last pass, or over all passes


def final_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """The last recorded pass of every run, with whether the run diverged."""
    last = curves.sort_values("epoch").groupby("run_id", sort=False).tail(1).copy()
    diverged = curves.groupby("run_id")["diverged"].any()
    last["diverged"] = last["run_id"].map(diverged)
    return last


def point_summary(curves: pd.DataFrame, hparam_cols: list[str],
                  columns: tuple[Column, ...]) -> pd.DataFrame:
    """One row per (method, grid point): mean and std over seeds of each metric at the last
    pass (`final_<m>`) and of each run's mean over passes 1..N (`mean_<m>`)."""
    last = final_rows(curves)
    names = [c.name for c in columns]
    over_passes = curves[curves["epoch"] >= 1].groupby("run_id")[names].mean()
    for m in names:
        last[f"__mean_{m}"] = last["run_id"].map(over_passes[m])
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
        **{f"mean_{m}": (f"__mean_{m}", "mean") for m in names},
        **{f"mean_{m}_std": (f"__mean_{m}", "std") for m in names},
    ).reset_index()
    hparams = grouped[hparam_cols].first().reset_index() if hparam_cols else None
    if hparams is not None:
        summary = summary.merge(hparams, on=keys)
    return summary


def selected_by(metric: str, lower: bool, rule: str = "final") -> str:
    """best.csv `selected_by`: the rule in words."""
    which = "lowest" if lower else "highest"
    if rule == "final":
        return f"{which} mean final {metric} over seeds"
    return f"{which} mean over seeds of {metric} averaged over passes 1-N"


def select_best(curves: pd.DataFrame, metric: str, hparam_cols: list[str],
                columns: tuple[Column, ...], rule: str = "final") -> pd.DataFrame:
    """best.csv: the selected grid point per method (methods whose every point diverged are
    absent)."""
    if rule not in RULES:
        raise ValueError(f"selection rule must be one of {RULES}, got {rule!r}")
    summary = point_summary(curves, hparam_cols, columns)
    lower = next(c.lower_is_better for c in columns if c.name == metric)
    value = f"{rule}_{metric}"
    # an exact tie goes to the point whose id sorts first, whatever the order of the rows
    # (resumed groups append theirs as they finish)
    ok = summary[~summary["diverged"]].dropna(subset=[value]).sort_values("point_id",
                                                                          kind="stable")
    by_method = ok.groupby("method", sort=False)[value]
    best = ok.loc[by_method.idxmin() if lower else by_method.idxmax()]
    best = best.assign(selected_by=selected_by(metric, lower, rule), selection_rule=rule)
    best["at_grid_edge"] = [_at_edge(summary, row, hparam_cols) for _, row in best.iterrows()]
    return _with_provenance(best.reset_index(drop=True), curves)


# Where a selected point's runs came from, beside them in best.csv: a result read alone still
# says its seeds and the commit, torch and device that trained it (config.json says the last
# command's, and a resumed sweep's runs may come from several).
ORIGIN = ("commit", "torch_version", "device")


def _with_provenance(best: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """`best` with each point's `seeds` and its runs' ORIGIN columns, the values its runs
    recorded joined by ';' where they differ (columns the curves lack are left out)."""
    runs = curves.drop_duplicates("run_id").set_index("run_id")
    chosen = [runs.loc[str(ids).split(";")] for ids in best["run_ids"]]
    for column in ("seed", *ORIGIN):
        if column in runs.columns:
            best["seeds" if column == "seed" else column] = [
                ";".join(str(v) for v in sorted(part[column].dropna().unique()))
                for part in chosen]
    return best


def _at_edge(summary: pd.DataFrame, best: pd.Series, hparam_cols: list[str]) -> str:
    """Names of the swept hyperparameters whose selected value is the smallest or largest
    tried: the optimum may lie outside the grid, which a reader must be told."""
    points = summary[summary["method"] == best["method"]]
    edges = []
    for col in hparam_cols:
        column = points[col].dropna()
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue  # a choice (a string, a switch): no value lies beyond its ends
        values = column.unique()
        if len(values) > 1 and best[col] in (values.min(), values.max()):
            edges.append(col)
    return ";".join(edges)
