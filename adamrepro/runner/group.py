"""Train one group of runs as one batched computation, and evaluate it after every pass.

This is the training loop of adamrepro, top to bottom. The parameters of the G runs are
stacked on a leading dimension; per-run hyperparameters are tensors of length G; each run's
minibatch order comes from its own seed; all device-to-host copies happen once per pass. An
optimizer that is not batchable trains a group of one run with plain numbers, through the
same loop; one that needs a closure is handed one (capabilities.py).

What a pass records comes from the model's declared metrics (metrics.py): the training
objective as trained, the objective on the whole training set, and every metric on the test
set. Training time is measured per pass, evaluation excluded: on a GPU with CUDA events
read after the pass's one host sync, on a CPU with the clock (its work is synchronous).
`training.precision` (precision.py) sets how a pass computes (TF32 or full float32 math on
CUDA, bfloat16 autocast around each step's forward pass); evaluation is float32 always.

Two optional hooks of the optimizer: one that averages its parameters (`swap_averaged`, Sec.
7.2, with `averaging` on) is evaluated at its averaged parameters (the pass's minibatch loss
stays that of the iterates, as trained); one with `pass_statistics()` has what it returns
({column: per-run tensor}) recorded after every pass, beside the metrics. With
`training.save_params` each run's final parameters (those it was evaluated at) come back too.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from adamrepro import hparams
from adamrepro.compiling import STEP_OPTIONS, compile_method
from adamrepro.config import Experiment, TrainingSpec
from adamrepro.data.base import TensorDataset
from adamrepro.errors import UserError
from adamrepro.metrics import MetricSet
from adamrepro.models import MODELS
from adamrepro.optim.capabilities import closure_by_keyword, step_with_closure
from adamrepro.runner.checkpoint import (
    BudgetSpent,
    GroupCheckpoint,
    TooSlow,
    checkpoint_key,
    generator_state,
    load_optimizer_state,
    optimizer_state,
    save_seconds,
    set_generator_state,
    unreadable_part,
)
from adamrepro.runner.history import GroupHistory, RunCurve
from adamrepro.runner.plan import Group
from adamrepro.runner.precision import FP32, Precision, precision_of
from adamrepro.runner.subnormals import subnormals_flushed
from adamrepro.seeding import (
    EVAL_NOISE,
    ORDER_STREAM,
    TRAIN_NOISE,
    group_generator,
    seeded_generator,
)
from adamrepro.stopping import STOP


def step_sizes(training: TrainingSpec, n: int) -> list[int]:
    """The minibatch size of every step of a pass over `n` samples: the last one is short
    unless `drop_last`; a batch size above `n` gives one step of `n`."""
    batch = min(training.batch_size, n)
    steps = n // batch if training.drop_last else -(-n // batch)
    return [min(batch, n - i * batch) for i in range(steps)]


def build_model(exp: Experiment, group: Group, data: TensorDataset, device: torch.device):
    cls = MODELS[group.model["name"]]
    opts = cls.options(dict(group.model), "model")
    dtype = getattr(torch, exp.training.dtype)
    model = cls(opts, data.feature_shape, data.num_classes, group.seeds).to(device, dtype)
    found = group.resolved
    model.lay_out_for(found.builtin and found.capabilities.batchable)
    model.generator = group_generator(model.noise_identity(group.noise_id), device,
                                      TRAIN_NOISE)
    model.channels_last = channels_last_on(exp.training, device)
    return model


def channels_last_on(training: TrainingSpec, device: torch.device) -> bool:
    """`training.channels_last` on this device: `auto` is on a CPU only, where NHWC pays
    (config/schema.py says by how much); a GPU keeps NCHW until measured there."""
    if training.channels_last == "auto":
        return device.type == "cpu"
    return training.channels_last


def build_optimizer(group: Group, params: list[Tensor], dtype: torch.dtype,
                    subfunctions: int | None = None):
    """A batchable optimizer gets every numeric hyperparameter as a per-run tensor; any other
    trains its one run with plain numbers; one over subfunctions also gets their number."""
    found = group.resolved
    if found.capabilities.batchable:
        values = hparams.stacked([run.hparams for run in group.runs], dtype, params[0].device)
    else:
        values = hparams.plain(group.runs[0].hparams)
    if found.capabilities.subfunctions:
        values["num_subfunctions"] = subfunctions
    return found.cls(params, **values)


def evaluated_params(optimizer):
    """The context in which the runs are evaluated: at the bias-corrected averaged parameters
    when the optimizer averages them (averaging.py), else at the iterates."""
    averages = getattr(optimizer, "averages", None)
    if callable(averages) and averages():
        return optimizer.swap_averaged()
    return contextlib.nullcontext()


def pass_statistics(optimizer) -> dict[str, Tensor]:
    """What the optimizer measured since the last call ({} for most); it resets itself."""
    read = getattr(optimizer, "pass_statistics", None)
    return read() if callable(read) else {}


def subfunction_split(seed: int, n: int, count: int, device: torch.device) -> list[Tensor]:
    """The fixed minibatches of an optimizer over subfunctions: the run's first minibatch
    order (the same permutation its first pass would use), cut into `count` near-equal
    parts."""
    perm = torch.randperm(n, generator=seeded_generator(seed, ORDER_STREAM))
    return [part.to(device) for part in perm.tensor_split(count)]


def state_bytes(optimizer) -> int:
    """Bytes of the optimizer's state tensors (moments, accumulators, SFO's subspace): the
    memory that differs between optimizers. Metadata only: no host sync. A value a user's
    optimizer keeps in `state` under a key of its own (`self.state["t"]`, not a parameter's
    dict; torch's state_dict keeps it so) counts as itself."""
    return sum(value.numel() * value.element_size() for state in optimizer.state.values()
               for value in (state.values() if isinstance(state, dict) else [state])
               if isinstance(value, Tensor))


class MinibatchOrder:
    """Each distinct seed's permutation of the training set, reshuffled every pass.

    Runs that share a seed share an order; the generators live on the CPU so an order does
    not depend on the device or on the group a run is in.
    """

    def __init__(self, seeds: list[int], n: int, device: torch.device) -> None:
        self.unique = sorted(set(seeds))
        self.index_of_run = torch.tensor([self.unique.index(s) for s in seeds], device=device)
        self.shared = len(self.unique) == 1
        self.generators = [seeded_generator(s, ORDER_STREAM) for s in self.unique]
        self.n, self.device = n, device

    def new_pass(self) -> Tensor:
        perms = [torch.randperm(self.n, generator=g) for g in self.generators]
        return torch.stack(perms).to(self.device, non_blocking=True)

    def batch(self, split: Mapping[str, Tensor], index: Tensor, G: int,
              distinct: tuple[str, ...] = ()) -> dict[str, Tensor]:
        """The minibatch of every run: `index` is (distinct seeds, B) rows of the data. Keys
        in `distinct` stay one per seed, (S, B, ...), with run g's at out["run_input"][g]
        (`BatchedModel.distinct_inputs`), when the runs do not all share one."""
        S, B = index.shape
        # index_select on the flat index: the same rows as x[index], ~5x faster on a CPU
        flat = index.reshape(-1)
        out = {}
        for key, values in split.items():
            rows = values.index_select(0, flat).view(S, B, *values.shape[1:])
            if self.shared:
                # one order for every run: a stride-0 view, no copy
                out[key] = rows.expand(G, *rows.shape[1:])
            elif key in distinct:
                out[key] = rows
                out["run_input"] = self.index_of_run
            else:
                out[key] = rows[self.index_of_run]
        return out


def training_objective(model, batch: dict[str, Tensor], precision) -> Tensor:
    """The training objective of a minibatch, per run, at the training precision: what every
    step minimizes (the L2 penalty included), with or without a closure."""
    with precision.forward():
        return model.regularized_objective(batch)


class TrainStep:
    """One optimizer step of every run of the group.

    The step reads its minibatch through a cursor kept on the device and adds its loss to a
    sum kept on the device, so the call has no Python state that changes from step to step:
    the same call can be captured once in a CUDA graph and replayed for every step
    (`GraphedStep`), and eager execution runs exactly the same operations. With
    `closure=True` the optimizer's `step` evaluates the minibatch itself, as often as it
    needs; the loss recorded is its first evaluation, at the parameters before the step.
    With `log_steps` (the steps of a pass), every step's loss is also written to row
    `step_index` of `step_losses`, a device buffer, through a step counter on the device.
    Every forward pass and loss, with or without a closure, runs in `precision.forward()`
    (bf16 autocast; precision.py).
    With `compiled`, the minibatch's objective (forward, and its backward) runs through
    torch.compile; dropout still draws from the model's generator, eagerly (torch.compile
    cannot trace a generator argument, so it breaks the graph there), so the masks are the
    eager step's.
    """

    def __init__(self, model, optimizer, order: MinibatchOrder, data: TensorDataset,
                 batch_size: int, G: int, closure: bool = False, log_steps: int = 0,
                 precision: Precision = FP32, compiled: bool = False) -> None:
        device = data.train_x.device
        self.model, self.optimizer, self.order, self.data, self.G = (
            model, optimizer, order, data, G)
        self.closure, self.precision = closure, precision
        self.closure_by_keyword = closure and closure_by_keyword(type(optimizer))
        self.distinct = model.distinct_inputs(device)
        # Not `self.loss = self._loss`: a bound method kept on its own object is a reference
        # cycle, which would leave the group's model, optimizer state and (on a GPU) a CUDA
        # graph's memory pool to the cycle collector after the group, not freed at once.
        self._compiled = compile_method(self._loss, **STEP_OPTIONS) if compiled else None
        self.perm = torch.zeros(len(order.unique), len(data.train_x), dtype=torch.long,
                                device=device)
        self.cursor = torch.zeros((), dtype=torch.long, device=device)
        self.offsets = torch.arange(batch_size, device=device)
        self.loss_sum = torch.zeros(G, dtype=torch.float64, device=device)
        self.step_losses = (torch.zeros(log_steps, G, dtype=torch.float64, device=device)
                            if log_steps else None)
        self.step_index = torch.zeros(1, dtype=torch.long, device=device)

    def loss(self, batch) -> Tensor:
        """The minibatch's objective, compiled or eager."""
        return (self._compiled or self._loss)(batch)

    def new_pass(self, perm: Tensor) -> None:
        self.perm.copy_(perm)
        self.cursor.zero_()
        self.loss_sum.zero_()
        self.step_index.zero_()

    def __call__(self, size: int) -> None:
        index = self.perm.index_select(1, self.cursor + self.offsets[:size])
        self.cursor += size
        batch = self.order.batch(self.data.train, index, self.G, self.distinct)
        if self.closure:
            loss = self._step_with_closure(batch)
        else:
            loss = self.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            self.optimizer.step()
        self.loss_sum += loss.detach().double()
        if self.step_losses is not None:
            self.step_losses.index_copy_(0, self.step_index, loss.detach().double()[None])
            self.step_index += 1

    def _loss(self, batch: dict[str, Tensor]) -> Tensor:
        return training_objective(self.model, batch, self.precision)

    def _step_with_closure(self, batch: dict[str, Tensor]) -> Tensor:
        first: list[Tensor] = []

        def closure() -> Tensor:
            with torch.enable_grad():
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.loss(batch)
                loss.sum().backward()
            if not first:
                first.append(loss.detach())
            return loss.sum().detach()

        step_with_closure(self.optimizer, closure, self.closure_by_keyword)
        if not first:  # the step ignored it: nothing was evaluated, nothing trained
            raise ClosureIgnored(f"{type(self.optimizer).__name__}.step did not call the "
                                 f"closure it was given (`closure: true`), so no loss was "
                                 f"evaluated; remove `closure: true`, or have step call it")
        return first[0]


class ClosureIgnored(UserError):
    """A step given a closure (`closure: true`) that never called it; the runner names the
    method, as it does for every error of a user's optimizer."""


class GraphedStep:
    """`TrainStep` captured once in a CUDA graph and replayed: one launch instead of the
    ~50-150 kernel launches of a step, which is what small models on a GPU wait for.

    The first `WARMUP` steps run eagerly on a side stream, as torch's CUDA graph guide asks:
    they create the optimizer state and let cuBLAS and autograd initialise lazily, none of
    which may happen during a capture. Capture records without computing; the graph is then
    replayed for that step and every later one. The model's dropout generator is registered
    with the graph so that every replay draws new masks.
    """

    WARMUP = 3

    def __init__(self, step: TrainStep) -> None:
        self.step = step
        self.eager_steps = 0
        self.graph = None

    def __call__(self, size: int) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        if self.eager_steps < self.WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step(size)
            torch.cuda.current_stream().wait_stream(side)
            self.eager_steps += 1
            return
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.step.model.generator)
        with torch.cuda.graph(graph):
            self.step(size)
        graph.replay()
        self.graph = graph


