"""Multiclass logistic regression (Fig. 1): softmax(x·W + b) with an L2 penalty on W.

The training objective is mean cross-entropy + (l2/2)·‖W‖²; `input_dropout` drops input
features during training only (Fig. 1 right uses 50%).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from adamrepro.config import Frozen, options_model
from adamrepro.models.base import BatchedModel, StackedLinear, dropout, l2_penalty


class Options(Frozen):
    name: str = "logreg"
    l2: float = Field(1e-4, ge=0)
    input_dropout: float = Field(0.0, ge=0, lt=1)
    init: Literal["zeros", "normal", "glorot", "he"] = "normal"
    init_scale: float = Field(0.01, ge=0)


def options(values: dict, where: str) -> Options:
    return options_model(Options, values, where)


class LogReg(BatchedModel):
    options = staticmethod(options)

    def __init__(self, opts: Options, feature_shape: tuple[int, ...], num_classes: int,
                 seeds: Sequence[int]) -> None:
        super().__init__()
        self.opts = opts
        in_features = math.prod(feature_shape)
        self.linear = StackedLinear(seeds, in_features, num_classes, opts.init,
                                    opts.init_scale, layer_index=0)

    def forward(self, x, train):
        x = x.flatten(2).float()
        if train:
            x = dropout(x, self.opts.input_dropout, self.generator)
        return self.linear(x)

    def penalty(self):
        return l2_penalty([self.linear.weight], self.opts.l2)
