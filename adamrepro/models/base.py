"""The workload protocol: batched models whose parameters hold G runs, stacked on a leading
dimension.

A model is the whole workload the runner sees besides the data: it declares its metrics
(`METRICS`: names, which is the training objective, which are lower-is-better), computes
the training objective of a minibatch (`objective`) and every declared metric of an
evaluation batch (`evaluate`), and may add a penalty to the objective (`penalty`). A batch
is a mapping of tensors (`x`, and `y` when the dataset has labels), each (G, B, ...).

Run g only ever touches slice g, so the sum of the G per-run objectives back-propagates each
run's own gradient. With G = 1 a model is an ordinary single run. Every run's initial weights
come from its own seed alone, so a run starts from the same weights whichever group it is
trained in. Noise drawn in training (dropout) comes from `self.generator`, set by the
runner; noise drawn in evaluation comes from the generator `evaluate` is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from adamrepro.metrics import CLASSIFIER, MetricSet
from adamrepro.options import Frozen
from adamrepro.seeding import INIT_STREAM, seeded_generator

Batch = Mapping[str, Tensor]


class StackedLinear(nn.Module):
    """G independent affine maps x·W_g + b_g, computed as one batched matmul."""

    def __init__(self, seeds: Sequence[int], in_features: int, out_features: int,
                 init: str, init_scale: float, layer_index: int) -> None:
        super().__init__()
        weights = []
        for seed in seeds:
            generator = seeded_generator(seed, INIT_STREAM + 100 * layer_index)
            weights.append(init_weight(in_features, out_features, init, init_scale, generator))
        self.weight = nn.Parameter(torch.stack(weights))
        self.bias = nn.Parameter(torch.zeros(len(seeds), 1, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def out_major(weight: Tensor) -> Tensor:
    """The (G, in, out) weights of G runs, the same values, with each run's block stored
    (out, in) as nn.Linear stores it: the weights of all runs are then a (G·out, in) matrix
    without a copy, `weight.transpose(1, 2).reshape(G·out, in)`, while each run's block
    stays whole in memory, so an update with per-run factors still runs over each run's
    weights as one flat loop."""
    return weight.transpose(1, 2).contiguous().transpose(1, 2)


def init_weight(fan_in: int, fan_out: int, init: str, scale: float,
                generator: torch.Generator) -> Tensor:
    """`zeros`; `normal`: N(0, scale²); `glorot`: U(±scale·√(6/(fan_in+fan_out)));
    `he`: N(0, scale²·2/fan_in)."""
    shape = (fan_in, fan_out)
    if init == "zeros":
        return torch.zeros(shape)
    if init == "normal":
        return torch.randn(shape, generator=generator) * scale
    if init == "glorot":
        bound = scale * math.sqrt(6.0 / (fan_in + fan_out))
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound
    if init == "he":
        return torch.randn(shape, generator=generator) * scale * math.sqrt(2.0 / fan_in)
    raise ValueError(f"unknown init {init!r}")


def dropout(x: Tensor, rate: float, generator: torch.Generator | None) -> Tensor:
    """Inverted dropout with an explicit generator, so masks are reproducible per group. The
    uniforms are drawn in at least float32, so that a bf16-autocast run (bfloat16
    activations) draws the same masks as its float32 twin and its curves differ by the
    arithmetic alone."""
    if rate == 0.0:
        return x
    draw = torch.promote_types(x.dtype, torch.float32)
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=draw) >= rate
    return x * keep / (1.0 - rate)


def shared_input(x: Tensor) -> bool:
    """True for G > 1 runs that see the same inputs as a stride-0 view (the runner's
    `expand` when every run shares a minibatch order, and in evaluation)."""
    return x.shape[0] > 1 and x.stride(0) == 0


def one_input(x: Tensor) -> bool:
    """True when every run reads the same input: one run, or a stride-0 view
    (`shared_input`)."""
    return x.shape[0] == 1 or shared_input(x)


class BatchedModel(nn.Module):
    """The interface the runner relies on; subclasses set layers in `__init__`, declare
    `METRICS`, and implement `objective` and `evaluate`."""

    METRICS: ClassVar[MetricSet]
    # Options that choose how, not what, is computed (plan.py leaves them out of run ids),
    # like the device: a run's id names the experiment, not the kernels that realised it.
    # Each maps to its value that computes the model as written, with dense matmuls: the
    # FLOPs `adamrepro bench` counts (bench/flops.py), the same whichever path a device takes.
    IMPLEMENTATION_OPTIONS: ClassVar[Mapping[str, Any]] = {}
    # Whether `channels_last` changes anything (scripts/bench_kernels.py times it only then).
    CONVOLUTIONAL: ClassVar[bool] = False
    # Whether the objective is convex in the parameters. Then two implementations' float32
    # rounding differences stay at the rounding level along a whole run (logistic regression:
    # 1.3e-5 after 15 passes); a network amplifies them (Fig. 3's CNN: 0.24 after 128 steps),
    # so `adamrepro bench` compares its whole float32 curves only for a convex model.
    CONVEX: ClassVar[bool] = False

    @staticmethod
    def stochastic(opts) -> bool:
        """Whether the training objective draws noise (dropout, sampling): an optimizer that
        assumes a deterministic objective (SFO) refuses such a model."""
        return False

    @staticmethod
    def unit_inputs(opts) -> bool:
        """Whether the model reads its inputs as probabilities (the VAE's Bernoulli
        likelihood of each pixel): config validation then refuses a dataset whose features
        leave [0, 1] (data/<name>.py's `outside_unit_range`)."""
        return False

    @staticmethod
    def input_problem(opts, feature_shape: tuple[int, ...]) -> str | None:
        """Why this model cannot take examples of `feature_shape`, or None: config
        validation asks, so that such a config fails when loaded, not mid-sweep."""
        return None

    def __init__(self) -> None:
        super().__init__()
        self.generator: torch.Generator | None = None  # training noise; set by the runner
        # Convolutions on channels-last (NHWC) activations; set by the runner
        # (training.channels_last); a model without convolutions ignores it.
        self.channels_last = False

    def objective(self, batch: Batch) -> Tensor:
        """The data term of the training objective, in training mode: mean over the batch
        per run, shape (G,). `regularized_objective`, what the runner trains, adds
        `penalty()` to it."""
        raise NotImplementedError

    def lay_out_for(self, elementwise_optimizer: bool) -> None:
        """Called by the runner on a model just built on its device, before its optimizer
        is: a model may store a parameter with other strides (the same shape and values)
        where the group's optimizer is adamrepro's own batchable one, which updates every
        element alike whatever the layout (tests/optim/test_layouts.py); another optimizer
        may `view` a parameter (torch.optim.LBFGS does) and gets contiguous ones. Default:
        nothing."""

    def regularized_objective(self, batch: Batch) -> Tensor:
        """What a training step minimizes, per run (G,): `objective` plus `penalty`. A model
        may compute the two together (logreg's `fused_objective`)."""
        return self.objective(batch) + self.penalty()

    def evaluate(self, batch: Batch, generator: torch.Generator | None) -> dict[str, Tensor]:
        """Every declared metric, in evaluation mode: mean over the batch per run, (G,)."""
        raise NotImplementedError

    def distinct_inputs(self, device: torch.device) -> tuple[str, ...]:
        """Batch keys the model takes as the group's distinct minibatches, (S, B, ...) for S
        distinct seeds, with run g's at batch["run_input"][g], instead of one copy per run,
        (G, B, ...). Default: none."""
        return ()

    def noise_identity(self, group_id: str) -> str:
        """The hex digest that seeds this group's noise generators (seeding.py): the group's
        own identity at fp32 (`Group.noise_id`), unless a model needs groups that share seeds
        to share noise (the VAE)."""
        return group_id

    def penalty(self) -> Tensor | float:
        """Regularisation added to the training objective, per run (G,), or 0."""
        return 0.0

    def cast(self, x: Tensor) -> Tensor:
        """Stored features (uint8 pixels or counts, float32) in the parameters' dtype; one
        input shared by all G runs is cast once, not G times, and stays a stride-0 view."""
        dtype = next(self.parameters()).dtype
        if shared_input(x):
            return x[:1].to(dtype).expand(x.shape)
        return x.to(dtype)


Init = Literal["zeros", "normal", "glorot", "he"]


class NetworkOptions(Frozen):
    """What the networks with hidden layers share (the MLP, the CNN): an L2 penalty on the
    weights, dropout on the input and after the hidden layers, and the initialisation."""

    l2: float = Field(0.0, ge=0)
    input_dropout: float = Field(0.0, ge=0, lt=1)
    hidden_dropout: float = Field(0.0, ge=0, lt=1)
    init: Init = "he"
    init_scale: float = Field(1.0, ge=0)


class Classifier(BatchedModel):
    """A labelled classifier: `forward(x, train)` gives (G, B, classes) logits; the metrics
    are the cross-entropy and the accuracy. Its only noise is dropout: it is stochastic when
    any of its `*_dropout` rates is positive."""

    METRICS = CLASSIFIER

    @staticmethod
    def stochastic(opts) -> bool:
        return any(rate > 0 for name, rate in opts if name.endswith("_dropout"))

    def forward(self, x: Tensor, train: bool) -> Tensor:
        raise NotImplementedError

    def objective(self, batch: Batch) -> Tensor:
        return self.loss(self(batch["x"], train=True), batch["y"])

    def evaluate(self, batch: Batch, generator: torch.Generator | None) -> dict[str, Tensor]:
        output, y = self(batch["x"], train=False), batch["y"]
        return {"loss": self.loss(output, y),
                "acc": self.correct(output, y).double() / y.shape[1]}

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        """Mean data loss per run, shape (G,). Default: softmax cross-entropy."""
        return softmax_cross_entropy(output, y).mean(1)

    def correct(self, output: Tensor, y: Tensor) -> Tensor:
        """Number of correct predictions per run, shape (G,)."""
        return (output.argmax(-1) == y).sum(1)


def softmax_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """(..., classes) logits and (...) labels -> (...) losses: logsumexp(z) − z_y, the same
    function as F.cross_entropy, in float32 at least (as autocast computes a loss). On a CPU
    it is ~1.4x faster over 10 classes, forward and backward: log_softmax's kernel is slow
    when the class dimension is short, and this never materialises the log-probabilities."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    picked = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return logits.logsumexp(-1) - picked


def l2_penalty(weights: Sequence[Tensor], coefficient: float) -> Tensor | float:
    """(λ/2)·Σ‖W‖² per run; biases are not penalised (ours)."""
    if coefficient == 0.0:
        return 0.0
    total = sum(w.pow(2).flatten(1).sum(1) for w in weights)
    return 0.5 * coefficient * total
