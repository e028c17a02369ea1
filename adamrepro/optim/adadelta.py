"""AdaDelta (Zeiler, 2012), as compared against in Kingma & Ba (2015), torch's form.

The update rule, its symbols and the reference: the docstring of `Adadelta`.
"""

from __future__ import annotations

from adamrepro.optim.base import (
    GridOptimizer,
    add_l2,
    broadcast,
    check_range,
    sub_scaled_,
    zeros_state,
)


class Adadelta(GridOptimizer):
    """AdaDelta (Zeiler, 2012), as compared against in Kingma & Ba (2015), torch's form.

        g ← ∇f(θ) + weight_decay·θ;   s ← ρ·s + (1 − ρ)·g²
        Δ ← √(d + ε) / √(s + ε) · g;   d ← ρ·d + (1 − ρ)·Δ²
        θ ← θ − α_t·Δ,   α_t = α or α/√t                               (lr_decay)

    Identical to torch.optim.Adadelta when lr_decay is `none`, state names `square_avg` (s) and
    `acc_delta` (d). As in torch, d accumulates the unscaled Δ, so lr (default 1, Zeiler's
    method has none) only scales the step, never the units of the accumulator.
    """

    def __init__(
        self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, lr_decay: str = "none"
    ) -> None:
        check_range("rho", rho, 0.0, 1.0)
        # ε > 0: it is what starts AdaDelta moving (its first step is √ε/√(s + ε)·g;
        # with ε = 0, Δθ stays 0 forever)
        check_range("eps", eps, 0.0, low_open=True)
        check_range("weight_decay", weight_decay, 0.0)
        super().__init__(
            params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, lr_decay=lr_decay)
        )

    def _init_state(self, p, state, group):
        zeros_state(p, state, "square_avg", "acc_delta")

    def _update(self, p, grad, state, group, lr_t):
        rho = broadcast(group["rho"], p)
        eps = broadcast(group["eps"], p)
        grad = add_l2(grad, p, group["weight_decay"])
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg.lerp_(grad.square(), 1 - rho)
        delta = (acc_delta + eps).sqrt_().div_((square_avg + eps).sqrt_()).mul_(grad)
        acc_delta.lerp_(delta.square(), 1 - rho)
        sub_scaled_(p, delta, lr_t)
