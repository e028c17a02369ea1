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
