"""Train one group of runs as one batched computation, and evaluate it after every pass.

This is the training loop of adamrepro, top to bottom. The parameters of the G runs are
stacked on a leading dimension; per-run hyperparameters are tensors of length G; each run's
minibatch order comes from its own seed; all device-to-host copies happen once per pass.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from adamrepro.config import Experiment, TrainingSpec
from adamrepro.data.base import TensorDataset
from adamrepro.models import MODELS
from adamrepro.models.base import seeded_generator
from adamrepro.optim import build
from adamrepro.runner.plan import Group, _is_numeric

ORDER_STREAM = 2
METRICS = ("train_loss", "train_loss_full", "test_loss", "test_acc")


@dataclass
class RunCurve:
    """One run's record: one dict per evaluation point (epoch 0 = the initial weights)."""

    rows: list[dict]
    diverged: bool


def step_sizes(training: TrainingSpec, n: int) -> list[int]:
    """The minibatch size of every step of a pass over `n` samples: the last one is short
    unless `drop_last`; a batch size above `n` gives one step of `n`."""
    batch = min(training.batch_size, n)
    steps = n // batch if training.drop_last else -(-n // batch)
    return [min(batch, n - i * batch) for i in range(steps)]


def stacked_hparams(group: Group, device: torch.device, dtype: torch.dtype) -> dict:
    """Numeric hyperparameters as per-run tensors in the training dtype (converted once here,
    not on every step); everything else is shared by the group by construction."""
    first = group.runs[0].hparams
    out = {}
    for name, value in first.items():
        if not _is_numeric(value):
            out[name] = value
        elif isinstance(value, (list, tuple)):
            out[name] = tuple(
                torch.tensor([float(run.hparams[name][i]) for run in group.runs],
                             dtype=dtype, device=device)
                for i in range(len(value))
            )
        else:
            out[name] = torch.tensor([float(run.hparams[name]) for run in group.runs],
                                     dtype=dtype, device=device)
    return out


def build_model(exp: Experiment, group: Group, data: TensorDataset, device: torch.device):
    cls = MODELS[group.model["name"]]
    opts = cls.options({k: v for k, v in group.model.items()}, "model")
    dtype = getattr(torch, exp.training.dtype)
    model = cls(opts, data.feature_shape, data.num_classes, group.seeds).to(device, dtype)
    # Dropout masks: one stream per group, seeded by the group's identity, so a re-run of the
    # same group draws the same masks (groups are fixed by the config, see plan.py).
    model.generator = torch.Generator(device=device).manual_seed(int(group.group_id, 16))
    return model


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

    def batch(self, x: Tensor, y: Tensor, index: Tensor, G: int):
        """The minibatch of every run: `index` is (distinct seeds, B) rows of the data."""
        S, B = index.shape
        # index_select on the flat index: the same rows as x[index], ~5x faster on a CPU
        flat = index.reshape(-1)
        xb = x.index_select(0, flat).view(S, B, *x.shape[1:])
        yb = y.index_select(0, flat).view(S, B, *y.shape[1:])
        if self.shared:  # one order for every run: a stride-0 view, no copy
            return xb.expand(G, *xb.shape[1:]), yb.expand(G, *yb.shape[1:])
        return xb[self.index_of_run], yb[self.index_of_run]


class TrainStep:
    """One optimizer step of every run of the group.

    The step reads its minibatch through a cursor kept on the device and adds its loss to a
    sum kept on the device, so the call has no Python state that changes from step to step:
    the same call can be captured once in a CUDA graph and replayed for every step
    (`GraphedStep`), and eager execution runs exactly the same operations.
    """

    def __init__(self, model, optimizer, order: MinibatchOrder, data: TensorDataset,
                 batch_size: int, G: int) -> None:
        device = data.train_x.device
        self.model, self.optimizer, self.order, self.data, self.G = (
            model, optimizer, order, data, G)
        self.perm = torch.zeros(len(order.unique), len(data.train_x), dtype=torch.long,
                                device=device)
        self.cursor = torch.zeros((), dtype=torch.long, device=device)
        self.offsets = torch.arange(batch_size, device=device)
        self.loss_sum = torch.zeros(G, dtype=torch.float64, device=device)

    def new_pass(self, perm: Tensor) -> None:
        self.perm.copy_(perm)
        self.cursor.zero_()
        self.loss_sum.zero_()

    def __call__(self, size: int) -> None:
        index = self.perm.index_select(1, self.cursor + self.offsets[:size])
        self.cursor += size
        xb, yb = self.order.batch(self.data.train_x, self.data.train_y, index, self.G)
        output = self.model(xb, train=True)
        loss = self.model.loss(output, yb) + self.model.penalty()
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.optimizer.step()
        self.loss_sum += loss.detach().double()


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