def can_compile_optimizer(optimizer, graphable: bool) -> bool:
    """An optimizer compiles when it has a `compile` method (GridOptimizer) and declares
    itself graphable: what a CUDA graph needs (no host syncs, no data-dependent control
    flow) is what lets torch.compile trace its step in one graph."""
    return graphable and callable(getattr(optimizer, "compile", None))


def cuda_graphs_default() -> bool:
    """On unless ADAMREPRO_CUDA_GRAPHS=0 (to time or debug the eager loop)."""
    return os.environ.get("ADAMREPRO_CUDA_GRAPHS", "1") != "0"


def can_graph(device: torch.device, sizes: list[int], graphable: bool) -> bool:
    """A graph replays fixed shapes: every step must have the same batch size (drop_last, or a
    batch size that divides the training set); the optimizer must declare itself graphable;
    the model's dropout generator must be one the graph can register (torch >= 2.5)."""
    return (device.type == "cuda" and graphable and len(set(sizes)) == 1
            and hasattr(torch.cuda.CUDAGraph, "register_generator_state"))


@torch.no_grad()
def evaluate(model, split: Mapping[str, Tensor], G: int, chunk: int,
             generator: torch.Generator | None, with_penalty: bool) -> dict[str, Tensor]:
    """Every declared metric per run (the objective plus the penalty when asked), float64
    on the device: chunk means weighted by chunk size."""
    n = len(split["x"])
    sums: dict[str, Tensor] = {}
    for start in range(0, n, chunk):
        batch = {key: values[start : start + chunk] for key, values in split.items()}
        size = len(batch["x"])
        batch = {key: values.unsqueeze(0).expand(G, *values.shape)
                 for key, values in batch.items()}
        for name, value in model.evaluate(batch, generator).items():
            sums[name] = sums.get(name, 0) + value.double() * size
    means = {name: total / n for name, total in sums.items()}
    if with_penalty:
        objective = model.METRICS.objective
        means[objective] = means[objective] + torch.as_tensor(model.penalty()).double()
    return means


