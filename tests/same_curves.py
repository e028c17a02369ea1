"""Curve comparisons shared by the equivalence tests (batched == one by one == the plain loop):
a run's curve as a float64 table, the assertion, and a group's run trained alone."""

from __future__ import annotations

import torch

from adamrepro.metrics import CLASSIFIER
from adamrepro.runner.plan import Group, group_id_of

# float64 on both sides: only the summation order differs (test_batched_equivalence.py)
RTOL, ATOL = 1e-9, 1e-12


def table(curve) -> torch.Tensor:
    """(passes, metrics) in float64; epoch 0's train_loss is NaN by definition."""
    return torch.tensor([[row[c.name] for c in CLASSIFIER.columns()] for row in curve.rows],
                        dtype=torch.float64)


def assert_same_curve(actual, expected, what: str, rtol: float = RTOL) -> None:
    assert actual.diverged == expected.diverged, what
    torch.testing.assert_close(table(actual), table(expected), rtol=rtol, atol=ATOL,
                               equal_nan=True, msg=lambda m: f"{what}: {m}")


def alone(group: Group, index: int) -> Group:
    """Run `index` of `group` as a group of its own."""
    run = group.runs[index]
    return Group(group.method, group.optimizer, group.model, (run,), run.run_id)


def seeds_together(groups: list[Group]) -> list[Group]:
    """The planned groups (one seed each) of each method as one group of every seed: the
    runner trains such a group too, each run with its own seed's initial weights, minibatch
    order and inputs, and these tests check it does so as each run would alone."""
    merged: dict[str, list] = {}
    for group in groups:
        merged.setdefault(group.method, []).append(group)
    return [Group(parts[0].method, parts[0].optimizer, parts[0].model, runs, group_id_of(runs),
                  parts[0].closure)
            for parts in merged.values()
            for runs in [tuple(run for part in parts for run in part.runs)]]
