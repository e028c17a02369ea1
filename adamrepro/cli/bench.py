"""`adamrepro bench [EXPERIMENT]`: the batched runner against the straightforward loop.

Prints one row per implementation and the ratio of their speeds, and writes
<out>/bench/<experiment>-<device>-<scale>.json (everything, with provenance) and .csv (the
rows). Exit status 1 when the two train different curves (bench/same_curves.py):
a speed-up on different curves means nothing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated

import typer

from adamrepro.cli.params import DEFAULT_DATA_DIR, folder
from adamrepro.cli.run import DeviceChoice, PrecisionChoice, Scale
from adamrepro.config import load_experiment, resolve_config_arg, with_precision
from adamrepro.errors import UserError, note
from adamrepro.wording import count


def bench(
    experiment: Annotated[str, typer.Argument(
        help="configs/<experiment>.yaml, or its name.")] = "logreg_mnist",
    device: Annotated[DeviceChoice, typer.Option(help="Where to train.")] = DeviceChoice.auto,
    scale: Annotated[Scale, typer.Option(help="The experiment's scale to time.")] = Scale.quick,
    out: Annotated[Path, typer.Option(
        parser=folder, metavar="FOLDER", help="Results folder (writes <out>/bench/).")
    ] = Path("results"),
    data_dir: Annotated[Path | None, typer.Option(
        parser=folder, metavar="FOLDER",
        help=f"Dataset folder (default: {DEFAULT_DATA_DIR}).")] = None,
    reference_runs: Annotated[int | None, typer.Option(
        min=1, help="Time the reference on the first N runs of each group (default: all).")
    ] = None,
    reference_passes: Annotated[int | None, typer.Option(
        min=1, help="Time the reference on the first N passes of each run (default: all, "
                    "2 at paper scale).")] = None,
    passes: Annotated[int | None, typer.Option(
        min=1, help="Time only the first N passes of every run, batched included (default: "
                    "the scale's all).")] = None,
    workers: Annotated[str, typer.Option(
        help="Worker processes on a CPU, as `run --workers` (auto: one per thread; 1: "
             "this process with every thread), for both sides: the batched runner's groups, "
             "then the reference loop's runs.")] = "auto",
    threads: Annotated[int | None, typer.Option(
        min=1, help="torch.set_num_threads for both (default: torch's).")] = None,
    flops_only: Annotated[bool, typer.Option(
        "--flops-only",
        help="Only print the experiment's FLOP count at this scale (the README's figure).")
    ] = False,
    precision: Annotated[PrecisionChoice | None, typer.Option(
        help="training.precision of the batched runs (default: the config's); the reference "
             "loop computes in fp32. Writes <experiment>-<device>-<scale>-<precision>.*")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    unverified_data: Annotated[bool, typer.Option(
        "--unverified-data",
        help="Read data that fails its check, for a copy you trust (as run's flag: a "
             "dataset whose copy passes is read as without it).")] = False,
) -> None:
    """Time the batched runner against a straightforward PyTorch loop.

    Both train the same grid; the ratio of their speeds is the figure."""
    from rich.console import Console

    from adamrepro.bench.flops import experiment_flops, flops_sentence
    from adamrepro.data.download import default_data_dir, quiet_bars
    from adamrepro.progress import log_every
    from adamrepro.results.store import check_writable
    from adamrepro.results.tables import check_results_folder
    from adamrepro.runner.executors import load_data, parse_workers, torch_threads
    from adamrepro.runner.host_memory import keep_freed_memory
    from adamrepro.runner.sweep import resolve_device

    log_every()  # $ADAMREPRO_PROGRESS_SECONDS, before minutes of timing
    cores = os.cpu_count() or 1
    if threads is not None and threads > 4 * cores:  # 100,000 threads crashed the process
        raise UserError(f"--threads {threads} is more than 4 per core of the {cores} here; "
                        f"give at most {4 * cores}")
    with torch_threads(threads):
        exp = load_experiment(resolve_config_arg(experiment))
        if not flops_only:  # before minutes of timing, not after
            check_results_folder(Path(out))  # bench/ beside the experiments', not in one
            check_writable(Path(out) / "bench")
        data_folder = data_dir or default_data_dir()
        exp = _experiment_to_time(exp, unverified_data, scale.value, precision, passes,
                                  reference_passes, data_folder)
        target = resolve_device(device.value)
        keep_freed_memory(target)  # for both sides alike: the batched runs and the loop
        with quiet_bars(quiet):
            data = load_data(exp, data_folder, target)
        console = Console(width=None if Console().is_terminal else 160)
        if flops_only:
            console.print(flops_sentence(experiment_flops(exp, data)))
            return
        _note_runs_beyond(exp, scale.value, reference_runs)
        result = _bench(exp, scale.value, data, target, reference_runs, reference_passes,
                        console, quiet, parse_workers(workers))
    _report(result, console)
    _write(result, out, exp, target, scale.value, console)
    if result["check"]["passed"] is False:
        raise typer.Exit(1)


def _experiment_to_time(exp, unverified_data: bool, scale: str,
                        precision: PrecisionChoice | None, passes: int | None,
                        reference_passes: int | None, data_dir: Path):
    """The experiment at `scale` as the flags ask, once every model of it is known to have a
    reference loop."""
    from adamrepro.cli.params import without_data_check

    if unverified_data:
        exp = without_data_check(exp, data_dir)
    exp = exp.at_scale(scale)
    if precision is not None:
        exp = with_precision(exp, precision.value, "--precision")
    _check_reference(exp)
    _note_passes_beyond(exp.training.epochs, scale, passes=passes,
                        reference_passes=reference_passes)
    if passes is not None and passes < exp.training.epochs:
        exp = exp.with_epochs(passes)
    return exp


def _note_runs_beyond(exp, scale: str, reference_runs: int | None) -> None:
    """--reference-runs beyond every group's size times each group whole: said, as the
    passes beyond the scale's are."""
    from adamrepro.runner.plan import plan

    largest = max(group.size for group in plan(exp))
    if reference_runs is not None and reference_runs > largest:
        note(f"--reference-runs {reference_runs}: the {scale} scale's largest group has "
             f"{count(largest, 'run')}; timing every run of each group")


