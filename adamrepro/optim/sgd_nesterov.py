"""SGD with Nesterov momentum (Sutskever et al., 2013), in torch.optim.SGD's form.

The update rule, its symbols and the reference: the docstring of `SGDNesterov`.
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


class SGDNesterov(GridOptimizer):
    """SGD with Nesterov momentum (Sutskever et al., 2013), in torch.optim.SGD's form.

        g ← ∇f(θ) + weight_decay·θ
        b ← g at the first step, else b ← μ·b + g
        θ ← θ − α_t·(g + μ·b)

    Identical to torch.optim.SGD(nesterov=True, dampening=0) when lr_decay is `none`; the state
    keeps torch's name `momentum_buffer`.
    """

    def __init__(self, params, lr=1e-2, momentum=0.9, weight_decay=0.0, lr_decay: str = "none"):
        check_range("momentum", momentum, 0.0, 1.0)
        check_range("weight_decay", weight_decay, 0.0)
        super().__init__(
            params,
            dict(lr=lr, momentum=momentum, weight_decay=weight_decay, lr_decay=lr_decay),
        )

    def _init_state(self, p, state, group):
        zeros_state(p, state, "momentum_buffer")

    def _update(self, p, grad, state, group, lr_t):
        momentum = broadcast(group["momentum"], p)
        grad = add_l2(grad, p, group["weight_decay"])
        buf = state["momentum_buffer"]
        # torch starts the buffer at g rather than at 0; (step == 1) keeps that without a sync
        first = (state["step"] == 1).to(p.dtype)
        buf.mul_(momentum * (1 - first)).add_(grad)
        # θ − α_t·(g + μ·b) as two fused steps, the per-run α_t·μ on the (G, 1, ...) vector
        sub_scaled_(sub_scaled_(p, grad, lr_t), buf, lr_t * momentum)
