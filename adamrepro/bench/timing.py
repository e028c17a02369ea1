"""Time the batched runner and the straightforward loop on the same grid.

Both train the same runs on the same data, in the same process, one group at a time and
interleaved (a group batched, then the same group's runs one by one), so that a change in the
machine's load hits both. On a CPU the batched runner trains as `adamrepro run` does: with
more than one worker (runner/executors.py; `workers`, auto by default) its groups train at
once in worker processes of one thread, all timed together before the reference runs. Both
are timed end to end as a user would wait for them: model and optimizer set-up, every step,
and the evaluation after every pass (the full training objective and the test set). On a
GPU every timing ends after `torch.cuda.synchronize()`.

The reference may be timed on a subset: the first `reference_runs` runs of every group and
the first `reference_passes` passes of each; its speed is then per run-pass, which is what the
ratio compares (the cost of a pass does not change along training). Whether the two trained
the same curves is same_curves.py's; the FLOPs are flops.py's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from adamrepro.bench.flops import FlopCount, flop_count
from adamrepro.bench.machine import PeakMemory, children_peak_rss, measure_peak_flops, synchronize
from adamrepro.bench.reference import train_run
from adamrepro.bench.same_curves import clean_runs, compare_curves, curves_check
from adamrepro.config import Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.errors import UserError
from adamrepro.runner.executors import LocalExecutor
from adamrepro.runner.group import RunCurve, step_sizes, train_group
from adamrepro.runner.plan import Group, RunSpec, plan

# Every pass of every run at the small scales; at paper scale the reference (the slow thing
# being measured) would take far longer than the batched runs, so it gets the first passes.
REFERENCE_PASSES = {"smoke": None, "quick": None, "paper": 2}


@dataclass
class Phase:
    """What one implementation did and how long it took, summed over the groups."""

    implementation: str
    runs: int = 0
    run_passes: int = 0
    seconds: float = 0.0
    flops: int = 0
    samples: int = 0
    peak_memory_bytes: int = 0
    added_memory_bytes: int = 0  # the peak above what was in use before (data, libraries)
    curves: dict[str, RunCurve] = field(default_factory=dict, repr=False)

    def add(self, runs: list[RunSpec], curves: list[RunCurve], seconds: float,
            passes_computed: list[int], count: FlopCount | None, samples_per_pass: int,
            memory: tuple[int, int]) -> None:
        self.runs += len(runs)
        self.run_passes += sum(passes_computed)
        self.seconds += seconds
        self.flops += (sum(count.run(p) for p in passes_computed) if count is not None
                       else math.nan)
        self.samples += sum(passes_computed) * samples_per_pass
        self.peak_memory_bytes = max(self.peak_memory_bytes, memory[0])
        self.added_memory_bytes = max(self.added_memory_bytes, memory[0] - memory[1])
        self.curves.update({run.run_id: curve for run, curve in zip(runs, curves, strict=True)})

    @property
    def run_passes_per_s(self) -> float:
        return self.run_passes / self.seconds if self.seconds else math.nan

    def row(self, peak_flops: float, epochs: int) -> dict:
        """The phase's speeds, `runs_per_s` in whole runs of `epochs` passes (at the
        measured pass rate)."""
        flops_per_s = self.flops / self.seconds if self.seconds else math.nan
        return {
            "implementation": self.implementation,
            "runs": self.runs,
            "run_passes": self.run_passes,
            "seconds": self.seconds,
            "run_passes_per_s": self.run_passes_per_s,
            "samples_per_s": self.samples / self.seconds if self.seconds else math.nan,
            "flops": self.flops,
            "flops_per_s": flops_per_s,
            "fraction_of_peak": flops_per_s / peak_flops,
            "peak_memory_bytes": self.peak_memory_bytes,
            "added_memory_bytes": self.added_memory_bytes,
            "runs_per_s": self.run_passes_per_s / epochs,
        }


def _timed(device: torch.device, memory: PeakMemory, work: Callable[[], list[RunCurve]]):
    """(curves, seconds, (peak bytes, bytes already in use when the phase began))."""
    memory.reset()
    baseline = memory.read()
    synchronize(device)
    start = time.perf_counter()
    curves = work()
    synchronize(device)
    return curves, time.perf_counter() - start, (memory.read(), baseline)


def batched_passes(curves: list[RunCurve]) -> list[int]:
    """The passes each run of a batched group computed: a diverged run stops being recorded,
    not being computed, so every run computed as many as the group's longest curve."""
    return [max(len(c.rows) - 1 for c in curves)] * len(curves)


