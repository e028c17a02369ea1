"""Hyperparameters as the runner hands them to an optimizer: the one place numbers become
tensors. A batched optimizer gets every numeric value as a 1-D tensor of length G (one
element per run of the group), in the training dtype and on the training device; a pair such
as `betas` becomes a pair of such tensors. Everything else is passed through unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_numeric(value: Any) -> bool:
    """A number, or a flat list/tuple of numbers such as `betas` (booleans are switches, not
    numbers; anything else goes to the optimizer as it is, for it to judge)."""
    if isinstance(value, (list, tuple)):
        return all(_number(v) for v in value)
    return _number(value)


def kind(point: dict) -> dict:
    """What the runs of one batched group share: every setting that is not a number (a
    switch, a string, None); the numbers become per-run tensors (`stacked`)."""
    return {name: value for name, value in point.items() if not is_numeric(value)}


def stacked(points: Sequence[dict], dtype: torch.dtype, device: torch.device | str = "cpu"
            ) -> dict:
    """The hyperparameters of G runs that share every non-numeric value, as per-run tensors."""
    def column(values) -> torch.Tensor:
        return torch.tensor([float(v) for v in values], dtype=dtype, device=device)

    out = {}
    for name, value in points[0].items():
        if not is_numeric(value):
            out[name] = value
        elif isinstance(value, (list, tuple)):
            out[name] = tuple(column(p[name][i] for p in points) for i in range(len(value)))
        else:
            out[name] = column(p[name] for p in points)
    return out


def plain(point: dict) -> dict:
    """One run's hyperparameters for an optimizer that is not batched: plain Python values,
    lists as tuples (torch.optim's `betas`)."""
    return {name: tuple(value) if isinstance(value, list) else value
            for name, value in point.items()}
