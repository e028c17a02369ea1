"""SFO on real MNIST: it reaches the optimum of a convex problem sooner than SGD, its models are
exact where each subfunction was last evaluated, its memory has the designed shape, and it
rejects bad hyperparameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from adamrepro.data import mnist
from adamrepro.optim.sfo import SFO

NUM_IMAGES = 2000
NUM_SUBFUNCTIONS = 10
# strong enough that full-batch L-BFGS converges in about a second on two cores
L2 = 1e-2
# "reached the optimum": the full objective within this of L-BFGS's minimum
GAP = 1e-4
MAX_PASSES = 40


@dataclass
class Problem:
    """L2-regularised multiclass logistic regression, split into fixed minibatches."""

    x: torch.Tensor
    y: torch.Tensor
    batches: list[torch.Tensor]

    def params(self) -> list[torch.Tensor]:
        return [torch.zeros(self.x.shape[1], 10, dtype=torch.float64, requires_grad=True),
                torch.zeros(10, dtype=torch.float64, requires_grad=True)]

    def loss(self, params, rows=None) -> torch.Tensor:
        weight, bias = params
        x, y = (self.x, self.y) if rows is None else (self.x[rows], self.y[rows])
        penalty = 0.5 * L2 * (weight.square().sum() + bias.square().sum())
        return F.cross_entropy(x @ weight + bias, y) + penalty

    def closure(self, params):
        """closure(i): subfunction i (minibatch i), as SFO.step wants it."""

        def evaluate(index: int) -> torch.Tensor:
            for p in params:
                p.grad = None
            loss = self.loss(params, self.batches[index])
            loss.backward()
            return loss

        return evaluate

    def full_loss(self, params) -> float:
        with torch.no_grad():
            return float(self.loss(params))

    def split(self, num_subfunctions: int) -> Problem:
        return Problem(self.x, self.y, list(torch.arange(len(self.y)).chunk(num_subfunctions)))

    def first_pixels(self, count: int) -> Problem:
        return Problem(self.x[:, :count], self.y, self.batches)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem(data_dir) -> Problem:
    data = mnist.load(mnist.Options(), data_dir)
    return Problem(data.train_x[:NUM_IMAGES].double(), data.train_y[:NUM_IMAGES],
                   []).split(NUM_SUBFUNCTIONS)


@pytest.fixture(scope="module")
def optimum(problem) -> float:
    params = problem.params()
    lbfgs = torch.optim.LBFGS(params, lr=1, max_iter=1000, tolerance_grad=1e-9,
                              tolerance_change=1e-14, history_size=20,
                              line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        loss = problem.loss(params)
        loss.backward()
        return loss

    lbfgs.step(closure)
    closure()
    gradient_norm = float(torch.cat([p.grad.flatten() for p in params]).norm())
    # L2-strongly convex: the objective is at most |grad|²/(2·L2) above its minimum
    assert gradient_norm**2 / (2 * L2) < 1e-3 * GAP, f"L-BFGS stopped at |grad| {gradient_norm}"
    return problem.full_loss(params)


def passes_to_reach(target: float, problem: Problem, params, step, max_passes: int):
    """Passes (subfunction evaluations / N) until the full objective is within GAP of
    `target`, checked after every step; None if not within `max_passes`."""
    n = len(problem.batches)
    evaluations = 0
    while evaluations < max_passes * n:
        evaluations += step()
        if problem.full_loss(params) - target < GAP:
            return evaluations / n
    return None


def test_sfo_reaches_the_lbfgs_optimum_in_fewer_passes_than_sgd(problem, optimum):
    params = problem.params()
    sfo = SFO(params, NUM_SUBFUNCTIONS)
    closure = problem.closure(params)

    def sfo_step() -> int:
        state = sfo.state[params[0]]
        before = state.get("evaluations", 0)
        sfo.step(closure)
        # a rejected step evaluates its subfunction twice: count both
        return sfo.state[params[0]]["evaluations"] - before

    sfo_passes = passes_to_reach(optimum, problem, params, sfo_step, MAX_PASSES)
    assert sfo_passes is not None, f"SFO not within {GAP} of the optimum in {MAX_PASSES} passes"

    # plain SGD, cycling through the same minibatches, best of a few step sizes (it diverges
    # at 3; at 0.3 it levels off near 8e-4 after 100 passes, at 0.1 it is slower), with three
    # times SFO's budget
    sgd_budget = 3 * math.ceil(sfo_passes)
    sgd_passes = {}
    for lr in (0.1, 0.3, 1.0):
        params = problem.params()
        sgd = torch.optim.SGD(params, lr=lr)
        sgd_closure = problem.closure(params)
        order = iter(range(10**9))

        def sgd_step(sgd=sgd, sgd_closure=sgd_closure, order=order) -> int:
            sgd_closure(next(order) % len(problem.batches))
            sgd.step()
            return 1

        sgd_passes[lr] = passes_to_reach(optimum, problem, params, sgd_step, sgd_budget)
    reached = [p for p in sgd_passes.values() if p is not None]
    best_sgd = min(reached) if reached else math.inf
    message = (f"passes to within {GAP} of the L-BFGS optimum {optimum:.6f}: SFO {sfo_passes}, "
               f"SGD by lr {sgd_passes} (None: not within {sgd_budget} passes)")
    print(message)
    assert sfo_passes < best_sgd, message


def test_each_model_is_exact_where_its_subfunction_was_last_evaluated(problem):
    params = problem.params()
    sfo = SFO(params, NUM_SUBFUNCTIONS)
    closure = problem.closure(params)
    for _ in range(6 * NUM_SUBFUNCTIONS):
        sfo.step(closure)
    state = sfo.state[params[0]]
    # the models must survive collapses of the subspace, which drop every other direction
    assert state["collapses"] >= 3, state["collapses"]
    assert bool((state["eval_count"] > 1).all())
    for index in range(NUM_SUBFUNCTIONS):
        point = sfo.last_point(index)
        value, gradient = sfo.predict(index, point)
        sfo._write_params(point)
        true_value = float(closure(index).detach())
        true_gradient = torch.cat([p.grad.flatten() for p in params])
        # both sides are float64 and the stored point is the evaluated one re-expressed
        # through a few rotations of the basis (round-off ~1e-14); a model that lost part of
        # its gradient to a collapse, or kept a wrong point, is off by 1e-3 or more
        assert value == pytest.approx(true_value, rel=1e-8, abs=0)
        scale = true_gradient.abs().max()
        torch.testing.assert_close(gradient, true_gradient, rtol=1e-8, atol=1e-8 * scale)


def test_what_each_step_keeps_up_to_date_equals_it_computed_afresh(problem):
    """To spare reads of the basis and O(N·K²) sums, a step keeps θ's coordinates, the
    summed model Σ H_i and the basis itself up to date instead of recomputing them, and sums
    the models' gradients in one batched product. After every step, through collapses and
    rejected steps, each equals its definition: θ = Pᵀx_θ, Σ H_i summed afresh, Σ_i ∇q_i
    from each model's own prediction, PᵀP = I."""
    params = problem.params()
    sfo = SFO(params, NUM_SUBFUNCTIONS)
    closure = problem.closure(params)
    worst = dict.fromkeys(("theta", "prior", "hess_sum", "gradient", "orthonormal"), 0.0)
    for _ in range(6 * NUM_SUBFUNCTIONS):
        sfo.step(closure)
        state = sfo.state[params[0]]
        basis, rank = state["basis"], state["rank"]
        for key, point in (("theta", "theta"), ("prior", "prior_theta")):
            kept = state["x_theta" if key == "theta" else "x_prior"] @ basis
            worst[key] = max(worst[key], float((kept - state[point]).norm()
                                               / state[point].norm()))
        fresh = sfo._summed_hessian()
        worst["hess_sum"] = max(worst["hess_sum"], float(
            (state["hess_sum"] - fresh).abs().max() / fresh.abs().max()))
        evaluated = torch.nonzero(state["eval_count"] > 0).flatten().tolist()
        summed = sum(sfo.predict(i, state["theta"])[1] for i in evaluated)
        batched = sfo._summed_gradient(state["x_theta"]) @ basis
        worst["gradient"] = max(worst["gradient"], float(
            (batched - summed).norm() / state["last_g"].norm()))
        gram = basis[:rank] @ basis[:rank].T
        worst["orthonormal"] = max(worst["orthonormal"], float(
            (gram - torch.eye(rank, dtype=gram.dtype)).abs().max()))
    assert state["collapses"] >= 3 and state["rejected_steps"] >= 1, state
    # measured: all below 1e-14; a kept quantity that missed one update is off by 1e-3 or more
    assert max(worst.values()) < 1e-11, worst


