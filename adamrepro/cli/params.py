"""Parameters several commands share, parsed alike."""

from __future__ import annotations

import argparse
from pathlib import Path

import typer

from adamrepro.config import Experiment
from adamrepro.errors import UserError, home_expanded

# Where every command looks for the data when --data-dir is not given (data/download.py
# `default_data_dir`)
DEFAULT_DATA_DIR = ("$ADAMREPRO_DATA, else $XDG_CACHE_HOME/adamrepro/data, "
                    "~/.cache/adamrepro/data when unset")


def folder(text: str | Path) -> Path:
    """A folder named on the command line (or an option's default, a Path). An empty name is
    refused: `Path("")` is the working directory, where `--out "$UNSET"` wrote its results
    without a word. A `~` is the home folder, where a quoted `--data-dir '~/data'` (or
    `--data-dir=~/data`, which no shell expands) looked in ./~/data."""
    if isinstance(text, Path):
        return text
    if not text.strip():
        raise typer.BadParameter("an empty name; name a folder")
    try:
        return home_expanded(text)
    except UserError as error:
        raise typer.BadParameter(str(error)) from None


def folder_argument(text: str) -> Path:
    """`folder` for the scripts' argparse: `--out ""` wrote into the working folder (the
    repository), `--from ""` read it, without a word."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name; name a folder")
    try:
        return home_expanded(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def check_counts(counts: dict[str, int | None], minimum: int = 1) -> None:
    """UserError for the first count a command line gives below `minimum` (None: not given):
    the scripts' `--steps 0` failed as a ZeroDivisionError after the whole benchmark."""
    for flag, value in counts.items():
        if value is not None and value < minimum:
            raise UserError(f"{flag} must be at least {minimum}, got {value}")


class ScriptParser(argparse.ArgumentParser):
    """argparse for the tools under scripts/: a mistake is one line and exit code 2, as
    `adamrepro`'s are (argparse put its usage block, 3 to 8 lines, before the error)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def without_data_check(base: Experiment, data_dir: Path | None = None) -> Experiment:
    """`--unverified-data`: the dataset option `verify: false`, so the run's config (and its
    run ids, and provenance `data_verified: false`) record that the data was not checked. A
    dataset without that option is unchanged, so one flag can serve a script that runs every
    config: MNIST (its files' MD5 always checked). IMDB's is its label folders' count of
    reviews (an aclImdb/ folder found extracted has no archive to checksum; its layout and
    its ratings against its labels are checked either way). With `data_dir`, a dataset
    whose copy there passes the check is unchanged too: the flag, given for a re-encoded
    CIFAR-10, gave the intact IMDB of the same data folder other run ids than its committed
    results' (`make all RUN_FLAGS=--unverified-data` stopped at Fig. 1 right)."""
    from adamrepro.data import DATASETS

    module = DATASETS[base.dataset["name"]]
    if "verify" not in module.Options.model_fields:
        return base
    if data_dir is not None and module.official(Path(data_dir), module.options(
            {k: v for k, v in base.dataset.items() if k != "name"}, "dataset")):
        return base
    return base.model_copy(update={"dataset": {**base.dataset, "verify": False}})
