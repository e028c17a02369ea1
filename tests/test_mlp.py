"""The batched MLP of Fig. 2: shapes, dropout only in training, per-layer init, L2, and the
Fig. 2a config end to end at smoke scale on real MNIST."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from adamrepro.models.mlp import MLP
from adamrepro.models.mlp import options as mlp_options

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mlp.yaml"


def make(seeds=(0, 1), **values) -> MLP:
    values = {"hidden": [64, 32], **values}
    model = MLP(mlp_options(values, "model"), (784,), 10, list(seeds))
    model.generator = torch.Generator().manual_seed(0)
    return model


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(2, 16, 784, generator=torch.Generator().manual_seed(1))


def test_shapes_and_defaults():
    opts = mlp_options({}, "model")
    assert opts.hidden == [1000, 1000] and opts.l2 == 0.0 and opts.init == "he"
    model = make(seeds=(0, 1, 2))
    assert [tuple(layer.weight.shape) for layer in model.layers] == [
        (3, 784, 64), (3, 64, 32), (3, 32, 10)]
    assert model(torch.rand(3, 5, 784), train=False).shape == (3, 5, 10)


def test_dropout_is_active_in_training(x):
    model = make(input_dropout=0.2, hidden_dropout=0.5)
    first, second = model(x, train=True), model(x, train=True)
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, model(x, train=False))


def test_evaluation_is_deterministic_and_noise_free(x):
    model = make(input_dropout=0.2, hidden_dropout=0.5)
    state = model.generator.get_state()
    evaluation = model(x, train=False)
    assert torch.equal(evaluation, model(x, train=False))
    assert torch.equal(model.generator.get_state(), state)  # no mask was drawn
    without = make()  # same seeds, no dropout: training is the evaluation
    assert torch.equal(without(x, train=True), evaluation)


def test_each_layer_and_seed_has_its_own_init():
    model = make(seeds=(0, 1), hidden=[100, 100, 100])
    w1, w2 = model.layers[1].weight, model.layers[2].weight
    assert not torch.equal(w1, w2)  # same shape, distinct layer_index streams
    assert not torch.equal(w1[0], w1[1])  # distinct seeds
    alone = make(seeds=(1,), hidden=[100, 100, 100])
    assert torch.equal(alone.layers[1].weight[0], w1[1])  # a run's init ignores its group
    std = model.layers[0].weight.std().item()
    assert abs(std / math.sqrt(2 / 784) - 1) < 0.02  # He: N(0, 2/fan_in); 2% >> 1/sqrt(n)


def test_l2_penalises_every_weight_matrix():
    assert make().penalty() == 0.0
    model = make(l2=0.1)
    expected = 0.05 * sum(layer.weight.pow(2).flatten(1).sum(1) for layer in model.layers)
    torch.testing.assert_close(model.penalty(), expected)


def test_config_runs_at_smoke_scale(cli, data_dir, tmp_path):
    code, _, err = cli("run", CONFIG, "--scale", "smoke", "--out", tmp_path, "--quiet",
                       "--data-dir", data_dir)
    assert code == 0, err
    best = pd.read_csv(tmp_path / "mlp" / "best.csv")
    assert set(best["method"]) == {"adagrad", "rmsprop", "sgd_nesterov", "adadelta", "adam",
                                   "adam_decay"}
    assert not best["diverged"].any()


def test_dropout_drops_the_pixels_at_the_input_rate_and_the_relus_at_the_hidden_rate(data_dir):
    """Fig. 2a's dropout, on real MNIST digits: what enters the first layer is the pixels with
    a fraction `input_dropout` (0.2) of the non-zero ones zeroed and the rest scaled by
    1/0.8; what enters each later layer is the previous layer's ReLUs with a fraction
    `hidden_dropout` (0.5) of the positive ones zeroed and the rest scaled by 1/0.5. Observed
    with forward hooks on the layers. 2 runs x 128 digits give ~38,000 non-zero pixels and
    ~32,000 positive ReLUs a layer: each fraction is within 0.01 of its rate (3.5 standard
    deviations or more; the masks come from a fixed generator, measured: 0.1997, 0.4966,
    0.5051), while a rate swapped for the other is off by 0.3."""
    from adamrepro.data import mnist

    data = mnist.load(mnist.Options(train_size=256, test_size=64), data_dir)
    x = data.train_x[:256].flatten(1).view(2, 128, 784)  # each run its own 128 digits
    rates = {"input_dropout": 0.2, "hidden_dropout": 0.5}
    model = make(hidden=[256, 256], **rates).double()
    entering = []
    for layer in model.layers:
        layer.register_forward_pre_hook(lambda _, args: entering.append(args[0].detach()))
    model(x, train=True)
    assert len(entering) == 3
    pixels = x.double()
    nonzero = pixels != 0
    kept = entering[0] != 0
    assert not (kept & ~nonzero).any()  # nothing appears where a pixel is 0
    assert abs(1 - kept[nonzero].double().mean().item() - rates["input_dropout"]) < 0.01
    torch.testing.assert_close(entering[0][kept], pixels[kept] / (1 - rates["input_dropout"]),
                               rtol=1e-12, atol=0)
    for layer, before, after in zip(model.layers[:-1], entering[:-1], entering[1:],
                                    strict=True):
        relu = layer(before).relu().detach()  # the next layer's input before its dropout
        positive, kept = relu > 0, after != 0
        assert positive.sum() > 20_000 and not (kept & ~positive).any()
        assert abs(1 - kept[positive].double().mean().item() - rates["hidden_dropout"]) < 0.01
        torch.testing.assert_close(after[kept], relu[kept] / (1 - rates["hidden_dropout"]),
                                   rtol=1e-12, atol=0)
    # and in evaluation none: every layer sees its undropped input
    entering.clear()
    model(x, train=False)
    torch.testing.assert_close(entering[0], pixels, rtol=0, atol=0)
    for layer, before, after in zip(model.layers[:-1], entering[:-1], entering[1:],
                                    strict=True):
        torch.testing.assert_close(after, layer(before).relu().detach(), rtol=0, atol=0)
