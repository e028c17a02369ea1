"""Decision rules for the paper's claims. Each rule is a small frozen object: its thresholds
are arguments, `describe()` says in one line what it checks (the report prints it next to the
verdict), and calling it on a `Measured` experiment returns a `Verdict` with the numbers.

Vocabulary (fixed here so that every claim uses the same words the same way):
- "A beats B" / "converges faster": A's mean cost over passes 1..N (the mean of the costs
  recorded after each of them; pass 0's untrained cost, where recorded, left out) is below
  B's by more than `margin` (relative). "Wide margin": a larger margin.
- "A is as fast as B": at 10/25/50/75/100% of the passes A's cost is at most (1 + tol) x B's;
  "about as fast": within +-tol of B's at each of those passes.
- "A ends below B": final cost; "marginally better": lower, but by at most `max_gap`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adamrepro.results.measures import (
    CELLS,
    Measured,
    Method,
    MethodRef,
    batched,
    cell_costs,
    checkpoint_passes,
    common_span,
    cost_at,
    cost_by_time,
    early_pass,
    final_cost,
    final_values,
    mean_cost,
    mean_cost_over_time,
    memory_by_subfunctions,
    seconds_per_pass,
    step_ratios,
)
from adamrepro.wording import count

HOLDS, FAILS = "holds", "does not hold"
DEPENDS = "depends on the selection rule"  # holds under one selection rule, not the other
NOT_RUN, NOT_MEASURABLE = "not run yet", "not measurable"
VERDICTS = (HOLDS, FAILS, DEPENDS, NOT_RUN, NOT_MEASURABLE)


# A verdict's words after a count of more than one ("8 do not hold", not "8 does not hold").
PLURALS = {HOLDS: "hold", FAILS: "do not hold", DEPENDS: "depend on the selection rule"}


def tally(statuses) -> str:
    """'9 hold, 1 does not hold': how many of each verdict, in VERDICTS' order."""
    statuses = list(statuses)
    counts = {v: statuses.count(v) for v in VERDICTS if v in statuses}
    return ", ".join(f"{n} {v if n == 1 else PLURALS.get(v, v)}" for v, n in counts.items())


@dataclass(frozen=True)
class Verdict:
    status: str
    numbers: str
    # With several seeds: the verdict on the mean over seeds is not the verdict in every seed
    # alone (the numbers say in which it holds); the report counts these in its summary.
    seeds_disagree: bool = False


def judged(ok: bool, numbers: str) -> Verdict:
    return Verdict(HOLDS if ok else FAILS, numbers)


def num(value: float) -> str:
    """A cost for the table: 4 significant digits, 'diverged' for +inf."""
    if value == math.inf:
        return "diverged"
    return "n/a" if value is None or math.isnan(value) else f"{value:.4g}"


def signed_percent(x: float, thresholds: tuple[float, ...] = ()) -> str:
    """`x` as a signed percentage to one decimal, with more where that would print one of
    the rule's `thresholds` that `x` is not: a ratio of 0.9501 (not 5% faster) printed as
    "-5.0%" reads as a verdict that contradicts its own numbers."""
    for digits in range(1, 4):
        text = f"{x:+.{digits}%}"
        if not any(text == f"{t:+.{digits}%}" and not math.isclose(x, t, abs_tol=1e-12)
                   for t in thresholds):
            break
    return text


def relative(a: float, b: float, thresholds: tuple[float, ...] = ()) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return ""
    return f" ({signed_percent((a - b) / abs(b), thresholds)})"


def timing_note(measured: Measured, methods) -> str:
    """Whether the runs a per-second comparison reads trained batched or alone, and, where
    they trained on different devices (a sweep resumed on another machine: the device is
    not in a run's id), which device each did: their seconds then measure the devices as
    much as the methods."""
    parts = [f"{measured.called(m)} {'batched' if batched(measured, m) else 'trained alone'}"
             for m in methods
             if batched(measured, m) is not None]
    devices = {measured.called(m): ", ".join(sorted(runs["device"].astype(str).unique()))
               for m in methods
               if (runs := measured.best_runs(m)) is not None and "device" in runs.columns}
    if len(set(devices.values())) > 1:
        parts.append("on different devices: " + "; ".join(
            f"{name} on {device}" for name, device in devices.items()))
    return f" [{', '.join(parts)}]" if parts else ""


