"""What a dataset module returns, and what the runner keeps on the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TensorDataset:
    """A whole train/test split as tensors (CPU when loaded, the device once placed).

    Features may be stored compactly (uint8 pixels, uint8 counts); models cast to float.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def subset(self, train_size: int | None, test_size: int | None, seed: int = 0):
        """A fixed random subset (same for every run and method), for the small scales."""
        generator = torch.Generator().manual_seed(seed)

        def pick(x: Tensor, y: Tensor, size: int | None) -> tuple[Tensor, Tensor]:
            if size is None or size >= len(x):
                return x, y
            index = torch.randperm(len(x), generator=generator)[:size].sort().values
            return x[index], y[index]

        train_x, train_y = pick(self.train_x, self.train_y, train_size)
        test_x, test_y = pick(self.test_x, self.test_y, test_size)
        return TensorDataset(train_x, train_y, test_x, test_y, self.num_classes)

    def to(self, device: torch.device) -> TensorDataset:
        return TensorDataset(
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.num_classes,
        )
