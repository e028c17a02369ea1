"""Logistic regression (Fig. 1): softmax(x·W + b) with an L2 penalty on W.

The training objective is mean cross-entropy + (l2/2)·‖W‖²; `input_dropout` drops input
features during training only (Fig. 1 right uses 50%). With `binary: true` (two classes, Fig. 1
right) the model is the paper's binary logistic regression: one output unit, sigmoid(x·w + b),
mean binary cross-entropy, predicting class 1 when x·w + b > 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from adamrepro.errors import UserError
from adamrepro.models.base import (
    Classifier,
    Init,
    StackedLinear,
    dropout,
    l2_penalty,
    one_input,
    out_major,
    shared_input,
)
from adamrepro.models.fused_softmax import (
    softmax_regression_metrics,
    softmax_regression_objective,
)
from adamrepro.options import AutoOrBool, Frozen, options_model


class Options(Frozen):
    name: str = "logreg"
    l2: float = Field(1e-4, ge=0)
    input_dropout: float = Field(0.0, ge=0, lt=1)
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)
    binary: bool = False
    # Train on the non-zero inputs alone (ours, for sparse inputs such as IMDB's bag of
    # words, ~1.3% non-zero): dropout masks are drawn for the non-zeros only, with the same
    # distribution as the dense path's (a zero input stays zero whatever its mask), but not
    # the same draws, so the curves are other samples of the same process. CPU only: finding
    # the non-zeros is a host sync every step, which a GPU (and its CUDA graphs) cannot
    # afford. `auto`: on a CPU whenever there is input dropout, the dense path on a GPU.
    sparse_input: AutoOrBool = "auto"
    # The training objective's forward and backward by hand, the penalty's gradient included,
    # and the evaluation's loss and accuracy (fused_softmax.py; ours), where it applies: the
    # softmax model, every run reading the same minibatch (no input dropout), and no bfloat16
    # autocast; elsewhere autograd, as with false. The same function and gradient up to
    # float rounding. `auto`: on a CPU, where it takes 17% off a step and 34% off an
    # evaluation of Fig. 1 (left)'s groups; autograd on a GPU until one measures it.
    fused_objective: AutoOrBool = "auto"


def options(values: dict, where: str) -> Options:
    return options_model(Options, values, where)


def sparse_input_linear(x: Tensor, weight: Tensor, bias: Tensor, rate: float,
                        keep_at: Callable, run_input: Tensor | None = None) -> Tensor:
    """(S, B, D) inputs -> (G, B, outputs): dropout(x)·W + b computed on the non-zeros of x
    alone. Run g reads input `run_input[g]` (default: its own, S = G). `keep_at(run, rows,
    cols)` gives the kept mask at those non-zeros: (G, nnz) when every run shares the input
    (`run` None), else (nnz,) at runs `run`, run after run, as x[run_input].nonzero() would
    order them.

    Under bfloat16 autocast it computes what autocast's matmul would (runner/precision.py):
    the dropped-out inputs, the weights and the bias rounded to bfloat16, their products
    (exact in float32) summed in float32 and the result rounded to bfloat16; the gradients
    of the weights and bias are rounded to bfloat16 once summed, as the matmul's are.
    Gathers and index_add are no autocast ops: without this, `bf16` would silently train in
    float32 on this path (a precision measurement on IMDB found it moved no curve at all)."""
    G, outputs = weight.shape[0], weight.shape[-1]
    B = x.shape[1]
    low = (torch.get_autocast_dtype(x.device.type)
           if torch.is_autocast_enabled(x.device.type) else None)
    weight, bias = _rounded(weight, low), _rounded(bias, low)
    if shared_input(x):
        rows, cols = x[0].nonzero(as_tuple=True)
        values = x[0][rows, cols].to(weight.dtype)
        scaled = _rounded(values * keep_at(None, rows, cols) / (1.0 - rate), low)  # (G, nnz)
        # index_select, not weight[:, cols]: the backward of advanced indexing accumulates
        # in a thread-dependent order on a CPU (torch.use_deterministic_algorithms lists
        # it), enough to change a run at a large step size from one call to the next;
        # index_select's (index_add) adds in index order
        terms = scaled.unsqueeze(-1) * weight.index_select(1, cols)  # (G, nnz, outputs)
        out = weight.new_zeros(G, B, outputs).index_add(1, rows, terms)
    else:
        runs, rows, cols = x.nonzero(as_tuple=True)
        values = x[runs, rows, cols].to(weight.dtype)
        if run_input is not None:
            # runs that share a seed share a minibatch: find its non-zeros once and repeat
            # them per run, rather than copy and scan the dense input once per run
            counts = torch.bincount(runs, minlength=x.shape[0])
            per_run = counts[run_input]
            input_start = (counts.cumsum(0) - counts)[run_input]
            block_start = per_run.cumsum(0) - per_run
            runs = torch.repeat_interleave(torch.arange(G, device=x.device), per_run)
            pick = torch.arange(len(runs), device=x.device) - block_start[runs] + \
                input_start[runs]
            rows, cols, values = rows[pick], cols[pick], values[pick]
        scaled = _rounded(values * keep_at(runs, rows, cols) / (1.0 - rate), low)  # (nnz,)
        terms = scaled.unsqueeze(-1) * weight.flatten(0, 1).index_select(
            0, runs * weight.shape[1] + cols)  # (nnz, outputs), as the shared path
        out = weight.new_zeros(G * B, outputs).index_add(0, runs * B + rows, terms)
        out = out.view(G, B, outputs)
    out = out + bias
    return out if low is None else out.to(low)  # autocast's baddbmm: a bfloat16 result


def _rounded(values: Tensor, low: torch.dtype | None) -> Tensor:
    """`values` rounded to `low` (and back), as autocast rounds a matmul's input; or as is."""
    return values if low is None else values.to(low).to(values.dtype)


