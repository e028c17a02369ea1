"""What every optimizer must do besides computing its update: converge, skip missing
gradients, resume from a state_dict, reject bad hyperparameters, average (Adam, AdaMax)."""

from __future__ import annotations

import copy
import inspect
import re

import pytest
import torch
from optim_table import (
    CASES,
    CONVERGE_STEPS,
    GRID_OPTIMIZERS,
    fresh_params,
    ill_conditioned_quadratic,
    make_problem,
    rosenbrock,
    rosenbrock_gradient,
    run_steps,
)

from adamrepro.optim import OPTIMIZERS, build
from adamrepro.optim.adam import Adam

ids = dict(ids=lambda case: case.id)


def test_table_has_a_row_for_every_optimizer():
    assert {case.name for case in CASES} == set(GRID_OPTIMIZERS)


# ---------------------------------------------------------------- convergence

quadratic, quadratic_gradient = ill_conditioned_quadratic()
ROSENBROCK_START = torch.tensor([-1.5, 2.0], dtype=torch.float64)
QUADRATIC_START = torch.ones(10, dtype=torch.float64)


@pytest.mark.parametrize("case", CASES, **ids)
def test_converges_on_rosenbrock_and_an_ill_conditioned_quadratic(case):
    """Both problems in one optimizer: every update is per parameter, so they are two
    independent runs that share the Python overhead of a step. Checked every 100 steps;
    the test passes once both losses are below target (100x down on Rosenbrock, whose valley
    is slow for AdaGrad and AdaDelta; 1000x on the quadratic), for θ and for θ̂."""
    x, y = ROSENBROCK_START.clone(), QUADRATIC_START.clone()
    optimizer = build(case.name, [x, y], **case.converge)

    def converged() -> bool:
        finals = [(x, y)]
        if "averaging" in case.converge:
            finals.append(tuple(optimizer.averaged_params()))
        return all(
            rosenbrock(x_final) < 1e-2 * rosenbrock(ROSENBROCK_START)
            and quadratic(y_final) < 1e-3 * quadratic(QUADRATIC_START)
            for x_final, y_final in finals
        )

    for step in range(1, CONVERGE_STEPS + 1):
        x.grad, y.grad = rosenbrock_gradient(x), quadratic_gradient(y)
        optimizer.step()
        if step % 100 == 0 and converged():
            break
    assert converged()
    assert torch.isfinite(x).all() and torch.isfinite(y).all()


# ---------------------------------------------------------------- missing gradients

def _snapshot(optimizer, params):
    state = {i: {k: v.clone() for k, v in optimizer.state[p].items()} for i, p in enumerate(params)}
    return [p.detach().clone() for p in params], state


@pytest.mark.parametrize("case", CASES, **ids)
def test_step_without_gradients_changes_nothing(case):
    problem = make_problem(steps=3)
    params = fresh_params(problem)
    optimizer = build(case.name, params, **case.hparams)
    optimizer.step()  # before any state exists
    assert all(len(optimizer.state[p]) == 0 for p in params)
    assert all(torch.equal(p, p0) for p, p0 in zip(params, problem.init, strict=True))

    run_steps(optimizer, params, problem, range(1, 4))
    before = _snapshot(optimizer, params)
    optimizer.zero_grad(set_to_none=True)
    optimizer.step()
    after = _snapshot(optimizer, params)
    assert all(torch.equal(a, b) for a, b in zip(before[0], after[0], strict=True))
    for i in before[1]:
        assert before[1][i].keys() == after[1][i].keys()
        assert all(torch.equal(before[1][i][k], after[1][i][k]) for k in before[1][i])


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_is_torchs(set_to_none):
    """GridOptimizer's own zero_grad (without torch's profiler range and dynamo wrapper):
    every gradient None, or zeroed in place, as torch.optim.Optimizer's leaves them; a
    parameter without one keeps none, in every param group."""
    ours = [torch.ones(3, requires_grad=True) for _ in range(3)]
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    optimizers = [build("adam", [{"params": params[:2]}, {"params": params[2:], "lr": 1e-2}])
                  for params in (ours, theirs)]
    torch.optim.Optimizer.zero_grad(optimizers[1], set_to_none=set_to_none)
    for params in (ours, theirs):
        params[0].grad = torch.full((3,), 2.0)
        params[2].grad = torch.full((3,), 3.0)
    kept = ours[0].grad
    optimizers[0].zero_grad(set_to_none=set_to_none)
    torch.optim.Optimizer.zero_grad(optimizers[1], set_to_none=set_to_none)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.grad is None) == (b.grad is None)
        assert a.grad is None or torch.equal(a.grad, b.grad)
    assert ours[1].grad is None
    assert (ours[0].grad is None) if set_to_none else (ours[0].grad is kept and
                                                       not kept.any())


