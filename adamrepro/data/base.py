"""What a dataset module returns, and what the runner keeps on the device."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from adamrepro.errors import UserError
from adamrepro.seeding import subset_generator


@dataclass(frozen=True)
class TensorDataset:
    """A whole train/test split as tensors (CPU when loaded, the device once placed).

    Each split is a mapping of equally long tensors: `x` (the inputs) always, `y` (labels)
    when the dataset has them. A minibatch is the same mapping over a subset of the rows, so
    a workload without labels needs nothing special. Features may be stored compactly
    (uint8 pixels, uint8 counts); models cast to float.
    """

    train: Mapping[str, Tensor]
    test: Mapping[str, Tensor]
    num_classes: int | None = None

    @classmethod
    def labelled(cls, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                 num_classes: int) -> TensorDataset:
        return cls({"x": train_x, "y": train_y}, {"x": test_x, "y": test_y}, num_classes)

    @property
    def train_x(self) -> Tensor:
        return self.train["x"]

    @property
    def test_x(self) -> Tensor:
        return self.test["x"]

    @property
    def train_y(self) -> Tensor | None:
        return self.train.get("y")

    @property
    def test_y(self) -> Tensor | None:
        return self.test.get("y")

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def subset(self, train_size: int | None, test_size: int | None, seed: int = 0):
        """A fixed random subset (same for every run and method), for the small scales."""
        generator = subset_generator(seed)

        def pick(split: Mapping[str, Tensor], size: int | None, key: str) -> dict[str, Tensor]:
            n = len(split["x"])
            if size is not None and size > n:  # not clipped: config.json would record it
                # known only once read: the config's own or its scale's (scales: ... {key})
                raise UserError(f"{key} {size} (dataset.{key}, or a scale's under scales:) is "
                                f"more than the {n:,} examples of that split; give at most "
                                f"{n}, or leave it out for all")
            if size is None or size == n:
                return dict(split)
            index = torch.randperm(n, generator=generator)[:size].sort().values
            return {key: value[index] for key, value in split.items()}

        return TensorDataset(pick(self.train, train_size, "train_size"),
                             pick(self.test, test_size, "test_size"),
                             self.num_classes)

    def without_labels(self) -> TensorDataset:
        return TensorDataset({"x": self.train_x}, {"x": self.test_x}, None)

    def to(self, device: torch.device) -> TensorDataset:
        return TensorDataset({k: v.to(device) for k, v in self.train.items()},
                             {k: v.to(device) for k, v in self.test.items()},
                             self.num_classes)


def sealed(payload: dict) -> dict:
    """`payload` (a cache's dict of tensors, nested dicts and lists) with the SHA-256 of its
    contents, which `unsealed` checks: torch.load reads a file whose bytes were damaged
    inside a tensor without a word, and a cache is trusted like the data it stands for."""
    return {**payload, "sha256": _contents_digest(payload)}


def unsealed(stored: dict) -> dict:
    """The payload of a `sealed` cache; ValueError if its contents are not what was saved
    (the caller rebuilds it, as for a file that does not load)."""
    payload = {key: value for key, value in stored.items() if key != "sha256"}
    if stored.get("sha256") != _contents_digest(payload):
        raise ValueError("its contents do not match their checksum")
    return payload


def load_sealed(path) -> dict:
    """The payload of the `sealed` cache at `path`, read with torch.load(weights_only=True);
    ValueError, in a few words, for a file that is not one whole (the caller rebuilds it and
    says why in a note: torch's own message for a foreign pickle is a paragraph that
    suggests weights_only=False, and its warning about the pickle's protocol a second)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            stored = torch.load(path, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any file that does not load is no cache
            raise ValueError(f"not a cache adamrepro wrote: {type(err).__name__}") from None
    if not isinstance(stored, dict):
        raise ValueError("not a cache adamrepro wrote")
    return unsealed(stored)


def _contents_digest(value) -> str:
    digest = hashlib.sha256()

    def feed(item, where: str) -> None:
        if isinstance(item, Mapping):
            for key in sorted(item):
                feed(item[key], f"{where}/{key}")
        elif isinstance(item, (list, tuple)):
            for index, element in enumerate(item):
                feed(element, f"{where}/{index}")
        elif isinstance(item, Tensor):
            digest.update(f"{where}:{item.dtype}:{tuple(item.shape)}\n".encode())
            digest.update(item.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        else:
            digest.update(f"{where}={item!r}\n".encode())

    feed(value, "")
    return digest.hexdigest()
