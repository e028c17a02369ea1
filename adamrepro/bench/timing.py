"""Time the batched runner and the straightforward loop on the same grid, count their FLOPs.

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
ratio compares (the cost of a pass does not change along training).

A speed-up counts only on the same curves (`curves_check`). The runs that draw no noise are
trained again both ways in float64 for two passes of a few minibatches, where any real
difference stands out of the rounding by orders of magnitude; that decides. The timed curves
are compared too, at the passes the reference ran, and decide as well for a convex model
(`CONVEX`: logistic regression), whose float32 rounding differences stay small along a whole
run. A network amplifies them step by step (Fig. 3's CNN: 2.3e-4 after one pass, 0.24 after
four), so for it the float32 difference is reported, not judged.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on one run of the group's
model, for any model: the matmuls and convolutions that autograd really runs in one training
step (forward and backward of the objective plus penalty at a full minibatch), and in one
evaluation batch; both scaled per example to a pass:
    training pass:  a step's count per example x the examples of the pass
    evaluation:     forward only, over the whole training and test sets, once per pass and
                    once before the first
Elementwise work (activations, loss, optimizer) is not counted: a few percent. For the
linear models this equals the formula 2·B·in·out per layer forward, and backward the weight
gradient of every layer plus the input gradient of every layer but the first (the data
needs no gradient). A model whose step cannot be counted is "not counted"; the bench runs on.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from adamrepro.bench.reference import train_run
from adamrepro.config import Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.errors import UserError
from adamrepro.metrics import CLASSIFIER
from adamrepro.models import MODELS
from adamrepro.runner.executors import LocalExecutor
from adamrepro.runner.group import RunCurve, build_model, step_sizes, train_group
from adamrepro.runner.plan import Group, RunSpec, plan

# Every pass of every run at the small scales; at paper scale the reference (the slow thing
# being measured) would take far longer than the batched runs, so it gets the first passes.
REFERENCE_PASSES = {"smoke": None, "quick": None, "paper": 2}

# Float32 on the curves: the two compute the same arithmetic in different orders, and over
# thousands of steps the rounding differences grow to ~1e-5 relative (measured on
# logreg_mnist quick: 1.3e-5). A real difference is far larger: after 2 passes, another
# minibatch order moves the losses by >= 4e-4 relative, a 1% different lr by >= 8e-4.
CHECK_RTOL = {"float32": 1e-4, "float64": 1e-9}
CHECK_ATOL = {"float32": 1e-6, "float64": 1e-12}
# The losses; accuracy may flip by one sample in float32. The reference loop is a classifier's.
CHECK_METRICS = [c.name for c in CLASSIFIER.columns() if not c.percent]
# The float64 check: every compared run of the grid, batched in its group and alone in the
# reference loop, on the first few minibatches for two passes (the second reshuffles them,
# and each pass ends in the evaluation on both splits). A network amplifies rounding
# differences, but over 8 steps from float64's 1e-16 they stay far below CHECK_RTOL
# ["float64"] (tests/test_cnn.py measures ~1e-14 after 2 passes of 2 steps), while a real
# difference (another minibatch, mask or step size) is >= 1e-4 from the first step.
IDENTITY_STEPS = 4  # minibatches per pass
IDENTITY_PASSES = 2


# ---------------------------------------------------------------------------------------------
# FLOPs


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one run (see the module docstring for what is counted)."""

    train_step: int
    train_pass: int
    eval_pass: int  # once per pass, and once more before the first

    def run(self, passes: int) -> int:
        return passes * (self.train_pass + self.eval_pass) + self.eval_pass


