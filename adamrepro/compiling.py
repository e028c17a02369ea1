"""`torch.compile` for one object's method, with a cache of its own.

Dynamo keeps the graphs it compiles per code object, guarded on what they read: a method
that reads `self`'s attributes (an optimizer's `param_groups` and `state`) is guarded on the
object's identity, so every new object compiles again, into the same cache. After
`torch._dynamo.config.recompile_limit` (8) entries it stops compiling and runs the method
eagerly, with a warning and no error: in a sweep, the ninth group would silently train at
eager speed. `compile_method` compiles a private copy of the method's code instead, so
every object has its own cache, freed with it.

The options every compiled step of adamrepro uses (`STEP_OPTIONS`):
- static shapes: every step of a group has the same shapes (a short last minibatch
  compiles once more);
- inductor's default mode, which fuses but does not capture CUDA graphs: the runner captures
  the whole step in its own graph (runner/group.py, `GraphedStep`), and the compiled kernels
  are replayed inside it. `mode="reduce-overhead"` would capture graphs of its own inside
  ours, which CUDA does not allow;
- no automatic channels-last layout (`layout_optimization`): with it, torch 2.13.0's
  inductor gave every convolution of the full-width Fig. 3 CNN a zero gradient in float32
  on the CPU (not in float64, not at narrow widths; tests/test_kernels.py); the layout is
  `training.channels_last`'s to choose.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch

STEP_OPTIONS = {"dynamic": False, "options": {"layout_optimization": False}}


def compile_method(method: types.MethodType, **options) -> Callable:
    """`torch.compile(method, **options)` over a private copy of the method's code."""
    function = method.__func__
    private = types.FunctionType(function.__code__.replace(), function.__globals__,
                                 function.__name__, function.__defaults__,
                                 function.__closure__)
    return torch.compile(types.MethodType(private, method.__self__), **options)
