"""RMSProp (Tieleman & Hinton, 2012), as compared against in Kingma & Ba (2015), torch's form.

The update rule, its symbols and the reference: the docstring of `RMSprop`.
"""

from __future__ import annotations

from adamrepro.optim.base import (
    GridOptimizer,
    add_l2,
    broadcast,
    check_range,
    is_zero,
    sub_scaled_,
    zeros_state,
)


class RMSprop(GridOptimizer):
    """RMSProp (Tieleman & Hinton, 2012), as compared against in Kingma & Ba (2015), torch's form.

        g ← ∇f(θ) + weight_decay·θ;   s ← α·s + (1 − α)·g²
        without momentum:  θ ← θ − α_t·g / (√s + ε)
        with momentum μ:   b ← μ·b + g / (√s + ε);   θ ← θ − α_t·b        (b0 = 0)

    (α here is the decay `alpha`, α_t the step size `lr`, decayed by `lr_decay`.) Identical to
    torch.optim.RMSprop(centered=False) when lr_decay is `none`; the state keeps torch's names
    `square_avg` and `momentum_buffer` (the buffer exists only when momentum is not the number 0,
    as in torch; a per-run tensor always has one). The momentum acts on the rescaled gradient;
    Adam without bias correction is the variant with momentum on the raw gradient (Sec. 5).
    """

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        momentum=0.0,
        weight_decay=0.0,
        lr_decay: str = "none",
    ) -> None:
        check_range("alpha", alpha, 0.0, 1.0)
        check_range("eps", eps, 0.0)
        check_range("momentum", momentum, 0.0, 1.0)
        check_range("weight_decay", weight_decay, 0.0)
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_decay=lr_decay,
        )
        super().__init__(params, defaults)

    def _init_state(self, p, state, group):
        zeros_state(p, state, "square_avg")
        if not is_zero(group["momentum"]):
            zeros_state(p, state, "momentum_buffer")

    def _update(self, p, grad, state, group, lr_t):
        alpha = broadcast(group["alpha"], p)
        grad = add_l2(grad, p, group["weight_decay"])
        square_avg = state["square_avg"]
        square_avg.lerp_(grad.square(), 1 - alpha)
        std = self._nonzero(square_avg.sqrt().add_(broadcast(group["eps"], p)))
        if "momentum_buffer" in state:
            buf = state["momentum_buffer"]
            buf.mul_(broadcast(group["momentum"], p)).addcdiv_(grad, std)
            sub_scaled_(p, buf, lr_t)
        else:
            p.addcdiv_(grad * lr_t, std, value=-1)
