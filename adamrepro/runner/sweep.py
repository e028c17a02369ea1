"""Run an experiment's grid search: load the data once, train each unfinished group, store
each run as it finishes, then write the tables. The only place data, models and optimizers
meet is `train_group`; this module only decides what to run and where results go."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from adamrepro.config import Experiment
from adamrepro.data import DATASETS
from adamrepro.provenance import provenance
from adamrepro.results.select import select_best
from adamrepro.results.store import ResultStore, curves_frame, hparam_columns
from adamrepro.runner.group import train_group
from adamrepro.runner.plan import Group, base_digest, config_digest, plan


def resolve_device(name: str) -> torch.device:
    from adamrepro.errors import UserError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch.device(name)


def load_data(exp: Experiment, data_dir: Path, device: torch.device):
    module = DATASETS[exp.dataset["name"]]
    opts = module.options(dict(exp.dataset), "dataset")
    return module.load(opts, Path(data_dir)).to(device)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


def run_sweep(base: Experiment, scale: str, seeds: int | None, data_dir: Path, out: Path,
              device: torch.device, quiet: bool = False, force: bool = False) -> dict:
    """Run every unfinished run of `base` at `scale`; return what was done and where.

    Nothing is written before the inputs are known good: the output folder is checked, and
    the data loaded, before the first file is created.
    """
    exp = base.at_scale(scale, seeds)
    store = ResultStore(out, exp.name)
    store.check_writable()
    store.check_owner(base_digest(base), force)
    groups = plan(exp)
    todo = [g for g in groups if not all(store.is_done(r.run_id) for r in g.runs)]
    data = load_data(exp, data_dir, device) if todo else None
    store.prepare()
    with store.locked():
        # Another command may have finished some groups while this one waited for the lock.
        todo = [g for g in groups if not all(store.is_done(r.run_id) for r in g.runs)]
        if todo:
            _train_all(exp, scale, todo, data, store, device, quiet)
        records = [store.load_run(run.run_id) for g in groups for run in g.runs]
        _write_tables(base, exp, scale, records, store, device)
    trained = sum(g.size for g in todo)
    return {"folder": store.root, "trained": trained,
            "skipped": sum(g.size for g in groups) - trained}


def _train_all(exp, scale, todo: list[Group], data, store, device, quiet) -> None:
    meta = provenance(device)
    run_passes = sum(g.size for g in todo) * exp.training.epochs
    with _progress() as progress:
        progress.disable = quiet
        overall = progress.add_task(f"{exp.name} ({len(todo)} groups)", total=run_passes)
        for group in todo:
            task = progress.add_task(f"  {group.method} x{group.size}",
                                     total=exp.training.epochs)

            def on_pass(epoch: int, task=task, size=group.size) -> None:
                progress.update(task, completed=epoch)
                progress.advance(overall, size)

            curves = train_group(exp, group, data, on_pass)
            for run, curve in zip(group.runs, curves):
                store.save_run({
                    "experiment": exp.name, "scale": scale, "method": run.method,
                    "optimizer": run.optimizer, "run_id": run.run_id,
                    "point_id": run.point_id, "seed": run.seed, "hparams": run.hparams,
                    "model": run.model, "group_id": group.group_id,
                    "diverged": curve.diverged, "provenance": meta, "rows": curve.rows,
                })
            # Runs that stopped early (diverged) still count their remaining passes as done.
            progress.update(task, completed=exp.training.epochs, visible=False)


def _write_tables(base: Experiment, exp: Experiment, scale: str, records: list[dict], store,
                  device) -> None:
    curves = curves_frame(records)
    hparam_cols = sorted({c for r in records for c in hparam_columns(r["hparams"])})
    best = select_best(curves, exp.selection.metric, hparam_cols)
    store.write_table("curves.csv", curves)
    store.write_table("best.csv", best)
    store.write_json("config.json", {
        "experiment": exp.name, "scale": scale, "config_digest": config_digest(exp),
        "base_digest": base_digest(base),
        "config": exp.model_dump(), "provenance": provenance(device),
        "hparam_columns": hparam_cols,
    })
