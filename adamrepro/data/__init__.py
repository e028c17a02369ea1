"""Datasets by config name. Each entry is a module with `Options`, `options()`, `fetch()`
(download into the standard layout) and `load(options, data_dir) -> TensorDataset`; one
whose `fetch` checks the files' presence alone may add `unofficial(folder)`, the files whose
checksum is not the official one (`adamrepro fetch` names them)."""

from __future__ import annotations

from types import ModuleType

from adamrepro.data import cifar10, imdb, mnist

DATASETS: dict[str, ModuleType] = {
    "mnist": mnist,
    "imdb": imdb,
    "cifar10": cifar10,
}