def block_means(step_losses: Tensor, every: int) -> Tensor:
    """(steps, G) losses of a pass -> (blocks, G) means of each block of `every` steps (the
    last block may be shorter), on the device."""
    return torch.stack([step_losses[start : start + every].mean(0)
                        for start in range(0, len(step_losses), every)])


class MinibatchPass:
    """A pass over the training set in minibatches reshuffled from each run's seed: every
    step of `sizes`, eager or replayed from a CUDA graph. Returns the mean minibatch loss of
    every run."""

    def __init__(self, model, optimizer, data: TensorDataset, seeds: list[int],
                 sizes: list[int], closure: bool, graphed: bool,
                 log_every: int | None = None, precision: Precision = FP32,
                 compiled: bool = False) -> None:
        self.order = MinibatchOrder(seeds, len(data.train_x), data.train_x.device)
        self.step = TrainStep(model, optimizer, self.order, data, max(sizes), len(seeds),
                              closure, log_steps=len(sizes) if log_every else 0,
                              precision=precision, compiled=compiled)
        self.run_step = GraphedStep(self.step) if graphed else self.step
        self.sizes, self.log_every = sizes, log_every

    def __call__(self) -> Tensor:
        self.step.new_pass(self.order.new_pass())
        for size in self.sizes:
            self.run_step(size)
        return self.step.loss_sum / len(self.sizes)

    def blocks(self) -> Tensor | None:
        """With `log_every`: the last pass's (blocks, G) block means, on the device."""
        if not self.log_every:
            return None
        return block_means(self.step.step_losses, self.log_every)


