"""FLOPs of a run, counted by `torch.utils.flop_counter.FlopCounterMode` (`adamrepro bench`).

Counted on one run of the group's model, for any model: the matmuls and convolutions that
autograd really runs in one training step (forward and backward of the objective plus penalty
at a full minibatch), and in one evaluation batch; both scaled per example to a pass:
    training pass:  a step's count per example x the examples of the pass
    evaluation:     forward only, over the whole training and test sets, once per pass and
                    once before the first
Elementwise work (activations, loss, optimizer) is not counted: a few percent. For the
linear models this equals the formula 2·B·in·out per layer forward, and backward the weight
gradient of every layer plus the input gradient of every layer but the first (the data
needs no gradient). A model whose step cannot be counted is "not counted"; the bench runs on.

What is counted is the model as written, with its implementation options at their dense
values (`IMPLEMENTATION_OPTIONS`): the FLOPs of its arithmetic, as the usual "model FLOP/s"
counts them, the same on every device. The CPU's sparse input path of IMDB's logistic
regression computes the same function from the non-zeros alone (about 1.3% of the inputs)
with gathers and index sums FlopCounterMode does not see; counted as it runs, its training
step would be 0 FLOP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from adamrepro.config import Experiment
from adamrepro.data.base import TensorDataset
from adamrepro.models import MODELS
from adamrepro.runner.group import build_model, step_sizes
from adamrepro.runner.plan import Group, plan


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one run (see the module docstring for what is counted)."""

    train_step: int
    train_pass: int
    eval_pass: int  # once per pass, and once more before the first

    def run(self, passes: int) -> int:
        return passes * (self.train_pass + self.eval_pass) + self.eval_pass


def _counted(work: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        work()
    return int(counter.get_total_flops())


def flop_count(exp: Experiment, group: Group, data: TensorDataset) -> FlopCount | None:
    """The FLOPs of one run of `group`, counted on the CPU; None if they cannot be counted."""
    as_written = {**group.model, **MODELS[group.model["name"]].IMPLEMENTATION_OPTIONS}
    single = Group(group.method, group.optimizer, as_written, group.runs[:1], "0")
    sizes = step_sizes(exp.training, len(data.train_x))
    try:
        model = build_model(exp, single, data, torch.device("cpu"))
        # the data may be on a GPU; the model built here is on the CPU
        batch = {k: v[: max(sizes)].unsqueeze(0).cpu() for k, v in data.train.items()}
        step = _counted(lambda: model.regularized_objective(batch).sum().backward())
        chunk = min(exp.training.eval_batch_size, len(data.train_x))
        evaluation = {k: v[:chunk].unsqueeze(0).cpu() for k, v in data.train.items()}
        with torch.no_grad():
            forward = _counted(lambda: model.evaluate(evaluation, None))
    except Exception:  # any model at all: a failure to count must never stop the bench
        return None
    per_example = step / max(sizes)
    n_eval = len(data.train_x) + len(data.test_x)
    return FlopCount(round(per_example * sum(sizes) / len(sizes)),
                     round(per_example * sum(sizes)), round(forward / chunk * n_eval))


def experiment_flops(exp: Experiment, data: TensorDataset) -> dict | None:
    """FLOPs of a whole experiment (every run, every pass, evaluations included), per method
    and in total; `flops_sentence` puts it in words for the README. None: not counted."""
    per_method, counts = {}, {}
    for group in plan(exp):
        key = json.dumps(group.model, sort_keys=True)
        if key not in counts:  # one count per model; groups differ only in hyperparameters
            counts[key] = flop_count(exp, group, data)
        count = counts[key]
        if count is None:
            return None
        entry = per_method.setdefault(group.method, {"runs": 0, "flops": 0, **asdict(count)})
        entry["runs"] += group.size
        entry["flops"] += group.size * count.run(exp.training.epochs)
    return {
        "experiment": exp.name,
        "passes": exp.training.epochs,
        "steps_per_pass": len(step_sizes(exp.training, len(data.train_x))),
        "runs": sum(m["runs"] for m in per_method.values()),
        "total_flops": sum(m["flops"] for m in per_method.values()),
        "methods": per_method,
    }


def si(value: float, unit: str) -> str:
    """1.2e12, 'FLOP' -> '1.20 TFLOP'."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def flops_sentence(flops: dict | None) -> str:
    """One line for the README, e.g. for logreg_mnist at paper scale."""
    if flops is None:
        return "FLOPs: not counted (FlopCounterMode could not count this model's step)"
    first = next(iter(flops["methods"].values()))
    return (f"{flops['experiment']}: {flops['runs']} runs x {flops['passes']} passes x "
            f"{flops['steps_per_pass']} steps; {si(first['train_step'], 'FLOP')} per "
            f"training step and {si(first['eval_pass'], 'FLOP')} per evaluation of one run; "
            f"{si(flops['total_flops'], 'FLOP')} in all (matmuls and convolutions, "
            f"evaluations included)")
