"""Run an experiment's grid search: load the data once, train each unfinished group, store
each run as it finishes, then write the tables. The only place data, models and optimizers
meet is `train_group`; this module only decides what to run and where results go."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import torch

from adamrepro import wording
from adamrepro.config import Experiment
from adamrepro.errors import UserError, note
from adamrepro.metrics import MetricSet
from adamrepro.models import MODELS
from adamrepro.progress import progress_bar
from adamrepro.provenance import provenance
from adamrepro.results.select import select_best
from adamrepro.results.store import ResultStore
from adamrepro.results.tables import (
    curves_frame,
    hparam_columns,
    integer_columns,
    steps_frame,
    with_integers,
)
from adamrepro.runner.checkpoint import (
    SUFFIX,
    Budget,
    BudgetSpent,
    CheckpointPolicy,
    checkpoint_key,
    saved_pass,
)
from adamrepro.runner.extend import extended_text, next_points, stored_extensions
from adamrepro.runner.only_selected import selected_points
from adamrepro.runner.plan import (
    Group,
    base_digest,
    code_provenance,
    config_digest,
    method_groups,
    plan,
    unfinished,
)
from adamrepro.runner.precision import precision_of


def torch_device(name: str) -> torch.device:
    """--device as named (auto: CUDA where there is one), whether or not it is here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_device(name: str) -> torch.device:
    """--device to train on: UserError if it is not here."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch_device(name)


def run_sweep(base: Experiment, scale: str, seeds: int | None, out: Path, executor,
              quiet: bool = False, force: bool = False,
              budget: Budget | None = None, only_selected: Path | None = None) -> dict:
    """Run every unfinished run of `base` at `scale`; return what was done and where.

    Nothing is written before the inputs are known good: the output folder is checked, and
    the data loaded, before the first file is created. With a `budget` (a deadline the caller
    set when its command began, so loading the data counts against it), a group saves a
    checkpoint and stops once the budget is spent or would be within another pass
    (runner/checkpoint.py), and no group starts after it is spent: `stopped` then says what
    remains, and no tables are written. With the budget's `split_to_fit`, a group that would
    not finish within it is halved instead (for a machine whose checkpoints are lost with
    it; runner/checkpoint.py). With `only_selected` (a
    results folder of the same config and scale), only each method's point selected there is
    trained, every seed, with no grid-edge extension (runner/only_selected.py).
    """
    exp, store, groups, check_owner = checked_plan(base, scale, seeds, out, force,
                                                   only_selected)
    todo = left_to_train(groups, store)
    prepared = bool(todo)
    if todo:
        if scale == "paper" and executor.device.type == "cpu":
            # the default scale: a first `run mlp` on a laptop trained for hours, saying
            # nothing (said once the folder is known to take the runs, not above a refusal)
            note("--scale paper (the default) is sized for a GPU; on a CPU, --scale quick "
                 "trains each experiment in minutes (adamrepro list experiments: each "
                 "scale's runs and passes)")
        executor.prepare(exp)
    # The folder this command would create, removed (under the lock, so that a command
    # waiting for it finds the lock file gone and takes a new one) if it records nothing.
    created = store.first_missing()
    with store.locked(), store.removed_if_left_empty(created), store.cleaned_on_error():
        store.prepare()
        checkpoints = CheckpointPolicy(store.runs_dir, exp.training.checkpoint_every,
                                       budget or Budget())
        # Another command may have written here while this one waited for the lock: its
        # scale or config decides again, and it may have finished some groups.
        check_owner()
        store.claim(base_digest(base), scale, exp.training.precision, only_selected,
                    exp.seeds)
        store.remove_temporary_files()
        todo = left_to_train(groups, store)
        remove_finished_checkpoints(store, groups, checkpoints)
        if todo:
            stopped = _train_all(exp, scale, todo, executor, store, quiet, checkpoints)
            if stopped is not None:
                return {"folder": store.root, "stopped": stopped,
                        "trained": stopped["trained"],
                        "skipped": sum(g.size for g in groups) - sum(g.size for g in todo)}
        trained = sum(g.size for g in todo)
        steps: Counter = Counter()
        extend = bool(exp.selection.extend_edges) and only_selected is None
        if extend:
            added, more, stopped = _extend_edges(exp, scale, groups, executor, store, quiet,
                                                 prepared, steps, checkpoints)
            if stopped is not None:
                return {"folder": store.root, "stopped": stopped,
                        "trained": trained + stopped["trained"], "skipped": 0}
            groups, trained = groups + added, trained + more
        records = planned_records(store, groups, exp.training.epochs)
        best = _write_tables(base, exp, scale, records, store, executor.device,
                             steps if extend else None, workers_of(executor, len(groups)),
                             only_selected)
        # an extension round's group, stored but not its checkpoint removed (a kill in
        # between), is never trained again: its checkpoint goes here, once it is known
        remove_finished_checkpoints(store, groups, checkpoints)
        remove_stale_checkpoints(store.runs_dir, {g.group_id for g in groups})
        return {"folder": store.root, "trained": trained, "selected": set(best["method"]),
                "skipped": sum(g.size for g in groups) - trained}


def checked_plan(base: Experiment, scale: str, seeds: int | None, out: Path, force: bool,
                 only_selected: Path | None
                 ) -> tuple[Experiment, ResultStore, list[Group], Callable[[], None]]:
    """The experiment at `scale`, its results folder in `out`, the groups of its grid (or of
    the points `only_selected` selected), and the check that the folder may take them (its
    config and scale; UserError if not), made once here. Reads, writes nothing."""
    exp = base.at_scale(scale, seeds)
    store = ResultStore(out, exp.name, exp.training.save_params)
    store.check_writable()
    if only_selected is None:
        groups = plan(exp)
    else:
        groups = [group for label, points in selected_points(exp, scale, only_selected).items()
                  for group in method_groups(exp, label, points)]

    def check_owner() -> None:
        store.check_owner(base_digest(base), scale, force,
                          {r.run_id for g in groups for r in g.runs},
                          lambda curves: stored_extensions(exp, curves), only_selected,
                          exp.training.precision, exp.seeds)

    check_owner()
    return exp, store, groups, check_owner


def planned_records(store: ResultStore, groups: list[Group], epochs: int) -> list[dict]:
    """The stored records of the groups' runs, each named as this config names it. A run is
    its settings (its id), so a record made under another method label (a method renamed,
    or whose settings an earlier config gave another method, as Fig. 1's AdaGrad at a
    constant α) is reused: the tables must show it under today's label and variant, never
    under the old one beside the method that now has that name."""
    records = []
    for group in groups:
        for run in group.runs:
            record = store.load_run(run.run_id, epochs)
            # the settings the run id was made of; a record that says others was edited
            if (record["hparams"], record["seed"], record["point_id"]) != (
                    json.loads(json.dumps(run.hparams)), run.seed, run.point_id):
                raise UserError(
                    f"{store.run_path(run.run_id)} is damaged (its hyperparameters, seed or "
                    f"point are not those of run {run.run_id}: edited since it was written); "
                    f"delete it and run the same command again, which trains that run again")
            records.append({**record, "method": run.method, "variant": run.variant})
    return records


def remove_finished_checkpoints(store: ResultStore, groups: list[Group],
                                checkpoints: CheckpointPolicy) -> None:
    """Remove the checkpoint of every group whose runs are all stored: a kill between the
    last record and the checkpoint's removal leaves it behind."""
    for group in groups:
        if all(store.is_done(run.run_id) for run in group.runs):
            checkpoints.path(group.group_id).unlink(missing_ok=True)


