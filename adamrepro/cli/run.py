"""`adamrepro run CONFIG`: the grid search of one experiment, resumable."""

from __future__ import annotations

import importlib.util
import signal
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from adamrepro.cli.params import DEFAULT_DATA_DIR, folder, without_data_check
from adamrepro.config import (
    MAX_SEEDS,
    PRECISIONS,
    SCALES,
    Experiment,
    load_experiment,
    recorded_config,
    resolve_config_arg,
    with_precision,
)
from adamrepro.errors import UserError, note
from adamrepro.stopping import STOP
from adamrepro.wording import count


def _seeds_selected(folder: Path) -> int | None:
    """The seeds per point of the sweep `run --only-selected` takes its points from: every
    one of them is trained again (the config's own count left `compare` without the others'
    twins). None where the folder says none: the selection's own check names the problem."""
    from adamrepro.results.tables import read_meta

    try:
        return read_meta(folder, recorded_config)["config"].seeds
    except (UserError, OSError):
        return None


def _minutes(minutes: float | None) -> float | None:
    # not typer's `min=0`, whose message for NaN says "greater than or equal to 0"
    if minutes is not None and not minutes >= 0:
        raise typer.BadParameter(f"give a number of minutes, 0 or more, not {minutes}")
    return minutes


# typer's choices, from the names the config knows (one list each)
Scale = Enum("Scale", {name: name for name in SCALES}, type=str)
PrecisionChoice = Enum("PrecisionChoice", {name: name for name in PRECISIONS}, type=str)


class ExecutorChoice(str, Enum):
    local = "local"
    ray = "ray"


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


BUDGET_SPENT = 3  # exit code: --time-budget stopped the sweep with work left


