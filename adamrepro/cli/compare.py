"""`adamrepro compare BASE OTHER`: how far OTHER's curves move from BASE's, against the
spread between BASE's seeds (e.g. bf16 against fp32; results/compare.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adamrepro.cli.params import folder
from adamrepro.errors import note


def _number(value: float) -> str:
    return f"{value:.3g}" if value == value else "-"


def _at(value) -> str:
    """A pass (an Int64 cell): blank where none was found."""
    import pandas as pd  # not at import: `adamrepro --help` stays quick

    return "-" if pd.isna(value) else str(value)


def compare(
    base: Annotated[Path, typer.Argument(
        parser=folder, metavar="BASE",
        help="Results folder of the reference runs (e.g. fp32), as given to run --out.")],
    other: Annotated[Path, typer.Argument(
        parser=folder, metavar="OTHER",
        help="Results folder of the same config in another setting (e.g. bf16).")],
    experiment: Annotated[list[str] | None, typer.Option(
        "--experiment", "-e",
        help="Only this experiment (repeatable; default: every experiment in both).")] = None,
    metric: Annotated[str | None, typer.Option(
        help="The curve compared (default: each experiment's selection metric, its "
             "training cost).")] = None,
    out: Annotated[Path | None, typer.Option(
        parser=folder, metavar="FOLDER",
        help="Folder for <experiment>.csv (default: OTHER/compare).")] = None,
) -> None:
    """Compare BASE's selected runs with their twins in OTHER.

    Twins share method, hyperparameters and seed; each pair's largest relative difference
    of curves is set against the spread between seeds."""
    from rich.console import Console
    from rich.table import Table

    from adamrepro.atomic import atomic_write
    from adamrepro.results.compare import compare_folders, comparison_frame
    from adamrepro.results.store import check_writable
    from adamrepro.results.tables import check_results_folder

    folder = out if out is not None else Path(other) / "compare"
    check_results_folder(folder, f"pass another folder, or none for {Path(other) / 'compare'}")
    check_writable(folder)  # before a table is printed, not after
    comparisons, skipped = compare_folders(base, other, experiment, metric)
    if Path(base).resolve() == Path(other).resolve():  # a check of the comparison itself
        # said once it compares: a mistake's one line is then the only one
        note(f"BASE and OTHER are the same folder, {base}: every deviation is 0 by "
             f"construction; to measure a setting, give the folder of another run of the "
             f"config (e.g. run --precision bf16 --out OTHER)")
    console = Console(width=140)
    for skip in skipped:
        note(skip)
    for comparison in comparisons:
        rows = comparison.rows
        other, base = comparison.setting("other"), comparison.setting("base")
        table = Table(title=f"{comparison.experiment}: {comparison.metric}, "
                            f"{other} against {base}")
        for column in ("method", "point", "seeds", "passes", "deviation (pass)",
                       "seed spread (pass)", "verdict"):
            table.add_column(column, justify="right" if column in ("seeds", "passes")
                             else "left")
        for _, row in rows.iterrows():
            table.add_row(row["method"], row["point"], str(row["seeds"]), str(row["passes"]),
                          f"{_number(row['deviation'])} ({_at(row['deviation_pass'])})",
                          f"{_number(row['seed_spread'])} ({_at(row['spread_pass'])})",
                          row["verdict"])
        console.print(table)
        within = int((rows["verdict"] == "within").sum())
        # A deviation of exactly 0 is worth its own words: re-running committed results to
        # check them should say "bit for bit", not only "within the seed spread".
        identical = int((rows["deviation"] == 0).sum())
        # of the metric compared alone: an accuracy is the same for runs that differ (a few
        # answers the same), and "bit for bit" said the runs were
        same = (f"; {comparison.metric} identical, bit for bit, for {identical}"
                if identical else "")
        path = folder / f"{comparison.experiment}.csv"
        atomic_write(path, comparison_frame(comparison).to_csv(index=False))
        typer.echo(f"{comparison.experiment}: {other} within the seed "
                   f"spread for {within} of {len(rows)} methods{same}; wrote {path}")