class Rule:
    """Base class: `methods` are the methods the rule needs in the experiment."""

    methods: tuple[MethodRef, ...] = ()

    @property
    def selected_methods(self) -> tuple[MethodRef, ...]:
        """The methods whose selected grid point the verdict rests on (a grid-edge selection
        of one of them weakens it); none for a rule that reads every grid point, or a
        quantity (seconds, bytes) that does not depend on the point."""
        return self.methods

    def describe(self) -> str:
        raise NotImplementedError

    def __call__(self, measured: Measured) -> Verdict:
        raise NotImplementedError

    # What `gap` returns: a relative difference, or one in the compared column's units.
    gap_is_relative = True

    def gap(self, measured: Measured) -> float | None:
        """The relative difference the rule compares, (A - B) / |B|, where it has one
        (for the spread over seeds); None otherwise."""
        return None

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The relative differences at which the verdict changes, which a printed gap must
        not seem to reach when it does not (`signed_percent`)."""
        return ()


@dataclass(frozen=True)
class _Pair(Rule):
    """A rule comparing method `a` with method `b`."""

    a: MethodRef
    b: MethodRef

    @property
    def methods(self) -> tuple[MethodRef, ...]:
        return (self.a, self.b)

    def _numbers(self, measured: Measured, label: str, va: float, vb: float) -> str:
        a, b = measured.called(self.a), measured.called(self.b)
        return f"{label}: {a} {num(va)}, {b} {num(vb)}{relative(va, vb, self.thresholds)}"


@dataclass(frozen=True)
class Beats(_Pair):
    """A's mean (or final) cost is below B's by more than `margin`, relative to B's."""

    margin: float = 0.05
    measure: str = "mean"  # "mean": over passes 1..passes (all if None); "final": last pass
    passes: int | None = None

    @property
    def thresholds(self) -> tuple[float, ...]:
        return (-self.margin,)

    def _label(self, last: int | str) -> str:
        if self.measure == "final":
            return "final cost"
        return "cost at pass 1" if last == 1 else f"mean cost over passes 1-{last}"

    def describe(self) -> str:
        return f"{self._label(self.passes or 'N')}: {self.a} < {1 - self.margin:g} × {self.b}"

    def _values(self, measured: Measured) -> tuple[int, float, float]:
        last = min(self.passes or measured.passes, measured.passes)
        if self.measure == "final":
            return last, final_cost(measured, self.a), final_cost(measured, self.b)
        return last, mean_cost(measured, self.a, last), mean_cost(measured, self.b, last)

    def __call__(self, measured: Measured) -> Verdict:
        last, va, vb = self._values(measured)
        return judged(va < (1 - self.margin) * vb,
                      self._numbers(measured, self._label(last), va, vb))

    def gap(self, measured: Measured) -> float | None:
        _, va, vb = self._values(measured)
        return (va - vb) / abs(vb) if math.isfinite(va) and math.isfinite(vb) and vb else None


@dataclass(frozen=True)
class AsFast(_Pair):
    """A's cost is at most (1 + tol) x B's (two-sided: within +-tol) at 10/25/50/75/100% of
    the passes (`checkpoint_passes`)."""

    tol: float = 0.10
    two_sided: bool = False

    @property
    def thresholds(self) -> tuple[float, ...]:
        return (self.tol, -self.tol) if self.two_sided else (self.tol,)

    def describe(self) -> str:
        bound = f"within ±{self.tol:.0%} of" if self.two_sided else f"≤ {1 + self.tol:g} ×"
        return f"cost of {self.a} {bound} {self.b}'s at 10/25/50/75/100% of passes"

    def __call__(self, measured: Measured) -> Verdict:
        ok, parts = True, []
        for epoch in checkpoint_passes(measured.passes):
            va, vb = cost_at(measured, self.a, epoch), cost_at(measured, self.b, epoch)
            ok &= math.isfinite(va) and va <= (1 + self.tol) * vb
            if self.two_sided:
                ok &= va >= (1 - self.tol) * vb
            parts.append(f"pass {epoch}: {num(va)} vs {num(vb)}"
                         f"{relative(va, vb, self.thresholds)}")
        return judged(bool(ok), f"{measured.called(self.a)} vs {measured.called(self.b)}: "
                      + "; ".join(parts))


@dataclass(frozen=True)
class MarginallyBetter(_Pair):
    """A's final cost is below B's, but by at most `max_gap` relative to B's."""

    max_gap: float = 0.20

    @property
    def thresholds(self) -> tuple[float, ...]:
        return (0.0, -self.max_gap)

    def describe(self) -> str:
        return f"final cost: {self.a} < {self.b}, lower by at most {self.max_gap:.0%}"

    def __call__(self, measured: Measured) -> Verdict:
        va, vb = final_cost(measured, self.a), final_cost(measured, self.b)
        # beating a method that diverged is not "marginally" better (inf - va <= inf holds)
        ok = math.isfinite(va) and math.isfinite(vb) and va < vb and vb - va <= self.max_gap * vb
        return judged(ok, self._numbers(measured, "final cost", va, vb))

    def gap(self, measured: Measured) -> float | None:
        va, vb = final_cost(measured, self.a), final_cost(measured, self.b)
        return (va - vb) / abs(vb) if math.isfinite(va) and math.isfinite(vb) and vb else None