def cuda_graphs_default() -> bool:
    """On unless ADAMREPRO_CUDA_GRAPHS=0 (to time or debug the eager loop)."""
    return os.environ.get("ADAMREPRO_CUDA_GRAPHS", "1") != "0"


def can_graph(device: torch.device, sizes: list[int]) -> bool:
    """A graph replays fixed shapes: every step must have the same batch size (drop_last, or a
    batch size that divides the training set); the model's dropout generator must be one the
    graph can register (torch >= 2.5)."""
    return (device.type == "cuda" and len(set(sizes)) == 1
            and hasattr(torch.cuda.CUDAGraph, "register_generator_state"))


@torch.no_grad()
def evaluate(model, x: Tensor, y: Tensor, G: int, chunk: int, with_penalty: bool):
    """Mean loss (plus the penalty when asked) and accuracy per run, noise-free, on device."""
    loss_sum = torch.zeros(G, device=x.device, dtype=torch.float64)
    correct = torch.zeros(G, device=x.device, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        xb = x[start : start + chunk]
        xb = xb.unsqueeze(0).expand(G, *xb.shape)
        yb = y[start : start + chunk].unsqueeze(0).expand(G, -1)
        out = model(xb, train=False)
        loss_sum += model.loss(out, yb).double() * len(yb[0])
        correct += model.correct(out, yb).double()
    loss = loss_sum / len(x)
    if with_penalty:
        loss = loss + torch.as_tensor(model.penalty()).double()
    return loss, correct / len(x)


def train_group(
    exp: Experiment,
    group: Group,
    data: TensorDataset,
    on_pass: Callable[[int], None] = lambda epoch: None,
    cuda_graphs: bool | None = None,
) -> list[RunCurve]:
    """Train every run of `group` for `exp.training.epochs` passes; return their curves.

    On a GPU each step is a replayed CUDA graph unless `cuda_graphs` is False (default: on,
    ADAMREPRO_CUDA_GRAPHS=0 turns it off); the arithmetic is the same either way."""
    device = data.train_x.device
    G, training = group.size, exp.training
    model = build_model(exp, group, data, device)
    optimizer = build(group.optimizer, list(model.parameters()),
                      **stacked_hparams(group, device, getattr(torch, training.dtype)))
    order = MinibatchOrder(group.seeds, len(data.train_x), device)
    sizes = step_sizes(training, len(data.train_x))
    step = TrainStep(model, optimizer, order, data, max(sizes), G)
    if cuda_graphs is None:
        cuda_graphs = cuda_graphs_default()
    if cuda_graphs and can_graph(device, sizes):
        run_step = GraphedStep(step)
    else:
        run_step = step

    history: list[Tensor] = []  # per pass: (len(METRICS), G), kept on device until the end
    seconds: list[float] = []
    alive = torch.ones(G, dtype=torch.bool)
    diverged_at = [None] * G
    start_time = time.perf_counter()

    def log_pass(train_loss: Tensor) -> None:
        full, _ = evaluate(model, data.train_x, data.train_y, G, training.eval_batch_size, True)
        test_loss, test_acc = evaluate(model, data.test_x, data.test_y, G,
                                       training.eval_batch_size, False)
        history.append(torch.stack([train_loss, full, test_loss, test_acc]))

    log_pass(torch.full((G,), float("nan"), dtype=torch.float64, device=device))
    seconds.append(0.0)
    for epoch in range(1, training.epochs + 1):
        model.train()
        step.new_pass(order.new_pass())
        for size in sizes:
            run_step(size)
        log_pass(step.loss_sum / len(sizes))
        # The one host sync of a pass: decide divergence and report progress.
        latest = history[-1].cpu()
        seconds.append(time.perf_counter() - start_time)
        finite = torch.isfinite(latest[:3]).all(0)
        for g in torch.nonzero(alive & ~finite).flatten().tolist():
            diverged_at[g] = epoch
        alive &= finite
        on_pass(epoch)
        if not alive.any():
            break

    table = torch.stack(history).cpu()  # (passes, metrics, G)
    curves = []
    for g in range(G):
        last = diverged_at[g] if diverged_at[g] is not None else len(history) - 1
        rows = []
        for epoch in range(last + 1):
            row = {"epoch": epoch, "seconds": seconds[epoch], "group_size": G,
                   "diverged": diverged_at[g] is not None and epoch == last}
            row.update({m: float(table[epoch, i, g]) for i, m in enumerate(METRICS)})
            rows.append(row)
        curves.append(RunCurve(rows, diverged_at[g] is not None))
    return curves