def _note_passes_beyond(epochs: int, scale: str, **asked: int | None) -> None:
    """A pass count beyond the scale's is cut to it: said, as the bench then times fewer
    passes than the command asked for."""
    for name, passes in asked.items():
        if passes is not None and passes > epochs:
            note(f"--{name.replace('_', '-')} {passes}: the {scale} scale has "
                 f"{count(epochs, 'pass', 'passes')}; timing {'it' if epochs == 1 else 'them'}")


def _write(result: dict, out: Path, exp, target, scale: str, console) -> None:
    """<out>/bench/<experiment>-<device>-<scale>[-<precision>].json and .csv."""
    from adamrepro.atomic import atomic_set, missing_folders, remove_empty

    # a reduced precision gets files of its own beside the fp32 bench of the same grid
    reduced = "" if exp.training.precision == "fp32" else f"-{exp.training.precision}"
    stem = Path(out) / "bench" / f"{exp.name}-{target.type}-{scale}{reduced}"
    made = missing_folders(stem.parent)
    try:  # both files or neither, and no folder made for them left empty
        atomic_set({stem.with_suffix(".json"): json.dumps(result, indent=2) + "\n",
                    stem.with_suffix(".csv"): _csv(result)})
    except BaseException:
        remove_empty(made)
        raise
    console.print(f"wrote {stem}.json, {stem}.csv")


