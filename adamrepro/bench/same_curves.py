"""Whether the batched runner and the reference loop train the same curves (`adamrepro bench`).

A speed-up counts only on the same curves. The runs that draw no noise (dropout masks and a
VAE's ε cannot be drawn alike batched and one by one) are trained again both ways in float64
for two passes of a few minibatches, where any real difference stands out of the rounding by
orders of magnitude; that decides. The timed curves are compared too, at the passes the
reference ran, and decide as well for a convex model (`CONVEX`: logistic regression), whose
float32 rounding differences stay small along a whole run, trained at the reference's full
float32 precision. A network amplifies them step by step (Fig. 3's CNN: 2.3e-4 after one
pass, 0.24 after four, and 7.6e-4 after the float64 check's 8 steps had they been float32),
and TF32 or bf16 round far more than the reference does, so there the timed difference is
reported, not judged.
"""

from __future__ import annotations

import math

import torch

from adamrepro.bench.reference import train_run
from adamrepro.config import Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.metrics import CLASSIFIER
from adamrepro.models import MODELS
from adamrepro.runner.group import RunCurve, step_sizes, train_group
from adamrepro.runner.plan import Group
from adamrepro.runner.precision import precision_of

# Float32 on the curves: the two compute the same arithmetic in different orders, and over
# thousands of steps the rounding differences grow to ~1e-5 relative (measured on
# logreg_mnist quick: 1.3e-5). A real difference is far larger: after 2 passes, another
# minibatch order moves the losses by >= 4e-4 relative, a 1% different lr by >= 8e-4.
CHECK_RTOL = {"float32": 1e-4, "float64": 1e-9}
CHECK_ATOL = {"float32": 1e-6, "float64": 1e-12}
# The losses; accuracy may flip by one sample in float32. The reference loop is a classifier's.
CHECK_METRICS = [c.name for c in CLASSIFIER.columns() if not c.percent]
# The float64 check: every compared run of the grid, batched in its group and alone in the
# reference loop, on the first few minibatches for two passes (the second reshuffles them,
# and each pass ends in the evaluation on both splits). A network amplifies rounding
# differences, but over 8 steps from float64's 1e-16 they stay far below CHECK_RTOL
# ["float64"] (tests/test_cnn.py measures ~1e-14 after 2 passes of 2 steps), while a real
# difference (another minibatch, mask or step size) is >= 1e-4 from the first step.
IDENTITY_STEPS = 4  # minibatches per pass
IDENTITY_PASSES = 2


def draws_noise(group: Group) -> bool:
    """Whether the group's model draws noise in training (its declaration: dropout, a VAE's
    sampling)."""
    cls = MODELS[group.model["name"]]
    return cls.stochastic(cls.options(dict(group.model), "model"))


def compare_curves(exp: Experiment, batched: dict[str, RunCurve],
                   reference: dict[str, RunCurve]) -> dict:
    """The reference's curves against the batched ones at the passes the reference ran."""
    dtype = exp.training.dtype
    rtol, atol = CHECK_RTOL[dtype], CHECK_ATOL[dtype]
    worst, worst_where, points = 0.0, "", 0
    mismatches = []
    for run_id, ref in reference.items():
        rows = batched[run_id].rows
        for ref_row in ref.rows:
            if ref_row["epoch"] >= len(rows):
                mismatches.append(f"{run_id}: the batched run stopped before pass "
                                  f"{ref_row['epoch']}")
                break
            for metric in CHECK_METRICS:
                a, b = rows[ref_row["epoch"]][metric], ref_row[metric]
                if math.isnan(a) and math.isnan(b):
                    continue
                points += 1
                gap = abs(a - b) / max(abs(b), 1e-300)
                if gap > worst:
                    worst, worst_where = gap, f"{run_id} pass {ref_row['epoch']} {metric}"
                if not (abs(a - b) <= atol + rtol * abs(b)):
                    mismatches.append(f"{run_id} pass {ref_row['epoch']} {metric}: "
                                      f"batched {a!r} vs reference {b!r}")
    return {"passed": not mismatches, "rtol": rtol, "atol": atol, "compared_values": points,
            "max_relative_difference": worst, "where": worst_where,
            "mismatches": mismatches[:10]}


