"""Temporal averaging of the parameters, Sec. 7.2 of Kingma & Ba (2015), for Adam and AdaMax.

    after every step:   θ̄ ← β·θ̄ + (1 − β)·θ          (θ̄0 = 0, β = `averaging`)
    to evaluate:        θ̂ = θ̄ / (1 − β^t)            (the same bias correction as Adam's m)

The paper reuses β2 for the average; we give it its own hyperparameter `averaging` (ours), so
that β2 and the averaging horizon can be swept separately (set averaging = β2 for the paper's
choice). `None` or 0 switches it off and stores nothing. t is the parameter's own step count,
so a parameter that skipped steps (grad None) is still corrected exactly. Whether a parameter
is averaged is decided when its state is created, like every other piece of state.

Use `averaged_params()` to read θ̂, or evaluate inside `with optimizer.swap_averaged():`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from adamrepro.optim.base import (
    HyperValue,
    bias_correction,
    broadcast,
    check_range,
    is_zero,
    zeros_state,
)


def check_averaging(averaging: HyperValue | None) -> None:
    if averaging is not None:
        check_range("averaging", averaging, 0.0, 1.0)


class TemporalAveraging:
    """Mixin for a `GridOptimizer` whose groups carry `averaging`.

    The optimizer calls `_init_average` from `_init_state` and `_update_average` at the end
    of `_update`; the mixin owns the state key `param_avg` and the two public methods.
    """

    def _init_average(self, p: Tensor, state: dict, group: dict) -> None:
        averaging = group.get("averaging")
        if averaging is not None and not is_zero(averaging):
            zeros_state(p, state, "param_avg")

    def _update_average(self, p: Tensor, state: dict, group: dict) -> None:
        if "param_avg" in state:
            beta = broadcast(group["averaging"], p)
            state["param_avg"].mul_(beta).add_((1 - beta) * p)

    def averages(self) -> bool:
        """Whether any parameter group averages (`averaging` set and not 0)."""
        return any(group.get("averaging") is not None and not is_zero(group["averaging"])
                   for group in self.param_groups)

    @torch.no_grad()
    def averaged_params(self) -> list[Tensor]:
        """θ̂ for every parameter of every group, in order; new tensors, never views.

        A parameter without an average (averaging off, or no step taken yet) gives a copy of
        itself, so evaluation code needs no special case.
        """
        averaged = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p, {})
                if "param_avg" not in state:
                    averaged.append(p.detach().clone())
                    continue
                beta = broadcast(group["averaging"], p)
                averaged.append(state["param_avg"] / bias_correction(beta, state["step"]))
        return averaged

    @contextmanager
    def swap_averaged(self) -> Iterator[None]:
        """Put θ̂ into the parameters for the duration of the block; θ comes back afterwards,
        also when the block raises."""
        params = [p for group in self.param_groups for p in group["params"]]
        averaged = self.averaged_params()
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            for p, value in zip(params, averaged, strict=True):
                p.copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, value in zip(params, saved, strict=True):
                    p.copy_(value)