class LogReg(Classifier):
    options = staticmethod(options)
    # Both paths draw masks from one distribution, just as a CPU and a GPU draw other masks
    # for the same run: which one ran follows from the run's recorded device.
    IMPLEMENTATION_OPTIONS = {"sparse_input": False, "fused_objective": False}
    CONVEX = True  # cross-entropy of an affine map, plus an L2 penalty

    def __init__(self, opts: Options, feature_shape: tuple[int, ...], num_classes: int,
                 seeds: Sequence[int]) -> None:
        super().__init__()
        self.opts = opts
        in_features = math.prod(feature_shape)
        if opts.binary and num_classes != 2:
            raise UserError(f"model.binary: true needs a two-class dataset, this one has "
                            f"{num_classes} classes; set binary: false")
        outputs = 1 if opts.binary else num_classes
        self.linear = StackedLinear(seeds, in_features, outputs, opts.init,
                                    opts.init_scale, layer_index=0)

    def lay_out_for(self, elementwise_optimizer: bool) -> None:
        # out-major where the fused objective may run on the model's device, for its
        # (G·classes, D) matmuls (fused_softmax.py): no copy of the weights into it, nor of
        # their gradient out of it, each step (~7% of a step of Fig. 1 (left)'s groups).
        # Nowhere else (a GPU's `auto`): a group of one run trains through `baddbmm`, which
        # would read out-major weights as another matmul operand and copy its gradient into
        # them every step. Where the autograd path still meets them (bfloat16 autocast), the
        # shared-input path copies the weights into its (D, G·classes) matrix either way.
        if elementwise_optimizer and self._fused_on(self.linear.weight.device):
            self.linear.weight = nn.Parameter(out_major(self.linear.weight.detach()))

    def forward(self, x, train):
        if train and self.opts.input_dropout > 0 and self._sparse_on(x.device):
            return self._sparse_forward(x, None)
        x = self.cast(x.flatten(2))
        if train:
            x = dropout(x, self.opts.input_dropout, self.generator)
        if shared_input(x):
            # Still one input for every run (evaluation, or no dropout): a single
            # (B, D)·(D, G·outputs) matmul instead of G matmuls over G copies of the input.
            weight = self.linear.weight
            G, D, outputs = weight.shape
            out = x[0] @ weight.permute(1, 0, 2).reshape(D, G * outputs)
            return out.view(-1, G, outputs).transpose(0, 1) + self.linear.bias
        return self.linear(x)

    def _sparse_forward(self, x: Tensor, run_input: Tensor | None) -> Tensor:
        rate = self.opts.input_dropout
        generator, dtype = self.generator, self.linear.weight.dtype
        runs = self.linear.weight.shape[0]

        def keep_at(run, rows, cols):
            shape = (runs, len(rows)) if run is None else (len(rows),)
            return torch.rand(shape, generator=generator, dtype=dtype) >= rate

        return sparse_input_linear(x.flatten(2), self.linear.weight, self.linear.bias,
                                   rate, keep_at, run_input)

    def distinct_inputs(self, device: torch.device) -> tuple[str, ...]:
        # the sparse path finds the non-zeros of each seed's minibatch once (runner/group.py)
        if self.opts.input_dropout > 0 and self._sparse_on(device):
            return ("x",)
        return ()

    def regularized_objective(self, batch):
        one = self._fused_inputs(batch)
        if one is not None and not torch.is_autocast_enabled(one[0].device.type):
            x, y = one
            return softmax_regression_objective(x, self.linear.weight, self.linear.bias, y,
                                                self.opts.l2)
        return super().regularized_objective(batch)

    def evaluate(self, batch, generator):
        one = self._fused_inputs(batch)
        if one is not None:
            x, y = one
            loss, correct = softmax_regression_metrics(x, self.linear.weight,
                                                       self.linear.bias, y)
            return {"loss": loss, "acc": correct.double() / len(y)}
        return super().evaluate(batch, generator)

    def _fused_inputs(self, batch) -> tuple[Tensor, Tensor] | None:
        """Where the fused path applies: the one minibatch every run reads, (B, D) in the
        weights' dtype, and its labels (B,); else None."""
        x, y = batch["x"], batch["y"]
        if not (self._fused_on(x.device) and one_input(x) and one_input(y)):
            return None
        return x[0].flatten(1).to(self.linear.weight.dtype), y[0]

    @staticmethod
    def fuses_on(opts: Options, device: torch.device) -> bool:
        """Whether `fused_objective` applies to a model of these options on `device` (the
        minibatch must also be one for every run, outside bfloat16 autocast); the kernel
        bench asks, to time it where `auto` leaves it off."""
        if opts.binary or opts.input_dropout > 0 or opts.fused_objective is False:
            return False
        return opts.fused_objective is True or device.type == "cpu"

    def _fused_on(self, device: torch.device) -> bool:
        return self.fuses_on(self.opts, device)

    def objective(self, batch):
        if "run_input" in batch:
            return self.loss(self._sparse_forward(batch["x"], batch["run_input"]), batch["y"])
        return super().objective(batch)

    def _sparse_on(self, device: torch.device) -> bool:
        if self.opts.sparse_input is True and device.type != "cpu":
            raise UserError("model.sparse_input is for the CPU (its non-zeros are found "
                            "with a host sync every step); set it to auto or false on a GPU")
        return self.opts.sparse_input is True or (
            self.opts.sparse_input == "auto" and device.type == "cpu")

    def loss(self, output, y):
        if not self.opts.binary:
            return super().loss(output, y)
        logits = output.squeeze(-1)
        return F.binary_cross_entropy_with_logits(
            logits, y.to(logits.dtype), reduction="none").mean(1)

    def correct(self, output, y):
        if not self.opts.binary:
            return super().correct(output, y)
        return ((output.squeeze(-1) > 0) == (y == 1)).sum(1)

    def penalty(self):
        return l2_penalty([self.linear.weight], self.opts.l2)
