"""An optimizer defined outside adamrepro, as a user's own package would define it: the
race tests put this folder on PYTHONPATH and name it `my_optimizers:SignSGD` in a config."""

from __future__ import annotations

import torch


class SignSGD(torch.optim.Optimizer):
    """θ ← θ − lr·sign(∇f(θ)) (Bernstein et al. 2018, without momentum)."""

    def __init__(self, params, lr: float = 1e-3) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
        return loss
