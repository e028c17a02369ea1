"""Whether an optimizer from elsewhere resumes from a checkpoint as if never stopped.

A checkpoint saves what torch's `state_dict` holds, `state` and the param groups' settings
(runner/checkpoint.py), and a resumed group builds its optimizer afresh and puts those back.
What a class keeps elsewhere (a step counter or a momentum buffer as an attribute of the
optimizer) starts over on resume, and the run goes on along another curve under the same run
id, silently. So config validation trains a few steps of one grid point on a small
parameter, and the same steps resumed midway from the saved state into a new instance, as
the runner resumes a group, and refuses the class when they differ (`config/checks.py`
`_check_method`). The global random generators are restored for the resumed half: only
what the state holds is judged. adamrepro's own optimizers are held to the same by
tests/test_checkpoint.py.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from adamrepro.hparams import plain, stacked
from adamrepro.optim.batching import TOLERANCE, relative_gap, train_probe

# Steps before the checkpoint, and after it: a state whose loss shows from the second step
# on (a counter that starts over at 1) moves the resumed steps off the uninterrupted ones.
BEFORE, AFTER = 2, 2
# A weight and a bias with the run dimension of 1 that the runner's parameters have.
SHAPES = ((1, 4, 5), (1, 1, 5))
FIX = ("keep what it carries from step to step in self.state[p] or in its param groups, "
       "which torch's state_dict holds and a checkpoint restores, not in attributes of the "
       "optimizer, which start over on resume")


def _random_state() -> tuple:
    import numpy as np

    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def _set_random_state(saved: tuple) -> None:
    import numpy as np

    torch.set_rng_state(saved[0])
    random.setstate(saved[1])
    np.random.set_state(saved[2])


def resume_problem(cls: type, point: dict[str, Any], batchable: bool,
                   closure: bool = False) -> str | None:
    """Why `cls`, resumed from its saved state after BEFORE steps, does not take the AFTER
    steps that it takes uninterrupted, or None (also where a step fails: training says so,
    with its place). `closure`: the method's step is given one."""
    from adamrepro.runner.checkpoint import load_optimizer_state, optimizer_state

    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in SHAPES]
    grads = [[torch.randn(shape, generator=generator, dtype=torch.float64) for shape in SHAPES]
             for _ in range(BEFORE + AFTER)]
    saved_random = _random_state()

    def build(values: list[torch.Tensor]):
        params = [v.clone().requires_grad_(True) for v in values]
        hparams = stacked([point], torch.float64) if batchable else plain(point)
        return params, cls(params, **hparams)

    try:
        _set_random_state(saved_random)
        whole = train_probe(*build(start), grads, closure)
        _set_random_state(saved_random)
        params, optimizer = build(start)
        midway = train_probe(params, optimizer, grads[:BEFORE], closure)
        state, random_state = optimizer_state(optimizer), _random_state()
        params, resumed = build(midway)
        load_optimizer_state(resumed, state, torch.device("cpu"))
        _set_random_state(random_state)
        after = train_probe(params, resumed, grads[BEFORE:], closure)
    except Exception:  # noqa: BLE001 - it fails on its own: training will say so, with its place
        return None
    finally:
        _set_random_state(saved_random)
    for index, (a, b) in enumerate(zip(after, whole, strict=True)):
        gap = relative_gap(a, b)
        if gap > TOLERANCE:
            settings = ", ".join(f"{k}={v}" for k, v in point.items())
            return (f"resumed from its state_dict after {BEFORE} steps, as a checkpoint "
                    f"resumes it, its next {AFTER} steps ({settings or 'its defaults'}) end "
                    f"{gap:.2g} apart (relative) from those it takes uninterrupted, in a "
                    f"parameter of shape {tuple(SHAPES[index])}: {FIX}")
    return None