# ---------------------------------------------------------------- resuming

@pytest.mark.parametrize("case", CASES, **ids)
def test_state_dict_resumes_identically(case):
    problem = make_problem(steps=60)
    params = fresh_params(problem)
    optimizer = build(case.name, params, **case.hparams)
    run_steps(optimizer, params, problem, range(1, 31))
    saved = copy.deepcopy(optimizer.state_dict())
    resumed_params = [p.detach().clone().requires_grad_(True) for p in params]
    run_steps(optimizer, params, problem, range(31, 61))

    resumed = build(case.name, resumed_params, **case.hparams)
    resumed.load_state_dict(saved)
    run_steps(resumed, resumed_params, problem, range(31, 61))
    for p, q in zip(params, resumed_params, strict=True):
        assert torch.equal(p, q)
        assert optimizer.state[p].keys() == resumed.state[q].keys()
        for key, value in optimizer.state[p].items():
            assert torch.equal(value, resumed.state[q][key]), key
    if hasattr(optimizer, "averaged_params"):
        for a, b in zip(optimizer.averaged_params(), resumed.averaged_params(), strict=True):
            assert torch.equal(a, b)


# ---------------------------------------------------------------- validation

BAD_VALUES = {
    "lr": [0.0, -1e-3, float("nan"), "1e-3", torch.tensor([1e-3, -1e-3])],
    "betas": [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.999), (0.9,), 0.9,
              (torch.tensor([0.9, 1.0]), 0.999)],
    "eps": [-1e-8, torch.tensor([1e-8, -1e-8])],
    "weight_decay": [-1e-2],
    "momentum": [-0.1, 1.0],
    "alpha": [-0.1, 1.0],
    "rho": [-0.1, 1.0],
    "lr_decay": ["cosine", None],
    "beta1_decay_rate": [-1e-8, 1.0],
    "averaging": [1.0, -0.5, torch.tensor([0.9, 1.0])],
    "momentum_decay": [-1e-3],
    "bias_correction": ["yes", 1],
    "track_step_ratio": ["yes", 1],
}
# Bad for one optimizer only: AdaDelta's ε is what starts it moving (0 leaves θ where it is).
BAD_FOR = {("adadelta", "eps"): [0.0]}
INVALID = [
    pytest.param(name, hparam, value, id=f"{name}-{hparam}-{i}")
    for name, optimizer_class in GRID_OPTIMIZERS.items()
    for hparam in inspect.signature(optimizer_class).parameters
    for i, value in enumerate(BAD_VALUES.get(hparam, []) + BAD_FOR.get((name, hparam), []))
]


@pytest.mark.parametrize("name, hparam, value", INVALID)
def test_invalid_hyperparameter_raises_naming_it(name, hparam, value):
    param = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=re.escape(hparam)):
        build(name, [param], **{hparam: value})


def _per_group(name: str, hparam: str) -> bool:
    return hparam in build(name, [torch.zeros(1, requires_grad=True)]).defaults


@pytest.mark.parametrize("name, hparam, value", [p for p in INVALID if _per_group(*p.values[:2])])
def test_a_param_group_s_own_bad_value_raises_naming_it(name, hparam, value):
    """A value a param group sets itself is checked as the constructor's are, at
    construction and by `add_param_group` (a group's lr of -1 ascended without a word).
    Settings that are not per group (track_step_ratio) are the constructor's alone."""
    first, second = torch.zeros(2, 3, requires_grad=True), torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=re.escape(hparam)):
        build(name, [{"params": [first]}, {"params": [second], hparam: value}])
    optimizer = build(name, [first])
    with pytest.raises(ValueError, match=re.escape(hparam)):
        optimizer.add_param_group({"params": [second], hparam: value})


@pytest.mark.parametrize("name", [n for n, cls in GRID_OPTIMIZERS.items()
                                  if "eps" in inspect.signature(cls).parameters
                                  and n != "adadelta"])