def _check_reference(exp) -> None:
    """Before the data loads and the batched side is timed: every model of the grid has a
    straightforward loop to be timed against (bench/reference.py)."""
    from adamrepro.bench.reference import REFERENCE_MODELS
    from adamrepro.runner.plan import plan

    lacking = sorted({group.model["name"] for group in plan(exp)} - set(REFERENCE_MODELS))
    if lacking:
        raise UserError(f"bench: no straightforward reference loop for model "
                        f"{', '.join(map(repr, lacking))} (bench/reference.py has one for "
                        f"{', '.join(REFERENCE_MODELS)}); `adamrepro run` trains it all the same")


def _bench(exp, scale: str, data, target, reference_runs, reference_passes, console,
           quiet: bool, workers: int | str) -> dict:
    import torch

    from adamrepro.bench.flops import experiment_flops, flops_sentence
    from adamrepro.bench.machine import hardware_name
    from adamrepro.bench.timing import run_bench
    from adamrepro.progress import progress_bar
    from adamrepro.provenance import provenance
    from adamrepro.runner.plan import config_digest, seeds_of

    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    console.print(f"bench {exp.name} --scale {scale} on {hardware_name(target)}, torch "
                  f"{torch.__version__}; load average {load_before:.1f} on {cores} cores")
    with progress_bar(quiet, 10, "run-passes") as progress:  # on stderr, as run's
        tasks = {}

        def on_progress(what: str, run_passes: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(what, total=total, logged=True)
            progress.advance(tasks[what], run_passes)

        result = run_bench(exp, scale, data, target, reference_runs, reference_passes,
                           on_progress, workers)
    # how the batched side trained: "x2 threads" was said of 2 worker processes of 1 thread
    result["provenance"] = provenance(target, result["batched_workers"])
    # what was timed, as a sweep's config.json says it: the bench files name their grid
    result["config_digest"] = config_digest(exp)
    result["seeds"] = seeds_of(exp)
    result["config"] = exp.model_dump(mode="json")
    result["hardware"] = hardware_name(target)
    result["machine_load"] = {"cpu_count": cores, "load_average_before": load_before,
                              "load_average_after": os.getloadavg()[0]}
    result["experiment_flops"] = experiment_flops(exp, data)
    result["flops_summary"] = flops_sentence(result["experiment_flops"])
    return result


def _report(result: dict, console) -> None:
    console.print(_table(result))
    if result["batched_workers"] > 1:
        console.print(f"each side in {result['batched_workers']} worker processes of 1 "
                      f"thread (--workers): the batched runner's groups, then the reference "
                      f"loop's runs")
    console.print(f"ratio batched/reference: {result['ratio']:.1f}x run-passes per second")
    console.print(result["reference_subset"]["note"])
    if result.get("not_timed"):
        console.print(f"not timed (not batchable: they train one run at a time either way; "
                      f"or batchable from outside adamrepro: the reference loop has no twin "
                      f"of them): {', '.join(result['not_timed'])}")
    graphs = result.get("cuda_graphs")
    if graphs:
        check = graphs["check"]
        same = ("curves not compared (noise)" if check["passed"] is None else
                f"max relative difference {check['max_relative_difference']:.1e}")
        console.print(f"CUDA graphs: {graphs['speedup']:.1f}x the eager batched loop; {same}")
    check = result["check"]
    if check["passed"] is None:
        console.print(f"curves not compared: {check['skipped']}")
    else:
        console.print("same curves:" if check["passed"] else "DIFFERENT CURVES:")
        prefix, timed = check["float64_prefix"], check["timed_curves"]
        steps = prefix["steps_per_pass"]
        console.print(f"  float64, {prefix['runs']} run(s) x {prefix['passes']} passes of "
                      f"{steps} step{'' if steps == 1 else 's'}: {_compared(prefix)}, "
                      f"{'equal' if prefix['passed'] else 'DIFFERENT'}")
        judged = ((", equal" if timed["passed"] else ", DIFFERENT") if timed["judged"] else
                  f"; not judged: {timed['not_judged']}")
        console.print(f"  the timed {timed['dtype']} curves: {_compared(timed)}{judged}")
        for part in (prefix, timed) if timed["judged"] else (prefix,):
            for line in part["mismatches"]:
                console.print(f"    {line}")
    _note_busy(result)
    console.print(result["flops_summary"])


# Other processes taking more than this many cores on average while a side ran: said.
BUSY_CORES = 0.25


def _note_busy(result: dict) -> None:
    """Other processes held cores: a descheduled thread or worker slows its side, and the two
    sides not by the same factor, so the ratio moves with them. Said from what they took
    while each side ran (/proc/stat), or, where that is unknown, from the load average."""
    load = result["machine_load"]
    took = {row["implementation"]: row.get("other_processes_cores", math.nan)
            for row in result["results"]}
    if all(math.isnan(cores) for cores in took.values()):
        if load["load_average_before"] > load["cpu_count"] / 2:
            note(f"the machine was busy (load average {load['load_average_before']:.1f} on "
                 f"{load['cpu_count']} cores); timings are noisy, --threads 1 suffers less "
                 f"from it")
        return
    # One side unknown (its /proc/stat read failed) must not hide the other: max() over a
    # NaN answers by the order of its arguments.
    if max(cores for cores in took.values() if not math.isnan(cores)) > BUSY_CORES:
        said = ", ".join(f"{cores:.2f} while the {side} side ran" for side, cores in
                         took.items())
        note(f"other processes took cores of the {load['cpu_count']} here ({said}, on "
             f"average): the ratio moves with them; time again on a quiet machine")


def _compared(part: dict) -> str:
    return (f"{part['compared_values']} losses compared, max relative difference "
            f"{part['max_relative_difference']:.1e} (rtol {part['rtol']:g}, "
            f"atol {part['atol']:g})")


def _table(result: dict):
    from rich.table import Table

    peak, threads = result["peak"], count(result["threads"], "thread")
    table = Table(title=f"{result['experiment']} ({result['scale']}, {result['dtype']}, "
                        f"{threads}); peak {peak['flops_per_s'] / 1e9:.1f} "
                        f"GFLOP/s ({peak['matmul']} matmul)")
    for name in ("implementation", "runs", "run-passes", "seconds", "runs/s", "run-passes/s",
                 "samples/s", "GFLOP/s", "% of peak", "peak memory", "added"):
        table.add_column(name, justify="left" if name == "implementation" else "right")
    for row in result["results"]:
        table.add_row(row["implementation"], str(row["runs"]), str(row["run_passes"]),
                      f"{row['seconds']:.1f}", f"{row['runs_per_s']:.3g}",
                      f"{row['run_passes_per_s']:.2f}",
                      f"{row['samples_per_s']:,.0f}", f"{row['flops_per_s'] / 1e9:.2f}",
                      f"{100 * row['fraction_of_peak']:.1f}",
                      f"{row['peak_memory_bytes'] / 2**20:,.0f} MiB",
                      f"{row['added_memory_bytes'] / 2**20:,.0f} MiB")
    return table


def _csv(result: dict) -> str:
    import pandas as pd

    meta = {"experiment": result["experiment"], "scale": result["scale"],
            "device": result["device"], "hardware": result["hardware"],
            "dtype": result["dtype"], "precision": result["precision"],
            "threads": result["threads"], "workers": result["batched_workers"],
            "ratio": result["ratio"],
            "peak_flops_per_s": result["peak"]["flops_per_s"],
            "memory_kind": result["memory_kind"],
            "reference_extrapolated": result["reference_subset"]["extrapolated"],
            "curves_match": result["check"]["passed"],
            "config_digest": result["config_digest"],
            "seeds": ";".join(map(str, result["seeds"])),
            "date": result["provenance"]["date"], "commit": result["provenance"]["commit"],
            "torch_version": result["provenance"]["torch_version"]}
    return pd.DataFrame([{**meta, **row} for row in result["results"]]).to_csv(index=False)
