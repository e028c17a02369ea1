"""Time the batched runner and the straightforward loop on the same grid.

Both train the same runs on the same data. In one process (a GPU, or `workers` 1) they
train one group at a time and interleaved (a group batched, then the same group's runs one
by one), so that a change in the machine's load hits both. On a CPU with more than one
worker (runner/executors.py; `workers`, auto by default) the batched runner trains as
`adamrepro run` does, its groups at once in worker processes of one thread, all timed
together; then the reference loop's runs are timed the same way, at once in as many worker
processes of one thread: N copies of a training script, as a user with N cores would run
them. Until 2026-12-06 the loop ran in one process of every thread, which a small model's
ops barely use: it was 1.8-2.8x slower than the parallel loop on 2 cores, and it stalled
whenever another process took a core, so the ratio rose with the machine's load. Each phase
records how many cores other processes took meanwhile (machine.py's `cpu_seconds`). Both are
timed end to end as a user would wait for them: model and optimizer set-up, every step, and
the evaluation after every pass (the full training objective and the test set). On a GPU
every timing ends after `torch.cuda.synchronize()`.

The reference may be timed on a subset: the first `reference_runs` runs of every group and
the first `reference_passes` passes of each; its speed is then per run-pass, which is what the
ratio compares (the cost of a pass does not change along training). Whether the two trained
the same curves is same_curves.py's; the FLOPs are flops.py's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from adamrepro.bench.flops import FlopCount, flop_count
from adamrepro.bench.machine import (
    PeakMemory,
    children_peak_rss,
    cpu_seconds,
    measure_peak_flops,
    other_cores,
    own_peak_rss,
    synchronize,
)
from adamrepro.bench.reference import train_run
from adamrepro.bench.same_curves import clean_runs, compare_curves, curves_check
from adamrepro.config import Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.errors import UserError
from adamrepro.runner.executors import (
    LocalExecutor,
    next_finished,
    report_pass,
    worker_data,
    worker_death_advice,
    worker_pool,
)
from adamrepro.runner.group import RunCurve, step_sizes, train_group
from adamrepro.runner.plan import Group, RunSpec, plan
from adamrepro.stopping import signals_deferred

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
    other_core_seconds: float = 0.0  # what other processes took of the cores meanwhile
    curves: dict[str, RunCurve] = field(default_factory=dict, repr=False)

    def add(self, runs: list[RunSpec], curves: list[RunCurve], passes_computed: list[int],
            count: FlopCount | None, samples_per_pass: int) -> None:
        """The work of some runs (a group's, or a group's first runs)."""
        self.runs += len(runs)
        self.run_passes += sum(passes_computed)
        self.flops += (sum(count.run(p) for p in passes_computed) if count is not None
                       else math.nan)
        self.samples += sum(passes_computed) * samples_per_pass
        self.curves.update({run.run_id: curve for run, curve in zip(runs, curves, strict=True)})

    def took(self, timing: Timing) -> None:
        """The time and memory of work added (of one group, or of every group trained at
        once in worker processes)."""
        self.seconds += timing.seconds
        self.other_core_seconds += timing.other_cores * timing.seconds
        peak, before = timing.memory
        self.peak_memory_bytes = max(self.peak_memory_bytes, peak)
        self.added_memory_bytes = max(self.added_memory_bytes, peak - before)

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
            # the cores other processes took, on average, while this phase ran
            "other_processes_cores": (self.other_core_seconds / self.seconds if self.seconds
                                      else math.nan),
        }


@dataclass(frozen=True)
class Timing:
    """One timed stretch: its seconds, (peak bytes, bytes in use when it began), and the
    cores other processes took on average meanwhile (NaN where unknown)."""

    seconds: float
    memory: tuple[int, int]
    other_cores: float


def _timed(device: torch.device, memory: PeakMemory, work: Callable[[], list[RunCurve]]
           ) -> tuple[list[RunCurve], Timing]:
    memory.reset()
    baseline = memory.read()
    synchronize(device)
    before = cpu_seconds()
    start = time.perf_counter()
    curves = work()
    synchronize(device)
    seconds = time.perf_counter() - start
    return curves, Timing(seconds, (memory.read(), baseline),
                          other_cores(before, cpu_seconds(), seconds))


def batched_passes(curves: list[RunCurve]) -> list[int]:
    """The passes each run of a batched group computed: a diverged run stops being recorded,
    not being computed, so every run computed as many as the group's longest curve."""
    return [max(len(c.rows) - 1 for c in curves)] * len(curves)


