"""A user's batchable optimizers (subclasses of adamrepro's GridOptimizer): one that updates
each run of a group on its own, and the two mistakes such a class makes most, which batch
without an error and give every run of a group another run's curve."""

from __future__ import annotations

import torch

from adamrepro.optim.base import GridOptimizer, broadcast, check_range, zeros_state
from adamrepro.optim.capabilities import Capabilities


class SignMomentum(GridOptimizer):
    """Lion's update (Chen et al., 2023): θ ← θ − α·sign(β1·m + (1 − β1)·g), then
    m ← β2·m + (1 − β2)·g; every hyperparameter broadcast per run."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99)):
        check_range("betas[0]", betas[0], 0.0, 1.0)
        check_range("betas[1]", betas[1], 0.0, 1.0)
        super().__init__(params, dict(lr=lr, betas=tuple(betas)))

    def _init_state(self, p, state, group):
        zeros_state(p, state, "exp_avg")

    def _direction(self, p, grad, state, group):
        beta1, beta2 = (broadcast(beta, p) for beta in group["betas"])
        m = state["exp_avg"]
        direction = (beta1 * m + (1 - beta1) * grad).sign()
        m.mul_(beta2).add_((1 - beta2) * grad)
        return direction

    def _update(self, p, grad, state, group, lr_t):
        p.sub_(lr_t * self._direction(p, grad, state, group))


class RawLr(SignMomentum):
    """The per-run step size as it comes, shape (G,): it broadcasts against a parameter's
    last dimension (or fails where that is not G), never run by run."""

    def _update(self, p, grad, state, group, lr_t):
        p.sub_(group["lr"] * self._direction(p, grad, state, group))


class WholeNorm(SignMomentum):
    """The gradient normalised by its norm over the whole stacked parameter: every run's
    step then depends on the other runs' gradients."""

    def _update(self, p, grad, state, group, lr_t):
        p.sub_(lr_t * grad / grad.norm().clamp_min(1e-12))


class WholeNormAlone(WholeNorm):
    """WholeNorm, declared as a class to train one run at a time: correct then."""

    capabilities = Capabilities()


class FirstEps(SignMomentum):
    """A step of α·g/(|g| + ε) with the first run's ε for every run: caught only when the
    probe's runs differ in ε, not in α alone."""

    def __init__(self, params, lr=1e-2, eps=1e-1):
        GridOptimizer.__init__(self, params, dict(lr=lr, eps=eps))

    def _update(self, p, grad, state, group, lr_t):
        eps = group["eps"].flatten()[0] if hasattr(group["eps"], "flatten") else group["eps"]
        p.sub_(lr_t * grad / (grad.abs() + eps))


class Clipped(SignMomentum):
    """Sign momentum with an optional clip of the update (`clip: null`: none), correct: a
    grid over `clip` holds runs that differ in kind (None is no number) and never share a
    group."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), clip=None):
        SignMomentum.__init__(self, params, lr, betas)
        for group in self.param_groups:
            group["clip"] = clip

    def _update(self, p, grad, state, group, lr_t):
        step = lr_t * self._direction(p, grad, state, group)
        if group["clip"] is not None:
            bound = broadcast(group["clip"], p)
            step = torch.minimum(torch.maximum(step, -bound), bound)
        p.sub_(step)


class KeywordSignMomentum(SignMomentum):
    """SignMomentum whose step takes its closure by keyword alone, and requires one: under
    `closure: true` the load-time batching probe and the runner must pass it by keyword."""

    def step(self, *, closure=None):
        if closure is None:
            raise RuntimeError("KeywordSignMomentum requires a closure")
        return super().step(closure)
