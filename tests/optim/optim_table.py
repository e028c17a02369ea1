"""The one table of optimizers that drives every test in tests/optim, and the problems they run.

Each row is one optimizer configuration. `hparams` sets every numeric hyperparameter to a
non-default value so that each term of the update is exercised; `torch_twin` names the
torch.optim class (and its extra arguments) that runs the same algorithm, or None where torch
has none; `grid` gives G per-run values for the grid-batching test; `converge` is a step size
that solves both convergence problems within CONVERGE_STEPS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from adamrepro.optim import OPTIMIZERS
from adamrepro.optim.capabilities import capabilities_of

# The optimizers this table covers: those that train a grid at once with elementwise updates
# (SFO, which is not batched, has its own tests in test_sfo.py).
GRID_OPTIMIZERS = {name: cls for name, cls in OPTIMIZERS.items()
                   if capabilities_of(cls).batchable}


@dataclass(frozen=True)
class Case:
    id: str
    name: str  # key in adamrepro.optim.OPTIMIZERS
    hparams: dict
    torch_twin: tuple[type, dict] | None
    grid: dict[str, list]
    converge: dict = field(default_factory=dict)


BETAS_GRID = [(0.8, 0.99), (0.9, 0.999), (0.0, 0.9)]

CASES = [
    Case(
        "adam",
        "adam",
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
        (torch.optim.Adam, {}),
        dict(lr=[2e-2, 5e-3, 1e-1], betas=BETAS_GRID, eps=[1e-6, 1e-8, 1e-2],
             weight_decay=[0.0, 1e-2, 1e-1]),
        dict(lr=5e-2),
    ),
    Case(
        "adam_no_bias_correction",
        "adam",
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2, bias_correction=False),
        None,
        dict(lr=[2e-2, 5e-3, 1e-1], betas=BETAS_GRID),
        dict(lr=5e-2, bias_correction=False),
    ),
    Case(
        # recording the step ratio (Sec. 7's measurement) leaves the update Algorithm 1's
        "adam_track_step_ratio",
        "adam",
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2, track_step_ratio=True),
        None,
        dict(lr=[2e-2, 5e-3, 1e-1], betas=BETAS_GRID),
        dict(lr=5e-2, track_step_ratio=True),
    ),
    Case(
        "adam_beta1_decay",
        "adam",
        # λ = 1 − rate far from the paper's 1 − 1e-8 so that the decay is visible in 120 steps
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, beta1_decay_rate=0.01),
        None,
        dict(beta1_decay_rate=[0.01, 0.0, 0.1], betas=BETAS_GRID),
        dict(lr=5e-2, beta1_decay_rate=1e-8),
    ),
    Case(
        "adam_averaging",
        "adam",
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, averaging=0.95),
        None,
        dict(averaging=[0.95, 0.0, 0.5], lr=[2e-2, 5e-3, 1e-1]),
        dict(lr=5e-2, averaging=0.99),
    ),
    Case(
        # eps = 0: torch folds eps into exp_inf, we add it to the denominator (adamax.py)
        "adamax",
        "adamax",
        dict(lr=2e-2, betas=(0.8, 0.99), eps=0.0, weight_decay=1e-2),
        (torch.optim.Adamax, {}),
        dict(lr=[2e-2, 5e-3, 1e-1], betas=BETAS_GRID, eps=[0.0, 1e-8, 1e-2],
             weight_decay=[1e-2, 0.0, 1e-1]),
        dict(lr=1e-1),
    ),
    Case(
        "adamax_eps_averaging",
        "adamax",
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-2, weight_decay=0.0, averaging=0.9),
        None,
        dict(averaging=[0.9, 0.0, 0.999], eps=[1e-2, 1e-8, 1.0]),
        dict(lr=1e-1, averaging=0.99),
    ),
    Case(
        "adagrad",
        "adagrad",
        dict(lr=1e-1, eps=1e-6, weight_decay=1e-2),
        (torch.optim.Adagrad, {}),
        dict(lr=[1e-1, 1e-2, 1.0], eps=[1e-6, 1e-10, 1e-1], weight_decay=[0.0, 1e-2, 1e-1]),
        dict(lr=1.5),
    ),
    Case(
        "sgd_nesterov",
        "sgd_nesterov",
        dict(lr=1e-2, momentum=0.8, weight_decay=1e-2),
        (torch.optim.SGD, dict(nesterov=True)),
        dict(lr=[1e-2, 3e-3, 3e-2], momentum=[0.8, 0.0, 0.95], weight_decay=[0.0, 1e-2, 1e-1]),
        dict(lr=5e-4),
    ),
    Case(
        "rmsprop",
        "rmsprop",
        dict(lr=1e-2, alpha=0.9, eps=1e-6, momentum=0.0, weight_decay=1e-2),
        (torch.optim.RMSprop, {}),
        dict(lr=[1e-2, 3e-3, 3e-2], alpha=[0.9, 0.99, 0.0], eps=[1e-6, 1e-8, 1e-1]),
        dict(lr=3e-3),
    ),
    Case(
        "rmsprop_momentum",
        "rmsprop",
        dict(lr=3e-3, alpha=0.9, eps=1e-6, momentum=0.7, weight_decay=1e-2),
        (torch.optim.RMSprop, {}),
        dict(lr=[3e-3, 1e-3, 1e-2], momentum=[0.7, 0.0, 0.9], weight_decay=[0.0, 1e-2, 1e-1]),
        dict(lr=3e-4, momentum=0.9),
    ),
    Case(
        "adadelta",
        "adadelta",
        dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=1e-2),
        (torch.optim.Adadelta, {}),
        dict(lr=[0.5, 1.0, 2.0], rho=[0.8, 0.9, 0.0], eps=[1e-4, 1e-6, 1e-2],
             weight_decay=[1e-2, 0.0, 1e-1]),
        # AdaDelta stalls in a limit cycle on both problems with rho = 0.9; rho = 0.5 does not
        dict(lr=1.0, rho=0.5, eps=1e-8),
    ),
    Case(
        "amsgrad",
        "amsgrad",
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
        (torch.optim.Adam, dict(amsgrad=True)),
        dict(lr=[2e-2, 5e-3, 1e-1], betas=BETAS_GRID, eps=[1e-6, 1e-8, 1e-2],
             weight_decay=[1e-2, 0.0, 1e-1]),
        dict(lr=5e-2),
    ),
    Case(
        "adamw",
        "adamw",
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-1),
        (torch.optim.AdamW, {}),
        dict(lr=[2e-2, 5e-3, 1e-1], betas=BETAS_GRID, eps=[1e-6, 1e-8, 1e-2],
             weight_decay=[1e-1, 0.0, 1.0]),
        dict(lr=5e-2, weight_decay=1e-4),
    ),
    Case(
        "nadam",
        "nadam",
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2, momentum_decay=1e-2),
        (torch.optim.NAdam, {}),
        dict(lr=[2e-2, 5e-3, 1e-1], betas=BETAS_GRID, momentum_decay=[1e-2, 4e-3, 0.0],
             eps=[1e-6, 1e-8, 1e-2], weight_decay=[1e-2, 0.0, 1e-1]),
        dict(lr=2e-2),
    ),
    Case(
        "adam_two_horizons",
        "adam_two_horizons",
        dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-3, weight_decay=1e-2),
        None,
        dict(lr=[1e-2, 3e-3, 3e-2], betas=BETAS_GRID, eps=[1e-3, 1e-8, 1e-1],
             weight_decay=[1e-2, 0.0, 1e-1]),
        # |m̂_slow| → 0 at the optimum, so ε (not α) sets the final step: 1e-8 oscillates
        dict(lr=3e-3, betas=(0.9, 0.99), eps=1e-1),
    ),
]

CASES_BY_ID = {case.id: case for case in CASES}


# ---------------------------------------------------------------- the parity objective

SHAPES = [(4, 3), (5,), (2, 3, 2)]


@dataclass(frozen=True)
class Problem:
    """A noisy non-convex objective over a few tensors of different shapes, given by its
    gradient: g_t(θ) = d ⊙ (θ − c) + ½·d ⊙ sin(3θ) + 0.1·mean(θ) + 0.1·n_t.

    d spans three decades, so coordinates differ in scale; the noise n_t keeps gradients
    nonzero and changing sign. `runs` > 0 stacks that many runs on a leading dimension, each
    run's mean taken over its own slice, so that a stacked run equals a separate one.
    """

    init: list[Tensor]
    target: list[Tensor]
    curvature: list[Tensor]
    noise: list[Tensor]  # (steps, *shape) per tensor

    def gradients(self, params: list[Tensor], t: int, runs: int = 0) -> list[Tensor]:
        grads = []
        for p, c, d, n in zip(params, self.target, self.curvature, self.noise, strict=True):
            dims = tuple(range(1, p.dim())) if runs else tuple(range(p.dim()))
            mean = p.mean(dim=dims, keepdim=True)
            grads.append(d * (p - c) + 0.5 * d * torch.sin(3 * p) + 0.1 * mean + 0.1 * n[t - 1])
        return grads


def make_problem(steps: int, runs: int = 0, seed: int = 0) -> Problem:
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    init = [randn(runs, *s) if runs else randn(*s) for s in SHAPES]
    target = [randn(*s) for s in SHAPES]
    curvature = [10 ** (3 * torch.rand(*s, generator=gen, dtype=torch.float64) - 2) for s in SHAPES]
    noise = [randn(steps, *s) for s in SHAPES]
    return Problem(init, target, curvature, noise)


def run_steps(optimizer, params: list[Tensor], problem: Problem, steps: range, runs: int = 0):
    for t in steps:
        for p, g in zip(params, problem.gradients(params, t, runs), strict=True):
            p.grad = g
        optimizer.step()


def fresh_params(problem: Problem) -> list[Tensor]:
    return [p.clone().requires_grad_(True) for p in problem.init]


def per_run(values: list) -> object:
    """Per-run hyperparameter values as the tensors a grid optimizer takes."""
    if isinstance(values[0], tuple):  # betas: a pair of per-run tensors
        columns = zip(*values, strict=True)
        return tuple(torch.tensor(column, dtype=torch.float64) for column in columns)
    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------- convergence problems

CONVERGE_STEPS = 2000


def rosenbrock(x: Tensor) -> Tensor:
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def rosenbrock_gradient(x: Tensor) -> Tensor:
    return torch.stack([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2),
                        200 * (x[1] - x[0] ** 2)])


def ill_conditioned_quadratic(dim: int = 10, condition: float = 1e3, seed: int = 0):
    """f(x) = ½ xᵀAx with A's eigenvalues log-spaced over `condition`, in a random basis, so
    that no diagonal preconditioner can undo the conditioning."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    eigenvalues = torch.logspace(0, math.log10(condition), dim, dtype=torch.float64)
    matrix = basis @ torch.diag(eigenvalues) @ basis.T
    return (lambda x: 0.5 * x @ matrix @ x), (lambda x: matrix @ x)