class SubfunctionPass:
    """A pass of an optimizer over subfunctions (SFO): steps until it has evaluated as many
    subfunctions as there are, each step evaluating the one it picks through the closure
    (twice when it rejects a step). Pass k ends at the first step that reaches k·N
    evaluations in all: a rejected step whose second evaluation falls past a pass's end is
    paid for by the next pass, so that passes are evaluations / N, as the reference counts
    them (counting N from wherever the last pass ended put every pass after such a step an
    evaluation late). Returns the mean over steps of the loss each step reports. One run
    (G = 1), host-side by nature: not batched, not graphed."""

    def __init__(self, model, optimizer, data: TensorDataset, split: list[Tensor],
                 precision: Precision = FP32) -> None:
        self.model, self.optimizer, self.data, self.split = model, optimizer, data, split
        self.precision = precision
        self.evaluations = 0
        self.passes = 0  # passes done: the next one ends at (passes + 1)·N evaluations
        self.closure_by_keyword = closure_by_keyword(type(optimizer))

    def closure(self, index: int) -> Tensor:
        rows = self.split[index]
        batch = {key: values.index_select(0, rows).unsqueeze(0)
                 for key, values in self.data.train.items()}
        self.optimizer.zero_grad(set_to_none=True)
        loss = training_objective(self.model, batch, self.precision).sum()
        loss.backward()
        self.evaluations += 1
        return loss.detach()

    def __call__(self) -> Tensor:
        self.passes += 1
        losses = []
        # at least one step: with N = 1, a rejected step has already evaluated the next pass
        while not losses or self.evaluations < self.passes * len(self.split):
            loss = step_with_closure(self.optimizer, self.closure, self.closure_by_keyword)
            losses.append(torch.as_tensor(loss).double())
        return torch.stack(losses).mean().reshape(1).to(self.data.train_x.device)

    def blocks(self) -> Tensor | None:
        """No within-pass records: a pass is as many steps as the optimizer takes."""
        return None


