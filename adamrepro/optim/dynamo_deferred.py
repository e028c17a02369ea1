"""torch.compile's dynamo imported when something compiles, not when an optimizer is built.

torch wraps four methods of `torch.optim.Optimizer` (`add_param_group`, which its `__init__`
calls, `zero_grad`, `state_dict`, `load_state_dict`) so that dynamo never traces them, and
the wrapper imports `torch._dynamo` at its first call (torch/_compile.py) to build the
disabled method it then keeps. That import takes as long as importing torch itself (1.4 s
on this project's 2-core CPU, `scripts/bench_startup.py`), in every command and worker that
builds an optimizer, where nothing compiles unless `training.compile_optimizer` or
`compile_model` asks: a smoke run of logreg_mnist took 6.0 s with it and takes 3.8 s (with
the exit of entry.py's `gc.freeze`).

`defer_dynamo_import` hands each wrapper a method that calls torch's plain one while
`torch._dynamo` is not imported (nothing can be compiling then) and, once it is (the first
`torch.compile`), builds and keeps dynamo's disabled one as torch would have: the same
methods, without the import. Where torch's wrapper is not the one this expects (another
release), it is left alone and works as before.

torch.optim's own steps (`torch.optim.SGD`'s, a user's subclass of it) still import dynamo
at their first call, inside the first group's timed seconds; `import_dynamo_for` imports it
before any timing for the classes whose step is torch's.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import torch

METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
# the attribute torch's wrapper keeps its disabled method in (torch/_compile.py)
KEPT = "__dynamo_disable"


@functools.cache
def defer_dynamo_import() -> None:
    """Once a process (resolve() calls it for every optimizer it looks up)."""
    for name in METHODS:
        method = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if method is not None and getattr(method, KEPT, None) is None:
            setattr(method, KEPT, _until_dynamo(method))


def _until_dynamo(method: Callable) -> Callable:
    def call(*args, **kwargs):
        dynamo = sys.modules.get("torch._dynamo")
        if dynamo is None:
            return method(*args, **kwargs)
        # compiling may begin from here on: what torch's wrapper would have kept
        disabled = dynamo.disable(method, True, wrapping=False)
        setattr(method, KEPT, disabled)
        return disabled(*args, **kwargs)

    return call


def steps_with_torch(cls: type) -> bool:
    """Whether `cls` steps with a torch.optim step (`torch.optim.SGD`, or a subclass whose
    step may call it), which imports torch._dynamo at its first call."""
    return any("step" in vars(klass) and klass.__module__.startswith("torch.")
               for klass in cls.__mro__ if klass is not torch.optim.Optimizer)


def import_dynamo_for(cls: type) -> None:
    """Import torch._dynamo now if `cls`'s first step would: resolving happens before any
    run is timed, so the 1.4 s stays out of the first group's recorded seconds."""
    if steps_with_torch(cls):
        import torch._dynamo  # noqa: F401
