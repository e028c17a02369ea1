"""An optimizer defined outside adamrepro, as a user's own package would define it: the
race tests put this folder on PYTHONPATH and name it `my_optimizers:SignSGD` in a config."""

from __future__ import annotations

import torch


class SignSGD(torch.optim.Optimizer):
    """θ ← θ − lr·sign(∇f(θ)) (Bernstein et al. 2018, without momentum)."""

    def __init__(self, params, lr: float = 1e-3) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
        return loss


class Faulty(SignSGD):
    """SignSGD with a bug where `fails` says, for the tests of how a user's optimizer that
    raises is reported (one line, exit code 2): `init` (a KeyError in __init__, at config
    validation), `params` (a ValueError on the model's parameters, after the validation's one
    number passed), `step` (a RuntimeError in its first step) or `closure` (its first step
    asks for a closure in its own words); `never` has no bug."""

    def __init__(self, params, lr: float = 1e-3, fails: str = "step") -> None:
        params = list(params)
        if fails == "init":
            raise KeyError("a bug")
        if fails == "params" and sum(p.numel() for p in params) > 1:
            raise ValueError("a bug on real parameters")
        super().__init__(params, lr)
        self.fails = fails

    def step(self, closure=None):
        if self.fails == "step":
            raise RuntimeError("a bug in step")
        if self.fails == "closure" and closure is None:
            raise RuntimeError("Faulty requires a closure")
        return super().step(closure)


class CountedSGD(SignSGD):
    """SGD whose step size decays as lr/√k with its step count k kept in its param group, as
    schedule-free methods keep theirs (not in `state`): a checkpoint must restore it too."""

    def __init__(self, params, lr: float = 1e-1) -> None:
        super().__init__(params, lr)
        for group in self.param_groups:
            group["k"] = 0

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["k"] += 1
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"] / group["k"] ** 0.5)


class ClosureOnly(SignSGD):
    """SignSGD whose step requires its closure (no default), declaring nothing: a config must
    say `closure: true` for it, or be told to."""

    def step(self, closure):
        return super().step(closure)


class NumpyCounted(SignSGD):
    """SGD whose step size decays as lr/√t with t kept in its state as a NumPy number:
    torch.save takes it, torch.load(weights_only=True) does not read it back."""

    @torch.no_grad()
    def step(self, closure=None):
        import numpy as np

        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    state["t"] = state.get("t", np.float64(0.0)) + 1
                    p.add_(p.grad, alpha=-group["lr"] / float(np.sqrt(state["t"])))


class KeywordClosure(SignSGD):
    """SignSGD whose step takes its closure by keyword alone, and requires one: under
    `closure: true` the runner must hand it over as step(closure=...)."""

    def step(self, *, closure=None):
        if closure is None:
            raise RuntimeError("KeywordClosure requires a closure")
        return super().step(closure)


class KeywordClosureOnly(SignSGD):
    """SignSGD whose step requires its closure, by keyword alone (no default), declaring
    nothing: a config must say `closure: true` for it, or be told to."""

    def step(self, *, closure):
        return super().step(closure)


class StarArgsKeywordClosure(SignSGD):
    """SignSGD whose step takes extra positional arguments and its closure by keyword alone,
    and requires one: handed positionally, the closure would land in `args`."""

    def step(self, *args, closure=None):
        if closure is None:
            raise RuntimeError("StarArgsKeywordClosure requires a closure")
        return super().step(closure)


class AttributeCounted(SignSGD):
    """CountedSGD with its step count k an attribute of the optimizer: no checkpoint saves
    it, so a resumed run would start over at k = 1, on another curve under the same run id."""

    def __init__(self, params, lr: float = 1e-1) -> None:
        super().__init__(params, lr)
        self.k = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.k += 1
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"] / self.k ** 0.5)


class OwnMomentum(SignSGD):
    """Heavy-ball SGD whose momentum buffers are in a dict of its own, keyed by parameter,
    not in `self.state`: a resumed run would start with no momentum."""

    def __init__(self, params, lr: float = 1e-1) -> None:
        super().__init__(params, lr)
        self.buffers = {}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    buffer = self.buffers.setdefault(p, torch.zeros_like(p))
                    p.add_(buffer.mul_(0.9).add_(p.grad), alpha=-group["lr"])


class MisspeltStep(SignSGD):
    """SignSGD whose step is misspelt: it inherits torch.optim.Optimizer's, which raises
    NotImplementedError (inside torch) at the first step."""

    step = torch.optim.Optimizer.step

    def stpe(self, closure=None):
        return SignSGD.step(self, closure)


class MySparseAdam(torch.optim.SparseAdam):
    """torch's SparseAdam under a user's name, its step torch's: it refuses dense gradients
    only at its first step, inside torch's code."""


class KeyedCounted(SignSGD):
    """CountedSGD with its step count k in `self.state` under a key of its own (`"k"`, not a
    parameter), which torch's state_dict keeps as it is: a checkpoint must restore it too."""

    @torch.no_grad()
    def step(self, closure=None):
        self.state["k"] = self.state.get("k", 0) + 1
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"] / self.state["k"] ** 0.5)