def minibatch_training(exp: Experiment, group: Group, data: TensorDataset, model,
                       cuda_graphs: bool | None = None, log_every: int | None = None,
                       precision: Precision | None = None):
    """The optimizer and the `MinibatchPass` of a group that trains in minibatches, with
    the kernel switches of `exp.training` applied: the optimizer's update compiled
    (`compile_optimizer`, where `can_compile_optimizer`), the step's objective compiled
    (`compile_model`). CUDA graphs as `train_group` says; `precision` by default the
    config's (precision.py)."""
    training, capabilities = exp.training, group.resolved.capabilities
    sizes = step_sizes(training, len(data.train_x))
    optimizer = build_optimizer(group, list(model.parameters()), getattr(torch, training.dtype))
    if training.compile_optimizer and can_compile_optimizer(optimizer, capabilities.graphable):
        optimizer.compile(**STEP_OPTIONS)
    if cuda_graphs is None:
        cuda_graphs = cuda_graphs_default()
    graphed = cuda_graphs and can_graph(data.train_x.device, sizes, capabilities.graphable)
    if precision is None:
        precision = precision_of(training, data.train_x.device)
    train_pass = MinibatchPass(model, optimizer, data, group.seeds, sizes,
                               capabilities.needs_closure, graphed, log_every, precision,
                               compiled=training.compile_model)
    return optimizer, train_pass


