"""Datasets by config name. Each entry is a module with `Options`, `options()`, `fetch()`
(download into the standard layout) and `load(options, data_dir) -> TensorDataset`."""

from __future__ import annotations

from types import ModuleType

from adamrepro.data import cifar10, imdb, mnist

DATASETS: dict[str, ModuleType] = {
    "mnist": mnist,
    "imdb": imdb,
    "cifar10": cifar10,
}
