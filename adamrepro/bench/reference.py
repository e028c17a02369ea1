"""The straightforward PyTorch loop: the baseline that `adamrepro bench` times the batched
runner against, and the oracle that the equality tests compare it with.

One run after another, each with a plain `nn.Module`, a `DataLoader`, a `torch.optim`
optimizer (with `LambdaLR` for α_t = α/√t) and a `.item()` on every step's loss, as a typical
training script has it. It is written to trace the SAME curve as `runner.group.train_group`:

- initial weights: `seeded_generator(seed, INIT_STREAM + 100·layer)` and `init_weight`, as
  `StackedLinear` draws them, transposed into `nn.Linear`'s (out, in) layout;
- minibatch order: a `Sampler` that yields `MinibatchOrder`'s permutation for the run's seed,
  pass after pass, with the same `drop_last`;
- objective: the model's data loss (softmax or binary cross-entropy) + its L2 penalty,
  in `training.dtype`;
- records: the mean minibatch objective of a pass, then the full training objective and
  every metric the batched model declares on the test set (a classifier's loss and accuracy,
  the VAE's negative ELBO and its two terms), evaluated in chunks of `eval_batch_size`.

Dropout masks and the VAE's ε cannot match (one batched draw vs one draw per run), so
equality is only expected for models that draw no noise (logistic regression, the MLP and
the CNN without dropout). An optimizer that torch lacks (or a setting torch's
class does not have, e.g. Adam without bias correction) falls back to adamrepro's own class
with scalar hyperparameters, which is an ordinary `torch.optim.Optimizer` too.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import TensorDataset as TorchTensorDataset

from adamrepro.config import Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.metrics import CLASSIFIER, MetricSet
from adamrepro.models import MODELS
from adamrepro.models.base import init_weight
from adamrepro.models.vae import VAE
from adamrepro.optim import OPTIMIZERS, build
from adamrepro.runner.group import MinibatchOrder, RunCurve
from adamrepro.runner.plan import RunSpec
from adamrepro.runner.precision import float32_math
from adamrepro.seeding import INIT_STREAM, REFERENCE_NOISE_STREAM, seeded_generator

# ---------------------------------------------------------------------------------------------
# Models: plain nn.Modules, initialized exactly as the batched ones.


def seeded_linear(seed: int, in_features: int, out_features: int, init: str,
                  init_scale: float, layer_index: int) -> nn.Linear:
    """An `nn.Linear` holding slice `seed` of what `StackedLinear` would draw."""
    linear = nn.Linear(in_features, out_features)
    generator = seeded_generator(seed, INIT_STREAM + 100 * layer_index)
    with torch.no_grad():
        linear.weight.copy_(init_weight(in_features, out_features, init, init_scale,
                                        generator).T)
        linear.bias.zero_()
    return linear


class ReferenceModel(nn.Module):
    """A plain classifier: `net` maps (B, ...) to (B, outputs); softmax cross-entropy by
    default. `METRICS` is what the batched model declares, so both record the same columns."""

    METRICS: MetricSet = CLASSIFIER
    net: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(output, y)

    def correct(self, output: Tensor, y: Tensor) -> Tensor:
        return (output.argmax(-1) == y).sum()

    def penalty(self) -> Tensor | float:
        return 0.0

    def objective(self, x: Tensor, y: Tensor) -> Tensor:
        """The minibatch's mean data loss as trained (the penalty is added by the loop)."""
        return self.loss(self(x), y)

    def metric_sums(self, x: Tensor, y: Tensor) -> dict[str, float]:
        """Every declared metric, summed over the chunk's examples (a host sync: evaluation)."""
        output = self(x)
        return {"loss": self.loss(output, y).double().item() * len(y),
                "acc": float(self.correct(output, y))}


class LogRegReference(ReferenceModel):
    """softmax(x·W + b), or sigmoid(x·w + b) with `binary`, with (λ/2)·‖W‖² as the penalty,
    as `models.logreg.LogReg`."""

    def __init__(self, opts, feature_shape: tuple[int, ...], num_classes: int,
                 seed: int) -> None:
        super().__init__()
        self.l2, self.binary = opts.l2, opts.binary
        outputs = 1 if opts.binary else num_classes
        self.linear = seeded_linear(seed, math.prod(feature_shape), outputs, opts.init,
                                    opts.init_scale, layer_index=0)
        self.net = nn.Sequential(nn.Flatten(), nn.Dropout(opts.input_dropout), self.linear)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        if not self.binary:
            return super().loss(output, y)
        logits = output.squeeze(-1)
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))

    def correct(self, output: Tensor, y: Tensor) -> Tensor:
        if not self.binary:
            return super().correct(output, y)
        return ((output.squeeze(-1) > 0) == (y == 1)).sum()

    def penalty(self) -> Tensor | float:
        if self.l2 == 0.0:
            return 0.0
        return 0.5 * self.l2 * self.linear.weight.pow(2).sum()


