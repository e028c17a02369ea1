"""On a CUDA device, a grid step must not wait for the host: `step`, the bias corrections
and the lr schedule all stay on the device (base.py). Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch
from optim_table import CASES, make_problem, per_run

from adamrepro.optim import build

pytestmark = pytest.mark.cuda  # skipped, and reported, without a GPU (conftest.py)


def _to(value, device):
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    return value.to(device) if isinstance(value, torch.Tensor) else value


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_grid_step_never_syncs_with_the_host(case):
    device = torch.device("cuda")
    runs = len(next(iter(case.grid.values())))
    hparams = {**case.hparams, "lr_decay": "sqrt"}
    hparams.update({key: _to(per_run(values), device) for key, values in case.grid.items()})
    params = [p.to(device).requires_grad_(True) for p in make_problem(1, runs=runs).init]
    optimizer = build(case.name, params, **hparams)  # validation reads values: before the check
    grads = [torch.randn_like(p) for p in params]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            optimizer.step()
        if hasattr(optimizer, "averaged_params"):
            optimizer.averaged_params()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(p).all() for p in params)
