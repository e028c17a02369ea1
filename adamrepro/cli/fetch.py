"""`adamrepro fetch [DATASET|EXPERIMENT ...]`: download datasets into the standard layouts,
checksummed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adamrepro.cli.params import DEFAULT_DATA_DIR, folder
from adamrepro.errors import UserError


def fetch(
    datasets: Annotated[list[str] | None, typer.Argument(
        help="Dataset names, or experiments (a bundled name or a config file) for the datasets "
             "they read (default: every dataset).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        parser=folder, metavar="FOLDER",
        help=f"Dataset folder (default: {DEFAULT_DATA_DIR}).")] = None,
) -> None:
    """Download what is missing and verify what is there."""
    from adamrepro.data import DATASETS
    from adamrepro.data.download import (
        MissingData,
        check_data_folder,
        data_dir_to,
        default_data_dir,
    )

    # Checked before any download: a typo must not wait for the others.
    names = (list(dict.fromkeys(_dataset_of(name) for name in datasets)) if datasets
             else list(DATASETS))
    folder = data_dir or default_data_dir()
    check_data_folder(folder)
    missing = []
    for name in names:
        try:
            path = DATASETS[name].fetch(folder)
        except MissingData as err:  # offline: go on, so that one line names every file
            missing.append(err)
            continue
        note = ""
        # a dataset whose fetch checks presence alone says what is not official
        unofficial = getattr(DATASETS[name], "unofficial", None)
        wrong = unofficial(path) if unofficial is not None else ""
        if wrong:
            note = (f" (not the official data: {wrong}; runs read it only with "
                    f"--unverified-data, for a copy you trust)")
        prepare = getattr(DATASETS[name], "prepare", None)
        if prepare is not None:
            prepare(folder)
        typer.echo(f"{name:10s} {path}{note}")
    if len(missing) == 1:
        raise missing[0]
    if missing:
        places = "; ".join(f"{', '.join(files)} in {where}"
                           for err in missing for where, files in err.places.items())
        raise UserError(f"datasets missing and could not be downloaded ({missing[-1].reason}); "
                        f"put {places} (scripts/offline_data.py lays out a local copy), or "
                        f"{data_dir_to('where they are')}")


def _dataset_of(name: str) -> str:
    """A dataset's own name, or the dataset an experiment reads (a bundled experiment's name or
    a config file): `scripts/reproduce_paper.sh` fetches what its configs need, no more, so a
    machine that was sent some datasets alone runs the experiments on them."""
    from adamrepro.config import bundled_names, load_experiment, resolve_config_arg
    from adamrepro.data import DATASETS

    if name in DATASETS:
        return name
    path = resolve_config_arg(name)
    known = f"datasets: {', '.join(DATASETS)}; experiments: {bundled_names()}"
    if not path.is_file() and Path(name).suffix in (".yaml", ".yml"):  # a file, not a name
        raise UserError(f"config file {path} does not exist; {known}")
    if not path.is_file():
        raise UserError(f"unknown dataset or experiment {name!r}; {known}, or a config file")
    return load_experiment(path).dataset["name"]
