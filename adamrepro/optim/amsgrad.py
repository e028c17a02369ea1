"""AMSGrad (Reddi, Kale & Kumar, ICLR 2018) in torch's form, an extra row beyond the paper.

The update rule, its symbols and the reference: the docstring of `AMSGrad`.
"""

from __future__ import annotations

import torch

from adamrepro.optim.base import (
    GridOptimizer,
    adam_family_defaults,
    add_l2,
    betas_like,
    bias_correction,
    broadcast,
    zeros_state,
)


class AMSGrad(GridOptimizer):
    """AMSGrad (Reddi, Kale & Kumar, ICLR 2018) in torch's form, an extra row beyond the paper.

        t ← t + 1;   g ← ∇f(θ) + weight_decay·θ
        m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²;   v_max ← max(v_max, v)
        θ ← θ − α_t·(m / (1 − β1^t)) / (√(v_max / (1 − β2^t)) + ε),   α_t = α or α/√t

    This is torch.optim.Adam(amsgrad=True), identical to it when lr_decay is `none`, with torch's
    state names (`max_exp_avg_sq` holds v_max). It differs from Reddi et al.'s Algorithm 2,
    which has no bias correction and takes the max of v̂ rather than of the biased v.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        lr_decay: str = "none",
    ) -> None:
        super().__init__(params, adam_family_defaults(lr, betas, eps, weight_decay, lr_decay))

    def _init_state(self, p, state, group):
        zeros_state(p, state, "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _update(self, p, grad, state, group, lr_t):
        step = state["step"]
        beta1, beta2 = betas_like(group, p)
        grad = add_l2(grad, p, group["weight_decay"])
        m, v, v_max = state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * grad)
        v.mul_(beta2).add_((1 - beta2) * grad * grad)
        torch.maximum(v_max, v, out=v_max)
        m_hat = m / bias_correction(beta1, step)
        v_hat = v_max / bias_correction(beta2, step)
        p.sub_(lr_t * m_hat / self._nonzero(v_hat.sqrt() + broadcast(group["eps"], p)))
