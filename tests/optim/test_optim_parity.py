"""Exactness: every optimizer against torch.optim where the algorithms coincide, against an
independent NumPy reference everywhere (both lr decays), and a stacked grid of runs against
the same runs made one by one. All in float64 over 120 steps, parameters AND state."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from optim_reference import REFERENCES, averaged
from optim_table import CASES, GRID_OPTIMIZERS, fresh_params, make_problem, per_run, run_steps

from adamrepro.optim import build

STEPS = 120
TIGHT = dict(rtol=1e-10, atol=1e-12)
SWITCHED_OFF_BY_ZERO = {"param_avg", "momentum_buffer"}
TWINNED = [case for case in CASES if case.torch_twin is not None]


@pytest.fixture
def float64_default():
    """torch keeps scalar state such as NAdam's `mu_product` in the default dtype: float32
    unless told otherwise, which alone would break a 1e-10 comparison."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("case", TWINNED, ids=lambda case: case.id)
def test_matches_torch(case, float64_default):
    problem = make_problem(STEPS)
    ours_params, torch_params = fresh_params(problem), fresh_params(problem)
    ours = build(case.name, ours_params, **case.hparams)
    torch_class, torch_extra = case.torch_twin
    twin = torch_class(torch_params, **case.hparams, **torch_extra)
    run_steps(ours, ours_params, problem, range(1, STEPS + 1))
    run_steps(twin, torch_params, problem, range(1, STEPS + 1))

    for p_ours, p_torch in zip(ours_params, torch_params, strict=True):
        torch.testing.assert_close(p_ours, p_torch, **TIGHT)
        state_ours, state_torch = ours.state[p_ours], twin.state[p_torch]
        # our only extra key is `step`, which torch.optim.SGD does not keep
        assert set(state_torch) <= set(state_ours) <= set(state_torch) | {"step"}
        for key, value in state_torch.items():
            torch.testing.assert_close(state_ours[key], value.to(torch.float64), **TIGHT)
    # the test would notice a wrong algorithm: the parameters moved far beyond the tolerance
    assert max((p - q).abs().max() for p, q in zip(ours_params, problem.init, strict=True)) > 1e-2