def _counted(work: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        work()
    return int(counter.get_total_flops())


def flop_count(exp: Experiment, group: Group, data: TensorDataset) -> FlopCount | None:
    """The FLOPs of one run of `group`, counted on the CPU; None if they cannot be counted."""
    single = Group(group.method, group.optimizer, group.model, group.runs[:1], "0")
    sizes = step_sizes(exp.training, len(data.train_x))
    try:
        model = build_model(exp, single, data, torch.device("cpu"))
        # the data may be on a GPU; the model built here is on the CPU
        batch = {k: v[: max(sizes)].unsqueeze(0).cpu() for k, v in data.train.items()}
        step = _counted(lambda: (model.objective(batch) + model.penalty()).sum().backward())
        chunk = min(exp.training.eval_batch_size, len(data.train_x))
        evaluation = {k: v[:chunk].unsqueeze(0).cpu() for k, v in data.train.items()}
        with torch.no_grad():
            forward = _counted(lambda: model.evaluate(evaluation, None))
    except Exception:  # any model at all: a failure to count must never stop the bench
        return None
    per_example = step / max(sizes)
    n_eval = len(data.train_x) + len(data.test_x)
    return FlopCount(round(per_example * sum(sizes) / len(sizes)),
                     round(per_example * sum(sizes)), round(forward / chunk * n_eval))


def experiment_flops(exp: Experiment, data: TensorDataset) -> dict | None:
    """FLOPs of a whole experiment (every run, every pass, evaluations included), per method
    and in total; `flops_sentence` puts it in words for the README. None: not counted."""
    per_method, counts = {}, {}
    for group in plan(exp):
        key = json.dumps(group.model, sort_keys=True)
        if key not in counts:  # one count per model; groups differ only in hyperparameters
            counts[key] = flop_count(exp, group, data)
        count = counts[key]
        if count is None:
            return None
        entry = per_method.setdefault(group.method, {"runs": 0, "flops": 0, **asdict(count)})
        entry["runs"] += group.size
        entry["flops"] += group.size * count.run(exp.training.epochs)
    return {
        "experiment": exp.name,
        "passes": exp.training.epochs,
        "steps_per_pass": len(step_sizes(exp.training, len(data.train_x))),
        "runs": sum(m["runs"] for m in per_method.values()),
        "total_flops": sum(m["flops"] for m in per_method.values()),
        "methods": per_method,
    }


def si(value: float, unit: str) -> str:
    """1.2e12, 'FLOP' -> '1.20 TFLOP'."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def flops_sentence(flops: dict | None) -> str:
    """One line for the README, e.g. for logreg_mnist at paper scale."""
    if flops is None:
        return "FLOPs: not counted (FlopCounterMode could not count this model's step)"
    first = next(iter(flops["methods"].values()))
    return (f"{flops['experiment']}: {flops['runs']} runs x {flops['passes']} passes x "
            f"{flops['steps_per_pass']} steps; {si(first['train_step'], 'FLOP')} per "
            f"training step and {si(first['eval_pass'], 'FLOP')} per evaluation of one run; "
            f"{si(flops['total_flops'], 'FLOP')} in all (matmuls and convolutions, "
            f"evaluations included)")


# ---------------------------------------------------------------------------------------------
# The machine: peak matmul speed, memory, a description


def measure_peak_flops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> dict:
    """Best-of-`repeats` speed of one large square matmul in `dtype`: the ceiling that
    'fraction of peak' divides by (measured, not the datasheet's)."""
    size = 8192 if device.type == "cuda" else 2048
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = math.inf
    for _ in range(repeats + 1):  # the first is a warm-up
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return {"flops_per_s": 2 * size**3 / best, "matmul": f"{size}x{size} {dtype}".replace(
        "torch.", "")}


def hardware_name(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' or 'AMD EPYC, 2 cores, 2 threads in use'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} threads in use"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of one phase: CUDA's max_memory_allocated on a GPU; on a CPU the process's
    peak resident set (getrusage), reset before the phase where Linux allows it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_memory_allocated" if device.type == "cuda" else "peak_rss"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # "5" resets the peak RSS (Linux >= 4.0); elsewhere the peak is since start
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.kind = "peak_rss_since_start"

    def read(self) -> int:
        """The peak since `reset` (bytes); right after `reset`, the level it starts from."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB on Linux
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)


# ---------------------------------------------------------------------------------------------
# The bench


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

    def row(self, peak_flops: float) -> dict:
        flops_per_s = self.flops / self.seconds if self.seconds else math.nan
        return {
            "implementation": self.implementation,
            "runs": self.runs,
            "run_passes": self.run_passes,
            "seconds": self.seconds,
            "run_passes_per_s": self.run_passes / self.seconds if self.seconds else math.nan,
            "samples_per_s": self.samples / self.seconds if self.seconds else math.nan,
            "flops": self.flops,
            "flops_per_s": flops_per_s,
            "fraction_of_peak": flops_per_s / peak_flops,
            "peak_memory_bytes": self.peak_memory_bytes,
            "added_memory_bytes": self.added_memory_bytes,
        }


def children_peak_rss() -> int:
    """The largest peak resident set of this process's finished children (bytes)."""
    scale = 1 if platform.system() == "Darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale)


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


def draws_noise(group: Group) -> bool:
    """Whether the group's model draws noise in training (its declaration: dropout, a VAE's
    sampling)."""
    cls = MODELS[group.model["name"]]
    return cls.stochastic(cls.options(dict(group.model), "model"))


def compare_curves(exp: Experiment, batched: dict[str, RunCurve],
                   reference: dict[str, RunCurve]) -> dict:
    """The reference's curves against the batched ones at the passes the reference ran."""
    dtype = exp.training.dtype
    rtol, atol = CHECK_RTOL[dtype], CHECK_ATOL[dtype]
    worst, worst_where, points = 0.0, "", 0
    mismatches = []
    for run_id, ref in reference.items():
        rows = batched[run_id].rows
        for ref_row in ref.rows:
            if ref_row["epoch"] >= len(rows):
                mismatches.append(f"{run_id}: the batched run stopped before pass "
                                  f"{ref_row['epoch']}")
                break
            for metric in CHECK_METRICS:
                a, b = rows[ref_row["epoch"]][metric], ref_row[metric]
                if math.isnan(a) and math.isnan(b):
                    continue
                points += 1
                gap = abs(a - b) / max(abs(b), 1e-300)
                if gap > worst:
                    worst, worst_where = gap, f"{run_id} pass {ref_row['epoch']} {metric}"
                if not (abs(a - b) <= atol + rtol * abs(b)):
                    mismatches.append(f"{run_id} pass {ref_row['epoch']} {metric}: "
                                      f"batched {a!r} vs reference {b!r}")
    return {"passed": not mismatches, "rtol": rtol, "atol": atol, "compared_values": points,
            "max_relative_difference": worst, "where": worst_where,
            "mismatches": mismatches[:10]}


def float64_prefix(exp: Experiment, data: TensorDataset) -> tuple[Experiment, TensorDataset]:
    """`exp` in float64 for IDENTITY_PASSES passes, and the first IDENTITY_STEPS minibatches
    of its training set (and as many test examples): the float64 check's workload."""
    training = exp.training.model_copy(update={
        "dtype": "float64", "precision": "fp32", "epochs": IDENTITY_PASSES})
    size = IDENTITY_STEPS * exp.training.batch_size
    small = TensorDataset({k: v[:size] for k, v in data.train.items()},
                          {k: v[:size] for k, v in data.test.items()}, data.num_classes)
    return exp.model_copy(update={"training": training}), small


def identity_check(exp: Experiment, groups: list[Group], data: TensorDataset,
                   host: TensorDataset, reference_runs: int | None) -> dict:
    """Batched against reference in float64 on a short prefix (IDENTITY_STEPS), for the
    first `reference_runs` runs of every group in `groups` (those that draw no noise): what
    decides whether the two compute the same training."""
    exp64, small = float64_prefix(exp, data)
    host_small = float64_prefix(exp, host)[1]
    batched, reference = {}, {}
    for group in groups:
        curves = train_group(exp64, group, small)
        batched.update({run.run_id: c for run, c in zip(group.runs, curves, strict=True)})
        for run in group.runs[: reference_runs or group.size]:
            reference[run.run_id] = train_run(exp64, run, small, IDENTITY_PASSES,
                                              host_data=host_small)
    return {**compare_curves(exp64, batched, reference), "runs": len(reference),
            "passes": IDENTITY_PASSES, "steps_per_pass": len(step_sizes(
                exp64.training, len(small.train_x)))}


def curves_check(exp: Experiment, groups: list[Group], data: TensorDataset,
                 host: TensorDataset, clean: set[str], reference_runs: int | None,
                 batched: Phase, reference: Phase) -> dict:
    """Whether the batched runner and the reference loop train the same runs (those in
    `clean`, which draw no noise): the float64 check on a short prefix always; the timed
    float32 curves too where the model is convex. A network's float32 curves drift apart by
    amplified rounding (README, "Speed"), so for it their difference is reported, not
    judged."""
    clean_groups = [g for g in groups if g.runs[0].run_id in clean]
    float64 = identity_check(exp, clean_groups, data, host, reference_runs)
    timed = compare_curves(exp, batched.curves, {
        run_id: curve for run_id, curve in reference.curves.items() if run_id in clean})
    convex = all(MODELS[g.model["name"]].CONVEX for g in clean_groups)
    timed.update(dtype=exp.training.dtype, judged=convex)
    return {"passed": float64["passed"] and (timed["passed"] or not convex),
            "float64_prefix": float64, "timed_curves": timed}


def run_bench(exp: Experiment, scale: str, data: TensorDataset, device: torch.device,
              reference_runs: int | None = None, reference_passes: int | None = None,
              on_progress: Callable[[str, int, int], None] = lambda what, n, total: None,
              workers: int | str = 1) -> dict:
    """Time both implementations on every group of `exp` (already at `scale`, data already on
    `device`); `on_progress(implementation, run_passes_done, run_passes_in_all)` reports as
    they go."""
    # An optimizer that is not batchable already trains one run at a time, as the reference
    # loop would: there is nothing to compare, so only batchable methods are timed.
    every = plan(exp)
    groups = [g for g in every if g.resolved.capabilities.batchable]
    not_timed = sorted({g.method for g in every} - {g.method for g in groups})
    if not groups:
        raise UserError(f"{exp.name}: no method is batchable ({', '.join(not_timed)}); the "
                        f"bench compares batched training with the one-run-at-a-time loop")
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
    # Batched and sequential runs cannot draw the same noise (dropout masks, a VAE's ε): only
    # the runs of the methods that draw none are compared (Fig. 3 has both kinds).
    clean = {run.run_id for g in groups if not draws_noise(g) for run in g.runs}
    all_noisy = not clean
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
    if processes > 1:  # every group at once in the workers, timed together
        reported: dict[str, int] = {}

        def worker_pass(group: Group, epoch: int) -> None:
            on_progress("batched", group.size * (epoch - reported.get(group.group_id, 0)),
                        totals["batched"])
            reported[group.group_id] = epoch

        finished, seconds, peak_bytes = _timed(device, memory, lambda: list(
            executor.run(exp, groups, worker_pass)))
        for group, curves in finished:
            batched.add(list(group.runs), curves, 0.0, batched_passes(curves),
                        counts[group.group_id], per_pass, peak_bytes)
        batched.seconds = seconds
        worker_memory = children_peak_rss()
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
    rows = [phase.row(peak["flops_per_s"]) for phase in phases]
    for row in rows:  # whole runs of `epochs` passes per second, at the measured pass rate
        row["runs_per_s"] = row["run_passes_per_s"] / epochs
    ratio = rows[0]["run_passes_per_s"] / rows[-1]["run_passes_per_s"]
    if all_noisy:
        check = {"passed": None, "skipped": "the model draws noise in training (dropout "
                 "masks, a VAE's ε): batched and sequential runs cannot draw the same noise, "
                 "so their curves differ by it"}
    else:
        check = curves_check(exp, groups, data, host, clean, reference_runs, batched,
                             reference)
        if len(clean) < batched.runs:
            check["note"] = (f"the {batched.runs - len(clean)} runs that draw noise "
                             f"(dropout) are not compared (their noise differs)")
    subset = reference.runs < batched.runs or ref_passes < epochs
    graphs = None
    if eager is not None:
        graphs = {"speedup": rows[0]["run_passes_per_s"] / rows[1]["run_passes_per_s"],
                  "check": check if all_noisy else compare_curves(exp, batched.curves, {
                      run_id: curve for run_id, curve in eager.curves.items()
                      if run_id in clean})}
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
        "reference_subset": {
            "runs": reference.runs, "passes_per_run": ref_passes, "extrapolated": subset,
            "note": (f"the reference ran {reference.runs} of {batched.runs} runs for "
                     f"{ref_passes} of {epochs} passes; its speed is per run-pass, so the "
                     f"full grid would take it about "
                     f"{grid_passes / rows[-1]['run_passes_per_s']:.0f} s") if subset
                    else "the reference ran the whole grid",
        },
        "ratio": ratio,
        "cuda_graphs": graphs,
        "results": rows,
        "peak": peak,
        "memory_kind": memory.kind,
        "flops_per_run": {g.method: asdict(counts[g.group_id]) if counts[g.group_id] else None
                          for g in groups},
        "check": check,
        "not_timed": not_timed,
    }