@pytest.mark.parametrize("eps", [0.0, "per-run"])
def test_eps_zero_moves_no_coordinate_that_saw_only_zero_gradients(name, eps):
    """ε = 0, as the paper's theory sets it, on a coordinate whose gradients were all 0 (as
    MNIST's 67 always-blank pixels are) was 0/0 = NaN; its step is 0, as its numerator is.
    The other coordinates step exactly as they do alone. Per run, a grid of ε in which one
    run has 0 (the other run's coordinates have no zero denominator)."""
    runs = 2 if eps == "per-run" else None
    shape = (runs, 3) if runs else (3,)
    gen = torch.Generator().manual_seed(0)
    gradients = torch.randn(20, *shape, generator=gen, dtype=torch.float64)
    gradients[..., 2] = 0.0  # the blank coordinate
    settings = ({"eps": torch.tensor([0.0, 0.0], dtype=torch.float64),
                 "lr": torch.tensor([1e-2, 1e-2], dtype=torch.float64)}
                if runs else {"eps": 0.0, "lr": 1e-2})
    settings["weight_decay"] = 0.0  # a decay would move the blank coordinate too

    def trained(values, grads):
        theta = torch.ones(grads.shape[1:], dtype=torch.float64, requires_grad=True)
        optimizer = build(name, [theta], **values)
        for g in grads:
            theta.grad = g.clone()
            optimizer.step()
        return theta.detach()

    theta = trained(settings, gradients)
    assert torch.isfinite(theta).all(), theta
    assert (theta[..., 2] == 1).all()  # never moved
    assert (theta[..., :2] != 1).all()  # the others did
    alone = trained(settings, gradients[..., :2])  # no zero denominator anywhere
    assert torch.equal(theta[..., :2], alone)


def test_every_hyperparameter_has_bad_values_to_try():
    names = {h for cls in GRID_OPTIMIZERS.values() for h in inspect.signature(cls).parameters}
    assert names - {"params"} <= set(BAD_VALUES)


def test_build_rejects_unknown_names():
    param = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build("adamm", [param])
    with pytest.raises(ValueError, match="beta2"):
        build("adam", [param], beta2=0.99)


# ---------------------------------------------------------------- defaults

PAPER_DEFAULTS = {
    "adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8),  # Algorithm 1
    "adamax": dict(lr=2e-3, betas=(0.9, 0.999)),  # Algorithm 2
}
TORCH_DEFAULTS_SKIP = {"lr_decay"}  # torch's Adagrad lr_decay is a different schedule


def _defaults(cls) -> dict:
    return {k: v.default for k, v in inspect.signature(cls).parameters.items() if k != "params"}


@pytest.mark.parametrize("case", [c for c in CASES if c.torch_twin and c.name != "sgd_nesterov"],
                         **ids)
def test_defaults_follow_torch(case):
    ours, theirs = _defaults(GRID_OPTIMIZERS[case.name]), _defaults(case.torch_twin[0])
    shared = (set(ours) & set(theirs)) - TORCH_DEFAULTS_SKIP
    assert shared
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


@pytest.mark.parametrize("name", PAPER_DEFAULTS)
def test_defaults_follow_the_paper(name):
    defaults = _defaults(GRID_OPTIMIZERS[name])
    assert {k: defaults[k] for k in PAPER_DEFAULTS[name]} == PAPER_DEFAULTS[name]
    assert defaults["averaging"] is None


# ---------------------------------------------------------------- temporal averaging

@pytest.mark.parametrize("name", ["adam", "adamax"])
def test_averaged_params_follow_every_group_in_order(name):
    problem = make_problem(steps=40)
    a, b, c = fresh_params(problem)
    optimizer = build(name, [{"params": [a, b], "averaging": 0.9}, {"params": [c]}])
    history = []
    for t in range(1, 41):
        a.grad, b.grad, _ = problem.gradients([a, b, c], t)  # c never has a gradient
        optimizer.step()
        history.append(a.detach().clone())
    averages = optimizer.averaged_params()
    assert [x.shape for x in averages] == [a.shape, b.shape, c.shape]
    # θ̂_t = Σ_i (1 − β)·β^(t−i)·θ_i / (1 − β^t), summed independently of the recursion
    weights = [(1 - 0.9) * 0.9 ** (40 - i) for i in range(1, 41)]
    expected = sum(w * theta for w, theta in zip(weights, history, strict=True)) / (1 - 0.9**40)
    torch.testing.assert_close(averages[0], expected, rtol=1e-12, atol=1e-14)
    assert torch.equal(averages[2], c) and averages[2] is not c
    assert "param_avg" not in optimizer.state[c]


