"""What the claim rules look at, computed from one experiment's results folder alone.

The cost is the training cost the experiment's figure shows (config `plot.y`). A method's
curve is that of its selected grid point (best.csv), averaged over seeds at every pass. A
method all of whose grid points diverged has no curve; its costs are +inf, so it loses every
comparison and never wins one.

A claim names its methods by what they are, `Method(optimizer, variant)`, read from the
tables' `optimizer` and `variant` columns; a plain string is a method label.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adamrepro.config import (
    Experiment,
    MethodSpec,
    PlotSpec,
    SelectionSpec,
    TrainingSpec,
    recorded_config,
)
from adamrepro.metrics import CLASSIFIER, metric_set
from adamrepro.optim import OPTIMIZERS
from adamrepro.results.select import RULES, select_best
from adamrepro.results.tables import read_results, variants

# Fractions of the passes at which curves are compared ("as fast as"). 10% sees the early
# passes (Fig. 4's early checkpoint too, the paper's 10 of 100 epochs): from 25% on, Fig. 1's
# convex problems have mostly converged and the comparison reads end values. Pass 1 is not
# one: its cost is the mean over the first pass's minibatches from the untrained model, the
# transient of the first few hundred steps, which decided Fig. 1's two claims alone
# (README, "Choices where the paper is silent").
CHECKPOINTS = (0.1, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Method:
    """A method as a claim names it: an optimizer and, optionally, its variant."""

    optimizer: str
    variant: str | None = None

    def __str__(self) -> str:
        return self.optimizer + (f"+{self.variant}" if self.variant else "")


MethodRef = Method | str  # a Method, or a method label as the config spells it


@dataclass(frozen=True)
class Measured:
    """One experiment's tables: curves.csv, best.csv and config.json, whose config is the
    checked `Experiment` (read_results)."""

    name: str
    curves: pd.DataFrame
    best: pd.DataFrame
    meta: dict
    # The same tables with best.csv re-selected under another rule (`under`), made once.
    _under: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, folder: Path) -> Measured:
        """The folder's tables (read_results), its config judged as plot and compare judge
        it."""
        curves, best, meta = read_results(folder, recorded_config)
        return cls(folder.name, curves, best, meta)

    @classmethod
    def from_curves(cls, curves: pd.DataFrame, cost: str = CLASSIFIER.train_column,
                    name: str = "example", rule: str = "final") -> Measured:
        """Select the best grid points the way `adamrepro run` does (for hand-made tables),
        under a config of the methods the tables hold; of what it trained (dataset, model,
        training) it says no more than the passes, which the tables alone give."""
        hparam_cols = [c for c in ("lr", "beta1", "beta2") if c in curves.columns]
        best = select_best(curves, cost, hparam_cols, CLASSIFIER.columns(), rule)
        first = curves.assign(variant=variants(curves)).drop_duplicates("method")
        config = Experiment(
            name=name, title=name, dataset={}, model={},
            training=TrainingSpec(epochs=max(1, int(curves["epoch"].max()))),
            methods={label: MethodSpec(optimizer=optimizer, variant=variant or None)
                     for label, optimizer, variant in zip(
                         first["method"], first["optimizer"], first["variant"], strict=True)},
            plot=PlotSpec(y=cost), selection=SelectionSpec(metric=cost, rule=rule))
        meta = {"experiment": name, "config": config, "hparam_columns": hparam_cols}
        return cls(name, curves, best, meta)

    @property
    def rule(self) -> str:
        """The selection rule best.csv was written with (folders from before rules: final,
        the config's default)."""
        return self.meta["config"].selection.rule

    def under(self, rule: str) -> Measured:
        """These tables with each method's best grid point selected by `rule` (RULES)."""
        if rule == self.rule:
            return self
        if rule not in self._under:
            best = self._selected(self.meta["config"].selection.metric, rule, self.meta)
            self._under[rule] = Measured(self.name, self.curves, best, self.meta)
        return self._under[rule]

    def on_training_cost(self) -> Measured:
        """These tables as the paper's claims read them: the cost is a training cost, and
        each method's grid point is selected by one (PAPER.md: the curves show the training
        cost, and no choice is made on the test set). A config may plot or select by a test
        metric, for its own figures and best.csv; the claims are then judged on the model's
        training objective (`off_training_cost` says what was replaced)."""
        replaced = self.off_training_cost()
        if not replaced:
            return self
        if "training" not in self._under:
            # only the fields that name a test metric: a `plot.y: train_loss_full` beside a
            # `selection.metric: test_acc` is still the cost the claims read
            train = metric_set(self.meta).train_column
            config = self.meta["config"]
            update = {}
            if "plot.y" in replaced:
                update["plot"] = config.plot.model_copy(update={"y": train})
            if "selection.metric" in replaced:
                update["selection"] = config.selection.model_copy(update={"metric": train})
            meta = {**self.meta, "config": config.model_copy(update=update)}
            best = self.best
            if "selection.metric" in replaced:
                best = self._selected(train, self.rule, meta)
            self._under["training"] = Measured(self.name, self.curves, best, meta)
        return self._under["training"]

    def _selected(self, metric: str, rule: str, meta: dict) -> pd.DataFrame:
        """best.csv's frame re-selected from these curves by `metric` under `rule`."""
        return select_best(self.curves, metric, list(self.meta.get("hparam_columns", [])),
                           metric_set(meta).columns(), rule)

    def off_training_cost(self) -> dict[str, str]:
        """The config fields (`plot.y`, `selection.metric`) that name a test metric, with it."""
        config = self.meta["config"]
        named = {"plot.y": config.plot.y, "selection.metric": config.selection.metric}
        splits = {c.name: c.split for c in metric_set(self.meta).columns()}
        return {field: column for field, column in named.items()
                if splits.get(column) == "test"}

    def on_column(self, column: str) -> Measured:
        """These tables with `column` (e.g. test_loss) as the cost the rules compare."""
        config = self.meta["config"]
        meta = {**self.meta, "config": config.model_copy(update={
            "plot": config.plot.model_copy(update={"y": column})})}
        return Measured(self.name, self.curves, self.best, meta)

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.curves["seed"].unique())

    def for_seed(self, seed: int) -> Measured:
        """The runs of one seed alone, at the grid points selected over all seeds."""
        return Measured(self.name, self.curves[self.curves["seed"] == seed], self.best,
                        self.meta)

    def other_rules(self) -> tuple[str, ...]:
        return tuple(r for r in RULES if r != self.rule)

    @property
    def cost(self) -> str:
        return self.meta["config"].plot.y

    @property
    def methods(self) -> set[str]:
        return set(self.curves["method"].unique())

    def label(self, method: MethodRef) -> str | None:
        """The label of the method a claim names, or None if the experiment has none, or
        several and none labelled as the claim names it (`ambiguous`)."""
        labels = self._labels(method)
        return labels[0] if len(labels) == 1 else None

    def ambiguous(self, method: MethodRef) -> list[str]:
        """The methods a claim's `method` could be, where it could be several (a tuned
        Adam beside the baseline, neither labelled `adam`); [] where it is one or none."""
        labels = self._labels(method)
        return labels if len(labels) > 1 else []

    def _labels(self, method: MethodRef) -> list[str]:
        if isinstance(method, str):
            return [method] if method in self.methods else []
        rows = self.curves[(self.curves["optimizer"] == method.optimizer)
                           & (variants(self.curves) == (method.variant or ""))]
        labels = [str(label) for label in rows["method"].unique()]
        # a method labelled as the claim names it is the one meant (`adam` beside `adam_tiny`)
        return [str(method)] if str(method) in labels else labels

    def called(self, method: MethodRef) -> str:
        """What a verdict's numbers call the method: its label in this experiment's config,
        as the figures and the report's tables of methods call it; how the claim names it
        where the experiment has no such method."""
        return self.label(method) or str(method)

    @property
    def passes(self) -> int:
        return int(self.curves["epoch"].max())

    def best_runs(self, method: MethodRef) -> pd.DataFrame | None:
        """The rows of the method's selected grid point, or None if every point diverged."""
        method = self.label(method)
        chosen = self.best[self.best["method"] == method]
        if chosen.empty:
            return None
        point = chosen["point_id"].iloc[0]
        curves = self.curves
        return curves[(curves["method"] == method) & (curves["point_id"] == point)]

    def curve(self, method: MethodRef) -> pd.Series | None:
        """Mean over seeds at every pass (passes without a value dropped)."""
        runs = self.best_runs(method)
        if runs is None:
            return None
        return runs.groupby("epoch")[self.cost].mean().dropna()

    def grid_edges(self, method: MethodRef) -> list[str]:
        """The searched hyperparameters whose selected value is the smallest or largest of
        the method's grid (best.csv `at_grid_edge`, written by results/select.py)."""
        if "at_grid_edge" not in self.best.columns:
            return []
        chosen = self.best[self.best["method"] == self.label(method)]
        edges = chosen["at_grid_edge"].iloc[0] if len(chosen) else None
        return edges.split(";") if isinstance(edges, str) and edges else []


