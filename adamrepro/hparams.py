"""Hyperparameters as the runner hands them to an optimizer: the one place numbers become
tensors. A batched optimizer gets every numeric value as a 1-D tensor of length G (one
element per run of the group), in the training dtype and on the training device; a pair such
as `betas` becomes a pair of such tensors. Everything else is passed through unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def is_numeric(value: Any) -> bool:
    """A number, or a list/tuple of numbers (booleans are switches, not numbers)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, (list, tuple)) and all(is_numeric(v) for v in value)


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
