"""The CNN of Fig. 3: the shape of every stage, batched runs equal to one-by-one runs and to
the plain nn.Module loop in float64, the within-pass records, and the smoke run on real data.

Equality runs on 256 real (unverified, whitened) CIFAR-10 images, 2 passes, with narrow
channels to stay fast; the arithmetic is that of the full network (grouped vs plain
convolutions, the same pooling and layers). Measured: batched vs alone and vs the reference
agree to ~1e-14 relative; rtol 1e-9 as in test_batched_equivalence.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from same_curves import alone, assert_same_curve, seeds_together, table

from adamrepro.bench.reference import CNNReference, train_run
from adamrepro.config import load_experiment, parse_experiment
from adamrepro.models.cnn import CNN, Options
from adamrepro.runner.executors import load_data
from adamrepro.runner.group import train_group
from adamrepro.runner.plan import plan

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_output_shape_of_every_stage():
    opts = Options()
    model = CNN(opts, (3, 32, 32), 10, seeds=[0, 1])
    G, B = 2, 3
    h = torch.randn(B, G * 3, 32, 32)
    shapes = []
    for conv in model.convs:
        h = conv(h).relu()
        shapes.append(tuple(h.shape))
        h = torch.nn.functional.max_pool2d(h, opts.pool_size, opts.pool_stride,
                                           opts.pool_padding)
        shapes.append(tuple(h.shape))
    assert shapes == [(B, G * 64, 32, 32), (B, G * 64, 16, 16), (B, G * 64, 16, 16),
                      (B, G * 64, 8, 8), (B, G * 128, 8, 8), (B, G * 128, 4, 4)]
    x = torch.randn(G, B, 3, 32, 32)
    assert model.features(x, train=False).shape == (G, B, 128 * 4 * 4)
    assert model.fc.weight.shape == (G, 2048, 1000) and model.out.weight.shape == (G, 1000, 10)
    assert model(x, train=True).shape == (G, B, 10)
    # the plain twin: the same stages
    twin = CNNReference(opts, (3, 32, 32), 10, seed=1)
    assert twin(x[1]).shape == (B, 10)
    without_padding = Options(pool_padding=0)  # 32 -> 15 -> 7 -> 3
    assert CNN(without_padding, (3, 32, 32), 10, [0]).flat_features == 128 * 3 * 3


def test_the_bundled_config_at_paper_scale_is_the_paper_s_network():
    """PAPER.md's Fig. 3: c64-c64-c128-1000, three stages of 5x5 convolution and 3x3 max-pool
    with stride 2, a 1000-unit ReLU layer, a softmax over CIFAR-10's 10 classes, for every
    method. The shape test above builds Options()'s defaults: an edit of the config (3x3
    kernels, another width) went unseen. Dropout only on the methods named +dropout."""
    from adamrepro.config import resolve_config_arg

    exp = load_experiment(resolve_config_arg("cnn_cifar10")).at_scale("paper")
    for label, method in exp.methods.items():
        opts = CNN.options({**exp.model, **method.model}, "model")
        assert (opts.conv_channels, opts.kernel_size, opts.pool_size, opts.pool_stride,
                opts.hidden) == ([64, 64, 128], 5, 3, 2, 1000), label
        dropout = (opts.input_dropout, opts.hidden_dropout)
        assert (dropout != (0.0, 0.0)) == label.endswith("+dropout"), (label, dropout)
        model = CNN(opts, (3, 32, 32), 10, seeds=[0])
        # 32 -> 16 -> 8 -> 4 pixels a side after the three pools; parameters by the paper's
        # layer sizes: three convolutions, the 1000-unit layer, the softmax (with biases)
        side = 32
        for _ in opts.conv_channels:
            side = (side + 2 * opts.pool_padding - opts.pool_size) // opts.pool_stride + 1
        assert side == 4 and model.flat_features == 128 * side * side
        convs = sum(c_out * (c_in * 5 * 5 + 1)
                    for c_in, c_out in zip([3, 64, 64], [64, 64, 128], strict=True))
        dense = (128 * 4 * 4 + 1) * 1000 + (1000 + 1) * 10
        assert sum(p.numel() for p in model.parameters()) == convs + dense, label


def _cnn_config(**model) -> dict:
    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "configs" /
                          "cnn_cifar10.yaml").read_text())
    raw["model"].update(model)
    return raw


def test_a_cnn_its_images_cannot_feed_is_refused_when_the_config_loads():
    """Not mid-sweep with a traceback, after the data is loaded and the folder made."""
    from adamrepro.errors import UserError

    with pytest.raises(UserError, match="images vanish before the last of the 4 convolution"):
        parse_experiment(_cnn_config(conv_channels=[8, 8, 8, 8], padding=0, pool_padding=0),
                         "test")
    flat = _cnn_config()
    flat["dataset"] = {"name": "mnist"}
    with pytest.raises(UserError,
                       match=r"model cnn: takes images .*\(MNIST: set dataset.layout: image\)"):
        parse_experiment(flat, "test")
    flat["dataset"]["layout"] = "image"
    assert parse_experiment(flat, "test").dataset["layout"] == "image"


def test_each_dataset_says_its_example_shape_without_the_data(data_dir):
    """`feature_shape` (what config validation checks a model against) is what `load`
    gives, on the real data."""
    from adamrepro.data import DATASETS

    for name, values in [("mnist", {"layout": "flat"}), ("mnist", {"layout": "image"}),
                         ("cifar10", {"verify": False, "whitening": "none"}), ("imdb", {})]:
        module = DATASETS[name]
        opts = module.options({**values, "train_size": 64, "test_size": 64}, "test")
        assert module.load(opts, data_dir).feature_shape == module.feature_shape(opts), name


def test_each_run_is_its_seeds_plain_module():
    """Run g of a stacked model computes what the plain twin initialised from seed g does,
    with its own input (grouped convolutions) or a shared one (one dense convolution)."""
    opts = Options(conv_channels=[4, 6, 8], hidden=16)
    seeds = [3, 5, 7]
    model = CNN(opts, (3, 32, 32), 10, seeds).double()
    twins = [CNNReference(opts, (3, 32, 32), 10, seed).double() for seed in seeds]
    own = torch.randn(3, 5, 3, 32, 32, dtype=torch.float64)
    shared = own[:1].expand(3, 5, 3, 32, 32)
    for x in (own, shared):
        logits = model(x, train=False)
        for g, twin in enumerate(twins):
            torch.testing.assert_close(logits[g], twin(x[g]), rtol=1e-12, atol=1e-12)


def experiment(seeds: int, methods: dict | None = None, log_every: int | None = None):
    training = {"batch_size": 128, "epochs": 2, "dtype": "float64"}
    if log_every:
        training["log_every"] = log_every
    return parse_experiment({
        "name": "cnn_equivalence",
        "title": "batched == one by one",
        "dataset": {"name": "cifar10", "verify": False, "train_size": 256, "test_size": 64},
        "model": {"name": "cnn", "conv_channels": [4, 4, 8], "hidden": 16, "l2": 1e-3},
        "training": training,
        "seeds": seeds,
        "methods": methods or {
            "adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2]}},
            "adagrad": {"optimizer": "adagrad", "grid": {"lr": [1e-2, 1e-1]}},
            "sgd_nesterov": {"optimizer": "sgd_nesterov", "grid": {"lr": [1e-2, 1e-1]}},
        },
    }, "test")


@pytest.fixture(scope="module")
def data(data_dir):
    return load_data(experiment(1), data_dir, torch.device("cpu"))


def test_batched_equals_one_by_one_and_the_plain_loop(data):
    """One seed: the runs share their minibatches (the dense first convolution)."""
    exp = experiment(1)
    for group in plan(exp):
        batched = train_group(exp, group, data)
        finals = [curve.rows[-1]["train_loss_full"] for curve in batched]
        assert finals[0] < batched[0].rows[0]["train_loss_full"]  # it learns: not vacuous
        assert len({round(f, 6) for f in finals}) == len(finals)
        for index, run in enumerate(group.runs):
            what = f"{run.method} lr={run.hparams['lr']} seed={run.seed}"
            assert_same_curve(batched[index], train_group(exp, alone(group, index), data)[0],
                              what + " (G=1)")
        run = group.runs[0]  # the reference loop is slow: one run per method
        assert_same_curve(batched[0], train_run(exp, run, data), f"{run.method} (reference)")


def test_runs_with_their_own_minibatches_train_as_alone(data):
    """Two seeds: each run its own minibatch order (grouped convolutions throughout)."""
    exp = experiment(2, {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2]}}})
    (group,) = seeds_together(plan(exp))
    assert len({run.seed for run in group.runs}) == 2
    batched = train_group(exp, group, data)
    for index, run in enumerate(group.runs):
        assert_same_curve(batched[index], train_group(exp, alone(group, index), data)[0],
                          f"lr={run.hparams['lr']} seed={run.seed}")


def test_steps_average_to_the_pass(data):
    """With log_every 1 (2 steps a pass here), the step losses average to the pass's
    train_loss, and recording them changes nothing else."""
    exp = experiment(1, {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2]}}},
                     log_every=1)
    (group,) = plan(exp)
    curves = train_group(exp, group, data)
    plain = train_group(experiment(1, {"adam": {"optimizer": "adam",
                                                "grid": {"lr": [1e-3, 1e-2]}}}),
                        group, data)
    for curve, without in zip(curves, plain, strict=True):
        assert_same_curve(curve, without, "log_every")  # recording changes nothing else
        steps = pd.DataFrame(curve.steps)
        assert steps["step"].tolist() == [1, 2, 3, 4]
        assert steps["epoch_fraction"].tolist() == [0.5, 1.0, 1.5, 2.0]
        for epoch in (1, 2):
            block = steps[(steps["epoch_fraction"] > epoch - 1)
                          & (steps["epoch_fraction"] <= epoch)]
            assert block["train_loss"].mean() == pytest.approx(
                curve.rows[epoch]["train_loss"], rel=1e-12)


def test_run_ids_of_configs_without_log_every_are_unchanged():
    exp = load_experiment(Path(__file__).parent.parent / "configs" / "logreg_mnist.yaml")
    with_none = exp.model_copy(update={"training": exp.training.model_copy(
        update={"log_every": None})})
    with_ten = exp.model_copy(update={"training": exp.training.model_copy(
        update={"log_every": 10})})
    ids = [[r.run_id for g in plan(e) for r in g.runs] for e in (exp, with_none, with_ten)]
    assert ids[0] == ids[1] and not set(ids[0]) & set(ids[2])


def test_smoke_run_on_real_data(cli, tmp_path):
    out = tmp_path / "results"
    code, _, err = cli("run", "cnn_cifar10", "--scale", "smoke", "--out", out,
                       "--unverified-data", "--quiet", "--device", "cpu")
    assert code == 0, err
    folder = out / "cnn_cifar10"
    curves, steps = pd.read_csv(folder / "curves.csv"), pd.read_csv(folder / "steps.csv")
    assert curves["run_id"].nunique() == 24 and steps["run_id"].nunique() == 24
    assert set(curves["variant"].fillna("")) == {"", "dropout"}
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["dataset"]["verify"] is False
    assert config["provenance"]["data_verified"] is False
    record = json.loads(next((folder / "runs").iterdir()).read_text())
    assert record["provenance"]["data_verified"] is False and record["steps"]
    code, out_text, err = cli("plot", "cnn_cifar10", "--out", out)
    assert code == 0, err
    assert (folder / "early_and_all.png").exists() and (folder / "sensitivity.png").exists()
    assert (folder / "curves.png").exists()  # test loss and accuracy beside the training cost


def test_runs_stored_before_the_memory_columns_still_make_tables(tmp_path):
    """Resume reads runs stored by older code: columns they lack are left empty."""
    from adamrepro.results.tables import curves_frame

    record = {"experiment": "e", "scale": "smoke", "method": "adam", "optimizer": "adam",
              "variant": None, "run_id": "r", "point_id": "p", "seed": 0, "hparams": {},
              "provenance": {"commit": "c", "torch_version": "t", "device": "cpu"},
              "rows": [{"epoch": 0, "train_loss": 1.0, "seconds": 0.0, "train_seconds": 0.0,
                        "diverged": False, "group_size": 1}]}
    frame = curves_frame([record], ["train_loss"])
    assert frame["state_bytes"].isna().all() and frame["peak_memory_bytes"].isna().all()


@pytest.mark.cuda  # skipped, and reported, without a GPU (conftest.py)
def test_graphed_cnn_with_dropout_and_step_records_equals_eager(data_dir):
    """On a GPU: the CNN's step (grouped convolutions, dropout on the input and the hidden
    layer, the step counter that writes each step's loss) replays from a CUDA graph with the
    curves and the within-pass records of the eager step (1e-6 relative, as
    test_cuda_graphs.py)."""
    exp = parse_experiment({
        "name": "cnn_graphs", "title": "graphs",
        "dataset": {"name": "cifar10", "verify": False, "train_size": 1024, "test_size": 256},
        "model": {"name": "cnn", "input_dropout": 0.2, "hidden_dropout": 0.5},
        "training": {"batch_size": 128, "epochs": 2, "log_every": 2},
        "methods": {"adam": {"optimizer": "adam", "grid": {"lr": [1e-4, 3e-4]}}},
    }, "test")
    data = load_data(exp, data_dir, torch.device("cuda"))
    assert data.train_x.is_cuda and data.train_x.dtype == torch.float32  # whitened there
    (group,) = plan(exp)
    # Some of cuDNN's backward algorithms add with atomics, so that even two eager runs
    # could differ: only what the graph changes is compared.
    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    try:
        graphed = train_group(exp, group, data, cuda_graphs=True)
        eager = train_group(exp, group, data, cuda_graphs=False)
    finally:
        torch.backends.cudnn.deterministic = deterministic
    for a, b in zip(graphed, eager, strict=True):
        torch.testing.assert_close(table(a), table(b), rtol=1e-6, atol=1e-9, equal_nan=True)
        assert len(a.steps) == len(b.steps) == 2 * 4
        for sa, sb in zip(a.steps, b.steps, strict=True):
            assert sa["train_loss"] == pytest.approx(sb["train_loss"], rel=1e-6)


def test_dropout_applies_to_the_input_pixels_and_the_fully_connected_relus(data):
    """PAPER.md, Fig. 3: "dropout noise applied to the input layer and fully connected
    layer". On 128 real whitened CIFAR-10 images shared by two runs (one seed, two step
    sizes: the group the planner makes), in training, observed with forward hooks:
    - what enters the first convolution is each run's images with a fraction
      `input_dropout` (0.2) of the pixels zeroed, each run its own mask, the rest scaled by
      1/0.8 (786,432 pixels: the fraction is within 0.01, over 20 standard deviations);
    - what enters the fully connected layer is the convolution stages' features, undropped,
      and what enters the output layer is its ReLUs with a fraction `hidden_dropout` (0.5)
      of the positive ones zeroed, the rest scaled by 1/0.5 (~35,000 positive: within 0.02,
      over 7 standard deviations). The masks come from a fixed generator (measured: 0.2008
      and 0.4989)."""
    images = data.train_x[:128].double()
    assert (images != 0).double().mean() > 0.99  # whitened pixels are not 0
    x = images.expand(2, *images.shape)  # a stride-0 view, as the runner shares a minibatch
    rate = 0.2
    model = CNN(Options(conv_channels=[4, 4, 8], hidden=256, input_dropout=rate), (3, 32, 32),
                10, seeds=[0, 0]).double()
    model.generator = torch.Generator().manual_seed(0)
    entering = []
    model.convs[0].register_forward_pre_hook(lambda _, args: entering.append(args[0].detach()))
    model(x, train=True)
    (first,) = entering
    assert first.shape == (128, 2 * 3, 32, 32)  # each run its own input
    per_run = first.view(128, 2, 3, 32, 32).transpose(0, 1)
    kept = per_run != 0
    assert abs(1 - kept.double().mean().item() - rate) < 0.01
    assert not torch.equal(kept[0], kept[1])
    torch.testing.assert_close(per_run[kept], x[kept] / (1 - rate), rtol=1e-12, atol=0)

    rate = 0.5
    model = CNN(Options(conv_channels=[4, 4, 8], hidden=256, hidden_dropout=rate),
                (3, 32, 32), 10, seeds=[0, 0]).double()
    model.generator = torch.Generator().manual_seed(0)
    entering = {}
    for name in ("fc", "out"):
        getattr(model, name).register_forward_pre_hook(
            lambda _, args, name=name: entering.__setitem__(name, args[0].detach()))
    model(x, train=True)
    features = model.features(x, train=False).detach()
    torch.testing.assert_close(entering["fc"], features, rtol=0, atol=0)
    relu = model.fc(features).relu().detach()
    positive, kept = relu > 0, entering["out"] != 0
    assert positive.sum() > 10_000 and not (kept & ~positive).any()
    assert abs(1 - kept[positive].double().mean().item() - rate) < 0.02
    torch.testing.assert_close(entering["out"][kept], relu[kept] / (1 - rate), rtol=1e-12,
                               atol=0)
