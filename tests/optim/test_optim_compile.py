"""`GridOptimizer.compile()` (what `training.compile_optimizer` turns on): every grid
optimizer of the table, with per-run hyperparameters over stacked runs, steps as it does
eagerly, in float64 over 120 steps, parameters and state; and every optimizer compiles its
own graph, so a sweep's ninth group is still compiled.

The compiled update is the same arithmetic as the eager one, fused into fewer loops, which
may contract a multiply and an add into one rounding: rtol 1e-10 (STYLE.md) holds with room.
"""

from __future__ import annotations

import pytest
import torch
from optim_table import CASES, fresh_params, make_problem, per_run, run_steps

from adamrepro.optim import build

STEPS = 120

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def grid_optimizer(case, params):
    hparams = {**case.hparams, "lr_decay": "sqrt"}
    hparams.update({key: per_run(values) for key, values in case.grid.items()})
    return build(case.name, params, **hparams)


def compiled_graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_compiled_step_equals_the_eager_step(case):
    runs = len(next(iter(case.grid.values())))
    problem = make_problem(STEPS, runs=runs)
    eager_params, compiled_params = fresh_params(problem), fresh_params(problem)
    eager = grid_optimizer(case, eager_params)
    compiled = grid_optimizer(case, compiled_params)
    compiled.compile(dynamic=False)
    before = compiled_graphs()
    run_steps(eager, eager_params, problem, range(1, STEPS + 1), runs)
    run_steps(compiled, compiled_params, problem, range(1, STEPS + 1), runs)
    assert compiled_graphs() > before, "nothing was compiled"
    torch.testing.assert_close(compiled_params, eager_params, rtol=1e-10, atol=1e-12)
    for p_compiled, p_eager in zip(compiled_params, eager_params, strict=True):
        torch.testing.assert_close(compiled.state[p_compiled], eager.state[p_eager],
                                   rtol=1e-10, atol=1e-12)
    # not vacuous: the parameters moved away from where they started
    assert not torch.allclose(eager_params[0], problem.init[0], atol=1e-3)


def test_each_optimizer_compiles_its_own_graph():
    """Dynamo guards a compiled method on its object and, after 8 objects, runs it eagerly
    without error; adamrepro's `compile` gives every optimizer a private copy (compiling.py).
    Under `error_on_recompile`, building and stepping several optimizers must not recompile;
    the control below (the shared method compiled for two optimizers) must."""
    case = CASES[0]
    runs = len(next(iter(case.grid.values())))
    problem = make_problem(3, runs=runs)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(3):
            params = fresh_params(problem)
            optimizer = grid_optimizer(case, params)
            optimizer.compile(dynamic=False)
            run_steps(optimizer, params, problem, range(1, 4), runs)
    with torch._dynamo.config.patch(error_on_recompile=True):
        with pytest.raises(torch._dynamo.exc.RecompileError):
            for _ in range(2):
                params = fresh_params(problem)
                optimizer = grid_optimizer(case, params)
                run_steps(optimizer, params, problem, range(1, 2), runs)  # state exists
                shared = torch.compile(optimizer._updates, dynamic=False)
                with torch.no_grad():
                    shared()
