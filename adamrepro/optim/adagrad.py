"""AdaGrad (Duchi, Hazan & Singer, 2011), as compared against in Kingma & Ba (2015).

The update rule, its symbols and the reference: the docstring of `Adagrad`.
"""

from __future__ import annotations

from adamrepro.optim.base import GridOptimizer, add_l2, broadcast, check_range, zeros_state


class Adagrad(GridOptimizer):
    """AdaGrad (Duchi, Hazan & Singer, 2011), as compared against in Kingma & Ba (2015).

        g ← ∇f(θ) + weight_decay·θ;   s ← s + g²;   θ ← θ − α_t·g / (√s + ε)

    This is torch.optim.Adagrad's formula with initial_accumulator_value=0; torch's own
    `lr_decay` (α/(1 + (t−1)·decay)) is replaced by ours (`none` or `sqrt`: α_t = α/√t), and the
    accumulator keeps torch's state name `sum`. PAPER.md Sec. 5: AdaGrad is the limit β1=0,
    β2→1 of Adam with α_t = α/√t and bias correction.
    """

    def __init__(self, params, lr=1e-2, eps=1e-10, weight_decay=0.0, lr_decay: str = "none"):
        check_range("eps", eps, 0.0)
        check_range("weight_decay", weight_decay, 0.0)
        super().__init__(
            params, dict(lr=lr, eps=eps, weight_decay=weight_decay, lr_decay=lr_decay)
        )

    def _init_state(self, p, state, group):
        zeros_state(p, state, "sum")

    def _update(self, p, grad, state, group, lr_t):
        grad = add_l2(grad, p, group["weight_decay"])
        state["sum"].addcmul_(grad, grad)
        std = self._nonzero(state["sum"].sqrt().add_(broadcast(group["eps"], p)))
        p.addcdiv_(grad * lr_t, std, value=-1)
