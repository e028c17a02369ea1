"""`adamrepro report`: the figures, the selected runs and a verdict on every claim."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adamrepro.cli.params import folder


def report(
    out: Annotated[Path, typer.Option(
        parser=folder, metavar="FOLDER",
        help="Results folder; report.md and report.html are written into it.")] = Path("results"),
) -> None:
    """Write the verdicts: <out>/report.md and <out>/report.html.

    From the results tables alone."""
    from adamrepro.report.build import write_report

    for path in write_report(out):
        typer.echo(f"wrote {path}")