def remove_stale_checkpoints(folder: Path, planned: set[str]) -> int:
    """Remove the checkpoints in `folder` (a results folder's `runs/`) of groups not in
    `planned`, and say how many on one line of stderr; return that number.

    Called once a sweep is complete, under the folder's lock: every group of the plan
    (grid-edge extension rounds included) is then stored and its checkpoint removed, so
    what is left belongs to no group this config will train (a group since regrouped or
    split, a config edited since, one added with --force). Not when a sweep starts: the
    halves of a group that did not fit, and the groups of extension rounds, are not known
    then, and their checkpoints are what the next command resumes. The lock keeps every
    other command out of this folder meanwhile, so no running sweep owns one of them.
    """
    # (A checkpoint cut off mid-write by a kill, a temporary name never renamed, is not
    # counted here: `ResultStore.remove_temporary_files` removed it when this command began.)
    stale = [path for path in folder.glob(f"*{SUFFIX}")
             if path.name.removesuffix(SUFFIX) not in planned]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        print(f"adamrepro: removed {len(stale)} stale checkpoint(s) from {folder} (of groups "
              f"not in this sweep's plan)", file=sys.stderr)
    return len(stale)


def _hparam_columns(records: list[dict]) -> list[str]:
    return sorted({c for r in records for c in hparam_columns(r["hparams"])})