def timed_groups(exp: Experiment) -> tuple[list[Group], list[str]]:
    """The groups the bench times, and the methods it leaves out: one that is not batchable
    already trains one run at a time, as the reference loop would, so there is nothing to
    compare."""
    every = plan(exp)
    groups = [g for g in every if g.resolved.capabilities.batchable]
    not_timed = sorted({g.method for g in every} - {g.method for g in groups})
    if not groups:
        raise UserError(f"{exp.name}: no method is batchable ({', '.join(not_timed)}); the "
                        f"bench compares batched training with the one-run-at-a-time loop")
    return groups, not_timed


def time_in_workers(exp: Experiment, groups: list[Group], executor: LocalExecutor,
                    memory: PeakMemory, batched: Phase, counts: dict[str, FlopCount | None],
                    samples_per_pass: int, on_run_passes: Callable[[int], None]) -> int:
    """Every group at once in the executor's worker processes, as `adamrepro run` trains
    them, timed together into `batched`; returns the largest worker's peak resident memory."""
    reported: dict[str, int] = {}

    def worker_pass(group: Group, epoch: int) -> None:
        on_run_passes(group.size * (epoch - reported.get(group.group_id, 0)))
        reported[group.group_id] = epoch

    finished, seconds, peak_bytes = _timed(executor.device, memory, lambda: list(
        executor.run(exp, groups, worker_pass)))
    for group, curves in finished:
        batched.add(list(group.runs), curves, 0.0, batched_passes(curves),
                    counts[group.group_id], samples_per_pass, peak_bytes)
    batched.seconds = seconds
    return children_peak_rss()


