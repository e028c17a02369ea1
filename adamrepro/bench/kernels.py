"""Time the kernel switches of `training` on one batched group (scripts/bench_kernels.py).

Every variant trains the same group (one method's first group at the chosen scale) on the
same data from the same initial weights, minibatch order and dropout draws, with one set
of switches (`VARIANTS`; for `fused_objective` a model option, `MODEL_VARIANTS`) on and the
others off; the first, `plain`, has every switch off
(CUDA graphs on a GPU, as `adamrepro run` trains; on a CPU `run` also takes channels_last
for a CNN, `training.channels_last: auto`). Each variant first takes `warmup` steps, timed
apart: they hold torch.compile's compilation, the CUDA graph's capture and the allocator's
first requests. Then, `repeats` times in turn, every variant takes `steps` steps, timed
alone (after `torch.cuda.synchronize()` on a GPU, with CUDA events), so that a change in
the machine's load hits every variant alike; a variant's step time is the median over its
blocks.

Every step's minibatch loss of every run is kept on the device and compared with the
plain loop's at the end: a switch that changes more than float rounding would show. How far
rounding alone moves the losses depends on the training: Adam's first steps move every
weight by about ±lr whatever the size of its gradient, so a gradient that rounding moves
across zero moves its weight by a whole step, and in float32 a CNN's losses drift apart by
1e-4 within ten steps. So the check is calibrated on this very group: a control
(`nudged`), the plain loop with every weight moved one float step (one ulp) up or down
before every step, shows what rounding differences at every step grow to in each run; a
variant passes when each run stays within max(CHECK_RTOL, NUDGE_FACTOR x that run's
control difference so far).

That control can fall short: a switch that sums in another order (NHWC convolutions, a fused
update) rounds each step's gradients by more than one float step of the weights does, and in
some groups its float32 losses then leave the allowance (seen on 2026-12-03: channels_last on
Fig. 3's dropout group, compile_optimizer on Fig. 2a's group, 4.6-4.9 times it). So every
variant is also trained in float64 from the same weights and masks for `FLOAT64_STEPS`
steps, with the plain loop beside it, where rounding stays near 1e-16 and any real
difference (another mask, step size or gradient) is >= 1e-4 from the first step: that
decides whether the variant computes the same arithmetic. The verdict (`verdict`):
`same` (float64 and float32 agree), `float32 only` (the same arithmetic in float64, its
float32 losses beyond the control: rounding the control underestimates, or a kernel bug of
float32 alone, such as the inductor one in compiling.py, which moved the losses 5% at the
second step; the size tells), `DIFFERENT` (float64 differs); for the precision variants
(tf32, bf16: what a faster `training.precision` buys per step), `other precision` (in
float64 the plain loop, as `in_float64` trains every precision; their float32 losses
differ by design, and `max_relative_difference` says how far over these steps).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from adamrepro.bench.machine import hardware_name, synchronize
from adamrepro.bench.same_curves import CHECK_ATOL, CHECK_RTOL, in_float64
from adamrepro.config import KERNEL_SWITCHES, Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.errors import UserError
from adamrepro.models import MODELS
from adamrepro.runner.group import GraphedStep, build_model, minibatch_training, step_sizes
from adamrepro.runner.plan import Group, config_digest, plan

# name -> the switches it turns on, every other one off (the plain loop first);
# "no_cuda_graphs" is the plain loop with CUDA graphs off (GPU only), to show what the graphs
# already buy.
# Every variant but the precision ones computes in full float32 (`precision: fp32`), so the
# plain loop is float32 whatever the config says.
SWITCHES_OFF = {**dict.fromkeys(KERNEL_SWITCHES, False), "precision": "fp32"}
VARIANTS: dict[str, dict] = {
    "plain": {},
    "no_cuda_graphs": {},
    "compile_optimizer": {"compile_optimizer": True},
    "compile_model": {"compile_model": True},
    "channels_last": {"channels_last": True},
    "all_switches": {"compile_optimizer": True, "compile_model": True,
                     "channels_last": True},
    # What a faster `training.precision` buys per step, beside the switches (a GPU's TF32 or
    # bf16 tensor cores); its float32 losses differ by the coarser rounding, which
    # scripts/measure_precision.sh judges over whole runs against the seed spread.
    "tf32": {"precision": "tf32"},
    "bf16": {"precision": "bf16"},
    # A model's implementation option where its `auto` leaves it off (logreg's fused
    # objective on a GPU; a CPU's plain loop already takes it): MODEL_VARIANTS says which.
    "fused_objective": {},
}
# name -> the model options the variant sets over the group's (the plain loop keeps the
# config's, `auto` included)
MODEL_VARIANTS: dict[str, dict] = {"fused_objective": {"fused_objective": True}}
# The variants that round more coarsely by design: their verdict is `other precision`
PRECISION_VARIANTS = frozenset(name for name, update in VARIANTS.items() if "precision" in update)


def applicable(names: list[str], group: Group, device: torch.device) -> list[str]:
    """The variants that change something for this group on this device."""
    convolutional = MODELS[group.model["name"]].CONVOLUTIONAL
    keep = []
    for name in names:
        if name == "no_cuda_graphs" and device.type != "cuda":
            continue  # no graphs off a GPU: the same as the plain loop
        if name == "channels_last" and not convolutional:
            continue
        if name == "tf32" and device.type != "cuda":
            continue  # no TF32 units: the same float32 arithmetic as the plain loop
        if name == "fused_objective" and not _fuses_only_in_variant(group, device):
            continue  # a CPU's `auto` fuses already; a model without it has nothing to fuse
        keep.append(name)
    return keep


# The control moves each weight by a whole float step before every step, meant as more than
# a switch's rounding moves one (a reordered sum's rounding of the gradients can be more);
# 10x its difference still leaves a real difference (another mask, lr or
# minibatch: >1e-3 from the first steps, where the control's differences are <1e-6) far
# outside. Measured on the CPU on 2026-12-01: no switch used more than 0.29 of this
# allowance; on 2026-12-03 two used 4.6 and 4.9 (README, "Kernels"), which the float64
# check below tells from a difference.
NUDGE_FACTOR = 10.0
# The float64 check's steps: enough to cross a pass boundary at smoke scale and to let a wrong
# gradient show in the losses (it moves them from the second step), few enough to cost little
# beside the timed float32 steps.
FLOAT64_STEPS = 8


def _fuses_only_in_variant(group: Group, device: torch.device) -> bool:
    """Whether the `fused_objective` variant fuses the group's model on `device` where the
    plain loop (the config's options, `auto` included) does not."""
    cls = MODELS[group.model["name"]]
    fuses_on = getattr(cls, "fuses_on", None)
    if fuses_on is None:
        return False
    variant = variant_group(group, "fused_objective")
    return (fuses_on(cls.options(dict(variant.model), "model"), device)
            and not fuses_on(cls.options(dict(group.model), "model"), device))


def variant_group(group: Group, name: str) -> Group:
    """`group` with the variant's model options (MODEL_VARIANTS) over its own: the same
    runs, identity and noise, since such options change how a model computes, not what."""
    update = MODEL_VARIANTS.get(name)
    return replace(group, model={**group.model, **update}) if update else group


def variant_experiment(exp: Experiment, name: str) -> Experiment:
    """`exp` with the variant's switches on and the others off (channels_last does nothing
    without convolutions, so `all_switches` sets it everywhere)."""
    return exp.model_copy(update={"training": exp.training.model_copy(
        update={**SWITCHES_OFF, **VARIANTS[name]})})


@dataclass
class Stepper:
    """One variant's copy of the group, taking steps through as many passes as it needs;
    every step's (G,) minibatch loss is kept on the device."""

    exp: Experiment
    group: Group
    data: TensorDataset
    cuda_graphs: bool
    nudged: bool = False  # the rounding control: every weight one float step off, every step
    losses: list[Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        device = self.data.train_x.device
        self.model = build_model(self.exp, self.group, self.data, device)
        self.model.train()
        self.signs = torch.Generator(device).manual_seed(0) if self.nudged else None
        self.sizes = step_sizes(self.exp.training, len(self.data.train_x))
        # log_every=1: the pass writes every step's loss to a device buffer, no host sync
        _, self.train_pass = minibatch_training(self.exp, self.group, self.data, self.model,
                                                self.cuda_graphs, log_every=1)
        self.index: int | None = None  # steps taken in the current pass; None: no pass yet

    def run(self, steps: int) -> None:
        step = self.train_pass.step
        # the config's float32 math (precision.py), as train_group sets it around its passes
        with step.precision.training():
            self._run(steps)

    def _run(self, steps: int) -> None:
        step = self.train_pass.step
        for _ in range(steps):
            if self.index is None or self.index == len(self.sizes):
                self._keep_losses()
                step.new_pass(self.train_pass.order.new_pass())
                self.index = 0
            if self.signs is not None:
                self._nudge()
            self.train_pass.run_step(self.sizes[self.index])
            self.index += 1

    @torch.no_grad()
    def _nudge(self) -> None:
        """Move every weight one float step up or down (a random sign per element)."""
        for p in self.model.parameters():
            up = torch.randint(0, 2, p.shape, generator=self.signs, device=p.device) == 1
            p.copy_(torch.nextafter(p, torch.where(up, math.inf, -math.inf).to(p.dtype)))

    def _keep_losses(self) -> None:
        buffer = self.train_pass.step.step_losses
        if self.index and buffer is not None:
            self.losses.append(buffer[: self.index].clone())

    def all_losses(self) -> Tensor:
        """(steps taken, G) minibatch losses, float64, on the host."""
        self._keep_losses()
        self.index = None  # the next step starts a new pass
        return torch.cat(self.losses).cpu()


def timed(device: torch.device, work: Callable[[], None]) -> float:
    """Seconds of `work`: CUDA events on a GPU (read after a synchronize), else the clock."""
    synchronize(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    begin = time.perf_counter()
    work()
    return time.perf_counter() - begin


def relative_gap(losses: Tensor, plain: Tensor) -> Tensor:
    """(steps, G) |losses − plain| / |plain|; 0 where both are not finite, inf where
    only one is."""
    gap = (losses - plain).abs() / plain.abs().clamp_min(1e-300)
    finite = torch.isfinite(losses), torch.isfinite(plain)
    gap = torch.where(finite[0] & finite[1], gap, torch.inf)
    return torch.where(~finite[0] & ~finite[1], 0.0, gap)


def compare(losses: Tensor, plain: Tensor, control: Tensor, dtype: str) -> dict:
    """A variant's (steps, G) step losses against the plain loop's: the largest relative
    difference, and whether every run's every step lies within max(CHECK_RTOL,
    NUDGE_FACTOR x the largest relative difference of that run in the rounding `control` up
    to that step), + CHECK_ATOL. Per run: in a grid, the largest step size is often the one
    whose rounding grows (README, Kernels: in Fig. 2a's group the run at lr 3e-3
    drifts about a thousand times as far in 100 steps as the one at 1e-4)."""
    rtol, atol = CHECK_RTOL[dtype], CHECK_ATOL[dtype]
    gap = relative_gap(losses, plain)
    floor = torch.cummax(relative_gap(control, plain), 0).values
    allowed = torch.clamp(NUDGE_FACTOR * floor, min=rtol)
    # each difference as a fraction of what it is allowed: <= 1 passes
    used = (losses - plain).abs() / (atol + allowed * plain.abs())
    used = torch.where(gap == 0, 0.0, torch.nan_to_num(used, nan=torch.inf))
    return {"max_relative_difference": float(gap.max()) if gap.numel() else 0.0,
            "rounding_floor": float(floor[-1].max()) if floor.numel() else 0.0,
            "of_allowed": float(used.max()) if used.numel() else 0.0,
            "same_losses": bool((used <= 1).all()), "rtol": rtol, "atol": atol}


def pick_group(exp: Experiment, method: str | None) -> Group:
    """The first group of `method` (default: `adam` if the experiment has it, else its first
    batchable method)."""
    groups = [g for g in plan(exp) if g.resolved.capabilities.batchable]
    if not groups:
        raise UserError(f"{exp.name}: no batchable method to time")
    if method is None:
        names = [g.method for g in groups]
        method = "adam" if "adam" in names else names[0]
    for group in groups:
        if group.method == method:
            return group
    raise UserError(f"{exp.name}: no batchable method {method!r}; choose one of "
                    f"{', '.join(dict.fromkeys(g.method for g in groups))}")


def bench_kernels(exp: Experiment, data: TensorDataset, device: torch.device,
                  names: list[str], method: str | None = None, steps: int = 50,
                  warmup: int = 5, repeats: int = 3,
                  on_variant: Callable[[str], None] = lambda name: None) -> dict:
    """Time every variant in `names` (those that apply) on one group of `exp` (already at
    its scale, data on `device`); returns the rows and the machine."""
    group = pick_group(exp, method)
    # the CUDA graph is captured after its eager warm-up steps: all of it before the timing
    warmup = max(warmup, GraphedStep.WARMUP + 1)
    names = applicable(["plain", *(n for n in names if n != "plain")], group, device)
    load_before = os.getloadavg()[0]
    steppers, warmup_seconds, failed = {}, {}, {}
    for name in names:
        on_variant(name)
        try:
            stepper = Stepper(variant_experiment(exp, name), variant_group(group, name),
                              data, cuda_graphs=name != "no_cuda_graphs")
            warmup_seconds[name] = timed(device, lambda s=stepper: s.run(warmup))
        except Exception as err:  # a switch that fails here: say so and time the others
            if name == "plain":
                raise
            failed[name] = f"{type(err).__name__}: {err}"[:500]
            continue
        steppers[name] = stepper
    names = [name for name in names if name in steppers]
    blocks: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            blocks[name].append(timed(device, lambda s=steppers[name]: s.run(steps)))
    losses = {name: stepper.all_losses() for name, stepper in steppers.items()}
    on_variant("rounding control")
    control = Stepper(variant_experiment(exp, "plain"), group, data, cuda_graphs=True,
                      nudged=True)
    control.run(warmup + repeats * steps)
    control_losses = control.all_losses()
    on_variant("float64 check")
    exact = float64_check({name: variant_experiment(exp, name) for name in names}, group,
                          data)
    plain_ms = 1e3 * _median(blocks["plain"]) / steps
    rows = []
    for name in names:
        step_ms = 1e3 * _median(blocks[name]) / steps
        rows.append({
            "variant": name, "warmup_seconds": warmup_seconds[name], "step_ms": step_ms,
            "step_ms_min": 1e3 * min(blocks[name]) / steps,
            "step_ms_max": 1e3 * max(blocks[name]) / steps,
            "speedup": plain_ms / step_ms,
            **compare(losses[name], losses["plain"], control_losses, exp.training.dtype),
            **exact[name]})
        rows[-1]["verdict"] = verdict(rows[-1])
    return {
        "experiment": exp.name, "method": group.method, "group_size": group.size,
        # which runs were timed, and of which config: a speedup traced to its runs
        "seeds": ";".join(map(str, group.seeds)), "config_digest": config_digest(exp),
        "device": device.type, "hardware": hardware_name(device),
        "torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "dtype": exp.training.dtype, "batch_size": exp.training.batch_size,
        "train_size": len(data.train_x), "steps": steps, "warmup_steps": warmup,
        "repeats": repeats, "float64_steps": FLOAT64_STEPS, "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0], "cpu_count": os.cpu_count(),
        "rows": rows, "failed": failed,
    }


def float64_check(variants: dict[str, Experiment], group: Group,
                  data: TensorDataset) -> dict[str, dict]:
    """Each variant's (name -> its experiment) first FLOAT64_STEPS step losses in float64
    against those of `plain`, one of them (the same weights, minibatches and masks: both draw
    them in float64)."""
    losses, checks = {}, {}
    rtol, atol = CHECK_RTOL["float64"], CHECK_ATOL["float64"]
    for name, exp in variants.items():
        try:
            stepper = Stepper(in_float64(exp), variant_group(group, name), data,
                              cuda_graphs=name != "no_cuda_graphs")
            stepper.run(FLOAT64_STEPS)
        except Exception as err:  # a switch that cannot train in float64: say so, go on
            if name == "plain":
                raise
            checks[name] = {"float64_max_relative_difference": math.nan,
                            "float64_same": False, "float64_rtol": rtol,
                            "float64_error": f"{type(err).__name__}: {err}"[:500]}
            continue
        losses[name] = stepper.all_losses()
    for name in losses:
        gap = relative_gap(losses[name], losses["plain"])
        checks[name] = {
            "float64_max_relative_difference": float(gap.max()) if gap.numel() else 0.0,
            "float64_same": bool(torch.allclose(losses[name], losses["plain"], rtol=rtol,
                                                atol=atol, equal_nan=True)),
            "float64_rtol": rtol}
    return checks


def verdict(row: dict) -> str:
    """`same`, `float32 only` or `DIFFERENT` (the module docstring says what each means), or
    `float64 failed` where the variant could not train in float64 (its error is recorded).
    A precision variant (tf32, bf16) whose float64 steps are the plain loop's is `other
    precision`: in float64 it is the plain loop, and its float32 losses are meant to differ
    (`max_relative_difference` says by how much over these steps)."""
    if row.get("float64_error"):
        return "float64 failed"
    if not row["float64_same"]:
        return "DIFFERENT"
    if row["variant"] in PRECISION_VARIANTS:
        return "other precision"
    return "same" if row["same_losses"] else "float32 only"


def passed(verdict_: str) -> bool:
    """Whether a verdict is what its variant should give: the kernels' own arithmetic."""
    return verdict_ in ("same", "other precision")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