@dataclass(frozen=True)
class SlightlyHigher(_Pair):
    """A's final `column` (a higher-is-better metric such as test accuracy; mean over seeds
    of the selected runs) is above B's, by at most `max_gap` (absolute)."""

    column: str = "test_acc"
    max_gap: float = 0.02
    gap_is_relative = False  # A − B, in the column's units (not a dataclass field)

    def describe(self) -> str:
        return (f"final {self.column} of the selected runs (mean over seeds): {self.a} > "
                f"{self.b}, higher by at most {self.max_gap:g}")

    def _values(self, measured: Measured):
        return (final_values(measured, self.a, self.column),
                final_values(measured, self.b, self.column))

    def __call__(self, measured: Measured) -> Verdict:
        if self.column not in measured.curves.columns:
            return Verdict(NOT_MEASURABLE, f"no {self.column} in the tables")
        va, vb = self._values(measured)
        parts, means = [], []
        for method, values in ((self.a, va), (self.b, vb)):
            mean = math.nan if values is None else float(values.mean(skipna=False))
            spread = (f" ± {values.std():.2g}" if values is not None and len(values) > 1
                      and math.isfinite(mean) else "")
            # every grid point, or a seed of the selected one, diverged: said so, not "n/a"
            diverged = values is None or bool(values.isna().any())
            parts.append(f"{measured.called(method)} "
                         f"{'diverged' if diverged else num(mean)}{spread}")
            means.append(mean)
        ok = all(math.isfinite(m) for m in means) and 0 < means[0] - means[1] <= self.max_gap
        gap = (f"; {measured.called(self.a)} − {measured.called(self.b)} "
               f"{means[0] - means[1]:+.4g}" if all(math.isfinite(m) for m in means) else "")
        return judged(ok, f"final {self.column}: {', '.join(parts)}{gap}")

    def gap(self, measured: Measured) -> float | None:
        va, vb = self._values(measured)
        if va is None or vb is None:
            return None
        diff = float(va.mean(skipna=False)) - float(vb.mean(skipna=False))
        return diff if math.isfinite(diff) else None


@dataclass(frozen=True)
class OnColumn(Rule):
    """Another rule, judged on `column` (e.g. test_loss) instead of the training cost."""

    rule: Rule
    column: str

    @property
    def methods(self) -> tuple[MethodRef, ...]:
        return self.rule.methods

    @property
    def gap_is_relative(self) -> bool:
        return self.rule.gap_is_relative

    def describe(self) -> str:
        return f"on {self.column} instead of the training cost: {self.rule.describe()}"

    def __call__(self, measured: Measured) -> Verdict:
        if (self.column not in measured.curves.columns
                or measured.curves[self.column].isna().all()):
            return Verdict(NOT_MEASURABLE, f"no {self.column} in the tables")
        verdict = self.rule(measured.on_column(self.column))
        return Verdict(verdict.status, f"{self.column}: {verdict.numbers}")

    def gap(self, measured: Measured) -> float | None:
        return self.rule.gap(measured.on_column(self.column))

    @property
    def thresholds(self) -> tuple[float, ...]:
        return self.rule.thresholds


@dataclass(frozen=True)
class BeatsPerSecond(_Pair):
    """A's mean cost over the wall-clock span both runs cover is below B's by > `margin`."""

    margin: float = 0.05

    @property
    def thresholds(self) -> tuple[float, ...]:
        return (-self.margin,)

    def describe(self) -> str:
        return (f"mean cost over the training seconds both cover (20 times, linear "
                f"interpolation; evaluation excluded; a batched run's time = group time / group "
                f"size; where one run ended before the other's first pass: at that pass, the "
                f"one that ended at its last cost): {self.a} < {1 - self.margin:g} × {self.b}")

    def __call__(self, measured: Measured) -> Verdict:
        ca, cb = cost_by_time(measured, self.a), cost_by_time(measured, self.b)
        a_missing = ca is None or ca.empty
        if a_missing or cb is None or cb.empty:
            return judged(not a_missing,
                          f"{measured.called(self.a if a_missing else self.b)}: every grid "
                          f"point diverged")
        start, stop = common_span(ca, cb)
        if start > stop:
            # one run ended before the other's first recorded pass: compare them then, the
            # one that ended held at its last cost (a finished run stays where it ended);
            # interpolating over the reversed span read both outside their seconds
            ended = self.a if ca.index.max() < start else self.b
            va, vb = (float(np.interp(start, c.index, c.values)) for c in (ca, cb))
            label = (f"at {start:.3g} s, the first pass of "
                     f"{measured.called(self.b if ended == self.a else self.a)} "
                     f"({measured.called(ended)} ended at {stop:.3g} s, its last cost held)")
        else:
            va, vb = mean_cost_over_time(ca, cb, (start, stop))
            label = f"first {stop:.3g} s"
        return judged(va < (1 - self.margin) * vb,
                      self._numbers(measured, label, va, vb)
                      + timing_note(measured, self.methods))