def memory_after_two_passes(problem: Problem, num_subfunctions: int) -> tuple[int, int]:
    """(K_max, memory_bytes()) of SFO after two passes with N subfunctions."""
    params = problem.params()
    sfo = SFO(params, num_subfunctions, max_history=HISTORY)
    closure = problem.split(num_subfunctions).closure(params)
    for _ in range(2 * num_subfunctions):
        sfo.step(closure)
    return sfo.state[params[0]]["k_max"], sfo.memory_bytes()


HISTORY = 10


def test_memory_grows_with_dim_only_through_the_shared_basis(problem):
    """Halving the parameter count saves 8 bytes per subspace direction per parameter (the
    float64 basis P) plus two full-space points (current and previous); a per-subfunction
    full-space vector would add 8·N more, a full Hessian 8·dim more."""
    n = 8
    dims = {784: 784 * 10 + 10, 392: 392 * 10 + 10}
    (k, big), (k_small, small) = (memory_after_two_passes(problem.first_pixels(p), n)
                                  for p in dims)
    assert k == k_small
    per_parameter = (big - small) / (dims[784] - dims[392])
    assert per_parameter == 8 * (k + 2), f"{per_parameter} bytes per parameter, K_max {k}"


def test_memory_per_subfunction_is_subspace_sized(problem):
    """Beyond the basis, bytes = c + e·N + b·N·K with b, e of order max_history: each
    subfunction keeps O(max_history) coordinate vectors of length K, nothing of length dim.
    The summed model Σ H_i (K × K, with K = 3N + 5) adds 3 float64 to b."""
    dim = 784 * 10 + 10
    measured = {n: memory_after_two_passes(problem, n) for n in (2, 4, 8, 16, 32)}
    design = torch.tensor([[1.0, n, n * k] for n, (k, _) in measured.items()],
                          dtype=torch.float64)
    # the basis part, checked by the test above
    rest = torch.tensor([b - 8 * dim * (k + 2) for k, b in measured.values()],
                        dtype=torch.float64)
    fit = torch.linalg.lstsq(design, rest[:, None]).solution.flatten()
    c, e, b = fit.tolist()
    residual = float((design @ fit - rest).abs().max() / rest.abs().max())
    message = (f"N: (K_max, bytes) {measured}; beyond the basis: c={c:.1f} e={e:.1f} "
               f"b={b:.1f} bytes, residual {residual:.1e}")
    print(message)
    assert residual < 1e-6, message
    assert 0 < b <= 8 * (4 * HISTORY + 4 + 3), message
    assert 0 <= e <= 8 * (4 * HISTORY + 8), message
    assert abs(c) <= 8 * (4 * HISTORY + 8), message


