"""NAdam (Dozat, ICLR 2016 workshop) in torch's form: Adam with Nesterov momentum.

The update rule, its symbols and the reference: the docstring of `NAdam`.
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
    check_range,
    zeros_state,
)


class NAdam(GridOptimizer):
    """NAdam (Dozat, ICLR 2016 workshop) in torch's form: Adam with Nesterov momentum.

        t ← t + 1;   g ← ∇f(θ) + weight_decay·θ
        μ_t = β1·(1 − ½·0.96^(t·ψ));   μ_{t+1} = β1·(1 − ½·0.96^((t+1)·ψ))   (ψ = momentum_decay)
        Π_t = Π_{t−1}·μ_t   (Π_0 = 1, state `mu_product`)
        m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²;   d = √(v / (1 − β2^t)) + ε
        θ ← θ − α_t·(1 − μ_t)/(1 − Π_t)·g/d − α_t·μ_{t+1}/(1 − Π_t·μ_{t+1})·m/d

    Identical to torch.optim.NAdam (decoupled_weight_decay=False) when lr_decay is `none`, with
    torch's state names. torch keeps `mu_product` as a float32 number unless the default dtype
    is float64; ours has the parameter's dtype and one entry per run, (G, 1, ..., 1), when β1 or
    ψ is a per-run tensor.
    """

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        momentum_decay=4e-3,
        lr_decay: str = "none",
    ) -> None:
        check_range("momentum_decay", momentum_decay, 0.0)
        super().__init__(params, adam_family_defaults(lr, betas, eps, weight_decay, lr_decay,
                                                      momentum_decay=momentum_decay))

    def _init_state(self, p, state, group):
        per_run = [
            broadcast(value, p) for value in (group["betas"][0], group["momentum_decay"])
        ]
        shape = torch.broadcast_shapes(*(getattr(value, "shape", ()) for value in per_run))
        state["mu_product"] = torch.ones(shape, dtype=p.dtype, device=p.device)
        zeros_state(p, state, "exp_avg", "exp_avg_sq")

    def _update(self, p, grad, state, group, lr_t):
        step = state["step"]
        beta1, beta2 = betas_like(group, p)
        momentum_decay = broadcast(group["momentum_decay"], p)
        grad = add_l2(grad, p, group["weight_decay"])
        mu = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
        mu_product = state["mu_product"].mul_(mu)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * grad)
        v.mul_(beta2).add_((1 - beta2) * grad * grad)
        v_hat = v / bias_correction(beta2, step)
        denom = self._nonzero(v_hat.sqrt() + broadcast(group["eps"], p))
        p.sub_(lr_t * (1 - mu) / (1 - mu_product) * grad / denom)
        p.sub_(lr_t * mu_next / (1 - mu_product * mu_next) * m / denom)