def timed_groups(exp: Experiment) -> tuple[list[Group], list[str]]:
    """The groups the bench times, and the methods it leaves out: one that is not batchable
    already trains one run at a time, as the reference loop would, so there is nothing to
    compare; a batchable one from outside adamrepro (a user's GridOptimizer subclass) has no
    twin in the reference loop (reference.py builds adamrepro's and torch's), which raised
    KeyError once the batched side was timed."""
    every = plan(exp)
    groups = [g for g in every if g.resolved.capabilities.batchable and g.resolved.builtin]
    not_timed = sorted({g.method for g in every} - {g.method for g in groups})
    if not groups:
        raise UserError(f"{exp.name}: no method is a batchable one of adamrepro's "
                        f"({', '.join(not_timed)}); the bench compares batched training with "
                        f"the one-run-at-a-time loop")
    return groups, not_timed


def time_in_workers(bench: _Bench, groups: list[Group], executor: LocalExecutor,
                    counts: dict[str, FlopCount | None]) -> int:
    """Every group at once in the executor's worker processes, as `adamrepro run` trains
    them, timed together into `bench.batched`; returns the largest worker's peak resident
    memory."""
    reported: dict[str, int] = {}

    def worker_pass(group: Group, epoch: int) -> None:
        bench.on_progress("batched", group.size * (epoch - reported.get(group.group_id, 0)),
                          bench.totals["batched"])
        reported[group.group_id] = epoch

    finished, timing = _timed(bench.device, bench.memory, lambda: list(
        executor.run(bench.exp, groups, worker_pass)))
    for group, curves in finished:
        bench.batched.add(list(group.runs), curves, batched_passes(curves),
                          counts[group.group_id], bench.samples_per_pass)
    bench.batched.took(timing)
    return children_peak_rss()


def time_reference_in_workers(bench: _Bench, groups: list[Group],
                              counts: dict[str, FlopCount | None], processes: int) -> int:
    """The reference loop's runs of every group at once in `processes` worker processes of
    one thread, as the batched side trained its groups (time_in_workers), timed together
    into `bench.reference`; returns the largest worker's peak resident memory."""
    chosen = {group.group_id: bench.chosen(group) for group in groups}
    runs = [run for group in groups for run in chosen[group.group_id]]
    peaks: list[int] = []

    def work() -> list[RunCurve]:
        curves: dict[str, RunCurve] = {}
        with worker_pool(processes, bench.data) as workers:
            with signals_deferred():  # as the executor submits (next_finished says why)
                pending = {workers.pool.submit(_reference_run_in_worker, bench.exp, run,
                                               bench.reference_passes): run for run in runs}
            while pending:
                run, future = next_finished(pending, workers, lambda key, epoch: (
                    bench.on_progress("reference", 1, bench.totals["reference"])))
                try:
                    curves[run.run_id], peak = future.result()
                except BrokenProcessPool:
                    raise UserError(
                        f"a worker process died while the reference loop trained run "
                        f"{run.run_id}, killed outright (most likely by the kernel for want "
                        f"of memory: see dmesg); {worker_death_advice()}") from None
                peaks.append(peak)
        return [curves[run.run_id] for run in runs]

    every, timing = _timed(bench.device, bench.memory, work)
    trained = dict(zip((run.run_id for run in runs), every, strict=True))
    for group in groups:
        curves = [trained[run.run_id] for run in chosen[group.group_id]]
        bench.reference.add(chosen[group.group_id], curves, _passes_trained(curves),
                            counts[group.group_id], bench.samples_per_pass)
    bench.reference.took(timing)
    return max(peaks)


def _reference_run_in_worker(exp: Experiment, run: RunSpec, passes: int
                             ) -> tuple[RunCurve, int]:
    """One run of the reference loop in a worker of `worker_pool`, and the worker's peak
    resident memory so far."""
    data = worker_data()
    curve = train_run(exp, run, data, passes, lambda epoch: report_pass(run.run_id, epoch),
                      data)
    return curve, own_peak_rss()


def _passes_trained(curves: list[RunCurve]) -> list[int]:
    """The passes each run of the reference loop computed: a diverged run stops there."""
    return [len(c.rows) - 1 for c in curves]