BAD = [
    ("num_subfunctions", dict(num_subfunctions=0)),
    ("num_subfunctions", dict(num_subfunctions=2.5)),
    ("max_history", dict(max_history=0)),
    ("hessian_init", dict(hessian_init=0.0)),
    ("init_active", dict(init_active=0)),
    ("max_gradient_noise", dict(max_gradient_noise=-1.0)),
    ("hess_max_dev", dict(hess_max_dev=1.0)),
    ("max_step_length_ratio", dict(max_step_length_ratio=0.5)),
    ("minimum_step_length", dict(minimum_step_length=-1e-8)),
    ("minimum_step_length", dict(minimum_step_length=float("nan"))),
    ("selection", dict(selection="oldest")),
    ("allow_stochastic", dict(allow_stochastic="yes")),
]


@pytest.mark.parametrize("name, hparams", BAD, ids=[f"{n}={v}" for n, h in BAD
                                                      for v in h.values()])
def test_bad_hyperparameters_raise_value_error_naming_them(name, hparams):
    settings = dict(num_subfunctions=4) | hparams
    with pytest.raises(ValueError, match=name):
        SFO([torch.zeros(3, requires_grad=True)], **settings)


def test_interface():
    """last_index, the returned loss, allow_stochastic, any parameter shapes."""
    torch.manual_seed(0)
    target = [torch.randn(4, 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64)]
    params = [torch.zeros(4, 2, dtype=torch.float64, requires_grad=True),
              torch.zeros(3, dtype=torch.float64, requires_grad=True)]
    sfo = SFO(params, 3, allow_stochastic=True)
    assert sfo.allow_stochastic is True
    assert SFO(params, 3).allow_stochastic is False
    seen = []

    def closure(index: int) -> torch.Tensor:
        seen.append(index)
        for p in params:
            p.grad = None
        weight = 1.0 + index  # three quadratics with one common minimum
        loss = weight * sum((p - t).square().sum() for p, t in zip(params, target, strict=True))
        loss.backward()
        return loss

    for _ in range(30):
        loss = sfo.step(closure)
        assert sfo.last_index == seen[-1]
        assert 0 <= sfo.last_index < 3
    assert float(loss) < 1e-10
    assert set(seen) == {0, 1, 2}
    for p, t in zip(params, target, strict=True):
        torch.testing.assert_close(p.detach(), t, rtol=0, atol=1e-5)


def test_state_dict_resumes_exactly_with_float32_parameters():
    """SFO's state stays float64 through state_dict/load_state_dict, which would otherwise
    cast it to the parameters' float32 and make the resumed run drift."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    batches = torch.arange(64).chunk(4)

    def make():
        params = [torch.zeros(5, 3, requires_grad=True), torch.zeros(3, requires_grad=True)]

        def closure(index: int) -> torch.Tensor:
            for p in params:
                p.grad = None
            rows = batches[index]
            loss = F.cross_entropy(x[rows] @ params[0] + params[1], y[rows])
            loss.backward()
            return loss

        return params, closure

    params, closure = make()
    sfo = SFO(params, 4)
    for _ in range(10):
        sfo.step(closure)
    resumed_params, resumed_closure = make()
    with torch.no_grad():
        for p, q in zip(resumed_params, params, strict=True):
            p.copy_(q)
    resumed = SFO(resumed_params, 4)
    resumed.load_state_dict(sfo.state_dict())
    assert resumed.state[resumed_params[0]]["basis"].dtype == torch.float64
    for _ in range(10):
        sfo.step(closure)
        resumed.step(resumed_closure)
        assert resumed.last_index == sfo.last_index
    for p, q in zip(resumed_params, params, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
