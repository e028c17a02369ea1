"""`adamrepro plot [EXPERIMENT ...]`: figures from the results tables alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adamrepro.cli.params import DEFAULT_DATA_DIR, folder
from adamrepro.config import DEFAULT_FIGURES, recorded_config
from adamrepro.errors import UserError, note


def plot(
    experiments: Annotated[list[str] | None, typer.Argument(
        help="Experiment names (default: every experiment under --out).")] = None,
    out: Annotated[Path, typer.Option(
        parser=folder, metavar="FOLDER", help="Results folder.")] = Path("results"),
    data_dir: Annotated[Path | None, typer.Option(
        parser=folder, metavar="FOLDER",
        help=f"Data folder, as for run (default: {DEFAULT_DATA_DIR}): the VAE's figure "
             f"shows test images.")] = None,
) -> None:
    """Draw the figures of each experiment (PNG and PDF).

    Into <out>/<experiment>/, from its results tables alone."""
    from adamrepro.atomic import atomic_set
    from adamrepro.config import FOLDER_NAME, OTHER_FOLDERS
    from adamrepro.figures import draw, glyphs_noted
    from adamrepro.figures.common import palette_notes, staged_figures
    from adamrepro.results.tables import NEEDED_FILES, check_results_folder, read_results

    check_results_folder(out)
    # a folder with any of an experiment's tables is one, as for report: read_results names
    # what is missing (a lost curves.csv read "no results under" the folder)
    found = sorted({p.parent.name for table in NEEDED_FILES for p in out.glob(f"*/{table}")})
    names = experiments or found
    if not names:
        raise UserError(f"no results under {out}; run 'adamrepro run CONFIG' first or pass --out")
    for name in names:
        if not FOLDER_NAME.fullmatch(name):  # "" and ".." named the results folder itself
            raise UserError(f"{name!r} is no experiment's name; name one under {out} "
                            f"({', '.join(found) or 'none yet'}), or none for every one")
        if name in OTHER_FOLDERS:  # no experiment is named so (config/schema.py): its timings, say
            raise UserError(f"{out / name} holds what '{OTHER_FOLDERS[name]}' wrote, not an "
                            f"experiment's results: plot draws experiments; name one under "
                            f"{out}, or none for every one")
        if found and not (out / name).exists():  # a typo, or another --out's experiment
            raise UserError(f"no results of {name!r} under {out} (it has {', '.join(found)}); "
                            f"name one of those, or pass the --out it was run with")
    # every folder's tables read (and checked) before any figure is drawn: a mistake in the
    # last name must not leave the first ones' figures redrawn and the command failed
    read = {name: read_results(out / name, recorded_config) for name in names}
    for name, tables in read.items():
        for text in palette_notes(tables[0]):
            note(f"{name}: {text}")
    # and every figure drawn before any file is replaced (figures/common.py staged_figures)
    with staged_figures() as staged, glyphs_noted():
        for name, tables in read.items():
            chosen = tables[2]["config"].plot.figures or list(DEFAULT_FIGURES)
            for figure in chosen:
                draw(figure, out / name, tables, data_dir=data_dir)
    atomic_set(staged)
    for path in staged:
        typer.echo(f"wrote {path}")