@dataclass(frozen=True)
class SlowerPerPass(Rule):
    """`slow` takes between `low` and `high` times as long per pass as `fast`."""

    slow: MethodRef
    fast: MethodRef
    low: float = 5.0
    high: float = 10.0

    @property
    def selected_methods(self) -> tuple[MethodRef, ...]:
        return ()  # seconds per pass: the same at every grid point

    @property
    def methods(self) -> tuple[MethodRef, ...]:
        return (self.slow, self.fast)

    def describe(self) -> str:
        return (f"training seconds per pass of one run (evaluation excluded; a batched run's "
                f"time = group time / group size): {self.slow} / {self.fast} between "
                f"{self.low:g} and {self.high:g}")

    def __call__(self, measured: Measured) -> Verdict:
        ts, tf = seconds_per_pass(measured, self.slow), seconds_per_pass(measured, self.fast)
        slow, fast = measured.called(self.slow), measured.called(self.fast)
        if not (math.isfinite(ts) and math.isfinite(tf)) or tf <= 0:
            return Verdict(NOT_MEASURABLE, f"no timed pass: {slow} {ts}, {fast} {tf}")
        ratio = ts / tf
        # the first pass may cost otherwise (SFO's builds its models): the ratio without it,
        # said beside the verdict's, shows a verdict that rests on it
        later = (seconds_per_pass(measured, self.slow, after=1)
                 / seconds_per_pass(measured, self.fast, after=1)
                 if measured.passes >= 3 else math.nan)
        inside = self.low <= ratio <= self.high
        # where the ratio without the first pass lies on the other side of a bound, the
        # verdict rests on the first pass: said in words, not left to the reader's arithmetic
        other_side = math.isfinite(later) and (self.low <= later <= self.high) != inside
        span = f"{self.low:g}-{self.high:g}"
        return judged(inside,
                      f"{slow} {ts:.3g} s, {fast} {tf:.3g} s per pass: {ratio:.2f}x"
                      + (f" (after the first pass: {later:.2f}x"
                         + (f", {'outside' if inside else 'inside'} {span})" if other_side
                            else ")")
                         if math.isfinite(later) else "")
                      + timing_note(measured, self.methods))


@dataclass(frozen=True)
class DoesNotConverge(Rule):
    """Every grid point of `method` diverged, or its selected run's final cost is above
    `fraction` x its untrained cost (pass 0; where the tables have no pass 0, its cost after
    pass 1): it made almost no progress. Measured from pass 0, an optimizer that converges
    within its first pass (SFO makes hundreds of updates in one) is not said to fail."""

    method: MethodRef
    fraction: float = 0.9

    @property
    def methods(self) -> tuple[MethodRef, ...]:
        return (self.method,)

    def describe(self) -> str:
        return (f"every grid point of {self.method} diverged, or its final cost > "
                f"{self.fraction:g} × its untrained cost (pass 0; else its cost after pass 1)")

    def __call__(self, measured: Measured) -> Verdict:
        final = final_cost(measured, self.method)
        if final == math.inf:
            return judged(True, f"{measured.called(self.method)}: every grid point diverged")
        start = 0 if math.isfinite(cost_at(measured, self.method, 0)) else 1
        if measured.passes <= start:  # the final cost is the cost it is measured from
            return Verdict(NOT_MEASURABLE, f"only {measured.passes} pass and no untrained "
                                           f"cost: no progress to measure")
        first = cost_at(measured, self.method, start)
        return judged(final > self.fraction * first,
                      f"{measured.called(self.method)}: pass {start} {num(first)}, final "
                      f"{num(final)}{relative(final, first, (self.fraction - 1,))}")