def _curves_and_best(exp: Experiment, records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """curves.csv's frame of `records` and the grid point selected per method (select.py)."""
    columns = metrics_of(exp).columns()
    curves = curves_frame(records, [c.name for c in columns])
    return curves, select_best(curves, exp.selection.metric, _hparam_columns(records), columns,
                               exp.selection.rule)


def _select(exp: Experiment, records: list[dict]) -> pd.DataFrame:
    return _curves_and_best(exp, records)[1]


def _extend_edges(exp: Experiment, scale: str, groups: list[Group], executor, store,
                  quiet: bool, prepared: bool, steps: Counter, checkpoints: CheckpointPolicy
                  ) -> tuple[list[Group], int, dict | None]:
    """Rounds of grid-edge extension (runner/extend.py) until no edge adds a point: returns
    the groups of the added points, how many runs this command trained for them, and what
    remains if the time budget stopped it. The rounds are recomputed from the stored runs,
    so a resumed sweep retraces them."""
    added: list[Group] = []
    trained = 0
    for round_groups in extension_rounds(exp, groups, store, steps):
        todo = left_to_train(round_groups, store)
        if todo:
            if not prepared:
                executor.prepare(exp)
                prepared = True
            stopped = _train_all(exp, scale, todo, executor, store, quiet, checkpoints)
            if stopped is not None:
                return added, trained, stopped
            trained += sum(g.size for g in todo)
        added += round_groups
    return added, trained, None


def extension_rounds(exp: Experiment, groups: list[Group], store: ResultStore,
                     steps: Counter) -> Iterator[list[Group]]:
    """The groups of each round of grid-edge extension, decided from the stored runs of
    `groups` and of the rounds before (runner/extend.py; `steps` counts the points added
    per edge). The caller stores a round's runs before it asks for the next: a round is
    decided from the selection its predecessors' results make."""
    points = {label: method.points() for label, method in exp.methods.items()}
    added: list[Group] = []
    closed: set = set()
    while True:
        records = planned_records(store, groups + added, exp.training.epochs)
        hparams_of = {r["point_id"]: r["hparams"] for r in records}
        new = next_points(exp, _select(exp, records), hparams_of, points, steps, closed)
        if not new:
            return
        round_groups = [g for label, pts in new.items()
                        for g in method_groups(exp, label, pts)]
        for label, pts in new.items():
            points[label] = points[label] + pts
        yield round_groups
        added += round_groups


def left_to_train(groups: list[Group], store: ResultStore) -> list[Group]:
    """The groups, or the parts of groups (plan.py `unfinished`), that have runs left."""
    def trained_in(run_id: str) -> str:  # "" for a record that does not say
        return store.load_run(run_id).get("group_id", "")

    return [part for group in groups for part in unfinished(group, store.is_done, trained_in)]


def data_verified(exp: Experiment) -> bool:
    """False when the data was read with its checksum check turned off (`verify: false`,
    `run --unverified-data`). True otherwise: MNIST's files are always checksummed, and
    IMDB's archive when extracted here (an extracted aclImdb/ found in place is checked for
    its layout, its review counts and ratings, not checksummed: data/imdb.py, README "Set
    up and test")."""
    return exp.dataset.get("verify", True) is not False


def _train_all(exp, scale, todo: list[Group], executor, store, quiet,
               checkpoints: CheckpointPolicy) -> dict | None:
    """Train and store every group of `todo`; None when all are done, else (the time
    budget was spent) what was trained and what remains."""
    meta = _provenance(exp, executor.device, workers_of(executor, len(todo)))
    with progress_bar(quiet) as progress:
        overall = progress.add_task(f"{exp.name} ({wording.count(len(todo), 'group')})",
                                    total=sum(g.size for g in todo) * exp.training.epochs,
                                    logged=True)
        tasks = {g.group_id: progress.add_task(f"  {g.method} x{g.size}",
                                               total=exp.training.epochs, visible=False)
                 for g in todo}
        count = PassCount()
        stored: set[str] = set()  # run ids

        def on_pass(group: Group, epoch: int) -> None:
            if group.group_id not in tasks:  # a half of a group that did not fit
                tasks[group.group_id] = progress.add_task(
                    f"  {group.method} x{group.size}", total=exp.training.epochs)
            added, replaced = count.record(group, epoch)
            for group_id in replaced:
                progress.update(tasks[group_id], visible=False)
            progress.update(tasks[group.group_id], completed=epoch, visible=True)
            progress.advance(overall, added)

        # closed here, whatever ends the loop: a record that cannot be written (a full
        # disk) left it to the garbage collector, which may run in the worker pool's
        # own thread, whose shutdown cannot join itself ("Exception ignored")
        with contextlib.closing(executor.run(exp, todo, on_pass, checkpoints)) as results:
            while True:
                try:
                    group, curves = next(results)
                except StopIteration:
                    return None
                except BudgetSpent as stop:
                    return _remaining(todo, stored, stop, exp.training.epochs, lambda g: (
                        saved_pass(checkpoints.path(g.group_id),
                                   checkpoint_key(g.group_id, executor.device, exp.training))))
                code = code_provenance(group.resolved)  # its files read once a group
                for run, curve in zip(group.runs, curves, strict=True):
                    if curve.params is not None:  # before the record marking the run done
                        store.save_params(run.run_id, curve.params)
                    store.save_run({
                        "experiment": exp.name, "scale": scale, "method": run.method,
                        "optimizer": run.optimizer, "variant": run.variant,
                        "run_id": run.run_id, "point_id": run.point_id, "seed": run.seed,
                        "hparams": run.hparams,
                        "model": run.model, "group_id": group.group_id,
                        "batched": group.resolved.capabilities.batchable,
                        "diverged": curve.diverged, "provenance": meta, "rows": curve.rows,
                        **code,
                        **({"steps": curve.steps} if curve.steps else {}),
                    })
                    stored.add(run.run_id)
                # its records are written: its checkpoint is done with
                checkpoints.path(group.group_id).unlink(missing_ok=True)
                # A group that stopped early (all diverged) still counts its passes as done.
                on_pass(group, exp.training.epochs)
                progress.update(tasks[group.group_id], visible=False)


class PassCount:
    """The run-passes a sweep's overall progress bar counts. A half (of a group that did not
    fit in memory, or in the time budget after some passes) takes its runs over from the
    group it replaces and starts them again: the passes that group had counted for them are
    taken back, so that the bar and its ETA count what is left, never past its total."""

    def __init__(self) -> None:
        self.passes: dict[str, int] = {}  # run id -> passes counted
        self.owner: dict[str, str] = {}  # run id -> the group training it

    def record(self, group: Group, epoch: int) -> tuple[int, set[str]]:
        """`group` has trained `epoch` passes: the run-passes to add to the count (negative
        when a half starts again what its group had trained), and the groups it replaces."""
        added = sum(epoch - self.passes.get(run.run_id, 0) for run in group.runs)
        replaced = {self.owner[run.run_id] for run in group.runs
                    if self.owner.get(run.run_id, group.group_id) != group.group_id}
        for run in group.runs:
            self.passes[run.run_id], self.owner[run.run_id] = epoch, group.group_id
        return added, replaced


def _provenance(exp: Experiment, device: torch.device, workers: int = 1) -> dict:
    """What every run record and config.json say of where and how the curves were made."""
    return {**provenance(device, workers), "data_verified": data_verified(exp),
            "precision": precision_of(exp.training, device).applied}


def workers_of(executor, groups: int) -> int:
    """How many groups the local executor trains at once, one thread each (1: itself, with
    its threads; Ray's tasks run wherever the cluster puts them, and are not counted). The
    same for every command of a sweep, however many groups are left: a last group trained
    in this process has its one thread too (`LocalExecutor.width`)."""
    width = getattr(executor, "width", None)
    return width() if callable(width) else 1


def _remaining(todo: list[Group], stored: set[str], stop: BudgetSpent, epochs: int,
               earlier: Callable[[Group], int | None]) -> dict:
    """What a sweep stopped by its time budget leaves: the runs not stored, and their
    passes (those of a group that stopped at a checkpoint count from there; it may be the
    half of a group that did not fit in memory, hence the sizes from `stop`). A group this
    command did not reach counts from the checkpoint an earlier command left it, if any
    (`earlier`: the pass it holds), as `run --dry-run` counts it: the count went up from
    one command to the next where fewer groups were reached."""
    left = [run for group in todo for run in group.runs if run.run_id not in stored]
    done = sum(size * epoch for size, epoch in stop.checkpointed.values())
    done += sum(group.size * (earlier(group) or 0) for group in todo
                if group.group_id not in stop.checkpointed
                and not any(run.run_id in stored for run in group.runs))
    return {"trained": sum(g.size for g in todo) - len(left), "runs_left": len(left),
            "groups_left": len({g.group_id for g in todo
                                for run in g.runs if run.run_id not in stored}),
            "run_passes_left": len(left) * epochs - done,
            "checkpointed": {group_id: epoch
                             for group_id, (_, epoch) in stop.checkpointed.items()},
            "epochs": epochs}


def _write_tables(base: Experiment, exp: Experiment, scale: str, records: list[dict], store,
                  device, steps: Counter | None = None, workers: int = 1,
                  only_selected: Path | None = None) -> pd.DataFrame:
    """Write the experiment's tables and config.json; return best.csv's frame."""
    metrics = metrics_of(exp)
    curves, best = _curves_and_best(exp, records)
    if steps is not None:  # only with selection.extend_edges (older tables keep their columns)
        best["extended"] = [extended_text(steps, label) for label in best["method"]]
    # best is returned as selection made it; the tables are written with whole numbers as such
    integers = integer_columns(records)
    tables = {"curves.csv": with_integers(curves, integers),
              "best.csv": with_integers(best, integers)}
    steps = steps_frame(records, metrics.train_column)
    if steps is not None:
        tables["steps.csv"] = steps
    store.write_tables(tables, {
        "experiment": exp.name, "scale": scale, "config_digest": config_digest(exp),
        "base_digest": base_digest(base),
        "config": exp.model_dump(), "metrics": metrics.to_json(),
        "provenance": _provenance(exp, device, workers),
        "hparam_columns": _hparam_columns(records), "timing": training_time(records),
        # the folder whose selected points alone were trained (`run --only-selected`)
        **({"points_selected_in": str(only_selected)} if only_selected is not None else {}),
    })
    return best


def metrics_of(exp: Experiment) -> MetricSet:
    """The metrics the experiment's model declares (config loading checked that every
    method's model declares the same)."""
    return MODELS[exp.model["name"]].METRICS


def training_time(records: list[dict]) -> dict:
    """Wall time of the training, from the runs' own records (so a resumed sweep reports the
    time its runs took, whichever command trained them), summed over groups: each group's
    last `seconds` (set-up excluded, every pass and evaluation included) and its last
    `train_seconds` (the training passes alone). A run that diverged stopped recording early,
    so a group's time is that of its longest run."""
    groups: dict[str, dict] = {}
    for record in records:
        last = record["rows"][-1]
        seen = groups.get(record["group_id"])
        if seen is not None and seen["seconds"] >= last["seconds"]:
            continue
        groups[record["group_id"]] = {"seconds": last["seconds"],
                                      "train_seconds": last.get("train_seconds", math.nan),
                                      "device": record["provenance"].get("device")}
    return {"groups": len(groups),
            "seconds": round(sum(g["seconds"] for g in groups.values()), 3),
            "train_seconds": round(sum(g["train_seconds"] for g in groups.values()), 3),
            "devices": sorted({str(g["device"]) for g in groups.values()})}
