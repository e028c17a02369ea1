"""Grid-edge extension (config `selection.extend_edges: K`).

A method whose selected point sits at the smallest or largest value of a grid axis may have
its optimum outside the grid. After the grid is trained, the sweep selects (results/select.py)
and, for every such edge, adds one point: the selected point with that axis moved one step
further out, the step being the grid's own log step at that edge (lr 1e-4, 3e-4, ... at its
low edge adds 1e-4 / 3). It trains the added points, selects again, and repeats, at most K
points per edge. An edge stops when the selection moves inside, when K points were added, or
when the next point is one the optimizer refuses (config validation's check, `accepts`:
e.g. a beta2 of 1 or more) or another method's (two methods alike but for their grids, whose
runs, and run ids, it would share); it is then not tried again.

Only positive, real-valued axes with two or more values extend (a step size, an epsilon);
switches, integers, pairs (betas) and one-value axes never do. Extension points are runs like
any other, keyed by their settings (runner/plan.py), so a resumed sweep recomputes the same
rounds from the stored runs and trains only what is missing: the result equals an
uninterrupted sweep's.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from adamrepro.config import Experiment, accepts, run_key

LOW, HIGH = "-", "+"


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def log_axes(grid: dict[str, list[Any]]) -> dict[str, tuple[float, float]]:
    """The grid's extendable axes: name -> (ratio of its two lowest values, ratio of its two
    highest values)."""
    axes = {}
    for name, values in grid.items():
        distinct = sorted(set(values)) if all(_real(v) for v in values) else []
        if (len(distinct) >= 2 and distinct[0] > 0
                and any(isinstance(v, float) for v in values)):
            axes[name] = (distinct[1] / distinct[0], distinct[-1] / distinct[-2])
    return axes


def _rounded(value: float) -> float:
    """6 significant digits: 1e-4 / 3 is 3.33333e-05 in every table and run id."""
    return float(f"{value:.6g}")


def beyond_edges(values: list[Any], limit: int) -> list[float]:
    """Every value an extension of at most `limit` points per edge can add to a grid axis
    of `values` (none for an axis that does not extend), as next_points computes them."""
    axes = log_axes({"axis": values})
    if not axes:
        return []
    low, high = axes["axis"]
    added = []
    for value, factor in ((min(values), 1 / low), (max(values), high)):
        for _ in range(limit):
            value = _rounded(value * factor)
            added.append(value)
    return added


def next_points(exp: Experiment, best: pd.DataFrame, hparams_of: dict[str, dict],
                points: dict[str, list[dict]], steps: Counter,
                closed: set | None = None) -> dict[str, list[dict]]:
    """One round: for every method of best.csv whose selected point (`hparams_of[point_id]`)
    is at an edge of an extendable axis of its grid (among all its points so far, `points`),
    the one next point beyond that edge, unless the edge already has `extend_edges` of them
    (`steps`, counted per (method, axis, direction) and updated here). An edge whose next
    point the optimizer refuses is added to `closed` and never tried again."""
    closed = set() if closed is None else closed
    limit = exp.selection.extend_edges
    new: dict[str, list[dict]] = {}
    # the runs every method trains: a point beyond one method's edge may be another's
    # (two methods alike but for their grids), whose run ids, and records, it would share
    owners = {run_key(exp, label, point): label for label, ps in points.items() for point in ps}
    for _, row in best.iterrows():
        label = row["method"]
        chosen = hparams_of[row["point_id"]]
        for axis, (low, high) in log_axes(exp.methods[label].grid).items():
            tried = [p[axis] for p in points[label] if _real(p.get(axis))]
            for direction, edge, factor in ((LOW, min(tried), 1 / low),
                                            (HIGH, max(tried), high)):
                key = (label, axis, direction)
                if chosen[axis] != edge or steps[key] >= limit or key in closed:
                    continue
                point = {**chosen, axis: _rounded(edge * factor)}
                if point in points[label] or point in new.get(label, []):
                    continue
                owner = owners.setdefault(run_key(exp, label, point), label)
                if owner != label or not accepts(exp, label, point):
                    closed.add(key)  # another method's runs, or refused: never tried
                    continue
                steps[key] += 1
                new.setdefault(label, []).append(point)
    return new


def extended_text(steps: Counter, label: str) -> str:
    """best.csv `extended`: the points added beyond each edge of the method's grid, e.g.
    `lr-2` (two below its smallest lr), `;`-separated; empty when none."""
    return ";".join(f"{axis}{direction}{count}"
                    for (method, axis, direction), count in sorted(steps.items())
                    if method == label and count > 0)


def stored_extensions(exp: Experiment, curves: pd.DataFrame) -> set[str]:
    """The run ids that `exp` gives the runs of `curves` (a results folder's table) that
    lie beyond its grid on an extendable axis, inside it on every other: the points an
    extension added, which the plan alone does not list. A run whose settings `exp` would
    not give the same id (a changed model, method or training) is not among them."""
    from adamrepro.runner.plan import method_groups

    if not exp.selection.extend_edges:
        return set()
    ids: set[str] = set()
    for label, method in exp.methods.items():
        axes, names = log_axes(method.grid), sorted(method.grid)
        rows = curves[curves["method"] == label] if "method" in curves else curves.iloc[:0]
        if not axes or rows.empty or not all(name in rows for name in names):
            continue
        for values in rows[names].drop_duplicates().itertuples(index=False):
            point = {name: float(value) for name, value in zip(names, values, strict=True)}
            beyond = {name for name in axes
                      if not min(method.grid[name]) <= point[name] <= max(method.grid[name])}
            if beyond and all(point[name] in method.grid[name] for name in names
                              if name not in beyond):
                ids |= {run.run_id for group in method_groups(
                    exp, label, [{**method.hparams, **point}]) for run in group.runs}
    return ids

