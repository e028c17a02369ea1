"""Whether a batchable optimizer from elsewhere really updates each run of a group alone.

A `GridOptimizer` subclass of a user's is batched like adamrepro's own: every run of a grid
in one computation, each run its slice of the stacked parameters and its element of each
per-run hyperparameter. Nothing in Python enforces that, and two mistakes pass silently: a
per-run hyperparameter used as it comes (`group["lr"]`, shape (G,)) broadcasts against a
parameter's last dimension when that happens to be G, and a norm or mean over a whole
parameter mixes the runs. Either gives every run of a group a wrong curve, and a different
one when the group is split (resume, `max_group_size`, an out-of-memory halving) under the
same run id. So config validation trains a few steps of a small probe group and of each of
its runs alone, and refuses the class when they differ (`config/checks.py` `_check_method`).
adamrepro's own optimizers are held to the same by tests/test_batched_equivalence.py.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from adamrepro.hparams import kind, stacked
from adamrepro.optim.capabilities import closure_by_keyword, step_with_closure

PROBE_RUNS = 3
PROBE_STEPS = 3
# Shapes whose last dimension is not the group's size, nor 1, so that a hyperparameter of
# shape (G,) that is not broadcast to (G, 1, ...) fails or differs rather than fit by luck;
# a weight matrix and a bias, as the models stack them (leading dimension: the run).
PROBE_SHAPES = ((4, 5), (1, 5))
# float64 arithmetic: a correct optimizer updates a slice of a group exactly as it updates
# the run alone, up to the rounding of ops that take another path for another shape.
TOLERANCE = 1e-9
FIX = ("update each run from its own slice of the parameters and its own element of each "
       "hyperparameter (shaped (G, 1, ...) by adamrepro.optim.base.broadcast); an update "
       "that draws noise cannot match its runs alone: declare `capabilities = "
       "Capabilities()` on the class to train each run alone")
BUILD_FIX = ("take each per-run hyperparameter as a tensor of length G (check it with "
             "adamrepro.optim.base.check_range, element by element), or declare "
             "`capabilities = Capabilities()` on the class to train each run alone")


def probe_points(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PROBE_RUNS grid points that one group could hold (the first's kind), each next one
    the one that differs from those chosen in the most settings, so that every axis of the
    grid varies within the probe (the first three of an lr x eps grid shared one eps, and an
    eps used as it comes passed); repeated where the grid has fewer."""
    same = [p for p in points if kind(p) == kind(points[0]) and p.keys() == points[0].keys()]
    left = list({repr(sorted(p.items())): p for p in same}.values())
    chosen = [left.pop(0)]

    def new_values(point: dict[str, Any]) -> int:  # settings no chosen point has
        return sum(all(point[k] != c[k] for c in chosen) for k in point)

    while left and len(chosen) < PROBE_RUNS:  # the most new values; the earliest of equals
        chosen.append(left.pop(max(range(len(left)), key=lambda i: (new_values(left[i]), -i))))
    return list(itertools.islice(itertools.cycle(chosen), PROBE_RUNS))


def zero_closure() -> torch.Tensor:
    """The closure of a probe's step: its gradients are set beforehand."""
    return torch.zeros((), dtype=torch.float64)


def _build(cls: type, points: list[dict[str, Any]], start: list[torch.Tensor]):
    params = [p.clone().requires_grad_(True) for p in start]
    return params, cls(params, **stacked(points, torch.float64))


def train_probe(params: list[torch.Tensor], optimizer, grads: list[list[torch.Tensor]],
                closure: bool) -> list[torch.Tensor]:
    """`params` after a step of `optimizer` for each of `grads` (`grads[step][param]`, each
    the group's stack), given a closure where the method's step takes one. Also the resume
    probe's (optim/resuming.py)."""
    by_keyword = closure and closure_by_keyword(type(optimizer))
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        step_with_closure(optimizer, zero_closure, by_keyword) if closure else optimizer.step()
    return [p.detach() for p in params]


def relative_gap(got: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest relative difference of `got` from `expected`; inf where they are NaN in
    other places (a NaN on both sides is equal)."""
    if not torch.equal(got.isnan(), expected.isnan()):
        return float("inf")
    return ((got - expected).abs() / expected.abs().clamp_min(1e-300)).nan_to_num(
        nan=0.0, posinf=float("inf")).max().item()


def batching_problem(cls: type, points: list[dict[str, Any]], closure: bool = False
                     ) -> str | None:
    """Why `cls` does not update each run of a group as it updates that run alone, or None.
    Each run's gradients are scaled by its own power of 10, so that an update that mixes the
    runs (a norm over the whole tensor) moves every run, and not by a rounding. `closure`:
    the method's step is given one (`closure: true`, or a class that needs one)."""
    chosen = probe_points(points)
    generator = torch.Generator().manual_seed(0)
    scale = torch.tensor([10.0 ** g for g in range(PROBE_RUNS)], dtype=torch.float64)

    def draw(shape: tuple[int, ...], scaled: bool) -> torch.Tensor:
        value = torch.randn((PROBE_RUNS, *shape), generator=generator, dtype=torch.float64)
        return value * scale.view(-1, *([1] * len(shape))) if scaled else value

    start = [draw(shape, False) for shape in PROBE_SHAPES]
    grads = [[draw(shape, True) for shape in PROBE_SHAPES] for _ in range(PROBE_STEPS)]
    try:
        alone = [train_probe(*_build(cls, [point], [p[run : run + 1] for p in start]),
                        [[g[run : run + 1] for g in step] for step in grads], closure)
                 for run, point in enumerate(chosen)]
    except Exception:  # noqa: BLE001 - trained alone it fails: training will say so, with its place
        return None
    try:
        built = _build(cls, chosen, start)
    except Exception as err:  # noqa: BLE001 - whatever it is, only a group's values raise it
        return (f"built for a group of {PROBE_RUNS} runs it raises {type(err).__name__}: "
                f"{err}, and not for one run alone: {BUILD_FIX}")
    try:
        together = train_probe(*built, grads, closure)
    except Exception as err:  # noqa: BLE001 - whatever it is, only a group raises it
        return (f"in a group of {PROBE_RUNS} runs its step raises {type(err).__name__}: "
                f"{err}, and not for one run alone: {FIX}")
    for run, mine in enumerate(alone):
        for index, (grouped, single) in enumerate(zip(together, mine, strict=True)):
            gap = relative_gap(grouped[run : run + 1], single)
            if gap > TOLERANCE:
                settings = ", ".join(f"{k}={v}" for k, v in chosen[run].items())
                return (f"after {PROBE_STEPS} steps, run {run + 1} of a group of "
                        f"{PROBE_RUNS} ({settings or 'its defaults'}) is {gap:.2g} apart "
                        f"(relative) from that run trained alone, in a parameter of shape "
                        f"(G, {', '.join(map(str, PROBE_SHAPES[index]))}): {FIX}")
    return None
