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

    names = datasets or list(DATASETS)
    unknown = ", ".join(repr(name) for name in names if name not in DATASETS)
    if unknown:  # checked before any download: a typo must not wait for the others
        raise UserError(f"unknown dataset {unknown}; known: {', '.join(DATASETS)}")
    folder = data_dir or default_data_dir()
    for name in names:
        path = DATASETS[name].fetch(folder)
        typer.echo(f"{name:10s} {path}")
