"""What the runner may do with an optimizer, declared as data (in the spirit of torch's
`OptimizerInfo`), never inferred from its name:

- `batchable`: it trains a whole grid as one computation (every numeric hyperparameter may
  be a tensor of length G over parameters stacked on a leading dimension G; see base.py).
  Otherwise the runner trains one run per group and hands it plain numbers.
- `needs_closure`: its `step` must be given a closure that re-evaluates the minibatch's
  objective and gradients (L-BFGS); the runner then lets `step` evaluate the minibatch.
- `graphable`: its step may be captured in a CUDA graph (no host syncs, no data-dependent
  control flow, state created in the first steps).
- `subfunctions`: it minimises a sum of subfunctions, one per fixed minibatch (SFO): its
  `step` takes a closure over a subfunction's index and picks the index itself; the runner
  splits the training set once into `num_subfunctions` fixed minibatches (default: the
  minibatches of a pass) and passes that number to the optimizer. Such an optimizer's models
  assume a deterministic objective, so a stochastic model (dropout) is refused unless its
  `allow_stochastic` hyperparameter is true.

adamrepro's own optimizers declare theirs as a class attribute (`GridOptimizer`). A class
from elsewhere may declare `capabilities` the same way (a `GridOptimizer` subclass that
declares none inherits ours, but for `graphable`); torch's classes are described in
`DECLARED` below; anything else is taken as a plain, non-batched optimizer that needs no
closure, which a config can change with `closure: true`.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Capabilities:
    batchable: bool = False
    needs_closure: bool = False
    graphable: bool = False
    subfunctions: bool = False


PLAIN = Capabilities()

# torch.optim classes whose step needs a closure; every other torch optimizer is PLAIN.
DECLARED: dict[type, Capabilities] = {
    torch.optim.LBFGS: Capabilities(needs_closure=True),
}


def capabilities_of(cls: type, closure: bool | None = None) -> Capabilities:
    """The declared capabilities of `cls`; `closure` (a config's `closure:`) overrides
    `needs_closure` for any class: `true` hands `step` a closure (and so turns CUDA graphs
    off, as a closure re-evaluates the minibatch inside the step), `false` is refused for a
    class that declares it needs one. Raises ValueError, saying what
    to write, where the config and the class's `step` disagree: `closure: false` for a class
    that declares it needs one, or a `step` that cannot be called as the runner will call it
    (`step()`, or with a closure `step(closure)`, `step(closure=...)` where step takes it
    by keyword alone)."""
    declared = getattr(cls, "capabilities", None)
    if not isinstance(declared, Capabilities):
        declared = DECLARED.get(cls, PLAIN)
    declaring = next((klass for klass in cls.__mro__ if "capabilities" in vars(klass)), cls)
    if declared.graphable and _ours(declaring) and not _ours(cls):
        # a class from elsewhere that inherits our declaration (a GridOptimizer subclass):
        # its update is its own code, which may sync or branch on values, and a CUDA graph
        # would freeze that at capture, wrong on a GPU alone. Its batching is checked at load;
        # graphs, only where it declares them itself
        declared = dataclasses.replace(declared, graphable=False)
    if closure is False and declared.needs_closure:
        raise ValueError(f"{cls.__name__} declares that its step needs a closure; remove "
                         f"`closure: false`")
    if closure is not None:
        declared = Capabilities(declared.batchable, closure, declared.graphable and not closure,
                                declared.subfunctions)
    _check_step(cls, declared.needs_closure)
    return declared


def _ours(cls: type) -> bool:
    return cls.__module__.partition(".")[0] == "adamrepro"


def closure_by_keyword(cls: type) -> bool:
    """Whether the runner hands `cls.step` its closure as `step(closure=...)`: where step
    has a keyword-only `closure`, which no positional argument can reach, whatever else it
    takes (`def step(self, *args, closure=None)` put the closure in `args`), or takes no
    positional argument at all, only `**kwargs`. Positionally otherwise, as torch calls
    `step(closure)`, so a step that names its one argument otherwise is still given it."""
    parameters = _step_parameters(cls)
    return parameters is not None and _by_keyword(parameters)


def _by_keyword(parameters: list[inspect.Parameter]) -> bool:
    """`closure_by_keyword` of a step with these parameters (after self)."""
    if any(p.kind == p.KEYWORD_ONLY and p.name == "closure" for p in parameters):
        return True
    if any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
           for p in parameters):
        return False
    return any(p.kind == p.VAR_KEYWORD for p in parameters)


def step_with_closure(optimizer, closure, by_keyword: bool):
    """`optimizer.step` given `closure` as `closure_by_keyword` says (decided once, not at
    every step: reading a signature is slow next to a small model's step)."""
    return optimizer.step(closure=closure) if by_keyword else optimizer.step(closure)


def _step_parameters(cls: type) -> list[inspect.Parameter] | None:
    """The parameters of `cls.step` after self, or None where they cannot be read."""
    try:
        return list(inspect.signature(cls.step).parameters.values())[1:]  # after self
    except (TypeError, ValueError):
        return None


def _check_step(cls: type, needs_closure: bool) -> None:
    """Whether `cls.step` can be called as the runner calls it, before any run trains."""
    # torch wraps a class's step in a profiling hook once it builds one: the function below
    if inspect.unwrap(getattr(cls, "step", None)) is inspect.unwrap(torch.optim.Optimizer.step):
        # torch's own raises NotImplementedError at the first step, inside torch: a
        # traceback mid-sweep for a step misspelt or forgotten
        raise ValueError(f"{cls.__name__} defines no step of its own (torch.optim.Optimizer's "
                         f"raises NotImplementedError); define `def step(self, closure=None)` "
                         f"on the class")
    parameters = _step_parameters(cls)
    if parameters is None:  # a step whose signature cannot be read: trusted
        return
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword_only = [p for p in parameters if p.kind == p.KEYWORD_ONLY]
    required = [p.name for p in positional + keyword_only if p.default is p.empty]
    # `def step(self, *, closure=None)` is as legitimate as torch's `step(closure=None)`
    takes_one = (bool(positional) or any(p.kind == p.VAR_POSITIONAL for p in parameters)
                 or _by_keyword(parameters))
    if needs_closure and not takes_one:
        raise ValueError(f"{cls.__name__}.step takes no closure, which the method is to be "
                         f"given (`closure: true`); remove `closure: true`")
    if not needs_closure and required:
        raise ValueError(f"{cls.__name__}.step requires {required[0]!r}, and an optimizer that "
                         f"needs no closure is called as step(); if it is a closure, add "
                         f"`closure: true` to the method")