def in_float64(exp: Experiment) -> Experiment:
    """`exp` in float64 for IDENTITY_PASSES passes: the float64 check's training."""
    return exp.model_copy(update={"training": exp.training.model_copy(update={
        "dtype": "float64", "precision": "fp32", "epochs": IDENTITY_PASSES})})


def head(data: TensorDataset, size: int) -> TensorDataset:
    """The first `size` examples of each split: the float64 check's data."""
    return TensorDataset({k: v[:size] for k, v in data.train.items()},
                         {k: v[:size] for k, v in data.test.items()}, data.num_classes)


def identity_check(exp: Experiment, groups: list[Group], data: TensorDataset,
                   host: TensorDataset, reference_runs: int | None) -> dict:
    """Batched against reference in float64 on the first IDENTITY_STEPS minibatches (and as
    many test examples), for the first `reference_runs` runs of every group in `groups`
    (those that draw no noise): what decides whether the two compute the same training."""
    exp64 = in_float64(exp)
    size = IDENTITY_STEPS * exp.training.batch_size
    small, host_small = head(data, size), head(host, size)
    batched, reference = {}, {}
    for group in groups:
        curves = train_group(exp64, group, small)
        batched.update({run.run_id: c for run, c in zip(group.runs, curves, strict=True)})
        for run in group.runs[: reference_runs or group.size]:
            reference[run.run_id] = train_run(exp64, run, small, IDENTITY_PASSES,
                                              host_data=host_small)
    return {**compare_curves(exp64, batched, reference), "runs": len(reference),
            "passes": IDENTITY_PASSES, "steps_per_pass": len(step_sizes(
                exp64.training, len(small.train_x)))}


def clean_runs(groups: list[Group]) -> set[str]:
    """The runs whose curves can be compared: those of the groups that draw no noise."""
    return {run.run_id for group in groups if not draws_noise(group) for run in group.runs}


def not_judged(exp: Experiment, groups: list[Group], device: torch.device) -> str | None:
    """Why the timed curves of `groups` cannot decide (None: they can)."""
    if not all(MODELS[g.model["name"]].CONVEX for g in groups):
        return "a network amplifies rounding along training"
    applied = precision_of(exp.training, device).applied
    if applied not in ("fp32", "fp64"):  # the reference loop computes in full precision
        return f"the batched runs compute in {applied}, the reference in full precision"
    return None


def curves_check(exp: Experiment, groups: list[Group], data: TensorDataset,
                 host: TensorDataset, reference_runs: int | None,
                 batched: dict[str, RunCurve], reference: dict[str, RunCurve]) -> dict:
    """Whether the batched runner and the reference loop train the same runs of `groups`
    (`batched` and `reference`: the curves they were timed on; the reference's DataLoader
    reads `host`): the float64 check on a short prefix always, and the timed curves where the
    model is convex and both compute in full precision; otherwise their difference is
    reported, not judged."""
    clean_groups = [g for g in groups if not draws_noise(g)]
    if not clean_groups:
        return {"passed": None, "skipped": "the model draws noise in training (dropout "
                "masks, a VAE's ε): batched and sequential runs cannot draw the same noise, "
                "so their curves differ by it"}
    clean = clean_runs(clean_groups)
    float64 = identity_check(exp, clean_groups, data, host, reference_runs)
    timed = compare_curves(exp, batched, {
        run_id: curve for run_id, curve in reference.items() if run_id in clean})
    why_not = not_judged(exp, clean_groups, data.train_x.device)
    timed.update(dtype=exp.training.dtype, judged=why_not is None, not_judged=why_not)
    check = {"passed": float64["passed"] and (timed["passed"] or why_not is not None),
             "float64_prefix": float64, "timed_curves": timed}
    if len(clean) < len(batched):
        check["note"] = (f"the {len(batched) - len(clean)} runs that draw noise (dropout) "
                         f"are not compared (their noise differs)")
    return check
