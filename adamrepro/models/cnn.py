"""The convolutional network of Fig. 3 (c64-c64-c128-1000), G runs as one computation.

Three stages of `kernel_size`x`kernel_size` convolution (`conv_channels`: 64, 64, 128) with
ReLU, each followed by `pool_size`x`pool_size` max pooling with stride `pool_stride`, then a
fully connected layer of `hidden` (1000) ReLUs, then the 10-way softmax. The paper gives the
architecture; padding, pooling padding, initialisation and dropout rates are ours:

- `padding: 2` keeps a 5x5 convolution's output the size of its input ("same");
  `pool_padding: 1` makes each 3x3/2 pooling halve the size (32 -> 16 -> 8 -> 4, as in
  cuda-convnet's CIFAR-10 nets of the time), so the fully connected layer sees 128·4·4 = 2048.
- `init: he` (N(0, 2/fan_in), fan_in = in_channels·k·k for a convolution), zero biases; every
  layer draws from its own stream of the run's seed, as `StackedLinear` does.
- `input_dropout` on the whitened pixels and `hidden_dropout` on the 1000 ReLUs, training
  only (the paper: "dropout noise applied to the input layer and fully connected layer").
- `l2`: (λ/2)·Σ‖W‖² over every weight (0 in Fig. 3).

How the G runs train together (`StackedConv2d`): activations are kept as (B, G·C, H, W) and
every convolution is one grouped convolution with `groups=G`; when all runs share their input
(one seed, so one minibatch order: a stride-0 view), the first convolution is one ordinary
convolution with G·64 output channels over the shared images. scripts/bench_cnn_batching.py
measures this against `torch.func.vmap` over a plain module (see the README's Fig. 3 section).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from adamrepro.errors import UserError
from adamrepro.models.base import (
    Classifier,
    NetworkOptions,
    StackedLinear,
    dropout,
    init_weight,
    l2_penalty,
    shared_input,
)
from adamrepro.options import options_model
from adamrepro.seeding import INIT_STREAM, seeded_generator


class Options(NetworkOptions):
    name: str = "cnn"
    conv_channels: list[PositiveInt] = Field([64, 64, 128], min_length=1)
    kernel_size: PositiveInt = 5
    padding: int = Field(2, ge=0)
    pool_size: PositiveInt = 3
    pool_stride: PositiveInt = 2
    pool_padding: int = Field(1, ge=0)
    hidden: PositiveInt = 1000


def options(values: dict, where: str) -> Options:
    opts = options_model(Options, values, where)
    if 2 * opts.pool_padding > opts.pool_size:
        raise UserError(f"{where}.pool_padding: at most half of pool_size "
                        f"({opts.pool_size}), got {opts.pool_padding}")
    return opts


def conv_weight(seed: int, in_channels: int, out_channels: int, kernel: int, init: str,
                scale: float, layer_index: int) -> Tensor:
    """One run's (out, in, k, k) kernel: `init_weight` over fan_in = in·k·k and fan_out =
    out, drawn as StackedLinear draws a (fan_in, fan_out) matrix, then laid out for conv2d."""
    generator = seeded_generator(seed, INIT_STREAM + 100 * layer_index)
    fan_in = in_channels * kernel * kernel
    flat = init_weight(fan_in, out_channels, init, scale, generator)
    return flat.T.reshape(out_channels, in_channels, kernel, kernel).contiguous()


def flat_features(opts: Options, feature_shape: tuple[int, ...]) -> int:
    """Features entering the fully connected layer: channels x side² after the stages (0:
    the images vanish on the way)."""
    size = feature_shape[-1]
    for _ in opts.conv_channels:
        size = size + 2 * opts.padding - opts.kernel_size + 1
        size = (size + 2 * opts.pool_padding - opts.pool_size) // opts.pool_stride + 1
        if size < 1:
            return 0
    return opts.conv_channels[-1] * size * size


def input_problem(opts: Options, feature_shape: tuple[int, ...]) -> str | None:
    if len(feature_shape) != 3:
        return (f"takes images (channels, height, width), and the dataset gives examples of "
                f"shape {feature_shape} (MNIST: set dataset.layout: image)")
    if flat_features(opts, feature_shape) == 0:
        return (f"the {feature_shape[-1]}-pixel images vanish before the last of the "
                f"{len(opts.conv_channels)} convolution stages (kernel_size, padding and the "
                f"pooling shrink them each stage); use fewer stages or more padding")
    return None


class StackedConv2d(nn.Module):
    """G independent convolutions as one grouped convolution over (B, G·C, H, W)."""

    def __init__(self, seeds: Sequence[int], in_channels: int, out_channels: int,
                 kernel: int, padding: int, init: str, init_scale: float,
                 layer_index: int) -> None:
        super().__init__()
        self.padding = padding
        self.weight = nn.Parameter(torch.stack([
            conv_weight(seed, in_channels, out_channels, kernel, init, init_scale, layer_index)
            for seed in seeds]))  # (G, out, in, k, k)
        self.bias = nn.Parameter(torch.zeros(len(seeds), out_channels))

    def forward(self, x: Tensor, shared: bool = False) -> Tensor:
        """x: (B, G·in, H, W), or (B, in, H, W) with `shared` (every run's input)."""
        G, out_channels = self.weight.shape[:2]
        weight = self.weight.reshape(G * out_channels, *self.weight.shape[2:])
        return F.conv2d(x, weight, self.bias.reshape(-1), padding=self.padding,
                        groups=1 if shared else G)


class CNN(Classifier):
    options = staticmethod(options)
    input_problem = staticmethod(input_problem)
    CONVOLUTIONAL = True


    def __init__(self, opts: Options, feature_shape: tuple[int, ...], num_classes: int,
                 seeds: Sequence[int]) -> None:
        super().__init__()
        self.opts = opts
        widths = [feature_shape[0], *opts.conv_channels]
        self.convs = nn.ModuleList(
            StackedConv2d(seeds, fan_in, fan_out, opts.kernel_size, opts.padding, opts.init,
                          opts.init_scale, layer_index=i)
            for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)))
        self.flat_features = flat_features(opts, feature_shape)
        first = len(self.convs)
        self.fc = StackedLinear(seeds, self.flat_features, opts.hidden, opts.init,
                                opts.init_scale, layer_index=first)
        self.out = StackedLinear(seeds, opts.hidden, num_classes, opts.init, opts.init_scale,
                                 layer_index=first + 1)

    def features(self, x: Tensor, train: bool) -> Tensor:
        """(G, B, C, H, W) images -> (G, B, flat_features) after the convolution stages."""
        G, B = x.shape[:2]
        shared = shared_input(x) and not (train and self.opts.input_dropout > 0)
        x = self.cast(x)
        if shared:
            h = x[0]  # one copy of the images serves every run
        else:
            if train:
                x = dropout(x, self.opts.input_dropout, self.generator)
            h = x.transpose(0, 1).reshape(B, G * x.shape[2], *x.shape[3:])
        if self.channels_last:
            # the convolutions and poolings keep the input's layout, and so does autograd:
            # one conversion here; the final reshape reads it back in (C, H, W) order
            h = h.contiguous(memory_format=torch.channels_last)
        for index, conv in enumerate(self.convs):
            h = conv(h, shared=shared and index == 0).relu()
            h = F.max_pool2d(h, self.opts.pool_size, self.opts.pool_stride,
                             self.opts.pool_padding)
        return h.reshape(B, G, -1).transpose(0, 1)

    def forward(self, x, train):
        h = self.fc(self.features(x, train)).relu()
        if train:
            h = dropout(h, self.opts.hidden_dropout, self.generator)
        return self.out(h)

    def penalty(self):
        weights = [conv.weight for conv in self.convs] + [self.fc.weight, self.out.weight]
        return l2_penalty(weights, self.opts.l2)