class MLPReference(ReferenceModel):
    """Linear-ReLU layers with dropout, as `models.mlp.MLP`; every weight is penalised."""

    def __init__(self, opts, feature_shape: tuple[int, ...], num_classes: int,
                 seed: int) -> None:
        super().__init__()
        self.l2 = opts.l2
        widths = [math.prod(feature_shape), *opts.hidden, num_classes]
        self.linears = nn.ModuleList(
            seeded_linear(seed, fan_in, fan_out, opts.init, opts.init_scale, index)
            for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(opts.input_dropout)]
        for linear in self.linears[:-1]:
            layers += [linear, nn.ReLU(), nn.Dropout(opts.hidden_dropout)]
        self.net = nn.Sequential(*layers, self.linears[-1])

    def penalty(self) -> Tensor | float:
        if self.l2 == 0.0:
            return 0.0
        return 0.5 * self.l2 * sum(linear.weight.pow(2).sum() for linear in self.linears)


class CNNReference(ReferenceModel):
    """The CNN of Fig. 3 as nn.Conv2d/nn.MaxPool2d/nn.Linear layers, initialised with run
    `seed`'s slice of what `models.cnn.CNN` draws; every weight is penalised."""

    def __init__(self, opts, feature_shape: tuple[int, ...], num_classes: int,
                 seed: int) -> None:
        super().__init__()
        from adamrepro.models.cnn import conv_weight, flat_features

        self.l2 = opts.l2
        widths = [feature_shape[0], *opts.conv_channels]
        layers: list[nn.Module] = [nn.Dropout(opts.input_dropout)]
        self.weighted: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            conv = nn.Conv2d(fan_in, fan_out, opts.kernel_size, padding=opts.padding)
            with torch.no_grad():
                conv.weight.copy_(conv_weight(seed, fan_in, fan_out, opts.kernel_size,
                                              opts.init, opts.init_scale, index))
                conv.bias.zero_()
            layers += [conv, nn.ReLU(),
                       nn.MaxPool2d(opts.pool_size, opts.pool_stride, opts.pool_padding)]
            self.weighted.append(conv)
        flat = flat_features(opts, feature_shape)
        first = len(widths) - 1
        fc = seeded_linear(seed, flat, opts.hidden, opts.init, opts.init_scale, first)
        out = seeded_linear(seed, opts.hidden, num_classes, opts.init, opts.init_scale,
                            first + 1)
        self.weighted += [fc, out]
        self.net = nn.Sequential(*layers, nn.Flatten(), fc, nn.ReLU(),
                                 nn.Dropout(opts.hidden_dropout), out)

    def penalty(self) -> Tensor | float:
        if self.l2 == 0.0:
            return 0.0
        return 0.5 * self.l2 * sum(layer.weight.pow(2).sum() for layer in self.weighted)


class VAEReference(ReferenceModel):
    """The VAE of Fig. 4 (`models.vae.VAE`) as four nn.Linear layers initialised with run
    `seed`'s slice of what the batched model draws. Its ε comes from a generator of the run's
    own seed (`REFERENCE_NOISE_STREAM`), on the training device: not the batched group's
    draws, so its curves match the batched ones in distribution only, as dropout's do."""

    METRICS = VAE.METRICS

    def __init__(self, opts, feature_shape: tuple[int, ...], num_classes: int | None,
                 seed: int) -> None:
        super().__init__()
        self.opts, self.seed = opts, seed
        pixels = math.prod(feature_shape)
        widths = ((pixels, opts.hidden), (opts.hidden, 2 * opts.latent),
                  (opts.latent, opts.hidden), (opts.hidden, pixels))
        self.enc_hidden, self.enc_out, self.dec_hidden, self.dec_out = (
            seeded_linear(seed, fan_in, fan_out, opts.init, opts.init_scale, index)
            for index, (fan_in, fan_out) in enumerate(widths))
        self.generator: torch.Generator | None = None  # made on the device of the first draw

    def terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """−log p(x|z) and KL per image, at one ε per image: (B,), (B,)."""
        x = x.flatten(1)
        if self.opts.likelihood == "binarized":
            x = (x > 0.5).to(x.dtype)
        mu, log_var = self.enc_out(F.softplus(self.enc_hidden(x))).chunk(2, dim=-1)
        if self.generator is None:
            self.generator = seeded_generator(self.seed, REFERENCE_NOISE_STREAM, mu.device)
        noise = torch.randn(mu.shape, generator=self.generator, device=mu.device,
                            dtype=mu.dtype)
        z = mu + (0.5 * log_var).exp() * noise
        logits = self.dec_out(F.softplus(self.dec_hidden(z)))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)
        return recon, kl

    def objective(self, x: Tensor, y: Tensor) -> Tensor:
        recon, kl = self.terms(x)
        return (recon + kl).mean()

    def metric_sums(self, x: Tensor, y: Tensor) -> dict[str, float]:
        recon, kl = (t.double() for t in self.terms(x))
        return {"neg_elbo": (recon + kl).sum().item(), "recon": recon.sum().item(),
                "kl": kl.sum().item()}


