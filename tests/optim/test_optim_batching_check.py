"""The check config validation makes of a user's batchable optimizer (optim/batching.py)
passes every built-in one at its table's grid: it refuses mistakes, not correct code."""

from __future__ import annotations

import pytest
from optim_table import CASES

from adamrepro.optim import OPTIMIZERS
from adamrepro.optim.batching import batching_problem


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_built_in_updates_each_run_of_a_group_as_alone(case):
    runs = len(next(iter(case.grid.values())))
    points = [{**case.hparams, **{name: values[i] for name, values in case.grid.items()}}
              for i in range(runs)]
    assert batching_problem(OPTIMIZERS[case.name], points) is None