FAKE_MEMORY_LIMIT = "ADAMREPRO_FAKE_MEMORY_LIMIT_RUNS"
# The longest save a signal's stop waits for: what SIGTERM's senders grant before their kill
# (30 s for SLURM, Kubernetes, a preemptible VM), less the pass finished first.
SIGNAL_SAVE_SECONDS = 20.0


def check_fake_memory_limit(G: int) -> None:
    """For tests of the automatic split (executors.py) on machines without a GPU: with
    ADAMREPRO_FAKE_MEMORY_LIMIT_RUNS=N, a group of more than N runs raises the error a GPU
    raises when the group does not fit, once its model and optimizer are built."""
    limit = os.environ.get(FAKE_MEMORY_LIMIT)
    if limit and not limit.isdigit():
        raise UserError(f"${FAKE_MEMORY_LIMIT} is {limit!r}: give a whole number of runs (a "
                        f"setting for tests), or unset it")
    if limit and G > int(limit):
        raise torch.OutOfMemoryError(
            f"{FAKE_MEMORY_LIMIT}={limit}: a group of {G} runs does not fit (simulated)")


class PassTimer:
    """Seconds of training per pass, evaluation excluded, with no host sync of its own: on
    a GPU two CUDA events, read once the pass's sync has passed them."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.begin = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            self.end = torch.cuda.Event(enable_timing=True)
            self.end.record()
        else:
            self.end = time.perf_counter()

    def seconds(self) -> float:
        """Call after a host sync that follows `stop` (the events have completed)."""
        if self.cuda:
            return self.begin.elapsed_time(self.end) / 1000.0
        return self.end - self.begin


class TrainingState:
    """Everything the next pass depends on besides the measurements (`GroupHistory`): the
    parameters, the optimizer's state, the minibatch orders' and the noise's generators, and
    SFO's count of evaluations. What a checkpoint saves, and restores exactly."""

    def __init__(self, model, optimizer, train_pass, eval_noise: torch.Generator) -> None:
        self.model, self.optimizer, self.train_pass = model, optimizer, train_pass
        self.eval_noise = eval_noise
        self.order_generators = (train_pass.order.generators
                                 if isinstance(train_pass, MinibatchPass) else [])
        # what a save writes besides the optimizer's state: measured once, not every pass
        self.model_bytes = sum(t.numel() * t.element_size()
                               for t in model.state_dict().values())

    def state(self) -> dict:
        return {
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": optimizer_state(self.optimizer),
            "order_generators": [generator_state(g) for g in self.order_generators],
            "train_noise": generator_state(self.model.generator),
            "eval_noise": generator_state(self.eval_noise),
            "evaluations": getattr(self.train_pass, "evaluations", 0)}

    def restore(self, saved: dict, device: torch.device) -> None:
        self.model.load_state_dict(saved["model"])
        load_optimizer_state(self.optimizer, saved["optimizer"], device)
        for generator, state in zip(self.order_generators, saved["order_generators"],
                                    strict=True):
            set_generator_state(generator, state)
        set_generator_state(self.model.generator, saved["train_noise"])
        set_generator_state(self.eval_noise, saved["eval_noise"])
        if isinstance(self.train_pass, SubfunctionPass):
            self.train_pass.evaluations = saved["evaluations"]
            self.train_pass.passes = saved["epoch"]