REFERENCE_MODELS: dict[str, type[ReferenceModel]] = {
    "logreg": LogRegReference,
    "mlp": MLPReference,
    "cnn": CNNReference,
    "vae": VAEReference,
}


def build_reference_model(run: RunSpec, data: TensorDataset) -> ReferenceModel:
    name = run.model["name"]
    if name not in REFERENCE_MODELS or name not in MODELS:
        raise ValueError(f"no reference loop for model {name!r}; it has: "
                         f"{', '.join(n for n in REFERENCE_MODELS if n in MODELS)}")
    opts = MODELS[name].options(dict(run.model), "model")
    return REFERENCE_MODELS[name](opts, data.feature_shape, data.num_classes, run.seed)


# ---------------------------------------------------------------------------------------------
# Optimizers: torch.optim where it has the algorithm.


def _adam_like(amsgrad: bool = False) -> Callable[..., torch.optim.Optimizer]:
    return lambda params, **h: torch.optim.Adam(params, amsgrad=amsgrad, **h)


# name -> (constructor, hyperparameters it takes, hyperparameters that must keep the value
# given here, where torch's class has only that behaviour). `lr_decay` is handled by LambdaLR.
TORCH_OPTIMIZERS: dict[str, tuple[Callable[..., torch.optim.Optimizer], set[str], dict]] = {
    "adam": (_adam_like(), {"lr", "betas", "eps", "weight_decay"},
             {"bias_correction": True, "beta1_decay_rate": 0.0, "averaging": None,
              "track_step_ratio": False}),
    "amsgrad": (_adam_like(amsgrad=True), {"lr", "betas", "eps", "weight_decay"}, {}),
    "adamw": (torch.optim.AdamW, {"lr", "betas", "eps", "weight_decay"}, {}),
    "nadam": (torch.optim.NAdam, {"lr", "betas", "eps", "weight_decay", "momentum_decay"}, {}),
    "adagrad": (
        lambda params, **h: torch.optim.Adagrad(params, lr_decay=0.0,
                                                initial_accumulator_value=0.0, **h),
        {"lr", "eps", "weight_decay"}, {}),
    "sgd_nesterov": (
        lambda params, **h: torch.optim.SGD(params, nesterov=True, dampening=0.0, **h),
        {"lr", "momentum", "weight_decay"}, {}),
    "rmsprop": (torch.optim.RMSprop, {"lr", "alpha", "eps", "momentum", "weight_decay"}, {}),
    "adadelta": (torch.optim.Adadelta, {"lr", "rho", "eps", "weight_decay"}, {}),
}


def _fixed_value_holds(value, required) -> bool:
    if required is None:
        return value is None or value == 0
    return value == required


def build_reference_optimizer(name: str, hparams: dict, params) -> tuple[
        torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None, bool]:
    """(optimizer, scheduler or None, whether it is torch's own class).

    Hyperparameters the config leaves out take adamrepro's defaults, not torch's (they can
    differ: torch's SGD has no momentum by default, ours 0.9).
    """
    signature = inspect.signature(OPTIMIZERS[name].__init__).parameters.values()
    defaults = {p.name: p.default for p in signature if p.default is not inspect.Parameter.empty}
    hparams = {**defaults, **hparams}
    lr_decay = hparams.pop("lr_decay", "none")
    params = list(params)
    entry = TORCH_OPTIMIZERS.get(name)
    if entry is not None:
        make, takes, fixed = entry
        known = set(hparams) <= takes | set(fixed)
        if known and all(_fixed_value_holds(hparams.get(k, v), v) for k, v in fixed.items()):
            kwargs = {k: (tuple(v) if isinstance(v, list) else v)
                      for k, v in hparams.items() if k in takes}
            optimizer = make(params, **kwargs)
            scheduler = None
            if lr_decay == "sqrt":  # LambdaLR's counter starts at 0 for the first step
                scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer, lambda step: 1.0 / math.sqrt(step + 1))
            elif lr_decay != "none":
                raise ValueError(f"unknown lr_decay {lr_decay!r}")
            return optimizer, scheduler, True
    return build(name, params, lr_decay=lr_decay, **hparams), None, False