def checkpoint_passes(passes: int) -> list[int]:
    """Passes at 10/25/50/75/100% of the run (rounded up, at least pass 1, no repeats)."""
    return sorted({max(1, math.ceil(q * passes)) for q in CHECKPOINTS})


def final_cost(measured: Measured, method: MethodRef) -> float:
    curve = measured.curve(method)
    return math.inf if curve is None or curve.empty else float(curve.iloc[-1])


def final_values(measured: Measured, method: MethodRef, column: str) -> pd.Series | None:
    """`column` at the last pass of each seed's run of the method's selected grid point (NaN
    for a run that diverged); None if every grid point diverged."""
    runs = measured.best_runs(method)
    if runs is None:
        return None
    last = runs.sort_values("epoch").groupby("run_id").tail(1)
    return last.set_index("seed")[column].where(~last.set_index("seed")["diverged"])


def mean_cost(measured: Measured, method: MethodRef, last_pass: int | None = None) -> float:
    """Mean cost over passes 1..last_pass (default: all): the mean of the costs recorded
    after each of those passes (pass 0's untrained cost, where a full-set cost records one,
    left out), a single number for "converges faster"."""
    curve = measured.curve(method)
    if curve is None:
        return math.inf
    window = curve[(curve.index >= 1) & (curve.index <= (last_pass or measured.passes))]
    return float(window.mean()) if len(window) else math.inf