def run(
    config: Annotated[str, typer.Argument(help="configs/<experiment>.yaml, or its name.")],
    scale: Annotated[Scale, typer.Option(help="smoke: seconds; quick: minutes on a CPU; "
                                              "paper: the paper's settings.")] = Scale.paper,
    data_dir: Annotated[Path | None, typer.Option(
        parser=folder, metavar="FOLDER",
        help=f"Dataset folder (default: {DEFAULT_DATA_DIR}).")] = None,
    out: Annotated[Path, typer.Option(
        parser=folder, metavar="FOLDER", help="Results folder.")] = Path("results"),
    device: Annotated[DeviceChoice, typer.Option(
        help="Where to train (auto: CUDA where there is one; cuda: the first GPU torch "
             "sees, CUDA_VISIBLE_DEVICES picks another).")] = DeviceChoice.auto,
    seeds: Annotated[int | None, typer.Option(
        min=1, max=MAX_SEEDS, help="Seeds per grid point (default: the config's).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    executor: Annotated[ExecutorChoice, typer.Option(
        help="local: this process; ray: grid groups as Ray tasks.")] = ExecutorChoice.local,
    address: Annotated[str | None, typer.Option(
        help="Ray cluster address (with --executor ray; default: a local instance).")] = None,
    force: Annotated[bool, typer.Option(
        "--force",
        help="Add to a results folder written by a different version of the config.")] = False,
    unverified_data: Annotated[bool, typer.Option(
        "--unverified-data",
        help="Read data that fails its check, for a copy you trust (CIFAR-10 batches "
             "whose checksum differs from the official one, an IMDB label folder without "
             "its 12,500 reviews); the results say so. A dataset whose copy passes is read "
             "as without the flag; MNIST's files are always checked.")] = False,
    precision: Annotated[PrecisionChoice | None, typer.Option(
        help="training.precision for this run (default: the config's, fp32 unless set): "
             "written into the config that runs, so tf32 and bf16 runs have their own run "
             "ids; give them their own --out.")] = None,
    workers: Annotated[str, typer.Option(
        help="On a CPU, train this many groups at once, each in a process of one thread "
             "(auto: one per thread torch may use, e.g. OMP_NUM_THREADS); 1: one group "
             "after another in this process, with every thread. A GPU trains one group at "
             "a time.")] = "auto",
    time_budget: Annotated[float | None, typer.Option(
        metavar="MINUTES", callback=_minutes,
        help="Stop after this many minutes, counted from the command's start, loading the "
             "data included (exit code 3; run the same command again to go on): a group "
             "saves a checkpoint and stops at the first pass after which the budget is "
             "spent or would be before another pass; no group starts after it. Periodic "
             "checkpoints are training.checkpoint_every's.")] = None,
    split_to_fit: Annotated[bool, typer.Option(
        "--split-to-fit",
        help="With --time-budget, on a machine whose disk (and checkpoints) are lost when "
             "the command ends (a lent or preemptible one): from its second pass on, a "
             "group that would not finish within the budget is halved and its halves "
             "trained instead where a half could finish, else left for the next command, "
             "so that the time is spent on runs that finish (a group resumed from its "
             "checkpoint is not: it saves and stops).")] = False,
    only_selected: Annotated[Path | None, typer.Option(
        parser=folder, metavar="FOLDER",
        help="Train only each method's point that FOLDER's results of this config (same "
             "scale) selected, every seed, with no grid-edge extension: run it once at the "
             "reference setting into OUT1 and once at another (--precision, a device) into "
             "OUT2, then 'adamrepro compare OUT1 OUT2' judges the setting (FOLDER needs 2 or "
             "more seeds for the seed spread).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run",
        help="Say what the command would train (per method: runs, finished, left, groups, "
             "run-passes), read from --out alone: no data loaded, nothing written.")] = False,
) -> None:
    """Train a grid search per method; a re-run skips the finished runs."""
    started = time.time()  # the budget counts from here: loading the data takes part of it
    from adamrepro.data.download import (  # the data package imports torch
        check_data_folder,
        default_data_dir,
        quiet_bars,
    )
    from adamrepro.runner.checkpoint import Budget
    from adamrepro.runner.executors import make_executor
    from adamrepro.runner.sweep import resolve_device, run_sweep, torch_device

    processes = _check_flags(out, workers, executor, address, split_to_fit, time_budget)
    data_folder = data_dir or default_data_dir()
    base = _experiment_as_asked(config, unverified_data, precision, data_folder)
    check_data_folder(data_folder)  # a dry run's plan, too, is refused
    if only_selected is not None:
        held = _seeds_selected(only_selected / base.name)
        if seeds is None:
            seeds = held
        elif held is not None and seeds < held:
            note(f"--seeds {seeds}: {only_selected} holds {held} seeds of each selected "
                 f"point; compared with that folder, the others would have no twin (leave "
                 f"--seeds out to train all {held})")
    # a dry run may plan a GPU's command on a machine without one
    target = torch_device(device.value) if dry_run else resolve_device(device.value)
    _say_what_runs_otherwise(base, target)
    if dry_run:
        if executor.value == "ray" and importlib.util.find_spec("ray") is None:
            # a plan may be made here for another machine, but say what this one lacks
            note("--executor ray: Ray is not installed here, and the run itself would refuse; "
                 "pip install 'adamrepro[ray]'")
        _say_what_would_run(base, scale.value, seeds, out, force, only_selected, target)
        return
    runner = make_executor(executor.value, data_folder, target, address, processes)
    # the times said count from where the budget does (the config and flags read), so that
    # "in 21.3 s" of a 0.35-minute budget is not the training's time alone
    start = time.perf_counter() - (time.time() - started)
    budget = Budget.minutes(time_budget, split_to_fit, start=started)
    with quiet_bars(quiet):
        done = run_sweep(base, scale.value, seeds, out, runner, quiet, force, budget,
                         only_selected)
    if done.get("stopped") is not None:
        if STOP.requested:  # a SIGTERM stopped the groups at their checkpoints
            _say_stopped(done, start, "adamrepro: terminated (SIGTERM)", err=True)
            raise typer.Exit(128 + signal.SIGTERM)
        _say_stopped(done, start, "time budget spent")
        raise typer.Exit(BUDGET_SPENT)
    _say_trained(done, start)
    _warn_of_methods_all_diverged(base, done)


def _check_flags(out: Path, workers: str, executor: ExecutorChoice, address: str | None,
                 split_to_fit: bool, time_budget: float | None) -> int:
    """The number of worker processes, once the flags that need no config are checked: a
    dry run refuses a bad one too."""
    from adamrepro.progress import log_every
    from adamrepro.results.tables import check_results_folder
    from adamrepro.runner.executors import check_executor_flags, parse_workers

    log_every()  # $ADAMREPRO_PROGRESS_SECONDS, which a log's lines would read at the end
    check_results_folder(out)
    processes = parse_workers(workers)
    check_executor_flags(executor.value, address, processes)
    if split_to_fit and time_budget is None:
        raise UserError("--split-to-fit halves the groups that would not finish within "
                        "--time-budget; give --time-budget MINUTES too, or drop it")
    return processes