@dataclass(frozen=True)
class MemoryGrowsLinearly(Rule):
    """The optimizer state of `method`'s runs after the last pass, against their number of
    subfunctions (minibatches): a least-squares line explains at least `min_r2` of its
    variance and rises (slope > 0). Needs three or more values of num_subfunctions."""

    method: MethodRef
    min_r2: float = 0.99

    @property
    def selected_methods(self) -> tuple[MethodRef, ...]:
        return ()  # every run's state, not a selected one

    @property
    def methods(self) -> tuple[MethodRef, ...]:
        return (self.method,)

    def describe(self) -> str:
        return (f"optimizer state bytes of {self.method} (the tensors it holds) against "
                f"num_subfunctions N, and its group's peak device memory where a GPU measured "
                f"it: each a linear fit with R² ≥ {self.min_r2:g} and slope > 0 (3 or more N)")

    def __call__(self, measured: Measured) -> Verdict:
        if "state_bytes" not in measured.curves.columns:
            return Verdict(NOT_MEASURABLE, "no state_bytes in the tables (written before "
                                           "runs recorded their optimizer state)")
        points = memory_by_subfunctions(measured.curves)
        points = points[points["method"] == measured.label(self.method)]
        if points["num_subfunctions"].nunique() < 3:
            return Verdict(NOT_MEASURABLE, f"{measured.called(self.method)}: needs runs at 3 or "
                                           f"more values of num_subfunctions, has "
                                           f"{points['num_subfunctions'].nunique()}")
        x = points["num_subfunctions"].to_numpy(float)
        fits = [("state", points["state_bytes"].to_numpy(float))]
        peak = points["peak_memory_bytes"].to_numpy(float)
        if np.isfinite(peak).all() and (peak > 0).all():
            fits.append(("peak device memory", peak))
        ok, parts = True, []
        for name, y in fits:
            slope, intercept = np.polyfit(x, y, 1)
            residual = y - (intercept + slope * x)
            r2 = 1 - float((residual**2).sum() / ((y - y.mean()) ** 2).sum())
            ok &= bool(slope > 0 and r2 >= self.min_r2)
            sizes = ", ".join(f"N={int(n)}: {b / 2**20:.1f} MiB"
                              for n, b in zip(x, y, strict=True))
            parts.append(f"{name}: {sizes}; fit {intercept / 2**20:.2f} + "
                         f"{slope / 2**20:.3f}·N MiB, R² = {r2:.4f}")
        if len(fits) == 1:
            parts.append("no peak device memory (measured on a GPU only)")
        return judged(ok, "; ".join(parts))


@dataclass(frozen=True)
class AllOf(Rule):
    """Several rules that must all hold (one claim checked on several method pairs)."""

    rules: tuple[Rule, ...]

    @property
    def methods(self) -> tuple[MethodRef, ...]:
        return tuple(dict.fromkeys(m for rule in self.rules for m in rule.methods))

    @property
    def selected_methods(self) -> tuple[MethodRef, ...]:
        return tuple(dict.fromkeys(m for rule in self.rules for m in rule.selected_methods))

    def describe(self) -> str:
        return " AND ".join(rule.describe() for rule in self.rules)

    def __call__(self, measured: Measured) -> Verdict:
        verdicts = [rule(measured) for rule in self.rules]
        numbers = "; ".join(v.numbers for v in verdicts)
        # one part measured to fail decides the whole, whatever the others lack: Fig. 3's
        # claim failed without dropout and its dropout runs missing read "not run yet"
        for status in (FAILS, NOT_RUN, NOT_MEASURABLE):
            if any(v.status == status for v in verdicts):
                return Verdict(status, numbers)
        return Verdict(HOLDS, numbers)


@dataclass(frozen=True)
class WithinStepBound(Rule):
    """Every recorded pass of every run of the optimizer (all variants and grid points): the
    largest |Δθ|/α_t is at most Sec. 2.1's bound, up to float rounding (`rounding`,
    relative). Reads `max_step_ratio`, `beta1`, `beta2` from the tables."""

    method: Method = Method("adam")
    rounding: float = 1e-6  # float32 rounding of m̂/(√v̂ + ε), a few ulps

    @property
    def selected_methods(self) -> tuple[MethodRef, ...]:
        return ()  # every pass of every run

    @property
    def methods(self) -> tuple[MethodRef, ...]:
        return (self.method,)

    def describe(self) -> str:
        return (f"every pass of every {self.method.optimizer} run (all variants, every grid "
                f"point): largest |Δθ|/α ≤ (1−β1)/√(1−β2) if (1−β1) > √(1−β2), else 1 "
                f"(up to a relative {self.rounding:g} of float rounding)")

    def __call__(self, measured: Measured) -> Verdict:
        rows = step_ratios(measured, self.method.optimizer)
        if rows is None:
            return Verdict(NOT_MEASURABLE, "no run recorded max_step_ratio "
                                           "(track_step_ratio: true)")
        worst = rows.loc[rows["of_bound"].idxmax()]
        over = rows[rows["of_bound"] > 1 + self.rounding]
        return judged(over.empty,
                      f"{over['run_id'].nunique()} of {rows['run_id'].nunique()} runs "
                      f"exceeded it, in {len(over)} of {len(rows)} passes; largest "
                      f"|Δθ|/α {worst['max_step_ratio']:.4g} against a bound of "
                      f"{worst['bound']:.4g} ({worst['of_bound']:.1%} of it), {worst['method']} "
                      f"lr={worst['lr']:g} pass {int(worst['epoch'])}")