def run_bench(exp: Experiment, scale: str, data: TensorDataset, device: torch.device,
              reference_runs: int | None = None, reference_passes: int | None = None,
              on_progress: Callable[[str, int, int], None] = lambda what, n, total: None,
              workers: int | str = 1) -> dict:
    """Time both implementations on every group of `exp` (already at `scale`, data already on
    `device`); `on_progress(implementation, run_passes_done, run_passes_in_all)` reports as
    they go."""
    groups, not_timed = timed_groups(exp)
    # torch.optim's steps (the reference loop's) import torch._dynamo at their first call:
    # 1.4 s on a 2-core CPU, which no later pass pays. Imported here, before any timed phase,
    # so that the reference loop's first pass never pays it (torch 2.13's FlopCounterMode,
    # in `flop_count` below, happens to import it first; `run` builds adamrepro's optimizers
    # alone and never imports it: optim/dynamo_deferred.py).
    import torch._dynamo  # noqa: F401
    epochs = exp.training.epochs
    ref_passes = _reference_passes_per_run(scale, reference_passes, epochs)
    sizes = step_sizes(exp.training, len(data.train_x))
    peak = measure_peak_flops(device, getattr(torch, exp.training.dtype))
    bench = _Bench(exp=exp, data=data, device=device, memory=PeakMemory(device),
                   samples_per_pass=sum(sizes), reference_runs=reference_runs,
                   reference_passes=ref_passes, on_progress=on_progress,
                   totals=_run_passes_in_all(groups, epochs, ref_passes, reference_runs))
    counts = {g.group_id: flop_count(exp, g, data) for g in groups}
    executor = LocalExecutor(Path(), device, workers)
    executor.data = data
    processes = executor.processes(len(groups))
    worker_memory = reference_memory = None
    if processes > 1:
        worker_memory = time_in_workers(bench, groups, executor, counts)
        reference_memory = time_reference_in_workers(bench, groups, counts, processes)
    else:
        for group in groups:
            _time_group(bench, group, counts[group.group_id])
    check = curves_check(exp, groups, data, bench.host, reference_runs, bench.batched.curves,
                         bench.reference.curves)
    graphs = _cuda_graphs(exp, groups, bench, check)
    return {
        "experiment": exp.name,
        "scale": scale,
        "device": device.type,
        "dtype": exp.training.dtype,
        "precision": exp.training.precision,  # the reference loop is always fp32
        "threads": torch.get_num_threads(),
        # the processes of each side (1: this one, with `threads` threads; more: that many
        # workers of one thread each, and the largest one's peak resident memory)
        "batched_workers": processes,
        "reference_workers": processes,
        "worker_peak_memory_bytes": worker_memory,
        "reference_worker_peak_memory_bytes": reference_memory,
        "grid": _grid(exp, groups, bench.batched, len(sizes), data),
        "reference_subset": reference_subset(bench.batched, bench.reference, ref_passes, epochs),
        "ratio": bench.batched.run_passes_per_s / bench.reference.run_passes_per_s,
        "cuda_graphs": graphs,
        "results": [phase.row(peak["flops_per_s"], epochs) for phase in bench.phases],
        "peak": peak,
        "memory_kind": bench.memory.kind,
        "flops_per_run": {g.method: asdict(counts[g.group_id]) if counts[g.group_id] else None
                          for g in groups},
        "check": check,
        "not_timed": not_timed,
    }


def _reference_passes_per_run(scale: str, reference_passes: int | None, epochs: int) -> int:
    """The passes of each run the reference trains: those asked for, else the scale's
    default, and never more than the experiment's."""
    if reference_passes is None:
        reference_passes = REFERENCE_PASSES.get(scale)
    return min(reference_passes or epochs, epochs)


def _run_passes_in_all(groups: list[Group], epochs: int, ref_passes: int,
                       reference_runs: int | None) -> dict[str, int]:
    """What each implementation's progress counts up to (the eager batched loop trains the
    reference's passes)."""
    return {"batched": sum(g.size for g in groups) * epochs,
            "eager": sum(g.size for g in groups) * ref_passes,
            "reference": sum(min(reference_runs or g.size, g.size) for g in groups)
            * ref_passes}


