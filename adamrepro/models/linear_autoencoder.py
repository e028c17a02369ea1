"""A linear autoencoder: a workload without labels (the core's test of a model with its own
loss and metrics).

    z = x·W_enc + b_enc  (code of `code_size` units);   x̂ = z·W_dec + b_dec
    recon_error = ½·Σ_pixels (x̂ − x)²,  mean over the images of the batch

Its optimum is PCA's subspace, so the error it can reach is known in closed form on any data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pydantic import Field, PositiveInt

from adamrepro.metrics import Metric, MetricSet
from adamrepro.models.base import BatchedModel, Init, StackedLinear, l2_penalty
from adamrepro.options import Frozen, options_model


class Options(Frozen):
    name: str = "linear_autoencoder"
    code_size: PositiveInt = 32
    l2: float = Field(0.0, ge=0)
    init: Init = "glorot"
    init_scale: float = Field(1.0, ge=0)


def options(values: dict, where: str) -> Options:
    return options_model(Options, values, where)


class LinearAutoencoder(BatchedModel):
    METRICS = MetricSet((Metric("recon_error", label="reconstruction error"),),
                        objective="recon_error")
    options = staticmethod(options)

    def __init__(self, opts: Options, feature_shape: tuple[int, ...], num_classes: int | None,
                 seeds: Sequence[int]) -> None:
        super().__init__()
        self.opts = opts
        features = math.prod(feature_shape)
        self.encoder = StackedLinear(seeds, features, opts.code_size, opts.init,
                                     opts.init_scale, layer_index=0)
        self.decoder = StackedLinear(seeds, opts.code_size, features, opts.init,
                                     opts.init_scale, layer_index=1)

    def recon_error(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cast(x.flatten(2))
        error = self.decoder(self.encoder(x)) - x
        return 0.5 * error.pow(2).sum(-1).mean(-1)

    def objective(self, batch):
        return self.recon_error(batch["x"])

    def evaluate(self, batch, generator):
        return {"recon_error": self.recon_error(batch["x"])}

    def penalty(self):
        return l2_penalty([self.encoder.weight, self.decoder.weight], self.opts.l2)