# Fig. 4: Adam with bias correction (`corrected`) against without (`uncorrected`), compared
# cell by cell over the grid (beta1, beta2, lr), after an early pass and at the end.

def paired_cells(measured: Measured, epoch: int, corrected: MethodRef,
                 uncorrected: MethodRef) -> pd.DataFrame:
    """One row per grid cell run by both methods: cost_corrected, cost_uncorrected (+inf:
    diverged by `epoch`)."""
    cells = cell_costs(measured, epoch, CELLS)
    a = cells[cells["method"] == measured.label(corrected)].drop(columns=["method", "point_id"])
    b = cells[cells["method"] == measured.label(uncorrected)].drop(
        columns=["method", "point_id"])
    return a.merge(b, on=list(CELLS), suffixes=("_corrected", "_uncorrected"))


@dataclass(frozen=True)
class _BiasCorrectionRule(Rule):
    corrected: MethodRef = Method("adam")
    uncorrected: MethodRef = Method("adam", "nobias")
    early: float = 0.1  # the paper's 10 of 100 epochs

    @property
    def selected_methods(self) -> tuple[MethodRef, ...]:
        return ()  # every (beta1, beta2, lr) cell of the grid

    @property
    def methods(self) -> tuple[MethodRef, ...]:
        return (self.corrected, self.uncorrected)

    def checkpoints(self, measured: Measured) -> list[int]:
        return sorted({early_pass(measured.passes, self.early), measured.passes})


@dataclass(frozen=True)
class UnstableWithoutCorrection(_BiasCorrectionRule):
    """At the largest beta2, most (beta1, lr) cells are worse without bias correction, and
    more so than at the smallest beta2: the instability comes with beta2 close to 1. "More
    so": a larger median cost ratio, or, where both medians are ∞ (half the cells or more
    diverged at both), more cells that diverged. A cell where only the corrected run
    diverged counts against the claim (not worse, ratio 0); one where both did, not at all."""

    margin: float = 0.05
    share: float = 0.5

    def describe(self) -> str:
        return (f"final pass: at the largest beta2 of the grid, in more than {self.share:.0%} "
                f"of the (beta1, lr) cells where not both diverged, {self.uncorrected} "
                f"diverged or ended above {1 + self.margin:g} × {self.corrected}; and the "
                f"median over those cells of cost {self.uncorrected} / {self.corrected} "
                f"({self.uncorrected} diverged: ∞; {self.corrected} alone diverged: 0) is "
                f"larger than at the smallest beta2 (both ∞: more cells diverged)")

    def __call__(self, measured: Measured) -> Verdict:
        cells = paired_cells(measured, measured.passes, self.corrected, self.uncorrected)
        if cells.empty:
            return Verdict(NOT_MEASURABLE, "no grid cell run by both methods")
        if cells["beta2"].nunique() < 2:
            return Verdict(NOT_MEASURABLE, "one beta2 only: nothing to compare it with")
        parts, medians, shares, diverged = [], [], [], []
        for beta2 in (cells["beta2"].max(), cells["beta2"].min()):
            at = cells[cells["beta2"] == beta2]
            # a cell where both diverged (Fig. 4's largest rates) says nothing of what
            # correction does: left out. One where only the corrected run diverged is
            # evidence against the claim: not worse, ratio 0 (leaving it out kept the
            # verdict when the two methods' tables were swapped)
            trained = at[np.isfinite(at["cost_corrected"]) | np.isfinite(at["cost_uncorrected"])]
            a, b = trained["cost_corrected"], trained["cost_uncorrected"]
            worse = np.isfinite(a) & ((b > (1 + self.margin) * a) | np.isinf(b))
            ratios = (b / a).where(np.isfinite(a), 0.0)
            medians.append(float(ratios.median()) if len(trained) else math.nan)
            shares.append(float(worse.mean()) if len(trained) else 0.0)
            diverged.append(float(np.isinf(at["cost_uncorrected"]).mean()))
            left = len(at) - len(trained)
            parts.append(f"beta2={beta2:g}: {int(worse.sum())}/{len(trained)} cells worse "
                         f"without bias correction ({int(np.isinf(b).sum())} diverged"
                         + (f"; {int(np.isinf(a).sum())} where only {self.corrected} diverged"
                            if np.isinf(a).any() else "")
                         + (f"; {left} left out, both diverged" if left else "")
                         + f"), median ratio {medians[-1]:.3g}")
        more = medians[0] > medians[1] or (medians[0] == medians[1] == math.inf
                                           and diverged[0] > diverged[1])
        return judged(bool(shares[0] > self.share and more), "; ".join(parts))