def train_group(
    exp: Experiment,
    group: Group,
    data: TensorDataset,
    on_pass: Callable[[int], None] = lambda epoch: None,
    cuda_graphs: bool | None = None,
    checkpoint: GroupCheckpoint | None = None,
) -> list[RunCurve]:
    """Train every run of `group` for `exp.training.epochs` passes; return their curves.

    On a GPU each step is a replayed CUDA graph unless `cuda_graphs` is False (default: on,
    ADAMREPRO_CUDA_GRAPHS=0 turns it off) or the optimizer is not graphable; the arithmetic
    is the same either way, and the kernel switches of `exp.training` (`compile_optimizer`,
    `compile_model`, `channels_last`) change it by float rounding alone. With a
    `checkpoint` (checkpoint.py) the group goes on from the one saved, if any, saves one
    every `checkpoint.every` passes, and raises `BudgetSpent` after saving one once its
    time budget is spent, or `TooSlow` when the budget splits groups to fit and this one
    would not finish in time; a checkpoint serves with any kernel switches (the state is
    the same). On a CPU in one thread, subnormal floats are flushed to zero meanwhile
    (subnormals.py)."""
    with subnormals_flushed(data.train_x.device):
        return _train_group(exp, group, data, on_pass, cuda_graphs, checkpoint)