@dataclass
class _Bench:
    """What timing each group shares: the experiment and its data, how a phase is measured,
    how much of the grid the reference trains, and the phases the timings add up in."""

    exp: Experiment
    data: TensorDataset
    device: torch.device
    memory: PeakMemory
    samples_per_pass: int
    reference_runs: int | None
    reference_passes: int
    on_progress: Callable[[str, int, int], None]
    totals: dict[str, int]
    batched: Phase = field(default_factory=lambda: Phase("batched"))
    reference: Phase = field(default_factory=lambda: Phase("reference"))
    eager: Phase | None = field(init=False)
    host: TensorDataset = field(init=False)
    eager_exp: Experiment = field(init=False)

    def __post_init__(self) -> None:
        # On a GPU the batched loop is also timed with eager kernel launches (no CUDA graphs).
        self.eager = Phase("batched, no CUDA graphs") if self.device.type == "cuda" else None
        self.host = self.data.to(torch.device("cpu"))  # the reference's DataLoader reads it
        # The eager batched loop gets the reference's passes: its speed is per run-pass too.
        self.eager_exp = self.exp.with_epochs(self.reference_passes)

    @property
    def phases(self) -> list[Phase]:
        return ([self.batched, self.reference] if self.eager is None
                else [self.batched, self.eager, self.reference])

    def time(self, phase: Phase, runs: list[RunSpec], count: FlopCount | None,
             work: Callable[[], list[RunCurve]],
             passes_computed: Callable[[list[RunCurve]], list[int]]) -> None:
        curves, timing = _timed(self.device, self.memory, work)
        phase.add(runs, curves, passes_computed(curves), count, self.samples_per_pass)
        phase.took(timing)

    def chosen(self, group: Group) -> list[RunSpec]:
        """The runs of `group` the reference loop trains: its first `reference_runs`."""
        return list(group.runs[: self.reference_runs or group.size])

    def progress(self, what: str, size: int) -> Callable[[int], None]:
        """A per-pass callback that reports `size` run-passes of `what` each pass."""
        return lambda epoch: self.on_progress(what, size, self.totals[what])


def _time_group(bench: _Bench, group: Group, count: FlopCount | None) -> None:
    """One group batched, then the same loop without CUDA graphs on a GPU, then its runs one
    by one in the reference loop, all in this process."""
    exp, data = bench.exp, bench.data
    bench.time(bench.batched, list(group.runs), count,
               lambda: train_group(exp, group, data, bench.progress("batched", group.size)),
               batched_passes)
    if bench.eager is not None:  # the same batched loop without CUDA graphs: what graphs buy
        bench.time(bench.eager, list(group.runs), count,
                   lambda: train_group(bench.eager_exp, group, data,
                                       bench.progress("eager", group.size), cuda_graphs=False),
                   batched_passes)
    chosen = bench.chosen(group)
    bench.time(bench.reference, chosen, count,
               lambda: [train_run(exp, run, data, bench.reference_passes,
                                  bench.progress("reference", 1), bench.host)
                        for run in chosen],
               _passes_trained)


def _grid(exp: Experiment, groups: list[Group], batched: Phase, steps_per_pass: int,
          data: TensorDataset) -> dict:
    return {"runs": batched.runs, "groups": [g.size for g in groups],
            "passes": exp.training.epochs, "steps_per_pass": steps_per_pass,
            "batch_size": exp.training.batch_size, "train_size": len(data.train_x),
            "test_size": len(data.test_x)}


def _cuda_graphs(exp: Experiment, groups: list[Group], bench: _Bench, check: dict) -> dict | None:
    """What CUDA graphs buy over the eager batched loop, and whether their curves agree; None
    off a GPU."""
    if bench.eager is None:
        return None
    # CUDA graphs replay the eager kernels: the timed curves alike
    clean = clean_runs(groups)
    return {"speedup": bench.batched.run_passes_per_s / bench.eager.run_passes_per_s,
            "check": compare_curves(exp, bench.batched.curves, {
                run_id: curve for run_id, curve in bench.eager.curves.items()
                if run_id in clean}) if clean else check}


def reference_subset(batched: Phase, reference: Phase, passes: int, epochs: int) -> dict:
    """What the reference ran of the grid, and what the whole would have taken it."""
    subset = reference.runs < batched.runs or passes < epochs
    return {"runs": reference.runs, "passes_per_run": passes, "extrapolated": subset,
            "note": (f"the reference ran {reference.runs} of {batched.runs} runs for "
                     f"{passes} of {epochs} passes; its speed is per run-pass, so the full "
                     f"grid would take it about "
                     f"{batched.runs * epochs / reference.run_passes_per_s:.0f} s") if subset
            else "the reference ran the whole grid"}
