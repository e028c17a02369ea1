"""`model.fused_objective`: the logistic regression's training objective with its forward
and backward by hand (models/fused_softmax.py). On real MNIST minibatches it computes the
objective and the gradients autograd computes (float64, rtol 1e-12), per run whatever each
run's share of the loss; it is taken exactly where it applies; a diverged run's loss is inf
or NaN where the autograd path's is; and a whole group trains the same curves both ways."""

from __future__ import annotations

import pytest
import torch

from adamrepro.config import parse_experiment
from adamrepro.models.fused_softmax import SoftmaxRegressionObjective
from adamrepro.models.logreg import LogReg
from adamrepro.models.logreg import options as logreg_options
from adamrepro.runner.executors import load_data
from adamrepro.runner.group import train_group
from adamrepro.runner.plan import plan


def experiment(fused: bool, dtype: str = "float64", epochs: int = 2):
    return parse_experiment({
        "name": "fused", "title": "fused == autograd",
        "dataset": {"name": "mnist", "train_size": 1000, "test_size": 500},
        "model": {"name": "logreg", "l2": 1e-3, "fused_objective": fused},
        # 1000 = 7 x 128 + 104: every pass ends with a short minibatch
        "training": {"batch_size": 128, "epochs": epochs, "dtype": dtype,
                     "eval_batch_size": 500},
        "seeds": 1, "seed": 0,
        "methods": {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2, 1e-1]}},
                    "sgd": {"optimizer": "sgd_nesterov", "hparams": {"momentum": 0.9},
                            "grid": {"lr": [1e-2, 1.0]}}},
    }, "test")


@pytest.fixture(scope="module")
def data(data_dir):
    return load_data(experiment(True), data_dir, torch.device("cpu"))


def model_of(fused, G: int, **options) -> LogReg:
    opts = logreg_options({"l2": 1e-3, "fused_objective": fused, **options}, "model")
    classes = 2 if opts.binary else 10
    model = LogReg(opts, (28, 28), classes, seeds=list(range(G))).double()
    with torch.no_grad():  # a bias that is not zero, to be seen in the gradients
        model.linear.bias.copy_(torch.randn(model.linear.bias.shape,
                                            generator=torch.Generator().manual_seed(5)))
    return model


def shared_batch(data, G: int, start: int, size: int) -> dict[str, torch.Tensor]:
    """Rows start..start+size of the training set, one stride-0 view for every run, as the
    runner hands a group whose runs share a seed."""
    return {key: values[start : start + size].unsqueeze(0).expand(
                G, *values[start : start + size].shape)
            for key, values in data.train.items()}


@pytest.mark.parametrize(("G", "size"), [(1, 128), (5, 128), (5, 104)])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_the_objective_and_its_gradients_are_autograds(data, G, size, l2):
    batch = shared_batch(data, G, start=256, size=size)
    weights = torch.rand(G, dtype=torch.float64) + 0.5  # each run's share of the loss
    results = []
    for fused in (True, False):
        model = model_of(fused, G, l2=l2)
        objective = model.regularized_objective(batch)
        assert (type(objective.grad_fn).__name__ == "SoftmaxRegressionObjectiveBackward") == fused
        (objective * weights).sum().backward()
        results.append([objective.detach(), model.linear.weight.grad, model.linear.bias.grad])
    for fused, autograd in zip(*results, strict=True):
        torch.testing.assert_close(fused, autograd, rtol=1e-12, atol=1e-15)
    assert results[0][1].abs().max() > 0 and results[0][2].abs().max() > 0


@pytest.mark.parametrize("case", ["input_dropout", "binary", "bf16", "distinct_inputs",
                                  "off"])
