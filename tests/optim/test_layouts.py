"""Every grid optimizer of the table updates a parameter stored with other strides (each
run's block transposed, as `models.base.out_major` stores logreg's weights) exactly as it
updates a contiguous one: bit for bit, parameters and state, over 60 steps with per-run
hyperparameters. The runner relies on it to hand adamrepro's own batchable optimizers such
parameters (`BatchedModel.lay_out_for`); an optimizer that `view`s a parameter would raise
here."""

from __future__ import annotations

import pytest
import torch
from optim_table import CASES, fresh_params, make_problem, per_run

from adamrepro.models.base import out_major
from adamrepro.optim import build

STEPS = 60


def transposed(p: torch.Tensor) -> torch.Tensor:
    """The same values in new memory, each run's last two dimensions stored transposed
    (1-D runs as they are)."""
    return out_major(p) if p.dim() >= 3 else p.clone()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_a_transposed_layout_is_updated_bit_for_bit_alike(case):
    runs = len(next(iter(case.grid.values())))
    problem = make_problem(STEPS, runs=runs)
    hparams = {**case.hparams, "lr_decay": "sqrt",
               **{key: per_run(values) for key, values in case.grid.items()}}
    plain = fresh_params(problem)
    laid_out = [transposed(p.detach()).requires_grad_(True) for p in plain]
    assert any(not p.is_contiguous() for p in laid_out)
    optimizers = [build(case.name, params, **hparams) for params in (plain, laid_out)]
    for t in range(1, STEPS + 1):
        # from the plain parameters alone: a gradient computed from the transposed ones
        # would sum its means in another order
        gradients = problem.gradients(plain, t, runs)
        for p, q, g in zip(plain, laid_out, gradients, strict=True):
            p.grad, q.grad = g, transposed(g)
        for optimizer in optimizers:
            optimizer.step()
    for a, b in zip(plain, laid_out, strict=True):
        assert torch.equal(a, b)
        for name, value in optimizers[0].state[a].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(
                optimizers[1].state[b][name])), name
    assert not torch.allclose(plain[0], problem.init[0], atol=1e-3)  # they moved
