"""`model.sparse_input`: logistic regression trained on the non-zero inputs alone (IMDB's bag
of words is ~1.3% non-zero). With the same masks it computes what the dense path computes
(float64, outputs and gradients, rtol 1e-12) and, under bfloat16 autocast, what the dense
matmul computes in bfloat16; its masks keep each non-zero with probability 1 - rate, and a
sweep with it trains like the dense one, on real IMDB reviews."""

from __future__ import annotations

import pytest
import torch

from adamrepro.config import parse_experiment
from adamrepro.models.base import dropout
from adamrepro.models.logreg import LogReg, sparse_input_linear
from adamrepro.models.logreg import options as logreg_options
from adamrepro.runner.executors import load_data
from adamrepro.runner.group import train_group
from adamrepro.runner.plan import plan

RATE = 0.5


def experiment(sparse: bool | str, epochs: int = 3):
    return parse_experiment({
        "name": "sparse", "title": "sparse == dense",
        "dataset": {"name": "imdb", "vocab_size": 10000, "train_size": 512, "test_size": 256},
        "model": {"name": "logreg", "binary": True, "input_dropout": RATE, "l2": 0.0,
                  "sparse_input": sparse},
        "training": {"batch_size": 128, "epochs": epochs, "dtype": "float64",
                     "eval_batch_size": 256},
        "seeds": 1, "seed": 0,
        "methods": {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2]}}},
    }, "test")


@pytest.fixture(scope="module")
def data(data_dir):
    return load_data(experiment(False), data_dir, torch.device("cpu"))


