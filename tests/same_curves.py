"""Curve comparisons shared by the equivalence tests (batched == one by one == the plain loop):
a run's curve as a float64 table, the assertion, and a group's run trained alone."""

from __future__ import annotations

import torch

from adamrepro.metrics import CLASSIFIER
from adamrepro.runner.plan import Group

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
