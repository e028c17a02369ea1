"""Adam, Algorithm 1 of Kingma & Ba (2015), as written (not the cheaper ε̂ form).

The update rule, its symbols and the reference: the docstring of `Adam`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from adamrepro.optim.averaging import TemporalAveraging, check_averaging
from adamrepro.optim.base import (
    GridOptimizer,
    adam_family_defaults,
    add_l2,
    betas_like,
    bias_correction,
    broadcast,
    check_range,
    is_zero,
    sub_scaled_,
    zeros_state,
)


class Adam(TemporalAveraging, GridOptimizer):
    """Adam, Algorithm 1 of Kingma & Ba (2015), as written (not the cheaper ε̂ form).

        t ← t + 1;  β1,t = β1·λ^(t−1)          (λ = 1 − beta1_decay_rate, Sec. 4; rate 0 = off)
        g ← ∇f(θ) + weight_decay·θ                          (L2 added to the gradient, as torch)
        m ← β1,t·m + (1 − β1,t)·g;   v ← β2·v + (1 − β2)·g²
        m̂ ← m / (1 − β1^t);  v̂ ← v / (1 − β2^t)            (bias_correction=False drops both)
        θ ← θ − α_t·m̂ / (√v̂ + ε),   α_t = α or α/√t        (lr_decay)

    With bias_correction=False this is RMSProp with momentum (Sec. 5, 6.4), the momentum acting
    on the raw gradient: θ ← θ − α·(1 − β1)·b / (√v + ε) with b ← β1·b + g. torch.optim.RMSprop
    puts its momentum on the rescaled gradient g / (√v + ε) instead; the two agree for β1 = 0,
    where this is exactly RMSprop(alpha=β2, momentum=0).

    The knob is 1 − λ, not λ: the paper's λ = 1 − 1e-8 is 1.0 in float32 (whose spacing near 1
    is 6e-8), so a per-run tensor of λ in the training dtype would switch the decay off without
    a word; 1e-8 is exact enough in any dtype, and λ^(t−1) is computed as exp((t−1)·log1p(−rate)).

    The bias correction uses the constant β1^t of Algorithm 1 even when β1 decays (ours): the
    weights of m then sum to 1 − Π β1,i instead, but with the paper's λ = 1 − 1e-8 the two differ
    by at most 3e-7 relative for β1 = 0.9 (3e-5 for β1 = 0.99; largest at t ≈ 16 and 160).
    `averaging` adds the temporal average of Sec. 7.2 (see averaging.py). `track_step_ratio`
    (not part of the update) keeps the largest |Δθ| / α_t of every run over all elements and
    steps since the last `pass_statistics()`, as a device tensor (no host sync), to measure the
    step bound of Sec. 2.1: |Δθ| ≤ α·(1 − β1)/√(1 − β2) when (1 − β1) > √(1 − β2), else α.
    Δθ is the step as computed, α_t·m̂/(√v̂ + ε), before it is rounded into θ. Identical to
    torch.optim.Adam (amsgrad=False) when bias_correction is on, beta1_decay_rate = 0, lr_decay is
    `none` and averaging is off.
    Reference: D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        bias_correction: bool = True,
        beta1_decay_rate=0.0,
        lr_decay: str = "none",
        averaging=None,
        track_step_ratio: bool = False,
    ) -> None:
        check_range("beta1_decay_rate", beta1_decay_rate, 0.0, 1.0)
        check_averaging(averaging)
        if not isinstance(bias_correction, bool):
            raise ValueError(f"bias_correction must be true or false, got {bias_correction!r}")
        super().__init__(params, adam_family_defaults(
            lr, betas, eps, weight_decay, lr_decay, bias_correction=bias_correction,
            beta1_decay_rate=beta1_decay_rate, averaging=averaging))
        if not isinstance(track_step_ratio, bool):
            raise ValueError(f"track_step_ratio must be true or false, got {track_step_ratio!r}")
        self.max_step_ratio = None
        if track_step_ratio:
            # One entry per run when any hyperparameter is per run (the parameters are then
            # stacked runs), else one number; made here, not lazily, so that a CUDA graph
            # captures in-place updates of one fixed tensor.
            first = self.param_groups[0]["params"][0]
            self.max_step_ratio = torch.zeros(_runs(self.defaults), dtype=first.dtype,
                                              device=first.device)

    def _init_state(self, p, state, group):
        zeros_state(p, state, "exp_avg", "exp_avg_sq")
        self._init_average(p, state, group)

    def _update(self, p, grad, state, group, lr_t):
        step = state["step"]
        beta1, beta2 = betas_like(group, p)
        eps = broadcast(group["eps"], p)
        grad = add_l2(grad, p, group["weight_decay"])
        rate = group["beta1_decay_rate"]
        beta1_t = beta1 if is_zero(rate) else beta1 * torch.exp((step - 1) * _log1p_neg(rate, p))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1_t)  # m + (1 − β1,t)·(g − m) = β1,t·m + (1 − β1,t)·g
        v.lerp_(grad.square(), 1 - beta2)
        # m̂/(√v̂ + ε) with the corrections on the per-run vectors: √v̂ = √v / √(1 − β2^t)
        # and m̂ = m / (1 − β1^t) (bias_correction=False drops both)
        if group["bias_correction"]:
            denom = v.sqrt().mul_(bias_correction(beta2, step).rsqrt()).add_(eps)
            correction1 = bias_correction(beta1, step)
        else:
            denom, correction1 = v.sqrt().add_(eps), 1.0
        denom = self._nonzero(denom)
        if self.max_step_ratio is None:
            p.addcdiv_(m * (lr_t / correction1), denom, value=-1)
        else:
            ratio = m.div(denom).div_(correction1)  # |Δθ|/α_t, the step before rounding
            self._track(ratio.abs())
            sub_scaled_(p, ratio, lr_t)
        self._update_average(p, state, group)

    def _track(self, ratio: Tensor) -> None:
        """max_step_ratio ← max(max_step_ratio, max |Δθ|/α_t): |Δθ|/α_t = |m̂/(√v̂ + ε)|."""
        if self.max_step_ratio.dim() == 1:  # per run: a run's parameters may be (G,) alone
            largest = ratio.reshape(len(ratio), -1).amax(1)
        else:
            largest = ratio.amax()
        torch.maximum(self.max_step_ratio, largest, out=self.max_step_ratio)

    def pass_statistics(self) -> dict[str, Tensor]:
        """What the runner records once per pass (runner/group.py), then resets: the largest
        |Δθ| / α_t since the last call, per run. Empty unless `track_step_ratio`."""
        if self.max_step_ratio is None:
            return {}
        value = self.max_step_ratio.clone()
        self.max_step_ratio.zero_()
        return {"max_step_ratio": value}


def _log1p_neg(rate, like: Tensor):
    """log λ = log(1 − rate), which keeps a rate of 1e-8 in float32 (1 − rate itself would
    round to 1): a number in float64, a per-run tensor with log1p in the parameters' dtype."""
    if isinstance(rate, Tensor):
        return torch.log1p(-broadcast(rate, like))
    return math.log1p(-rate)


def _runs(defaults: dict) -> tuple[int, ...]:
    """(G,) when some hyperparameter is a per-run tensor of G values, else ()."""
    for value in defaults.values():
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, Tensor) and item.dim() == 1:
                return tuple(item.shape)
    return ()
