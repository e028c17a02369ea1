"""The properties of Adam that Kingma & Ba state (Sec. 2.1, 5, 7.1), checked on our code.

Gradient sequences here are fixed in advance (they do not depend on θ), so each step's Δθ is
a function of the sequence alone and can be compared with a bound or another method step by
step, without feedback through θ.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from optim_reference import adam as adam_reference
from optim_reference import adamax as adamax_reference
from optim_table import fresh_params, make_problem, run_steps

from adamrepro.optim import build

TIGHT = dict(rtol=1e-10, atol=1e-12)


def steps_taken(name: str, gradients: torch.Tensor, **hparams) -> torch.Tensor:
    """Δθ_t for t = 1..T when the optimizer is fed gradients[t − 1] (shape (T, n))."""
    theta = torch.zeros(gradients.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = build(name, [theta], **hparams)
    trajectory = [theta.detach().clone()]
    for g in gradients:
        theta.grad = g.clone()
        optimizer.step()
        trajectory.append(theta.detach().clone())
    return torch.diff(torch.stack(trajectory), dim=0)


# ---------------------------------------------------------------- step size bound (Sec. 2.1)

# (β1, β2): case 1 has (1 − β1) > √(1 − β2), the paper's bound α·(1 − β1)/√(1 − β2);
# case 2 has (1 − β1) ≤ √(1 − β2), the paper's bound α
BOUND_CASES = {
    "case1": (0.5, 0.99),
    "case2": (0.95, 0.99),
}


def paper_bound(beta1: float, beta2: float) -> float:
    if 1 - beta1 > math.sqrt(1 - beta2):
        return (1 - beta1) / math.sqrt(1 - beta2)
    return 1.0


def exact_bound(beta1: float, beta2: float, t: int) -> float:
    """max over all gradient sequences of |m̂_t| / √v̂_t, by Cauchy-Schwarz:
    m̂ = Σ a_i g_i, v̂ = Σ b_i g_i² give |m̂| ≤ √(Σ a_i²/b_i)·√v̂, with equality at
    g_i ∝ a_i / b_i ∝ (β1/β2)^(t−i)."""
    k = np.arange(t)
    a = (1 - beta1) * beta1**k / (1 - beta1**t)
    b = (1 - beta2) * beta2**k / (1 - beta2**t)
    return float(np.sqrt(np.sum(a**2 / b)))


def adversarial_gradients(steps: int, n: int, seed: int) -> torch.Tensor:
    """Sequences built to make steps large: isolated spikes after long silences, sign flips,
    and magnitudes spread over 16 decades (each column is one sequence)."""
    gen = np.random.default_rng(seed)
    magnitudes = 10.0 ** gen.uniform(-8, 8, size=(steps, n))
    signs = gen.choice([-1.0, 1.0], size=(steps, n))
    silent = gen.uniform(size=(steps, n)) < gen.uniform(0, 0.99, size=n)
    gradients = np.where(silent, 0.0, magnitudes * signs)
    gradients[0] = np.where(gradients[0] == 0, 1.0, gradients[0])
    return torch.from_numpy(gradients)


@pytest.mark.parametrize("case", BOUND_CASES)
def test_step_bound_in_the_sparse_case(case):
    """The paper's setting: a gradient that was zero at every step but the current one. The
    step then stays within the paper's bound, and approaches it as t grows."""
    beta1, beta2 = BOUND_CASES[case]
    alpha, steps = 0.1, 600
    gen = torch.Generator().manual_seed(0)
    spike_at = torch.arange(steps)  # coordinate j is silent until step j + 1
    sizes = 10 ** (8 * torch.rand(steps, generator=gen, dtype=torch.float64) - 4)
    gradients = torch.zeros(steps, steps, dtype=torch.float64)
    gradients[spike_at, torch.arange(steps)] = sizes * torch.sign(torch.randn(steps, generator=gen))
    delta = steps_taken("adam", gradients, lr=alpha, betas=(beta1, beta2), eps=0.0)

    bound = alpha * paper_bound(beta1, beta2)
    at_spike = delta[spike_at, torch.arange(steps)].abs()
    assert delta.abs().max() <= bound * (1 + 1e-12)
    # tight: the late spikes (case 1) or the first step (case 2, where it is exactly α)
    assert at_spike.max() >= 0.99 * bound


@pytest.mark.parametrize("case", BOUND_CASES)
def test_step_bound_exact_for_any_sequence(case):
    """For arbitrary sequences the tight bound is α·B_t (exact_bound), reached by the
    Cauchy-Schwarz sequence; adversarial sequences never exceed it."""
    beta1, beta2 = BOUND_CASES[case]
    alpha, steps = 0.1, 400
    worst = torch.from_numpy((beta1 / beta2) ** np.arange(steps - 1, -1, -1.0))[:, None]
    gradients = torch.cat([worst, adversarial_gradients(steps, 200, seed=1)], dim=1)
    delta = steps_taken("adam", gradients, lr=alpha, betas=(beta1, beta2), eps=0.0)

    bounds = torch.tensor([alpha * exact_bound(beta1, beta2, t) for t in range(1, steps + 1)],
                          dtype=torch.float64)
    assert (delta.abs() <= bounds[:, None] * (1 + 1e-9)).all()
    torch.testing.assert_close(delta[-1, 0].abs(), bounds[-1], rtol=1e-9, atol=0)