def cost_at(measured: Measured, method: MethodRef, epoch: int) -> float:
    curve = measured.curve(method)
    if curve is None or epoch not in curve.index:
        return math.inf
    return float(curve.loc[epoch])


def run_seconds(runs: pd.DataFrame) -> pd.Series:
    """A run's training seconds: `train_seconds` (its training passes, evaluation excluded),
    divided by the group size for runs trained batched, which share their group's time.
    Tables from before `train_seconds` existed fall back to `seconds` (evaluation included)."""
    seconds = runs["train_seconds"] if "train_seconds" in runs.columns else runs["seconds"]
    return seconds / runs["group_size"]


def batched(measured: Measured, method: MethodRef) -> bool | None:
    """Whether the method's selected runs trained batched (in a group of more than one)."""
    runs = measured.best_runs(method)
    return None if runs is None else bool((runs["group_size"] > 1).any())


def seconds_per_pass(measured: Measured, method: MethodRef, after: int = 0) -> float:
    """Training seconds per pass of one run (`run_seconds`), over the passes after pass
    `after` (0: every pass; 1: leaving out a first pass that costs more or less than the
    others, as SFO's, which builds its subfunctions' models, does)."""
    runs = measured.best_runs(method)
    if runs is None:
        return math.nan
    runs = runs.assign(run_seconds=run_seconds(runs)).sort_values("epoch")
    last = runs.groupby("run_id").tail(1)
    last = last[last["epoch"] > after].set_index("run_id")
    start = runs[runs["epoch"] == after].set_index("run_id")["run_seconds"].reindex(last.index)
    if after == 0:
        start = start.fillna(0.0)  # a table without pass 0's row: no time before pass 1
    return float(((last["run_seconds"] - start) / (last["epoch"] - after)).mean())


