"""Training only the points another results folder selected (`run --only-selected FOLDER`).

A setting that changes how runs compute but not which runs exist (`training.precision`, a
device, a torch version) is judged on the runs the base folder selected
(`results/compare.py`): every seed of each method's selected point, and nothing else. So
the other side need not train the whole grid: at paper scale Fig. 3's CNN selects 6 of its
24 points (18 of 72 runs), Fig. 2a's MLP 6 of 25, which makes a precision measurement about
a quarter of a sweep per precision instead of a whole one.

The points are rebuilt from FOLDER's best.csv (its hyperparameter columns, as the grid's
own values where one matches, else the number: a point an edge extension added beyond the
grid) and each is checked against the point id best.csv recorded, computed at the base's
precision, so a point is trained only when it is exactly the one the base selected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from adamrepro.config import Experiment, recorded_config
from adamrepro.errors import UserError
from adamrepro.results.tables import hparam_columns, read_meta, read_table
from adamrepro.runner.extend import beyond_edges
from adamrepro.runner.plan import method_groups


def selected_points(exp: Experiment, scale: str, folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Each method's point that `folder`'s results of `exp` selected, as the hyperparameters
    `exp` trains it with. User mistakes (no such results, another scale, another config, a
    point this config does not train) raise UserError."""
    where = Path(folder) / exp.name
    if (Path(folder) / "config.json").is_file() and not where.exists():
        # results/logreg_mnist given for results: said as --out says it
        raise UserError(f"--only-selected {folder} is an experiment's own folder (it holds "
                        f"config.json); pass the results folder above it: --only-selected "
                        f"{Path(folder).parent}")
    for name in ("best.csv", "config.json"):  # the curves are not needed
        if not (where / name).exists():
            raise UserError(f"--only-selected {folder}: no results of {exp.name} there "
                            f"({where / name} is missing); give the --out folder of a "
                            f"finished 'adamrepro run {exp.name}'")
    best = read_table(where / "best.csv")
    meta = read_meta(where, recorded_config)
    if meta.get("scale") != scale:
        raise UserError(f"--only-selected {folder}: its {exp.name} results are at "
                        f"{meta.get('scale')} scale, this run at {scale}; give --scale "
                        f"{meta.get('scale')} or another folder")
    return points_of(exp, best, meta["config"].training.precision, f"--only-selected {folder}")


def points_of(exp: Experiment, best: pd.DataFrame, precision: str,
              where: str) -> dict[str, list[dict[str, Any]]]:
    """The points of `best` (a best.csv of `exp`, trained at `precision`), each checked
    against the point id it recorded; `where` names the source in errors."""
    # point ids are computed at the base's precision (it enters ids unless fp32)
    probe = exp.model_copy(update={
        "training": exp.training.model_copy(update={"precision": precision})})
    points: dict[str, list[dict[str, Any]]] = {}
    for _, row in best.iterrows():
        label = row["method"]
        if label not in exp.methods:
            raise UserError(f"{where}: method {label!r} of its best.csv is not in this "
                            f"config ({', '.join(exp.methods)})")
        method = exp.methods[label]
        point = {**method.hparams,
                 **{name: _value(name, values, row, where, exp.selection.extend_edges)
                    for name, values in method.grid.items()}}
        [group, *_] = method_groups(probe, label, [point])
        if group.runs[0].point_id != row["point_id"]:
            raise UserError(f"{where}: the point {label} selected there ({row['point_id']}) "
                            f"is not one this config trains (the config changed since?); run "
                            f"the whole grid instead")
        points[label] = [point]
    # in the config's order, as a whole grid's plan: the preview, the training and the
    # tables list the methods as every figure does (best.csv's order is selection's)
    return {label: points[label] for label in exp.methods if label in points}


def _value(name: str, values: list[Any], row: pd.Series, where: str, limit: int) -> Any:
    """The value of grid axis `name` at the selected point: the grid's own value (its type
    kept: an int stays an int) when one matches the row's columns, else the row's number if
    this config's grid-edge extension (at most `limit` points an edge) could have added
    it."""
    for value in values:
        columns = hparam_columns({name: value})
        if all(column in row and _same(row[column], wanted)
               for column, wanted in columns.items()):
            return value
    if name not in row or pd.isna(row[name]):
        raise UserError(f"{where}: its best.csv has no value of {name!r} for method "
                        f"{row['method']}; run the whole grid instead")
    number = float(row[name])
    if number not in beyond_edges(values, limit):
        raise UserError(f"{where}: method {row['method']} selected {name} = {number:g} there, "
                        f"which this config's grid ({', '.join(f'{v:g}' for v in values)}) "
                        f"does not train (the config changed since?); run the whole grid "
                        f"instead")
    return number


def _same(found: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or not isinstance(wanted, (int, float)):
        return str(found) == str(wanted)
    try:
        return float(found) == float(wanted)
    except (TypeError, ValueError):
        return False