@dataclass(frozen=True)
class WorstEarly(_BiasCorrectionRule):
    """At the largest beta2, the (beta1, lr) cells where the run without correction is worse
    (cost above 1 + `margin` × the corrected one's, or diverged) after the early pass or at
    the end are each worst early or late, and more are worst early. Worst early: diverged by
    the early pass (a blow-up there is the instability the claim is about, and a diverged run
    stays so), or a larger cost ratio early than at the end; worst late: diverged after the
    early pass, or a larger ratio at the end. A cell where both runs diverged by the end is
    left out; one where only the corrected run diverged has ratio 0 there (not worse). None
    worse: no instability to be worst early."""

    margin: float = 0.05

    def describe(self) -> str:
        return (f"largest beta2: of the (beta1, lr) cells where {self.uncorrected} is worse "
                f"than {self.corrected} (cost above {1 + self.margin:g} ×, or diverged) after "
                f"{self.early:.0%} of passes or at the end, more are worst early (diverged by "
                f"then, or a larger cost ratio {self.uncorrected} / {self.corrected} then "
                f"than at the end) than worst late (diverged later, or a larger ratio at the "
                f"end); cells where both diverged left out")

    def __call__(self, measured: Measured) -> Verdict:
        first, last = early_pass(measured.passes, self.early), measured.passes
        if first >= last:
            return Verdict(NOT_MEASURABLE, f"only {last} pass(es): no early pass to compare")
        ratios, top = {}, math.nan
        for epoch in (first, last):
            cells = paired_cells(measured, epoch, self.corrected, self.uncorrected)
            top = cells["beta2"].max()
            at = cells[cells["beta2"] == top].set_index(["beta1", "lr"])
            a, b = at["cost_corrected"], at["cost_uncorrected"]
            # ∞ where only the run without correction diverged, 0 where only the corrected
            # one did, NaN where both did (left out)
            ratios[epoch] = (b / a).where(np.isfinite(a), np.where(np.isinf(b), np.nan, 0.0))
        both = pd.concat(ratios, axis=1, join="inner")
        if both.empty:
            return Verdict(NOT_MEASURABLE, "no grid cell run by both methods")
        gone = both[last].isna()  # both diverged by the end (by then, if by the early pass)
        early, late = both.loc[~gone, first], both.loc[~gone, last]
        worse = (early > 1 + self.margin) | (late > 1 + self.margin)
        blown_early = np.isinf(early)  # and so still at the end
        blown_late = np.isinf(late) & ~blown_early
        worst_early = int((blown_early | (worse & (early > late))).sum())
        worst_late = int((worse & (late > early)).sum())
        numbers = (f"beta2={top:g}: {count(int(worse.sum()), 'cell')} worse without bias "
                   f"correction: {worst_early} worst at pass {first} "
                   f"({int(blown_early.sum())} diverged by then), {worst_late} worst at pass "
                   f"{last} ({int(blown_late.sum())} diverged after pass {first})")
        if gone.any():
            numbers += f"; {count(int(gone.sum()), 'cell')} left out, both diverged"
        if not worse.any():
            return judged(False, f"{numbers}: no instability to be worst early")
        return judged(worst_early > worst_late, numbers)