def method_costs(curves: pd.DataFrame, chosen: pd.Series, cost: str) -> pd.DataFrame:
    """The selected grid point `chosen` (a best.csv row) per pass, mean over seeds: the cost,
    a run's training seconds (`run_seconds`), the group size, and a run's share of the
    optimizer state bytes and the group's peak device memory."""
    runs = curves[curves["point_id"] == chosen["point_id"]]
    for column in ("state_bytes", "peak_memory_bytes"):  # tables from before they existed
        if column not in runs.columns:
            runs = runs.assign(**{column: math.nan})
    share = runs.assign(run_seconds=run_seconds(runs),
                        state_bytes=runs["state_bytes"] / runs["group_size"])
    columns = [cost, "run_seconds", "group_size", "state_bytes", "peak_memory_bytes"]
    return share.groupby("epoch")[columns].mean()


def memory_by_subfunctions(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per grid point of every method that sets `num_subfunctions`: its optimizer
    state bytes after the last pass and its group's peak device memory (a GPU's; empty on a
    CPU), mean over seeds. Columns: method, optimizer, variant, num_subfunctions,
    state_bytes, peak_memory_bytes."""
    keys = ["method", "optimizer", "variant", "num_subfunctions"]
    measured = ["state_bytes", "peak_memory_bytes"]
    if "num_subfunctions" not in curves.columns or "state_bytes" not in curves.columns:
        return pd.DataFrame(columns=keys + measured)
    runs = curves.dropna(subset=["num_subfunctions"])
    last = runs.sort_values("epoch").groupby("run_id").tail(1)
    last = last.assign(variant=variants(last))
    if "peak_memory_bytes" not in last.columns:
        last = last.assign(peak_memory_bytes=math.nan)
    last = last.assign(peak_memory_bytes=pd.to_numeric(last["peak_memory_bytes"]))
    return last.groupby(keys, sort=False)[measured].mean().reset_index().sort_values(
        ["method", "num_subfunctions"])


def subfunction_sweeps(curves: pd.DataFrame) -> set[str]:
    """The methods whose grid varies `num_subfunctions` (Fig. 2b's memory panel): not one
    that sets it once, which is a method as any other (it vanished from the curves)."""
    if "num_subfunctions" not in curves.columns:
        return set()
    counts = curves.dropna(subset=["num_subfunctions"]).groupby("method")[
        "num_subfunctions"].nunique()
    return set(counts[counts > 1].index)


def cost_by_time(measured: Measured, method: MethodRef) -> pd.Series | None:
    """Cost against a run's training seconds (`run_seconds`)."""
    runs = measured.best_runs(method)
    if runs is None:
        return None
    runs = runs.assign(run_seconds=run_seconds(runs))
    per_pass = runs.groupby("epoch")[[measured.cost, "run_seconds"]].mean().dropna()
    return per_pass.set_index("run_seconds")[measured.cost]


def common_span(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """The wall-clock span two curves (cost by seconds) both cover, from the later first
    pass to the earlier last pass; start > stop where one run ended before the other's first
    recorded pass (a fast batched run against a slow method, on a cost without a pass-0
    value)."""
    return (float(max(a.index.min(), b.index.min())), float(min(a.index.max(), b.index.max())))


def mean_cost_over_time(a: pd.Series, b: pd.Series, span: tuple[float, float],
                        points: int = 20) -> tuple[float, float]:
    """Mean cost of two curves over `span` (their `common_span`, start <= stop), by linear
    interpolation at `points` evenly spaced times."""
    times = np.linspace(*span, points)
    return (float(np.interp(times, a.index, a.values).mean()),
            float(np.interp(times, b.index, b.values).mean()))


STEP_RATIO = "max_step_ratio"  # curves.csv: the largest |Δθ|/α_t of a pass (optim/adam.py)


def step_bound(beta1: float, beta2: float) -> float:
    """Sec. 2.1's bound on Adam's |Δθ|/α (ε = 0): (1 − β1)/√(1 − β2) when (1 − β1) >
    √(1 − β2), else 1; NaN where a beta is unknown (not 1: the comparison is false)."""
    if math.isnan(beta1) or math.isnan(beta2):
        return math.nan
    return (1 - beta1) / math.sqrt(1 - beta2) if (1 - beta1) > math.sqrt(1 - beta2) else 1.0


def with_betas(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with `beta1` and `beta2` for every run of a built-in optimizer: a run records
    the hyperparameters its config writes, so one that left Adam's betas at their defaults
    has none (NaN where another method set them, no column where none did); its optimizer's
    defaults, read from its signature, fill them in."""
    rows = rows.assign(**{c: rows[c] if c in rows.columns else math.nan
                          for c in ("beta1", "beta2")})
    for optimizer in rows["optimizer"].unique():
        cls = OPTIMIZERS.get(optimizer)
        betas = inspect.signature(cls).parameters.get("betas") if cls is not None else None
        if betas is None or betas.default is inspect.Parameter.empty:
            continue
        ours = rows["optimizer"] == optimizer
        for column, default in zip(("beta1", "beta2"), betas.default, strict=True):
            rows.loc[ours & rows[column].isna(), column] = default
    return rows


def step_ratios(measured: Measured, optimizer: str) -> pd.DataFrame | None:
    """Every pass of every run of `optimizer` (all variants and grid points) that recorded
    its step ratio, with `bound` and `of_bound` (ratio / bound); None if none recorded it."""
    if STEP_RATIO not in measured.curves.columns:
        return None
    curves = measured.curves
    rows = curves[(curves["optimizer"] == optimizer) & (curves["epoch"] > 0)
                  & curves[STEP_RATIO].notna()]
    if rows.empty:
        return None
    rows = with_betas(rows).dropna(subset=["beta1", "beta2"])  # no bound to judge them by
    if rows.empty:
        return None
    bound = [step_bound(b1, b2) for b1, b2 in zip(rows["beta1"], rows["beta2"], strict=True)]
    return rows.assign(bound=bound, of_bound=rows[STEP_RATIO] / np.asarray(bound))


def cell_costs(measured: Measured, epoch: int, cells: tuple[str, ...]) -> pd.DataFrame:
    """One row per (method, cell): the mean over seeds of the cost at `epoch`, +inf where a
    seed diverged by then, of the cell's best grid point where the grid varies more than the
    cell (an ε beside (β1, β2, α): two points a cell were drawn one above the other, and the
    report's pairs of cells became every pair of them). Columns: method, point_id, *cells,
    cost."""
    curves = measured.curves
    upto = curves[curves["epoch"] <= epoch]
    runs = upto.groupby("run_id").agg(method=("method", "first"), point_id=("point_id", "first"),
                                      diverged=("diverged", "any"),
                                      **{c: (c, "first") for c in cells})
    at = curves[curves["epoch"] == epoch].set_index("run_id")[measured.cost]
    cost = runs.index.map(at).astype(float)
    runs["cost"] = np.where(runs["diverged"] | ~np.isfinite(cost), np.inf, cost)
    points = runs.groupby(["method", "point_id", *cells], dropna=False)["cost"].mean()
    points = points.reset_index().sort_values("cost", kind="stable")
    return points.drop_duplicates(["method", *cells]).sort_values(
        ["method", *cells]).reset_index(drop=True)


# Fig. 4's grid cells: Adam with and without bias correction are compared cell by cell over
# these hyperparameters (report/rules.py), and its figure draws them (figures/bias_correction.py).
CELLS = ("beta1", "beta2", "lr")


def early_pass(passes: int, fraction: float) -> int:
    """The pass nearest `fraction` of `passes`, at least the first."""
    return max(1, round(fraction * passes))
