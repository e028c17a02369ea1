"""Adam with two horizons: a "Beyond the paper" variant that asks whether Adam's power comes ...

The update rule, its symbols and the reference: the docstring of `AdamTwoHorizons`.
"""

from __future__ import annotations

from adamrepro.optim.base import (
    GridOptimizer,
    adam_family_defaults,
    add_l2,
    betas_like,
    bias_correction,
    broadcast,
    zeros_state,
)


class AdamTwoHorizons(GridOptimizer):
    """Adam with two horizons: a "Beyond the paper" variant that asks whether Adam's power comes
    from dividing a fast average of g by a slow one, rather than from the second moment.

        t ← t + 1;   g ← ∇f(θ) + weight_decay·θ
        m_fast ← β1·m_fast + (1 − β1)·g;   m_slow ← β2·m_slow + (1 − β2)·g
        m̂_fast = m_fast / (1 − β1^t);      m̂_slow = m_slow / (1 − β2^t)
        θ ← θ − α_t·m̂_fast / (|m̂_slow| + ε),   α_t = α or α/√t                 (lr_decay)

    Adam (Kingma & Ba, 2015, Algorithm 1) with v replaced by a second first moment: the same
    bias corrections, and |m̂_slow| in the place of √v̂ (ours, PAPER.md fixes only "divide
    m_fast by |m_slow| plus ε"). β2 > β1 makes m_slow the slower horizon; it is not enforced,
    so a grid may cross them. Unlike Adam's, the step is not bounded by α: |m̂_slow| can be far
    smaller than |m̂_fast| when g changes sign.
    State: `exp_avg` (m_fast, as Adam's m) and `exp_avg_slow`. torch has no counterpart.
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
        zeros_state(p, state, "exp_avg", "exp_avg_slow")

    def _update(self, p, grad, state, group, lr_t):
        step = state["step"]
        beta1, beta2 = betas_like(group, p)
        grad = add_l2(grad, p, group["weight_decay"])
        m_fast, m_slow = state["exp_avg"], state["exp_avg_slow"]
        m_fast.mul_(beta1).add_((1 - beta1) * grad)
        m_slow.mul_(beta2).add_((1 - beta2) * grad)
        m_fast_hat = m_fast / bias_correction(beta1, step)
        m_slow_hat = m_slow / bias_correction(beta2, step)
        p.sub_(lr_t * m_fast_hat
               / self._nonzero(m_slow_hat.abs() + broadcast(group["eps"], p)))
