"""Sec. 7: the step ratio Adam records (checked by hand), evaluation at the averaged
parameters, and the smoke run of configs/extensions.yaml on real MNIST."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from adamrepro.config import parse_experiment
from adamrepro.models import MODELS
from adamrepro.optim import Adam
from adamrepro.results.measures import step_bound
from adamrepro.runner.executors import load_data
from adamrepro.runner.group import evaluate, train_group
from adamrepro.runner.plan import plan

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "extensions.yaml"
B1, B2, EPS = 0.9, 0.999, 1e-8


def _constant_gradient_steps(opt: Adam, p: torch.Tensor, g: torch.Tensor, steps: int
                             ) -> list[torch.Tensor]:
    """Take `steps` steps with gradient g; return each step's |Δθ| per run, largest over the
    elements (the step as it moved θ)."""
    moved = []
    for _ in range(steps):
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        moved.append((p.detach() - before).abs().flatten(1).amax(1))
    return moved


@pytest.mark.parametrize("bias_correction", [True, False])
def test_the_step_ratio_of_a_constant_gradient_by_hand(bias_correction):
    """A constant gradient g: m_t = (1 − β1^t)·g and v_t = (1 − β2^t)·g², so
    with bias correction  |Δθ|/α = |g| / (|g| + ε)                   at every step;
    without               |Δθ|/α = (1 − β1^t)|g| / (√(1 − β2^t)|g| + ε),
    which at t = 1 is exactly (1 − β1)/√(1 − β2), the bound of Sec. 2.1 (when ε = 0), and
    then grows past it. Two runs stacked on G with their own α and g; two passes of 3 and 2
    steps, each read once and reset."""
    g = torch.tensor([[0.5, -0.25, 0.125], [2.0, 1e-3, -4.0]], dtype=torch.float64)
    lr = torch.tensor([1e-3, 1e-2], dtype=torch.float64)
    p = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    opt = Adam([p], lr=lr, betas=(torch.full((2,), B1, dtype=torch.float64),
                                  torch.full((2,), B2, dtype=torch.float64)),
               eps=EPS, bias_correction=bias_correction, track_step_ratio=True)

    def by_hand(t: int) -> torch.Tensor:
        a = g.abs()
        if bias_correction:
            return (a / (a + EPS)).amax(1)
        return ((1 - B1**t) * a / (math.sqrt(1 - B2**t) * a + EPS)).amax(1)

    steps = 1
    for length in (3, 2):
        moved = _constant_gradient_steps(opt, p, g, length)
        got = opt.pass_statistics()["max_step_ratio"]
        expected = torch.stack([by_hand(t) for t in range(steps, steps + length)]).amax(0)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
        # it is the step θ took, divided by α
        torch.testing.assert_close(got, torch.stack(moved).amax(0) / lr, rtol=1e-9, atol=0)
        steps += length
    if not bias_correction:
        first = (1 - B1) / math.sqrt(1 - B2)
        assert first == pytest.approx(step_bound(B1, B2), rel=1e-15)
        assert float(by_hand(1).max()) == pytest.approx(first, rel=1e-6)  # ε ≈ 0 here
        assert float(by_hand(2).max()) > step_bound(B1, B2)  # uncorrected: above the bound


def test_the_step_ratio_uses_the_decayed_step_size():
    """With α_t = α/√t, |Δθ| / α_t is still |m̂/(√v̂ + ε)|: 1 − ε/|g| for a constant g."""
    p = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    opt = Adam([p], lr=torch.tensor([0.1], dtype=torch.float64), lr_decay="sqrt",
               eps=EPS, track_step_ratio=True)
    moved = _constant_gradient_steps(opt, p, torch.full((1, 4), 0.3, dtype=torch.float64), 4)
    got = opt.pass_statistics()["max_step_ratio"]
    torch.testing.assert_close(got, torch.tensor([0.3 / (0.3 + EPS)], dtype=torch.float64))
    assert float(moved[-1][0]) == pytest.approx(0.1 / 2 * float(got[0]), rel=1e-9)  # t = 4
    assert Adam([torch.zeros(1, requires_grad=True)]).pass_statistics() == {}  # off: nothing


def test_the_step_ratio_is_per_run_for_one_number_per_run_and_any_per_run_setting():
    """A run's parameters may be one number each, stacked as (G,), and only β may be per run
    (α one number): the ratio is still one per run. Before, (G,) raised an IndexError and a
    per-run β gave one number for every run."""
    g = torch.tensor([0.5, -2.0, 1e-3], dtype=torch.float64)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    beta1 = torch.tensor([0.0, 0.5, 0.9], dtype=torch.float64)
    opt = Adam([p], lr=0.1, betas=(beta1, torch.full((3,), 0.99, dtype=torch.float64)),
               eps=EPS, bias_correction=False, track_step_ratio=True)
    p.grad = g.clone()
    opt.step()
    got = opt.pass_statistics()["max_step_ratio"]
    # t = 1 without bias correction: (1 − β1)|g| / (√(1 − β2)|g| + ε), run by run
    a = g.abs()
    torch.testing.assert_close(got, (1 - beta1) * a / (math.sqrt(1 - 0.99) * a + EPS),
                               rtol=1e-12, atol=0)


def test_averaged_runs_are_evaluated_at_their_averaged_parameters(data_dir):
    """Averaging changes no iterate, so the minibatch losses of the pass (at the iterates)
    are equal with and without it; the evaluated columns differ, and they are those of the
    bias-corrected average, which is what save_params keeps for an averaged run. Two runs
    per group (per-run hyperparameter tensors)."""
    raw = {
        "name": "avg", "title": "avg", "dataset": {"name": "mnist", "train_size": 512,
                                                  "test_size": 256},
        "model": {"name": "mlp", "hidden": [32]},
        "training": {"batch_size": 128, "epochs": 2, "dtype": "float64", "save_params": True},
        "methods": {
            "adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 3e-3]}},
            "adam+avg": {"optimizer": "adam", "variant": "avg",
                         "hparams": {"averaging": 0.9}, "grid": {"lr": [1e-3, 3e-3]}}},
    }
    exp = parse_experiment(raw, "test")
    data = load_data(exp, data_dir, torch.device("cpu"))
    (plain, _), (averaged, _) = (train_group(exp, group, data) for group in plan(exp))
    iterates, means = pd.DataFrame(plain.rows), pd.DataFrame(averaged.rows)
    pd.testing.assert_series_equal(iterates["train_loss"], means["train_loss"],
                                   check_exact=True)
    assert (iterates["test_loss"].iloc[1:] != means["test_loss"].iloc[1:]).all()
    assert iterates["test_loss"].iloc[0] == means["test_loss"].iloc[0]  # no step yet
    # the saved parameters are the average, not the last iterate, and give the curve's value
    assert not torch.equal(plain.params["layers.0.weight"], averaged.params["layers.0.weight"])
    cls = MODELS["mlp"]
    for curve in (plain, averaged):
        model = cls(cls.options(dict(exp.model), "model"), data.feature_shape,
                    data.num_classes, [0]).double()
        model.load_state_dict({k: v.unsqueeze(0) for k, v in curve.params.items()})
        test = evaluate(model, data.test, 1, 10000, None, False)
        assert float(test["loss"][0]) == pytest.approx(curve.rows[-1]["test_loss"], rel=1e-12)


def test_the_smoke_run_on_real_data(tmp_path, data_dir, cli):
    out = tmp_path / "results"
    code, _, stderr = cli("run", CONFIG, "--scale", "smoke", "--out", out, "--quiet",
                          "--data-dir", data_dir)
    assert code == 0, stderr
    folder = out / "extensions"
    curves = pd.read_csv(folder / "curves.csv")
    assert set(curves["method"]) == {"adam", "adam+avg", "adamax", "adamax+avg",
                                     "adam_two_horizons", "nadam"}
    # the ratio: recorded for every pass of every Adam run, nowhere else
    adam = curves["optimizer"] == "adam"
    trained = curves["epoch"] > 0
    assert curves.loc[adam & trained, "max_step_ratio"].gt(0).all()
    assert curves.loc[~adam | ~trained, "max_step_ratio"].isna().all()
    assert cli("plot", "extensions", "--out", out)[0] == 0
    for name in ("curves.png", "step_bound.png", "sensitivity.png"):
        assert (folder / name).stat().st_size > 0, name
    assert cli("report", "--out", out)[0] == 0
    report = (out / "report.md").read_text()
    row = next(line for line in report.splitlines()
               if line.startswith("| sec2.1-step-never-exceeds-bound"))
    assert "runs exceeded it" in row and ("| holds |" in row or "| does not hold |" in row)
    # the question PAPER.md asks of the two horizons gets a verdict with its numbers
    row = next(line for line in report.splitlines()
               if line.startswith("| reviewer-sec7-two-horizons-as-fast-as-adam"))
    assert "| holds |" in row or "| does not hold |" in row, row
    assert "adam_two_horizons vs adam: pass" in row, row