def run_bench(exp: Experiment, scale: str, data: TensorDataset, device: torch.device,
              reference_runs: int | None = None, reference_passes: int | None = None,
              on_progress: Callable[[str, int, int], None] = lambda what, n, total: None,
              workers: int | str = 1) -> dict:
    """Time both implementations on every group of `exp` (already at `scale`, data already on
    `device`); `on_progress(implementation, run_passes_done, run_passes_in_all)` reports as
    they go."""
    groups, not_timed = timed_groups(exp)
    epochs = exp.training.epochs
    if reference_passes is None:
        reference_passes = REFERENCE_PASSES.get(scale)
    ref_passes = min(reference_passes or epochs, epochs)
    n_train = len(data.train_x)
    sizes = step_sizes(exp.training, n_train)
    per_pass = sum(sizes)
    dtype = getattr(torch, exp.training.dtype)

    peak = measure_peak_flops(device, dtype)
    memory = PeakMemory(device)
    batched, reference = Phase("batched"), Phase("reference")
    # On a GPU the batched loop is also timed with eager kernel launches (no CUDA graphs).
    eager = Phase("batched, no CUDA graphs") if device.type == "cuda" else None
    host = data.to(torch.device("cpu"))  # the reference's DataLoader reads host memory

    grid_passes = sum(g.size for g in groups) * epochs
    # The eager batched loop gets the reference's passes: its speed is per run-pass too.
    eager_exp = exp.with_epochs(ref_passes)
    totals = {"batched": grid_passes, "eager": sum(g.size for g in groups) * ref_passes,
              "reference": sum(min(reference_runs or g.size, g.size) for g in groups)
              * ref_passes}

    def reference_pass(epoch: int) -> None:
        on_progress("reference", 1, totals["reference"])

    counts = {g.group_id: flop_count(exp, g, data) for g in groups}
    executor = LocalExecutor(Path(), device, workers)
    executor.data = data
    processes = executor.processes(len(groups))
    worker_memory = None
    if processes > 1:
        worker_memory = time_in_workers(
            exp, groups, executor, memory, batched, counts, per_pass,
            lambda n: on_progress("batched", n, totals["batched"]))
    for group in groups:
        count = counts[group.group_id]

        def progress(epoch: int, size: int = group.size, what: str = "batched") -> None:
            on_progress(what, size, totals[what])

        if processes == 1:
            curves, seconds, peak_bytes = _timed(
                device, memory, lambda group=group, progress=progress: train_group(
                    exp, group, data, progress))
            batched.add(list(group.runs), curves, seconds, batched_passes(curves), count,
                        per_pass, peak_bytes)
        if eager is not None:  # the same batched loop without CUDA graphs: what graphs buy
            curves, seconds, peak_bytes = _timed(
                device, memory, lambda group=group, progress=progress: train_group(
                    eager_exp, group, data, lambda epoch: progress(epoch, what="eager"),
                    cuda_graphs=False))
            eager.add(list(group.runs), curves, seconds, batched_passes(curves), count,
                      per_pass, peak_bytes)

        chosen = list(group.runs[: reference_runs or group.size])
        curves, seconds, peak_bytes = _timed(device, memory, lambda chosen=chosen: [
            train_run(exp, run, data, ref_passes, reference_pass, host) for run in chosen])
        computed = [len(c.rows) - 1 for c in curves]  # a diverged run stops here
        reference.add(chosen, curves, seconds, computed, count, per_pass, peak_bytes)

    phases = [batched, reference] if eager is None else [batched, eager, reference]
    check = curves_check(exp, groups, data, host, reference_runs, batched.curves,
                         reference.curves)
    graphs = None
    if eager is not None:  # CUDA graphs replay the eager kernels: the timed curves alike
        clean = clean_runs(groups)
        graphs = {"speedup": batched.run_passes_per_s / eager.run_passes_per_s,
                  "check": compare_curves(exp, batched.curves, {
                      run_id: curve for run_id, curve in eager.curves.items()
                      if run_id in clean}) if clean else check}
    return {
        "experiment": exp.name,
        "scale": scale,
        "device": device.type,
        "dtype": exp.training.dtype,
        "precision": exp.training.precision,  # the reference loop is always fp32
        "threads": torch.get_num_threads(),
        # the batched runner's processes (1: this one, with `threads` threads; more: that
        # many workers of one thread each, and the largest one's peak resident memory)
        "batched_workers": processes,
        "worker_peak_memory_bytes": worker_memory,
        "grid": {"runs": batched.runs, "groups": [g.size for g in groups], "passes": epochs,
                 "steps_per_pass": len(sizes),
                 "batch_size": exp.training.batch_size, "train_size": n_train,
                 "test_size": len(data.test_x)},
        "reference_subset": reference_subset(batched, reference, ref_passes, epochs),
        "ratio": batched.run_passes_per_s / reference.run_passes_per_s,
        "cuda_graphs": graphs,
        "results": [phase.row(peak["flops_per_s"], epochs) for phase in phases],
        "peak": peak,
        "memory_kind": memory.kind,
        "flops_per_run": {g.method: asdict(counts[g.group_id]) if counts[g.group_id] else None
                          for g in groups},
        "check": check,
        "not_timed": not_timed,
    }


def reference_subset(batched: Phase, reference: Phase, passes: int, epochs: int) -> dict:
    """What the reference ran of the grid, and what the whole would have taken it."""
    subset = reference.runs < batched.runs or passes < epochs
    return {"runs": reference.runs, "passes_per_run": passes, "extrapolated": subset,
            "note": (f"the reference ran {reference.runs} of {batched.runs} runs for "
                     f"{passes} of {epochs} passes; its speed is per run-pass, so the full "
                     f"grid would take it about "
                     f"{batched.runs * epochs / reference.run_passes_per_s:.0f} s") if subset
            else "the reference ran the whole grid"}
