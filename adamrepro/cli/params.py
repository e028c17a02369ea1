"""Parameters several commands share, parsed alike."""

from __future__ import annotations

from pathlib import Path

import typer


def folder(text: str | Path) -> Path:
    """A folder named on the command line (or an option's default, a Path). An empty name is
    refused: `Path("")` is the working directory, where `--out "$UNSET"` wrote its results
    without a word."""
    if isinstance(text, Path):
        return text
    if not text.strip():
        raise typer.BadParameter("an empty name; name a folder")
    return Path(text)
