"""Multilayer perceptron (Fig. 2): 784-1000-1000-10 with ReLU units and a softmax output.

Training objective: mean cross-entropy + (l2/2)·Σ‖W‖² over every weight matrix (biases are not
penalised). Fig. 2a regularises with dropout only (`input_dropout` on the pixels,
`hidden_dropout` after each hidden ReLU, training only; the rates are ours); Fig. 2b uses the
deterministic cost, `l2` > 0 and no dropout. `init` applies to every layer, each layer drawing
from its own stream of the run's seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field, PositiveInt
from torch import nn

from adamrepro.models.base import (
    Classifier,
    NetworkOptions,
    StackedLinear,
    dropout,
    l2_penalty,
)
from adamrepro.options import options_model


class Options(NetworkOptions):
    name: str = "mlp"
    hidden: list[PositiveInt] = Field([1000, 1000], min_length=1)


def options(values: dict, where: str) -> Options:
    return options_model(Options, values, where)


class MLP(Classifier):
    options = staticmethod(options)


    def __init__(self, opts: Options, feature_shape: tuple[int, ...], num_classes: int,
                 seeds: Sequence[int]) -> None:
        super().__init__()
        self.opts = opts
        widths = [math.prod(feature_shape), *opts.hidden, num_classes]
        self.layers = nn.ModuleList(
            StackedLinear(seeds, fan_in, fan_out, opts.init, opts.init_scale, layer_index=i)
            for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )

    def forward(self, x, train):
        x = self.cast(x.flatten(2))
        if train:
            x = dropout(x, self.opts.input_dropout, self.generator)
        for layer in self.layers[:-1]:
            x = layer(x).relu()
            if train:
                x = dropout(x, self.opts.hidden_dropout, self.generator)
        return self.layers[-1](x)

    def penalty(self):
        return l2_penalty([layer.weight for layer in self.layers], self.opts.l2)
