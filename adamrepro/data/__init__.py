"""Datasets by config name. Each entry is a module with `Options`, `options()`, `fetch()`
(download into the standard layout), `load(options, data_dir) -> TensorDataset` and
`feature_shape(options)` (one example's shape as `load` gives it, known without the data, so
a config whose model cannot take that input fails when it is loaded), `outside_unit_range(
options)` (why its features may leave [0, 1], or None: a model of probabilities refuses
them, models/base.py `unit_inputs`) and `SPLIT_SIZES` (the
official splits' sizes, so a train_size or test_size above them fails there too); one
whose `fetch` checks the files' presence alone may add `unofficial(folder)`, what makes
them not the official data, in words ("" where nothing does; `adamrepro fetch` says it),
and then has a `verify` option and `official(data_dir, options)`, whether the copy in the
data folder passes that check for a load with those options (`--unverified-data` leaves
such a dataset's config alone);
one whose `load` builds a cache on first use may add `prepare(data_dir)`, which builds it
now (`adamrepro fetch` calls it, so no run, and no test process, pays for it unannounced),
saying so in a note on stderr (errors.note) as a run that builds it does."""

from __future__ import annotations

from types import ModuleType

from adamrepro.data import cifar10, imdb, mnist

DATASETS: dict[str, ModuleType] = {
    "mnist": mnist,
    "imdb": imdb,
    "cifar10": cifar10,
}