def test_the_fused_path_is_taken_only_where_it_applies(data, case):
    """Dropout gives each run its own input, the binary model another loss, bfloat16
    autocast another arithmetic, and distinct minibatches (several seeds a group) another
    matmul: each trains through autograd, as `fused_objective: false` does; the same model
    without them, fused."""
    G = 3
    options = {"input_dropout": {"input_dropout": 0.2, "sparse_input": False},
               "binary": {"binary": True}}.get(case, {})
    model = model_of(False if case == "off" else "auto", G, **options)
    model.generator = torch.Generator().manual_seed(0)
    batch = shared_batch(data, G, 0, 64)
    if case == "binary":
        batch["y"] = batch["y"] % 2
    if case == "distinct_inputs":
        batch = {key: torch.stack([values[g * 64 : (g + 1) * 64] for g in range(G)])
                 for key, values in data.train.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "bf16"):
        objective = model.regularized_objective(batch)
    assert "SoftmaxRegression" not in type(objective.grad_fn).__name__
    fused = model_of("auto", G).regularized_objective(shared_batch(data, G, 0, 64))
    assert type(fused.grad_fn).__name__ == "SoftmaxRegressionObjectiveBackward"


def test_auto_is_the_cpu_alone():
    """`auto` fuses on a CPU; on another device autograd, until a GPU measures it."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert model_of("auto", 2)._fused_on(cpu) and not model_of("auto", 2)._fused_on(cuda)
    assert model_of(True, 2)._fused_on(cuda) and not model_of(False, 2)._fused_on(cpu)


def test_a_diverged_run_is_inf_or_nan_where_autograds_is():
    """Logits of ±inf and NaN: the fused loss is inf, -inf or NaN in exactly the places the
    autograd path's torch.logsumexp gives them, and finite elsewhere."""
    inf, nan = float("inf"), float("nan")
    rows = [[inf, 0.0, 1.0], [-inf, -inf, -inf], [nan, 0.0, 0.0], [inf, inf, 0.0],
            [0.0, 2.0, 1.0], [1e38, 3e38, -3e38], [-inf, 0.0, -inf]]
    G, C = len(rows), 3
    bias = torch.tensor(rows).view(G, 1, C)
    weight = torch.zeros(G, 1, C)
    x = torch.zeros(2, 1)
    for y in ([0, 1], [2, 2], [1, 0]):
        labels = torch.tensor(y)
        fused = SoftmaxRegressionObjective.apply(x, weight, bias, labels, 0.0)
        logits = bias.expand(G, 2, C)
        autograd = (logits.logsumexp(-1)
                    - logits.gather(-1, labels.expand(G, 2).unsqueeze(-1)).squeeze(-1)).mean(1)
        assert torch.equal(fused.isnan(), autograd.isnan())
        assert torch.equal(fused.isinf(), autograd.isinf())
        finite = autograd.isfinite()
        torch.testing.assert_close(fused[finite], autograd[finite])
        assert torch.equal(fused[fused.isinf()], autograd[autograd.isinf()])


def test_a_whole_group_trains_the_same_curves_both_ways(data):
    """Two passes of real MNIST, Adam and SGD Nesterov at step sizes up to 1: in float64 the
    fused group's every recorded value is autograd's (rtol 1e-10); in float32 within the
    rounding of another summation order (1e-4)."""
    for dtype, rtol in (("float64", 1e-10), ("float32", 1e-4)):
        curves = {}
        for fused in (True, False):
            exp = experiment(fused, dtype)
            curves[fused] = [curve for group in plan(exp)
                             for curve in train_group(exp, group, data)]
        for a, b in zip(curves[True], curves[False], strict=True):
            assert len(a.rows) == len(b.rows) == 3 and not a.diverged and not b.diverged
            for column in ("train_loss", "train_loss_full", "test_loss", "test_acc"):
                torch.testing.assert_close(torch.tensor([row[column] for row in a.rows[1:]]),
                                           torch.tensor([row[column] for row in b.rows[1:]]),
                                           rtol=rtol, atol=0)