@pytest.mark.parametrize("dtype, beta, rtol", [
    # 1 − β^t cancels three digits at β = 0.999 in float64
    (torch.float64, 0.999, 1e-12),
    # and in float32 at β = 0.9999, 1 − β^t taken as such was 5e-5 off at t = 2; four ulps
    # (1.9e-7 measured)
    (torch.float32, 0.9999, 5e-7),
])
def test_average_of_a_constant_is_that_constant_from_the_first_step(dtype, beta, rtol):
    """The bias correction makes θ̂ exact at once; θ̄ alone would be θ·(1 − β^t)."""
    theta = torch.full((3,), 2.5, dtype=dtype, requires_grad=True)
    optimizer = Adam([theta], lr=1e-3, averaging=beta)
    for _ in range(3):
        theta.grad = torch.zeros_like(theta)  # Adam's step is 0/(0+ε) = 0: θ stays put
        optimizer.step()
        (average,) = optimizer.averaged_params()
        torch.testing.assert_close(average, theta.detach(), rtol=rtol, atol=0)


def test_swap_averaged_swaps_in_and_restores_even_on_error():
    problem = make_problem(steps=20)
    params = fresh_params(problem)
    optimizer = Adam(params, lr=1e-2, averaging=0.9)
    run_steps(optimizer, params, problem, range(1, 21))
    current = [p.detach().clone() for p in params]
    averages = optimizer.averaged_params()
    state = copy.deepcopy(optimizer.state_dict())

    with optimizer.swap_averaged():
        assert all(torch.equal(p, avg) for p, avg in zip(params, averages, strict=True))
    assert all(torch.equal(p, x) for p, x in zip(params, current, strict=True))

    with pytest.raises(RuntimeError, match="evaluation failed"):
        with optimizer.swap_averaged():
            raise RuntimeError("evaluation failed")
    assert all(torch.equal(p, x) for p, x in zip(params, current, strict=True))
    assert all(p.requires_grad and p.is_leaf for p in params)
    for p, q in zip(params, [state["state"][i] for i in range(len(params))], strict=True):
        assert all(torch.equal(optimizer.state[p][k], q[k]) for k in q)


# ---------------------------------------------------------------- the paper's λ in float32

def test_the_papers_first_moment_decay_survives_float32_in_a_batched_grid():
    """λ = 1 − 1e-8 rounds to 1 in float32; the knob is its rate, and a grid's float32
    per-run tensor of rates must still decay β1 (before, the decay was silently off)."""
    import math

    from adamrepro.hparams import stacked

    rates = (1e-8, 0.0)
    hparams = stacked([{"lr": 1e-3, "betas": [0.9, 0.999], "beta1_decay_rate": r}
                       for r in rates], torch.float32)
    assert hparams["beta1_decay_rate"].dtype == torch.float32
    p = torch.zeros(2, 3, dtype=torch.float32, requires_grad=True)
    opt = Adam([p], **hparams)
    p.grad = torch.ones_like(p)
    opt.step()
    t = 1_000_000
    state = opt.state[p]
    state["step"].fill_(t - 1)
    state["exp_avg"].zero_()
    opt.step()  # step t: m = (1 − β1,t)·g with β1,t = β1·λ^(t−1)
    for run, rate in enumerate(rates):
        beta1_t = 0.9 * math.exp((t - 1) * math.log1p(-rate))
        expected = torch.full((3,), 1 - beta1_t)
        torch.testing.assert_close(state["exp_avg"][run], expected, rtol=1e-5, atol=0)
    assert not torch.equal(state["exp_avg"][0], state["exp_avg"][1])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_s_docstring_carries_its_update_rule_and_reference(name):
    """STYLE (optax): `help(cls)` shows the update rule in the paper's symbols and where it
    comes from (authors and year)."""
    doc = OPTIMIZERS[name].__doc__ or ""
    assert "←" in doc, f"{name}: no update rule (θ ← ...) in its docstring"
    assert re.search(r"\b(19|20)\d\d\b", doc), f"{name}: no reference (a year) in its docstring"


def test_a_subclass_with_other_arguments_still_takes_its_groups_own_values():
    """A user's GridOptimizer may need arguments its defaults do not hold (here `width`):
    its groups' values cannot be checked by building it again, and are taken as torch
    takes them, not refused with a TypeError of the check's own making."""
    from adamrepro.optim.base import GridOptimizer

    class Widened(GridOptimizer):
        def __init__(self, params, width, lr=0.1):
            self.width = width
            super().__init__(params, dict(lr=lr))

        def _init_state(self, p, state, group):
            pass

        def _update(self, p, grad, state, group, lr_t):
            p.sub_(grad * lr_t * self.width)

    first, second = (torch.zeros(2, dtype=torch.float64, requires_grad=True) for _ in "ab")
    optimizer = Widened([{"params": [first]}, {"params": [second], "lr": 0.5}], width=3)
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, 0.5]
    first.grad, second.grad = torch.ones_like(first), torch.ones_like(second)
    optimizer.step()
    assert first.tolist() == [-0.1 * 3] * 2 and second.tolist() == [-0.5 * 3] * 2
