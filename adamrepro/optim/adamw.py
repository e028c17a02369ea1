"""AdamW (Loshchilov & Hutter, ICLR 2019) in torch's form, an extra row beyond the paper.

The update rule, its symbols and the reference: the docstring of `AdamW`.
"""

from __future__ import annotations

from adamrepro.optim.base import (
    GridOptimizer,
    adam_family_defaults,
    betas_like,
    bias_correction,
    broadcast,
    zeros_state,
)


class AdamW(GridOptimizer):
    """AdamW (Loshchilov & Hutter, ICLR 2019) in torch's form, an extra row beyond the paper.

        t ← t + 1;   θ ← θ·(1 − α_t·λ)                         (decoupled decay, λ = weight_decay)
        m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²        (g = ∇f(θ), no L2 term)
        θ ← θ − α_t·(m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε),   α_t = α or α/√t

    Identical to torch.optim.AdamW (amsgrad=False) when lr_decay is `none`. As in torch the decay
    is scaled by the step size α_t, so with lr_decay `sqrt` it decays too (what a torch lr
    scheduler would do); Loshchilov & Hutter scale it by the schedule multiplier alone.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        lr_decay: str = "none",
    ) -> None:
        super().__init__(params, adam_family_defaults(lr, betas, eps, weight_decay, lr_decay))

    def _init_state(self, p, state, group):
        zeros_state(p, state, "exp_avg", "exp_avg_sq")

    def _update(self, p, grad, state, group, lr_t):
        step = state["step"]
        beta1, beta2 = betas_like(group, p)
        p.mul_(1 - lr_t * broadcast(group["weight_decay"], p))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * grad)
        v.mul_(beta2).add_((1 - beta2) * grad * grad)
        m_hat = m / bias_correction(beta1, step)
        v_hat = v / bias_correction(beta2, step)
        p.sub_(lr_t * m_hat / self._nonzero(v_hat.sqrt() + broadcast(group["eps"], p)))