def test_out_major_weights_change_no_arithmetic_of_the_autograd_path(data):
    """For adamrepro's own optimizers the runner stores the weights out-major
    (`lay_out_for`), which the fused matmuls read without a copy; the autograd path copies
    them into its own matrix, so in float32 it trains bit for bit as on contiguous weights.
    A torch optimizer (which may `view` a parameter) gets contiguous ones."""
    from adamrepro.optim import build

    G = 4
    models = []
    for elementwise in (True, False):
        model = LogReg(logreg_options({"l2": 1e-3, "fused_objective": "auto"}, "model"),
                       (28, 28), 10, seeds=list(range(G)))
        model.lay_out_for(elementwise)
        models.append(model)
    laid_out, plain = (model.linear.weight for model in models)
    assert not laid_out.is_contiguous() and plain.is_contiguous()
    assert torch.equal(laid_out, plain)
    D, C = laid_out.shape[1:]
    assert laid_out.transpose(1, 2).reshape(G * C, D).data_ptr() == laid_out.data_ptr()
    optimizers = [build("adam", list(model.parameters()), lr=torch.full((G,), 1e-2))
                  for model in models]
    for step in range(6):
        for model, optimizer in zip(models, optimizers, strict=True):
            model.opts = model.opts.model_copy(update={"fused_objective": False})
            batch = shared_batch(data, G, 128 * step, 128)
            optimizer.zero_grad()
            model.regularized_objective(batch).sum().backward()
            optimizer.step()
    assert torch.equal(laid_out, plain) and not laid_out.is_contiguous()
    assert not torch.equal(plain, LogReg(models[1].opts, (28, 28), 10,
                                         seeds=list(range(G))).linear.weight)  # it trained


@pytest.mark.parametrize(("fused", "out_major"), [("auto", False), (True, True),
                                                   (False, False)])
def test_weights_are_out_major_only_where_the_fused_objective_runs(fused, out_major):
    """Off a CPU (`meta` here, as a GPU) `auto` trains through autograd, whose group of one
    run reads the weights in `baddbmm`: they stay contiguous there, as they were before the
    fused objective; `true` fuses on any device, and lays them out for it."""
    G = 1
    model = LogReg(logreg_options({"fused_objective": fused}, "model"), (28, 28), 10,
                   seeds=list(range(G))).to("meta")
    model.lay_out_for(True)
    assert model.linear.weight.is_contiguous() != out_major


def test_saved_parameters_are_contiguous_whatever_layout_they_trained_in(data):
    """`training.save_params` keeps each run's final parameters: the fused objective trains
    out-major weights (`lay_out_for`), and its runs' files hold them in the same contiguous
    layout as autograd's, so `view` and other readers take either."""
    exp = experiment(True, "float32", epochs=1)
    exp = exp.model_copy(update={"training": exp.training.model_copy(
        update={"save_params": True})})
    group = plan(exp)[0]
    curves = train_group(exp, group, data)
    assert all(p.is_contiguous() for curve in curves for p in curve.params.values())
    assert curves[0].params["linear.weight"].shape == (28 * 28, 10)


def test_the_evaluation_is_the_generic_one_ties_infinities_and_nans_included():
    """`softmax_regression_metrics` against the generic loss and argmax: small integer
    logits tie often (argmax takes the first largest), and some runs get NaN, +inf and
    -inf logits (argmax takes the first NaN for the largest)."""
    from adamrepro.models.base import softmax_cross_entropy
    from adamrepro.models.fused_softmax import softmax_regression_metrics

    generator = torch.Generator().manual_seed(0)
    G, B, D, C = 3, 50, 4, 5
    ties = 0
    for trial in range(60):
        def draw(*shape, low=-2, high=3):
            return torch.randint(low, high, shape, generator=generator).double()
        x, weight, bias = draw(B, D), draw(G, D, C), draw(G, 1, C, low=-1, high=2)
        if trial % 3 == 0:
            weight[0, 0, 1] = float("nan")
        if trial % 5 == 0:
            bias[1, 0, 2] = float("inf")
        if trial % 7 == 0:
            bias[2, 0, :] = -float("inf")
        y = torch.randint(0, C, (B,), generator=generator)
        loss, correct = softmax_regression_metrics(x, weight, bias, y)
        z = torch.baddbmm(bias, x.expand(G, B, D), weight)
        top = z.amax(-1, keepdim=True)
        ties += int(((z == top).sum(-1) > 1).sum())
        assert torch.equal(correct, (z.argmax(-1) == y).sum(1)), trial
        torch.testing.assert_close(loss, softmax_cross_entropy(z, y.expand(G, B)).mean(1),
                                   rtol=1e-12, atol=0, equal_nan=True)
    assert ties > 100
