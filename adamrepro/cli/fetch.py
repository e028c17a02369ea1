"""`adamrepro fetch [DATASET ...]`: download datasets into the standard layouts, checksummed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adamrepro.errors import UserError


def fetch(
    datasets: Annotated[list[str] | None, typer.Argument(
        help="Dataset names (default: all).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Dataset folder (default: $ADAMREPRO_DATA, else ~/.cache/adamrepro/data).")] = None,
) -> None:
    """Download what is missing and verify what is there."""
    from adamrepro.data import DATASETS
    from adamrepro.data.download import default_data_dir

    folder = data_dir or default_data_dir()
    for name in datasets or list(DATASETS):
        if name not in DATASETS:
            raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
        path = DATASETS[name].fetch(folder)
        typer.echo(f"{name:10s} {path}")