def _train_group(exp: Experiment, group: Group, data: TensorDataset,
                 on_pass: Callable[[int], None], cuda_graphs: bool | None,
                 checkpoint: GroupCheckpoint | None) -> list[RunCurve]:
    device = data.train_x.device
    G, training = group.size, exp.training
    precision = precision_of(training, device)
    if device.type == "cuda" or training.compile_model or training.compile_optimizer:
        # What earlier groups left to the cycle collector (torch.compile's caches hold
        # cycles through the objects they compiled) is freed before this group allocates
        # its state and measures its peak memory; a collection takes ~0.15 s, once a group.
        gc.collect()
    model = build_model(exp, group, data, device)
    metrics: MetricSet = model.METRICS
    capabilities = group.resolved.capabilities
    sizes = step_sizes(training, len(data.train_x))
    if capabilities.subfunctions:  # default: one subfunction per minibatch of a pass
        count = int(group.runs[0].hparams.get("num_subfunctions") or len(sizes))
        if count > len(data.train_x):  # the config check knows only the sizes it sets
            raise UserError(f"methods.{group.method}: num_subfunctions {count} is more than "
                            f"the {len(data.train_x):,} training examples; give at most "
                            f"{len(data.train_x)}")
        optimizer = build_optimizer(group, list(model.parameters()),
                                    getattr(torch, training.dtype), count)
        train_pass = SubfunctionPass(model, optimizer, data, subfunction_split(
            group.seeds[0], len(data.train_x), count, device), precision)
    else:
        optimizer, train_pass = minibatch_training(exp, group, data, model, cuda_graphs,
                                                   training.log_every, precision)
    check_fake_memory_limit(G)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    eval_noise = group_generator(model.noise_identity(group.noise_id), device, EVAL_NOISE)
    state = TrainingState(model, optimizer, train_pass, eval_noise)
    statistics = list(pass_statistics(optimizer))  # column names; nothing measured yet
    metric_columns = [c.name for c in metrics.columns()]
    history = GroupHistory(G, metric_columns + statistics, len(metric_columns))
    timer = PassTimer(device)

    def evaluated(train_loss: Tensor, measured: dict[str, Tensor]) -> Tensor:
        """The pass's row of every column, (columns, G), on the device."""
        # float32 at every precision: every curve measures the same function (precision.py)
        with evaluated_params(optimizer), precision.evaluation():
            full = evaluate(model, data.train, G, training.eval_batch_size, eval_noise, True)
            test = evaluate(model, data.test, G, training.eval_batch_size, eval_noise, False)
        return torch.stack([
            train_loss, full[metrics.objective], *(test[m.name] for m in metrics.metrics),
            *(torch.as_tensor(measured[name], device=device).double().expand(G)
              for name in statistics)])

    key = checkpoint_key(group.group_id, device, training)
    saved = checkpoint.load(key) if checkpoint is not None else None
    saved_in: float | None = None  # how long the last save took
    if saved is None:
        first = 1
        nothing = torch.full((G,), float("nan"), dtype=torch.float64, device=device)
        history.begin(evaluated(nothing, dict.fromkeys(statistics, nothing)))
    else:  # go on from the checkpoint: everything the next pass depends on comes back
        first = saved["epoch"] + 1
        state.restore(saved, device)
        history.restore(saved, device)
        on_pass(saved["epoch"])
    for epoch in range(first, training.epochs + 1):
        model.train()
        timer.start()
        with precision.training():  # a CUDA graph is captured, and replayed, inside it
            train_loss = train_pass()
        timer.stop()
        row = evaluated(train_loss, pass_statistics(optimizer))
        memory = (state_bytes(optimizer), torch.cuda.max_memory_allocated(device)
                  if device.type == "cuda" else math.nan)  # the peak includes evaluation
        # The one host sync of a pass: decide divergence and report progress.
        alive = history.end_pass(epoch, row, train_pass.blocks(), memory, timer.seconds)
        on_pass(epoch)
        if not alive:
            break
        if checkpoint is not None:
            last_pass = history.last_pass_seconds()
            # first: a group to be halved (or left) needs no checkpoint, its halves are others
            if checkpoint.too_slow(epoch, training.epochs, last_pass, epoch - first + 1,
                                   resumed=first > 1):
                # halves start over: only where one could finish, else the whole group is
                # left to the next command and the time to the groups after it
                raise TooSlow(training.epochs - epoch, last_pass, checkpoint.budget.left(),
                              halve=G > 1 and checkpoint.half_could_finish(training.epochs,
                                                                          last_pass))
            saving_takes = save_seconds(state.model_bytes + memory[0], saved_in)
            stop = checkpoint.stop(epoch, training.epochs, last_pass, saving_takes)
            # a signal's stop (../stopping.py) skips a save its kill would cut off (SFO's 20 GB
            # at paper scale): the command ends at once, and the group's passes since its
            # last checkpoint are trained again
            unsaved = stop and STOP() and saving_takes > SIGNAL_SAVE_SECONDS
            if (stop or checkpoint.due(epoch, training.epochs)) and not unsaved:
                began = time.perf_counter()
                saved = {"key": key, "epoch": epoch, **state.state(), **history.state()}
                refused = unreadable_part(saved)
                if refused is not None:
                    raise UserError(
                        f"method {group.method!r}: a checkpoint cannot hold what its "
                        f"optimizer keeps at {refused}: checkpoints are read back with "
                        f"torch.load(weights_only=True), which takes tensors, Python numbers "
                        f"and strings, and lists, tuples and dicts of them; keep its state in "
                        f"those (a float, not a NumPy number), or train it without checkpoints "
                        f"(no --time-budget, no training.checkpoint_every)")
                checkpoint.save(saved)
                saved_in = time.perf_counter() - began
            if stop:  # pass 0: stopped with no checkpoint of this command's
                raise BudgetSpent(training.epochs, {group.group_id: (G, 0 if unsaved else epoch)})

    curves = history.curves(sizes, training.log_every, metrics.train_column)
    if training.save_params:
        with evaluated_params(optimizer), torch.no_grad():
            for g, curve in enumerate(curves):
                # contiguous whatever layout the parameter trained in (`lay_out_for`): a
                # run's file does not depend on how it was computed
                curve.params = {name: p[g].detach().cpu().clone(
                                    memory_format=torch.contiguous_format)
                                for name, p in model.named_parameters()}
    return curves