# ---------------------------------------------------------------------------------------------
# Data order and the loop.


class PermutationSampler(Sampler[int]):
    """Yields, pass after pass, the permutation `MinibatchOrder` draws for `seed`."""

    def __init__(self, seed: int, n: int) -> None:
        self.order = MinibatchOrder([seed], n, torch.device("cpu"))
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(self.order.new_pass()[0].tolist())

    def __len__(self) -> int:
        return self.n


@torch.no_grad()
def evaluate_reference(model: ReferenceModel, x: Tensor, y: Tensor, chunk: int, dtype: torch.dtype,
                       with_penalty: bool) -> dict[str, float]:
    """Every declared metric's mean (the objective plus the penalty when asked), in chunks
    as the runner evaluates."""
    model.eval()
    sums: dict[str, float] = {}
    for start in range(0, len(x), chunk):
        xb, yb = x[start : start + chunk].to(dtype), y[start : start + chunk]
        for name, value in model.metric_sums(xb, yb).items():
            sums[name] = sums.get(name, 0.0) + value
    means = {name: value / len(x) for name, value in sums.items()}
    if with_penalty:
        means[model.METRICS.objective] += float(model.penalty())
    return means


def train_run(exp: Experiment, run: RunSpec, data: TensorDataset, epochs: int | None = None,
              on_pass: Callable[[int], None] = lambda epoch: None,
              host_data: TensorDataset | None = None) -> RunCurve:
    """Train one run for `epochs` passes (default: the config's) the straightforward way.

    `data` is on the training device (evaluation reads it there); the DataLoader reads
    `host_data`, the same data in host memory (default: `data` moved to the CPU). In full
    float32: torch's default lets cuDNN run convolutions in TF32, which made the reference
    CNN faster than the float32 it is said to be (the batched runner pins the flags in its
    groups: runner/precision.py), and the GPU ratio smaller than it is.
    """
    with float32_math(False):
        return _train_run(exp, run, data, epochs, on_pass, host_data)


def _train_run(exp: Experiment, run: RunSpec, data: TensorDataset, epochs: int | None,
               on_pass: Callable[[int], None], host_data: TensorDataset | None) -> RunCurve:
    training = exp.training
    epochs = training.epochs if epochs is None else epochs
    device, dtype = data.train_x.device, getattr(torch, training.dtype)
    model = build_reference_model(run, data).to(device, dtype)
    optimizer, scheduler, _ = build_reference_optimizer(run.optimizer, run.hparams,
                                                        model.parameters())
    n = len(data.train_x)
    # the usual setup: the dataset in host memory, each batch copied to the device
    host = host_data if host_data is not None else data
    loader = DataLoader(TorchTensorDataset(host.train_x.cpu(), host.train_y.cpu()),
                        batch_size=training.batch_size, sampler=PermutationSampler(run.seed, n),
                        drop_last=training.drop_last and n >= training.batch_size,
                        num_workers=0)

    rows: list[dict] = []
    start_time = time.perf_counter()
    objective = model.METRICS.objective

    def log_pass(epoch: int, train_loss: float) -> bool:
        found = {
            "train": {objective: train_loss},
            "train_full": evaluate_reference(model, data.train_x, data.train_y,
                                             training.eval_batch_size, dtype, True),
            "test": evaluate_reference(model, data.test_x, data.test_y,
                                       training.eval_batch_size, dtype, False),
        }
        values = {c.name: found[c.split][c.metric] for c in model.METRICS.columns()}
        diverged = not all(math.isfinite(v) for v in values.values()) and epoch > 0
        rows.append({"epoch": epoch, "seconds": time.perf_counter() - start_time,
                     "group_size": 1, "diverged": diverged, **values})
        return diverged

    log_pass(0, float("nan"))
    rows[0]["seconds"] = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum, steps = 0.0, 0
        for xb, yb in loader:
            xb, yb = xb.to(device, dtype), yb.to(device)
            loss = model.objective(xb, yb) + model.penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.item()  # a host sync every step, as a typical loop has
            steps += 1
        diverged = log_pass(epoch, loss_sum / max(steps, 1))
        on_pass(epoch)
        if diverged:
            return RunCurve(rows, True)
    return RunCurve(rows, False)