@pytest.mark.parametrize("case", BOUND_CASES)
def test_paper_bound_is_approximate_for_dense_sequences(case):
    """The paper says 'approximately bounded': outside the sparse case the worst sequence
    reaches (1 − β1)/√((1 − β2)·(1 − β1²/β2)) as t → ∞, above the paper's bound by 16% in
    case 1 and by 68% in case 2 here."""
    beta1, beta2 = BOUND_CASES[case]
    limit = (1 - beta1) / math.sqrt((1 - beta2) * (1 - beta1**2 / beta2))
    assert exact_bound(beta1, beta2, 5000) == pytest.approx(limit, rel=1e-9)
    assert exact_bound(beta1, beta2, 5000) > 1.15 * paper_bound(beta1, beta2)


def test_step_bound_alpha_holds_for_every_sequence_when_beta1_equals_beta2():
    """β1 = β2 (case 2) is where '|Δθ| ≤ α' is exact for all sequences: B_t = 1."""
    assert all(exact_bound(0.9, 0.9, t) == pytest.approx(1.0, rel=1e-12) for t in (1, 10, 500))
    delta = steps_taken("adam", adversarial_gradients(300, 200, seed=2), lr=0.1,
                        betas=(0.9, 0.9), eps=0.0)
    assert delta.abs().max() <= 0.1 * (1 + 1e-12)


# ---------------------------------------------------------------- invariance to rescaling

@pytest.mark.parametrize("name", ["adam", "adamax"])
def test_invariant_to_diagonal_rescaling_of_the_gradient(name):
    """With ε = 0 the update is the same for g and c ⊙ g, c > 0 per coordinate (Sec. 2.1)."""
    problem = make_problem(steps=120)
    gen = torch.Generator().manual_seed(3)
    scales = [10 ** (6 * torch.rand(p.shape, generator=gen, dtype=torch.float64) - 3)
              for p in problem.init]

    def final_params(name, rescale: bool, **hparams):
        params = fresh_params(problem)
        optimizer = build(name, params, **hparams)
        for t in range(1, 121):
            for p, g, c in zip(params, problem.gradients(params, t), scales, strict=True):
                p.grad = c * g if rescale else g
            optimizer.step()
        return params

    hparams = dict(lr=1e-2, eps=0.0)
    for p, q in zip(final_params(name, False, **hparams), final_params(name, True, **hparams),
                    strict=True):
        torch.testing.assert_close(p, q, **TIGHT)
    # the check can fail: SGD with Nesterov momentum is not invariant
    plain = final_params("sgd_nesterov", False, lr=1e-3)
    rescaled = final_params("sgd_nesterov", True, lr=1e-3)
    assert max((p - q).abs().max() for p, q in zip(plain, rescaled, strict=True)) > 1e-2


# ---------------------------------------------------------------- Adam without bias correction

def test_without_bias_correction_beta1_zero_is_rmsprop():
    """Sec. 6.4: no bias correction and β1 = 0 is RMSProp with decay β2, ours and torch's."""
    problem = make_problem(steps=120)
    adam_params, ours_params, torch_params = (fresh_params(problem) for _ in range(3))
    adam = build("adam", adam_params, lr=1e-2, betas=(0.0, 0.95), eps=1e-6,
                 bias_correction=False)
    rmsprop = build("rmsprop", ours_params, lr=1e-2, alpha=0.95, eps=1e-6)
    twin = torch.optim.RMSprop(torch_params, lr=1e-2, alpha=0.95, eps=1e-6)
    for optimizer, params in ((adam, adam_params), (rmsprop, ours_params), (twin, torch_params)):
        run_steps(optimizer, params, problem, range(1, 121))
    for p, q, r in zip(adam_params, ours_params, torch_params, strict=True):
        torch.testing.assert_close(p, q, **TIGHT)
        torch.testing.assert_close(p, r, **TIGHT)


def test_without_bias_correction_is_rmsprop_with_momentum():
    """Sec. 5: Adam without its two divisions is RMSProp with (heavy-ball) momentum on the
    gradient, written out here as: b ← μ·b + g;  r ← ρ·r + (1 − ρ)·g²;
    θ ← θ − α·(1 − μ)·b / (√r + ε). The (1 − μ) is Adam's damping of m."""
    mu, rho, alpha, eps = 0.8, 0.99, 1e-2, 1e-6
    gradients = adversarial_gradients(150, 50, seed=4).clamp(-1e3, 1e3)
    delta = steps_taken("adam", gradients, lr=alpha, betas=(mu, rho), eps=eps,
                        bias_correction=False)
    b = np.zeros(50)
    r = np.zeros(50)
    for t, g in enumerate(gradients.numpy()):
        b = mu * b + g
        r = rho * r + (1 - rho) * g**2
        torch.testing.assert_close(delta[t], torch.from_numpy(-alpha * (1 - mu) * b /
                                                              (np.sqrt(r) + eps)), **TIGHT)