def _experiment_as_asked(config: str, unverified_data: bool,
                         precision: PrecisionChoice | None, data_dir: Path) -> Experiment:
    """The config's experiment with --unverified-data (for the data in `data_dir`) and
    --precision applied."""
    base = load_experiment(resolve_config_arg(config))
    if unverified_data:
        base = without_data_check(base, data_dir)
    if precision is not None:
        base = with_precision(base, precision.value, "--precision")
    return base


def _say_what_would_run(base: Experiment, scale: str, seeds: int | None, out: Path,
                        force: bool, only_selected: Path | None, target) -> None:
    """--dry-run: the plan per method, read from the results folder alone."""
    from adamrepro.runner.preview import describe, preview

    planned = preview(base, scale, seeds, out, force, only_selected, target)
    typer.echo("\n".join(describe(planned)))


def _say_stopped(done: dict, start: float, why: str, err: bool = False) -> None:
    """What --time-budget (or a SIGTERM) stopped, after `why`: what was trained, what is
    left, and where it resumes."""
    stopped = done["stopped"]
    checkpointed = stopped["checkpointed"]
    if len(checkpointed) == 1:
        [(group_id, epoch)] = checkpointed.items()
        where = f"; group {group_id} is checkpointed after pass {epoch} of {stopped['epochs']}"
    else:  # workers or Ray: every group that was training stopped at its own checkpoint
        where = (f"; {count(len(checkpointed), 'group')} checkpointed mid-way"
                 if checkpointed else "")
    typer.echo(f"{why}: trained {count(done['trained'], 'run')} in "
               f"{time.perf_counter() - start:.1f} s; "
               f"{count(stopped['runs_left'], 'run')} in "
               f"{count(stopped['groups_left'], 'group')} "
               f"remain{'s' if stopped['runs_left'] == 1 else ''} "
               f"({stopped['run_passes_left']} "
               f"run-passes){where}; run the same command again to go on", err=err)


def _say_trained(done: dict, start: float) -> None:
    folder = done["folder"]
    typer.echo(f"trained {count(done['trained'], 'run')}, {done['skipped']} already finished, in "
               f"{time.perf_counter() - start:.1f} s; results: {folder}/curves.csv, "
               f"{folder}/best.csv")


def _warn_of_methods_all_diverged(base: Experiment, done: dict) -> None:
    lost = [label for label in base.methods if label not in done["selected"]]
    if lost:
        note(f"every grid point of {', '.join(lost)} diverged (NaN or inf), so none is "
             f"selected and the figures and report leave it out; try smaller step sizes")


def _say_what_runs_otherwise(base: Experiment, target) -> None:
    """A note (stderr) for each setting that will not run as a reader of the config would
    think: a built-in shadowing an entry point, tf32 off a GPU, SFO under bf16, selection on
    the test set (and, from run_sweep, the paper's scale on a CPU)."""
    from adamrepro.optim import OPTIMIZERS
    from adamrepro.optim.resolve import ENTRY_POINT_GROUP, shadowed

    unused = sorted({m.optimizer for m in base.methods.values()} & set(shadowed(OPTIMIZERS)))
    if unused:
        note(f"{', '.join(unused)}: built-in optimizer(s), not the entry point(s) of that name "
             f"in group {ENTRY_POINT_GROUP!r}; register yours under another name")
    if base.training.precision == "tf32" and target.type != "cuda":
        note(f"training.precision tf32 runs as fp32 on {target.type} (no TF32 units there); "
             f"the runs record precision fp32")
    if base.training.precision == "bf16" and any(
            method.optimizer == "sfo" for method in base.methods.values()):
        note("SFO under bf16 overshoots: its curvature pairs are gradient differences, which "
             "bfloat16 rounding swamps (10-100x its fp32 cost in its first pass on MNIST; "
             "README, Precision). Its runs measure that, not SFO")
    if base.selection.metric.startswith("test_"):  # metrics.py: a test-set column
        note(f"selection.metric {base.selection.metric} chooses each method's grid point on "
             f"the test set; the paper chooses on the training cost, and the report judges "
             f"its claims so, whatever best.csv holds")