@dataclass(frozen=True)
class BestWithCorrection(_BiasCorrectionRule):
    """The lowest cost of the whole grid is a bias-corrected run with beta2 >= min_beta2, or
    within `tol` (relative) of it, both after the early pass and at the end. `tol` gives
    "best" the meaning the other words have: a lead under it is no lead a reader of the
    figure would see. The gap (for the spread over seeds) is the claimed corner's largest
    shortfall from the best of the grid over the two passes, 0 where it is the best: a lead
    under `tol` that every seed shows is said so."""

    min_beta2: float = 0.999
    tol: float = 0.0

    @property
    def thresholds(self) -> tuple[float, ...]:
        return (self.tol,)

    def describe(self) -> str:
        within = f" or within {self.tol:.0%} of it" if self.tol else ""
        return (f"after {self.early:.0%} of passes and at the end, the lowest cost of all cells "
                f"of both methods is one of {self.corrected} with beta2 ≥ {self.min_beta2:g}"
                f"{within}")

    def _bests(self, measured: Measured, epoch: int) -> tuple[pd.Series, pd.Series] | None:
        """At `epoch`: the cell of lowest cost of the grid, and the claimed corner's (None
        where it has no finite cost); None where no cell has a finite cost."""
        cells = paired_cells(measured, epoch, self.corrected, self.uncorrected)
        long = pd.concat([
            cells.assign(method=measured.called(self.corrected), cost=cells["cost_corrected"]),
            cells.assign(method=measured.called(self.uncorrected),
                         cost=cells["cost_uncorrected"]),
        ], ignore_index=True)
        if not np.isfinite(long["cost"]).any():
            return None
        claimed = long[(long["method"] == measured.called(self.corrected))
                       & (long["beta2"] >= self.min_beta2)]
        near = (claimed.loc[claimed["cost"].idxmin()] if np.isfinite(claimed["cost"]).any()
                else None)
        return long.loc[long["cost"].idxmin()], near

    def gap(self, measured: Measured) -> float | None:
        gaps = []
        for epoch in self.checkpoints(measured):
            found = self._bests(measured, epoch)
            if found is None or found[1] is None:
                return None
            best, near = found
            gaps.append(near["cost"] / best["cost"] - 1 if best["cost"] else math.nan)
        return max(gaps) if gaps and all(math.isfinite(g) for g in gaps) else None

    def __call__(self, measured: Measured) -> Verdict:
        ok, parts = True, []
        for epoch in self.checkpoints(measured):
            if paired_cells(measured, epoch, self.corrected, self.uncorrected).empty:
                return Verdict(NOT_MEASURABLE, "no grid cell run by both methods")
            found = self._bests(measured, epoch)
            if found is None:
                return judged(False, f"pass {epoch}: every cell diverged")
            best, near = found
            corrected = measured.called(self.corrected)
            won = best["method"] == corrected and best["beta2"] >= self.min_beta2
            parts.append(f"pass {epoch}: best {best['method']} beta1={best['beta1']:g} "
                         f"beta2={best['beta2']:g} lr={best['lr']:g}: {num(best['cost'])}")
            if not won and near is not None:  # how near the claim came
                won = near["cost"] <= (1 + self.tol) * best["cost"]
                parts[-1] += (f" (best {corrected} with beta2 ≥ {self.min_beta2:g}: "
                              f"beta1={near['beta1']:g} beta2={near['beta2']:g} "
                              f"lr={near['lr']:g}: {num(near['cost'])}, "
                              f"{signed_percent(near['cost'] / best['cost'] - 1, (self.tol,))})")
            ok &= bool(won)
        return judged(bool(ok), "; ".join(parts))


@dataclass(frozen=True)
class NeverWorse(_BiasCorrectionRule):
    """In every cell, after the early pass and at the end, the corrected cost is at most
    (1 + tol) x the uncorrected one (an uncorrected divergence counts as worse)."""

    tol: float = 0.05

    def describe(self) -> str:
        return (f"every (beta1, beta2, lr) cell, after {self.early:.0%} of passes and at the "
                f"end: {self.corrected} ≤ {1 + self.tol:g} × {self.uncorrected}, or "
                f"{self.uncorrected} diverged")

    def __call__(self, measured: Measured) -> Verdict:
        ok, parts = True, []
        for epoch in self.checkpoints(measured):
            cells = paired_cells(measured, epoch, self.corrected, self.uncorrected)
            if cells.empty:
                return Verdict(NOT_MEASURABLE, "no grid cell run by both methods")
            a, b = cells["cost_corrected"], cells["cost_uncorrected"]
            fine = np.isinf(b) | (a <= (1 + self.tol) * b)
            ok &= bool(fine.all())
            ratio = (a / b).replace([np.inf, -np.inf], np.nan)
            worst = f", largest ratio {ratio.max():.3g}" if ratio.notna().any() else ""
            parts.append(f"pass {epoch}: {int((~fine).sum())}/{len(cells)} cells worse{worst}")
        return judged(bool(ok), "; ".join(parts))