def test_bias_correction_sets_the_first_step_to_alpha():
    """Why Sec. 6.4 matters: the first step is α·sign(g) with the correction and
    α·(1 − β1)/√(1 − β2) without it, 3.16α at the default β."""
    g = torch.tensor([[3.0, -1e-4, 2e5]], dtype=torch.float64)
    with_correction = steps_taken("adam", g, lr=0.1, eps=0.0)
    without = steps_taken("adam", g, lr=0.1, eps=0.0, bias_correction=False)
    torch.testing.assert_close(with_correction[0], -0.1 * g[0].sign(), **TIGHT)
    expected = -0.1 * (1 - 0.9) / math.sqrt(1 - 0.999) * g[0].sign()
    torch.testing.assert_close(without[0], expected, **TIGHT)


# ---------------------------------------------------------------- the AdaGrad limit (Sec. 5)

def test_adagrad_is_the_limit_beta1_zero_beta2_to_one():
    """β1 = 0, β2 = 1 − δ, α_t = α/√t, bias correction: v̂_t → (1/t)·Σ g², so the step
    α/√t · g/√v̂_t → α·g/√(Σ g²), AdaGrad's (ε = 0 in both)."""
    steps, delta_beta = 200, 1e-9
    gradients = adversarial_gradients(steps, 100, seed=5).clamp(-1e4, 1e4)
    gradients = torch.where(gradients == 0, 1e-3, gradients)
    adagrad = steps_taken("adagrad", gradients, lr=0.1, eps=0.0)
    adam = steps_taken("adam", gradients, lr=0.1, betas=(0.0, 1 - delta_beta), eps=0.0,
                       lr_decay="sqrt")
    # relative gap per step: ≤ ¼·T·δ = 5e-8 to first order in δ (β2^(t−i) ≈ 1 − (t−i)δ,
    # 1 − β2^t ≈ tδ·(1 − (t−1)δ/2)), plus ≤ u/(4δ) ≈ 3e-8 from rounding β2^t next to 1
    # (u = 1.1e-16): rtol 1e-6 leaves a 10x margin. atol: Δθ is read as θ_t − θ_(t−1),
    # which loses up to an ulp of θ (|θ| < 20 here, ulp < 4e-15)
    torch.testing.assert_close(adam, adagrad, rtol=1e-6, atol=1e-14)
    # ...and the tolerance can fail: at the default β2 the two are far apart
    default = steps_taken("adam", gradients, lr=0.1, betas=(0.0, 0.999), eps=0.0,
                          lr_decay="sqrt")
    assert ((default - adagrad).abs() / adagrad.abs()).max() > 1e-2


# ---------------------------------------------------------------- AdaMax's ε (Sec. 7.1)

def test_adamax_eps_placement_is_the_only_difference_from_torch():
    """One NumPy reference of Algorithm 2, with a single switch for where ε goes, matches
    torch.optim.Adamax with the switch on and ours with it off, at an ε that matters. With
    eps = 0 the two coincide (the adamax row of the torch parity test)."""
    hparams = dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-2, weight_decay=1e-2)
    problem = make_problem(steps=120)  # curvatures down to 1e-2 give gradients near ε
    ours_params, torch_params = fresh_params(problem), fresh_params(problem)
    run_steps(build("adamax", ours_params, **hparams), ours_params, problem, range(1, 121))
    run_steps(torch.optim.Adamax(torch_params, **hparams), torch_params, problem,
              range(1, 121))

    for eps_in_max, params in ((True, torch_params), (False, ours_params)):
        thetas = [p.numpy().copy() for p in problem.init]
        states = [{} for _ in thetas]
        for t in range(1, 121):
            grads = problem.gradients([torch.from_numpy(theta) for theta in thetas], t)
            thetas = [adamax_reference(theta, g.numpy(), state, t, eps_in_max=eps_in_max,
                                       **hparams)
                      for theta, g, state in zip(thetas, grads, states, strict=True)]
        for p, theta in zip(params, thetas, strict=True):
            torch.testing.assert_close(p.detach(), torch.from_numpy(theta), **TIGHT)
    # and the placement does matter at this ε
    assert max((p - q).abs().max() for p, q in zip(ours_params, torch_params, strict=True)) > 1e-6


def test_reference_adam_sanity():
    """The NumPy reference itself: one step from zero state is α·sign(g) (ε = 0)."""
    theta = adam_reference(np.zeros(3), np.array([2.0, -3.0, 1e-9]), {}, 1, lr=0.5,
                           betas=(0.9, 0.999), eps=0.0, weight_decay=0.0)
    np.testing.assert_allclose(theta, [-0.5, 0.5, -0.5], rtol=1e-14)
