"""AdaMax, Algorithm 2 (Sec. 7.1) of Kingma & Ba (2015): Adam with the infinity norm.

The update rule, its symbols and the reference: the docstring of `Adamax`.
"""

from __future__ import annotations

import torch

from adamrepro.optim.averaging import TemporalAveraging, check_averaging
from adamrepro.optim.base import (
    GridOptimizer,
    adam_family_defaults,
    add_l2,
    betas_like,
    bias_correction,
    broadcast,
    zeros_state,
)


class Adamax(TemporalAveraging, GridOptimizer):
    """AdaMax, Algorithm 2 (Sec. 7.1) of Kingma & Ba (2015): Adam with the infinity norm.

        t ← t + 1;   g ← ∇f(θ) + weight_decay·θ
        m ← β1·m + (1 − β1)·g;   u ← max(β2·u, |g|)
        θ ← θ − (α_t / (1 − β1^t))·m / (u + ε),   α_t = α or α/√t        (lr_decay)

    u is the paper's u exactly (no bias correction, none is needed). ε only guards u = 0, which
    happens while a coordinate has seen nothing but zero gradients (ours: Algorithm 2 has no ε).
    We add it to the denominator, as Adam does; torch.optim.Adamax folds it into the state
    instead, u ← max(β2·u, |g| + ε). That placement is the only difference between the two: with
    eps = 0 and nonzero gradients they are identical, and otherwise torch's `exp_inf` exceeds
    ours by at most ε. `averaging` adds the temporal average of Sec. 7.2 (see averaging.py).
    Reference: D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        lr_decay: str = "none",
        averaging=None,
    ) -> None:
        check_averaging(averaging)
        super().__init__(params, adam_family_defaults(lr, betas, eps, weight_decay, lr_decay,
                                                      averaging=averaging))

    def _init_state(self, p, state, group):
        zeros_state(p, state, "exp_avg", "exp_inf")
        self._init_average(p, state, group)

    def _update(self, p, grad, state, group, lr_t):
        beta1, beta2 = betas_like(group, p)
        grad = add_l2(grad, p, group["weight_decay"])
        m, u = state["exp_avg"], state["exp_inf"]
        m.mul_(beta1).add_((1 - beta1) * grad)
        torch.maximum(u.mul_(beta2), grad.abs(), out=u)
        step_size = lr_t / bias_correction(beta1, state["step"])
        p.sub_(step_size * m / self._nonzero(u + broadcast(group["eps"], p)))
        self._update_average(p, state, group)