@pytest.mark.parametrize("lr_decay", ["none", "sqrt"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_matches_numpy_reference(case, lr_decay):
    hparams = {**case.hparams, "lr_decay": lr_decay}
    problem = make_problem(STEPS)
    params = fresh_params(problem)
    optimizer = build(case.name, params, **hparams)
    run_steps(optimizer, params, problem, range(1, STEPS + 1))

    reference = REFERENCES[case.name]
    thetas = [p.numpy().copy() for p in problem.init]
    states = [{} for _ in thetas]
    for t in range(1, STEPS + 1):
        grads = problem.gradients([torch.from_numpy(theta) for theta in thetas], t)
        thetas = [
            reference(theta, g.numpy(), state, t, **hparams)
            for theta, g, state in zip(thetas, grads, states, strict=True)
        ]

    averages = averaged_params(optimizer)
    for p, theta, state, avg in zip(params, thetas, states, averages, strict=True):
        torch.testing.assert_close(p.detach(), torch.from_numpy(theta), **TIGHT)
        assert set(optimizer.state[p]) == set(state) | {"step"}
        assert optimizer.state[p]["step"].item() == STEPS
        for key, value in state.items():
            expected = torch.as_tensor(np.asarray(value), dtype=torch.float64)
            torch.testing.assert_close(optimizer.state[p][key], expected, **TIGHT)
        expected_avg = averaged(theta, state, STEPS, hparams.get("averaging"))
        torch.testing.assert_close(avg, torch.from_numpy(expected_avg), **TIGHT)


def averaged_params(optimizer) -> list[torch.Tensor]:
    """θ̂ for the optimizers with temporal averaging (Adam, AdaMax), θ for the others."""
    if hasattr(optimizer, "averaged_params"):
        return optimizer.averaged_params()
    return [p.detach() for group in optimizer.param_groups for p in group["params"]]


def _slice(value: torch.Tensor, run: int, like: torch.Tensor) -> torch.Tensor:
    """Run `run`'s part of a stacked state tensor, shaped as the separate run's tensor."""
    return value[run].reshape(like.shape) if value.dim() > 0 else value


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_grid_equals_separate_runs(case):
    lr_decay = "sqrt"  # the schedule that also divides the per-run lr tensor by the step
    runs = len(next(iter(case.grid.values())))
    stacked_hparams = {**case.hparams, "lr_decay": lr_decay}
    stacked_hparams.update({key: per_run(values) for key, values in case.grid.items()})
    problem = make_problem(STEPS, runs=runs)
    stacked = fresh_params(problem)
    optimizer = build(case.name, stacked, **stacked_hparams)
    run_steps(optimizer, stacked, problem, range(1, STEPS + 1), runs=runs)
    stacked_averages = averaged_params(optimizer)

    for run in range(runs):
        hparams = {**case.hparams, "lr_decay": lr_decay}
        hparams.update({key: values[run] for key, values in case.grid.items()})
        separate = [p[run].clone().requires_grad_(True) for p in problem.init]
        single = build(case.name, separate, **hparams)
        run_steps(single, separate, problem, range(1, STEPS + 1))
        averages = averaged_params(single)
        for p_stacked, p, avg_stacked, avg in zip(
            stacked, separate, stacked_averages, averages, strict=True
        ):
            torch.testing.assert_close(p_stacked[run], p, **TIGHT)
            torch.testing.assert_close(avg_stacked[run], avg, **TIGHT)
            # a run whose averaging or momentum is 0 keeps a (trivial) state that its separate
            # twin, where the number 0 switches the term off, does not store
            keys = set(single.state[p])
            assert keys <= set(optimizer.state[p_stacked]) <= keys | SWITCHED_OFF_BY_ZERO
            for key, value in single.state[p].items():
                stacked_value = optimizer.state[p_stacked][key]
                torch.testing.assert_close(_slice(stacked_value, run, value), value, **TIGHT)


@pytest.mark.parametrize("name", GRID_OPTIMIZERS)
def test_grid_covers_every_numeric_hyperparameter(name):
    parameters = inspect.signature(GRID_OPTIMIZERS[name]).parameters.values()
    # switches (booleans) and choices (strings) are not grid values
    numeric = {p.name for p in parameters
               if p.name != "params" and not isinstance(p.default, (bool, str))}
    covered = {key for case in CASES if case.name == name for key in case.grid}
    assert covered == numeric


# The Adam family at β close to 1, where 1 − β^t is a few digits of float32 in the first steps.
NEAR_ONE = dict(lr=1e-3, betas=(0.999, 0.9999), eps=1e-8)


def _rounded(hparams: dict, dtype: torch.dtype) -> dict:
    """`hparams` as numbers of `dtype`, so that both sides start from the same β."""
    def one(value):
        return float(torch.tensor(value, dtype=dtype))
    return {key: tuple(map(one, value)) if isinstance(value, tuple) else one(value)
            for key, value in hparams.items()}


@pytest.mark.parametrize("case", [case for case in TWINNED if "betas" in case.hparams],
                         ids=lambda case: case.id)
def test_float32_bias_corrections_keep_torch_s_digits_at_beta_near_one(case):
    """A stacked float32 grid's first steps at β2 = 0.9999 are torch.optim's (whose bias
    corrections are float64 Python numbers) to the median element's last bits: 1 − β^t taken
    in float32 put each step 5e-5 off it at t = 2."""
    from adamrepro import hparams as stacked_hparams

    rounded = _rounded(NEAR_ONE, torch.float32)
    generator = torch.Generator().manual_seed(0)
    ours_param = torch.zeros(1, 4096, requires_grad=True)
    ours = build(case.name, [ours_param],
                 **stacked_hparams.stacked([rounded], torch.float32, ours_param.device))
    torch_param = torch.zeros(4096, requires_grad=True)
    torch_class, torch_extra = case.torch_twin
    twin = torch_class([torch_param], **rounded, **torch_extra, foreach=False)
    for _ in range(5):
        grad = torch.randn(4096, generator=generator)
        before_ours, before_torch = ours_param.detach()[0].clone(), torch_param.detach().clone()
        ours_param.grad, torch_param.grad = grad[None].clone(), grad.clone()
        ours.step()
        twin.step()
        step_ours = (ours_param.detach()[0] - before_ours).double()
        step_torch = (torch_param.detach() - before_torch).double()
        # 1e-6: eight float32 ulps; the float32 correction's error was 5e-5
        assert ((step_ours - step_torch).abs() / step_torch.abs()).median() < 1e-6
