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
from elsewhere may declare `capabilities` the same way; torch's classes are described in
`DECLARED` below; anything else is taken as a plain, non-batched optimizer that needs no
closure, which a config can change with `closure: true`.
"""

from __future__ import annotations

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
    `needs_closure` for a class that declares nothing itself."""
    declared = getattr(cls, "capabilities", None)
    if not isinstance(declared, Capabilities):
        declared = DECLARED.get(cls, PLAIN)
    if closure is not None:
        declared = Capabilities(declared.batchable, closure, declared.graphable and not closure,
                                declared.subfunctions)
    return declared