@pytest.mark.parametrize("shared", [True, False])
def test_with_the_same_masks_sparse_equals_dense(data, shared):
    G, B = 3, 64
    x = data.train_x[:B].flatten(1)
    if shared:
        x = x.unsqueeze(0).expand(G, *x.shape)
    else:
        x = torch.stack([data.train_x[g * B : (g + 1) * B].flatten(1) for g in range(G)])
    assert 0 < x[0].count_nonzero() < 0.05 * x[0].numel()
    torch.manual_seed(0)
    weight = torch.randn(G, x.shape[-1], 1, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(G, 1, 1, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(1),
                      dtype=torch.float64) >= RATE

    def keep_at(run, rows, cols):
        return keep[:, rows, cols] if run is None else keep[run, rows, cols]

    sparse = sparse_input_linear(x, weight, bias, RATE, keep_at)
    dense = torch.baddbmm(bias, x.double() * keep / (1 - RATE), weight)
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-12)
    grads = [torch.autograd.grad(out.square().sum(), (weight, bias)) for out in (sparse, dense)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shared", [True, False])
def test_under_bf16_autocast_sparse_computes_what_the_dense_matmul_does(data, shared):
    """Gathers and index_add are no autocast ops: the sparse path rounds as autocast's
    baddbmm does, so `bf16` is bf16 on it too (outputs and gradients within one bfloat16
    rounding of the dense path's, and far from float32's)."""
    G, B = 3, 64
    x = torch.stack([data.train_x[g * B : (g + 1) * B].flatten(1) for g in range(G)]).float()
    if shared:
        x = x[:1].expand(G, *x.shape[1:])
    torch.manual_seed(0)
    weight = torch.randn(G, x.shape[-1], 1, requires_grad=True)
    bias = torch.randn(G, 1, 1, requires_grad=True)
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) >= RATE

    def keep_at(run, rows, cols):
        return keep[:, rows, cols] if run is None else keep[run, rows, cols]

    def outputs(bf16: bool, sparse: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = (sparse_input_linear(x, weight, bias, RATE, keep_at) if sparse else
                   torch.baddbmm(bias, x * keep / (1 - RATE), weight))
        return (out, *torch.autograd.grad(out.float().square().sum(), (weight, bias)))

    sparse, dense, full = outputs(True, True), outputs(True, False), outputs(False, True)
    assert sparse[0].dtype == dense[0].dtype == torch.bfloat16
    for a, b, f in zip(sparse, dense, full, strict=True):
        scale = b.float().abs().max()
        # one bfloat16 rounding apart (2^-8 relative): only the order of float32 sums differs
        assert (a.float() - b.float()).abs().max() <= 2 ** -7 * scale
        # and bfloat16 is not float32: rounding 8-bit mantissas moves values by ~2^-9
        assert (a.float() - f.float()).abs().max() > 2 ** -12 * scale


def test_runs_that_share_a_seed_read_its_minibatch_once_with_the_same_masks(data):
    """A group of several seeds hands the model one minibatch per seed and each run's seed
    (`run_input`, runner/group.py): the non-zeros are those of the per-run copies, in the same
    order, so the same draws give the same masks and exactly the same outputs."""
    B = 64
    distinct = torch.stack([data.train_x[s * B : (s + 1) * B].flatten(1) for s in range(3)])
    run_input = torch.tensor([2, 0, 0, 1, 2, 2, 1])
    G = len(run_input)
    torch.manual_seed(0)
    weight = torch.randn(G, distinct.shape[-1], 1, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(G, 1, 1, dtype=torch.float64, requires_grad=True)
    drawn = {}

    def keep_from(name):
        generator = torch.Generator().manual_seed(1)

        def keep_at(run, rows, cols):
            drawn[name] = (run, rows, cols)
            return torch.rand(len(rows), generator=generator, dtype=torch.float64) >= RATE
        return keep_at

    once = sparse_input_linear(distinct, weight, bias, RATE, keep_from("once"), run_input)
    copies = sparse_input_linear(distinct[run_input], weight, bias, RATE, keep_from("copies"))
    for a, b in zip(drawn["once"], drawn["copies"], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(once, copies)
    assert len(drawn["once"][0]) == sum(int(distinct[s].count_nonzero()) for s in run_input)


@pytest.mark.parametrize("shared", [True, False])
def test_gradients_are_the_same_whatever_the_threads(data, shared):
    """Frequent words sum many terms into one weight's gradient; with advanced indexing's
    backward two CPU threads summed them in a varying order, which changed a paper-scale
    run at a large step size from one call to the next. The gradients must be bitwise the
    same on every call and with one thread."""
    B, G = 128, 3
    inputs = torch.stack([data.train_x[s * B : (s + 1) * B].flatten(1) for s in range(G)])
    x = inputs[0].expand(G, *inputs[0].shape) if shared else inputs
    torch.manual_seed(0)
    weight = torch.randn(G, x.shape[-1], 1, requires_grad=True)
    bias = torch.zeros(G, 1, 1, requires_grad=True)
    threads = torch.get_num_threads()

    def gradient() -> torch.Tensor:
        generator = torch.Generator().manual_seed(1)

        def keep_at(run, rows, cols):
            shape = (G, len(rows)) if run is None else (len(rows),)
            return torch.rand(shape, generator=generator) >= RATE

        out = sparse_input_linear(x, weight, bias, RATE, keep_at)
        return torch.autograd.grad(out.sin().sum(), weight)[0]

    try:
        torch.set_num_threads(2)
        two = [gradient() for _ in range(6)]
        torch.set_num_threads(1)
        one = gradient()
    finally:
        torch.set_num_threads(threads)
    for other in [*two[1:], one]:
        assert torch.equal(other, two[0])


def test_masks_keep_each_nonzero_with_probability_one_minus_rate(data):
    x = data.train_x[:128].flatten(1).unsqueeze(0).expand(8, -1, -1)
    generator = torch.Generator().manual_seed(0)
    kept = []

    def keep_at(run, rows, cols):
        mask = torch.rand((8, len(rows)), generator=generator, dtype=torch.float64) >= RATE
        kept.append(mask)
        return mask

    sparse_input_linear(x, torch.ones(8, x.shape[-1], 1, dtype=torch.float64),
                        torch.zeros(8, 1, 1, dtype=torch.float64), RATE, keep_at)
    mask = kept[0].double()
    n = mask.numel()
    assert n > 10_000
    assert abs(mask.mean().item() - (1 - RATE)) < 4 * (RATE * (1 - RATE) / n) ** 0.5
    # the dense path's masks, for comparison: the same Bernoulli(1 - rate)
    dense = dropout(torch.ones(8, 1000, dtype=torch.float64), RATE,
                    torch.Generator().manual_seed(0)) != 0
    assert abs(dense.double().mean().item() - (1 - RATE)) < 0.01


@pytest.mark.parametrize("shared", [True, False])
def test_the_model_keeps_each_nonzero_with_probability_one_minus_rate(shared):
    """LogReg itself (input_dropout 0.2, sparse_input on a CPU) in training: with weights of
    ones and no bias, a row's output is (kept inputs)/(1 − 0.2). Inputs of one on 25 known
    columns of 50: every output is a whole number of kept inputs, each rescaled by exactly
    1/0.8, at most the 25 non-zeros; 50,000 non-zeros are kept in a fraction 0.8 within 4
    standard deviations, so the outputs' mean is the undropped 25."""
    rate, G, B, D = 0.2, 2, 1000, 50
    opts = logreg_options({"binary": True, "input_dropout": rate, "sparse_input": True},
                          "model")
    model = LogReg(opts, (D,), 2, seeds=[0, 1]).double()
    assert model.distinct_inputs(torch.device("cpu")) == ("x",)  # the sparse path
    model.generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.linear.weight.fill_(1.0)
        model.linear.bias.zero_()
    one = torch.zeros(B, D, dtype=torch.uint8)
    one[:, ::2] = 1
    x = one.expand(G, B, D) if shared else one.repeat(G, 1, 1)
    out = model(x, train=True).squeeze(-1)
    kept = out * (1 - rate)
    torch.testing.assert_close(kept, kept.round(), rtol=0, atol=1e-12)
    assert 0 <= kept.min() and kept.max() <= 25
    n = G * B * 25
    fraction = kept.sum().item() / n
    assert abs(fraction - (1 - rate)) < 4 * (rate * (1 - rate) / n) ** 0.5
    assert abs(out.mean().item() - 25) < 4 * 25 * (rate / (1 - rate) / n) ** 0.5
    assert kept.unique().numel() > 5  # masks drawn per input, not per row


def test_a_sparse_sweep_trains_like_the_dense_one(data, one_thread):
    finals = {}
    for sparse in (False, True):
        exp = experiment(sparse)
        (group,) = plan(exp)
        curves = train_group(exp, group, data)
        finals[sparse] = torch.tensor([c.rows[-1]["train_loss_full"] for c in curves])
        assert torch.isfinite(finals[sparse]).all()
    # other mask draws, the same process: the final full-batch losses agree closely (measured
    # 0.1% and 1%; at lr 0.1 on 512 reviews the draws alone move them by 30%)
    torch.testing.assert_close(finals[True], finals[False], rtol=0.05, atol=0)


def test_auto_takes_the_sparse_path_on_a_cpu_and_no_option_changes_a_run_id(data):
    curves = {}
    for sparse in ("auto", True, False):
        exp = experiment(sparse, epochs=1)
        (group,) = plan(exp)
        curves[sparse] = (group, train_group(exp, group, data))
    ids = {sparse: [run.run_id for run in group.runs] for sparse, (group, _) in curves.items()}
    assert ids["auto"] == ids[True] == ids[False]
    losses = {sparse: [row["train_loss_full"] for c in run_curves for row in c.rows]
              for sparse, (_, run_curves) in curves.items()}
    assert losses["auto"] == losses[True]  # the same path, the same draws
    assert losses["auto"] != losses[False]  # other draws: the dense path's masks


@pytest.mark.parametrize("shared", [True, False])
def test_evaluation_with_input_dropout_is_the_undropped_affine_map(data, shared):
    """Fig. 1 right's dropout is training noise only: in evaluation (the test metrics and the
    whole-set objective) LogReg with input_dropout 0.5 is x·w + b on every input, computed
    here by hand on real IMDB bags of words, whichever path training takes; and evaluating
    draws nothing from the training generator."""
    G, B = 2, 128
    opts = logreg_options({"binary": True, "input_dropout": RATE, "init": "normal",
                           "init_scale": 1.0}, "model")
    model = LogReg(opts, (data.train_x.shape[-1],), 2, seeds=[0, 1]).double()
    model.generator = torch.Generator().manual_seed(0)
    if shared:
        x = data.train_x[:B].flatten(1).unsqueeze(0).expand(G, B, -1)
    else:
        x = torch.stack([data.train_x[g * B : (g + 1) * B].flatten(1) for g in range(G)])
    state = model.generator.get_state()
    out = model(x, train=False)
    expected = torch.stack([x[g].double() @ model.linear.weight[g] + model.linear.bias[g]
                            for g in range(G)])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(model.generator.get_state(), state)
    assert not torch.allclose(model(x, train=True), expected)  # training does drop inputs
