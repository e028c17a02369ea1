"""What every adamrepro optimizer shares: per-run hyperparameters, validation, lr decay.

An adamrepro optimizer is a plain `torch.optim.Optimizer` and works in any training loop.
It also trains a whole *grid* of runs at once: when a numeric hyperparameter is given as a
1-D tensor of length G instead of a number, every parameter must have a leading dimension of
size G, and slice g of each parameter is updated with element g of the hyperparameter. The
updates are therefore written as elementwise tensor code with no Python branching on values
and no host synchronisation (`step` is kept as a tensor on the parameter's device).
"""

from __future__ import annotations

import contextvars
import inspect
import math
from collections.abc import Iterable

import torch
from torch import Tensor

from adamrepro.compiling import compile_method
from adamrepro.optim.capabilities import Capabilities
from adamrepro.wording import did_you_mean

Number = float | int
HyperValue = Number | Tensor

# On a CPU each elementwise op over a parameter costs a few microseconds however small the
# parameter, so the updates of the paper's methods (adam, adagrad, rmsprop, adadelta, and
# sgd_nesterov in torch.optim.SGD's formula) are written with fused ops (lerp_, addcmul_,
# addcdiv_) and compute per-run factors (bias corrections, step sizes) on the (G, 1, ..., 1)
# vectors, not on every element: the same arithmetic up to float rounding in fewer passes
# over memory. The rows beyond the paper (adamw, amsgrad, adamax, nadam, adam_two_horizons)
# keep the plain form of their equations, easier to check against their docstrings; adamax,
# nadam and the two horizons run in Sec. 7's config, adamw and amsgrad in none (rows to race,
# beyond the paper).

LR_DECAYS = ("none", "sqrt")


def broadcast(value: HyperValue, like: Tensor) -> HyperValue:
    """Shape a per-run hyperparameter so that it broadcasts over a stacked parameter.

    A number stays a number; a 1-D tensor of length G becomes shape (G, 1, ..., 1).
    """
    if not isinstance(value, Tensor):
        return value
    if value.dim() == 0:
        return value.to(like)
    if value.shape[0] != like.shape[0]:
        raise ValueError(
            f"a per-run hyperparameter of length {value.shape[0]} needs parameters whose "
            f"leading dimension is {value.shape[0]}, got shape {tuple(like.shape)}"
        )
    return value.to(like).view(-1, *([1] * (like.dim() - 1)))


def is_zero(value: HyperValue) -> bool:
    """True only for the number 0: a per-run tensor never switches a term off, so a grid
    whose runs mix zero and nonzero values still takes one code path."""
    return isinstance(value, (int, float)) and value == 0


def bias_correction(beta: HyperValue, step: Tensor) -> Tensor:
    """1 − β^t, as −expm1(t·log β): where β^t is near 1 (β2 = 0.9999 in the first steps), 1 − β^t
    in float32 keeps few digits (the step was 5e-5 off torch.optim's at t = 2, whose Python
    numbers are float64). β = 0 gives 1 (log 0 = −inf), as 1 − 0^t does."""
    if isinstance(beta, Tensor):
        return -torch.expm1(step * torch.log(beta))
    if beta == 0:
        return torch.ones_like(step)
    return -torch.expm1(step * math.log(beta))


def sub_scaled_(p: Tensor, x: Tensor, scale: HyperValue) -> Tensor:
    """p ← p − scale·x in one pass, scale a number or per-run (G, 1, ..., 1) factors."""
    if isinstance(scale, Tensor):
        return p.addcmul_(x, scale, value=-1)
    return p.add_(x, alpha=-scale)


def add_l2(grad: Tensor, p: Tensor, weight_decay: HyperValue) -> Tensor:
    """g + λ·θ: L2 regularization folded into the gradient (torch's coupled weight_decay)."""
    if is_zero(weight_decay):
        return grad
    return grad + broadcast(weight_decay, p) * p


def check_range(
    name: str,
    value: HyperValue,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = True,
) -> None:
    """Raise ValueError naming `name` unless every element of `value` lies in the interval."""
    values = value.detach().cpu().double().flatten().tolist() if isinstance(value, Tensor) else [
        value
    ]
    # a reduced-precision tensor's number with the digits its dtype resolves (7 for float32):
    # the config's -1e-3 as float32 is -0.0010000000474974513 in full, and -1e-2 was shown
    # to 8 digits as -0.0099999998, neither a value anyone wrote
    reduced = (isinstance(value, Tensor) and value.is_floating_point()
               and torch.finfo(value.dtype).bits < 64)
    digits = round(-math.log10(torch.finfo(value.dtype).resolution)) + 1 if reduced else 0

    def shown(v) -> str:
        return f"{v:.{digits}g}" if reduced else f"{v}"

    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
            raise ValueError(f"{name} must be a number, got {v!r}")
        too_low = v <= low if low_open else v < low
        too_high = v >= high if high_open else v > high
        if too_low or too_high:
            lo = "(" if low_open else "["
            hi = ")" if high_open else "]"
            raise ValueError(f"{name} must lie in {lo}{low}, {high}{hi}, got {shown(v)}")


def check_betas(betas) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        # as the config wrote it: a grid hands its numbers over as one-run float32 tensors
        def shown(b) -> str:
            return f"{b.flatten()[0].item():.6g}" if isinstance(b, Tensor) and b.numel() == 1 \
                else repr(b)
        got = (f"[{', '.join(shown(b) for b in betas)}]" if isinstance(betas, (tuple, list))
               else shown(betas))
        raise ValueError(f"betas must be a pair [beta1, beta2], got {got}")
    check_range("betas[0]", betas[0], 0.0, 1.0)
    check_range("betas[1]", betas[1], 0.0, 1.0)


def adam_family_defaults(lr, betas, eps, weight_decay, lr_decay: str, **more) -> dict:
    """Validate what every Adam variant takes, (β1, β2), ε and an L2 or decoupled decay, and
    collect it with the variant's own (already validated) settings `more` as its defaults."""
    check_betas(betas)
    check_range("eps", eps, 0.0)
    check_range("weight_decay", weight_decay, 0.0)
    return dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                lr_decay=lr_decay, **more)


def zeros_state(p: Tensor, state: dict, *names: str) -> None:
    """Buffers shaped like `p`, starting at zero (moment estimates, accumulators)."""
    for name in names:
        state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)


def betas_like(group: dict, p: Tensor) -> tuple[HyperValue, HyperValue]:
    """(β1, β2) of `group`, each shaped to broadcast over `p`."""
    return broadcast(group["betas"][0], p), broadcast(group["betas"][1], p)


class UnknownKeyword(ValueError):
    """A hyperparameter the optimizer's signature does not take: a config's mistake, said
    without a type name or a grid point (it is at every point)."""


def check_keywords(cls: type, params, hparams: dict, prefix: str = "") -> None:
    """ValueError for a keyword `cls` does not take: a bad hyperparameter name, said before
    building it, where a TypeError raised inside its __init__ is a bug to show whole."""
    signature = inspect.signature(cls)
    try:
        signature.bind(params, **hparams)
    except TypeError as err:
        # the names it takes (its first parameter is the parameters themselves), and the
        # nearest to a misspelt one: the fix, not only the problem
        names = [name for name, p in list(signature.parameters.items())[1:]
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [name for name in hparams if name not in names]
        hint = did_you_mean(unknown[0], names) if unknown else ""
        hint = f"; {hint}" if hint else ""
        takes = f" (it takes {', '.join(names)})" if unknown and names else ""
        raise UnknownKeyword(f"{prefix}{err}{takes}{hint}") from None


def check_lr_decay(lr_decay: str) -> None:
    if isinstance(lr_decay, torch.Tensor):  # a number, made a per-run tensor for a group
        values = lr_decay.flatten().tolist()
        lr_decay = values[0] if len(set(values)) == 1 else values
    if lr_decay not in LR_DECAYS:
        raise ValueError(f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {lr_decay!r}")


# Set while a param group's values are checked by building the class with them, so that the
# build's own groups (equal to its defaults) are not checked again, endlessly.
_CHECKING_A_GROUP: contextvars.ContextVar[bool] = contextvars.ContextVar("checking_a_group",
                                                                        default=False)


def _may_be_zero(eps) -> bool:
    """Whether ε (a number or a per-run tensor) is 0 somewhere; read once per param group,
    when it is added, never in a step."""
    if isinstance(eps, Tensor):
        return bool((eps == 0).any())
    return isinstance(eps, (int, float)) and eps == 0


class GridOptimizer(torch.optim.Optimizer):
    """Base class: lazy state, a tensor `step`, the α_t = α/√t schedule, and the param loop.

    Subclasses validate their hyperparameters in `__init__` and implement `_init_state` and
    `_update(p, grad, state, group, lr_t)`; `lr_t` is the already decayed step size.
    """

    capabilities = Capabilities(batchable=True, needs_closure=False, graphable=True)

    def __init__(self, params: Iterable, defaults: dict) -> None:
        check_range("lr", defaults["lr"], 0.0, low_open=True)
        check_lr_decay(defaults.get("lr_decay", "none"))
        self._zero_eps = False  # whether some group's ε may be 0 (`_nonzero`)
        super().__init__(params, defaults)
        self._compiled_updates = None  # set by `compile`

    def add_param_group(self, param_group: dict) -> None:
        """torch's, plus the checks `__init__` makes, on the values a group sets itself
        (`[{"params": ..., "lr": -1}]` would otherwise ascend without a word): they are
        checked by building this class with them, so each class keeps one set of checks."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        sets_its_own = any(group[name] is not self.defaults[name] for name in self.defaults)
        if sets_its_own and not _CHECKING_A_GROUP.get():
            self._check_group(group)
        self._zero_eps = self._zero_eps or _may_be_zero(group.get("eps"))

    def _check_group(self, group: dict) -> None:
        values = {name: group[name] for name in self.defaults}
        probe = [torch.zeros(1)]
        try:
            check_keywords(type(self), probe, values)
        except ValueError:  # a subclass built from other keywords than its defaults' names
            return  # cannot be rebuilt from its group: its own __init__ checked its defaults
        token = _CHECKING_A_GROUP.set(True)
        try:
            type(self)(probe, **values)
        finally:
            _CHECKING_A_GROUP.reset(token)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._zero_eps = any(_may_be_zero(group.get("eps")) for group in self.param_groups)

    def _nonzero(self, denominator: Tensor) -> Tensor:
        """`denominator` (a fresh tensor, √v̂ + ε or alike) kept at least the dtype's smallest
        normal number where ε may be 0, as the paper's theory sets it: a coordinate whose
        gradients were all 0 (MNIST has 67 pixels blank in every training image) would give
        0/0 = NaN, where its numerator is 0 and its step is 0. With ε > 0 nothing is done
        (a Python flag, no host sync); with ε = 0 the step is otherwise unchanged."""
        if self._zero_eps:
            return denominator.clamp_min_(torch.finfo(denominator.dtype).tiny)
        return denominator

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict, lr_t) -> None:
        raise NotImplementedError

    @staticmethod
    def _lr(group: dict, p: Tensor, step: Tensor):
        lr = broadcast(group["lr"], p)
        if group.get("lr_decay", "none") == "sqrt":
            return lr / step.sqrt()
        return lr

    def compile(self, **options) -> None:
        """Run the updates of every later step as one `torch.compile`d function (options as
        torch.compile's), as `nn.Module.compile` does for `forward`: a few fused kernels per
        parameter instead of a dozen elementwise passes over its memory. The arithmetic is
        the same up to float rounding. A step that still has state to create runs eagerly,
        so one graph is compiled, not two (the state-creating step's would be another)."""
        self._compiled_updates = compile_method(self._updates, **options)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's, without the profiler range and the dynamo wrapper around it, which cost
        ~55 µs a call on a CPU: 4% of a step of Fig. 1 (left)'s groups, whose forward,
        backward and update take ~1.4 ms. Zeroing in place (`set_to_none=False`) is torch's."""
        if not set_to_none:
            super().zero_grad(set_to_none=False)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._compiled_updates is not None and self._has_state():
            self._compiled_updates()
        else:
            self._updates()
        return loss

    def _has_state(self) -> bool:
        return all(len(self.state[p]) > 0 for group in self.param_groups
                   for p in group["params"] if p.grad is not None)

    def _updates(self) -> None:
        """Every parameter's update: the body of `step`, without the closure."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    # step lives on the parameter's device so that bias corrections and the
                    # lr schedule never force a host sync
                    state["step"] = torch.zeros((), dtype=p.dtype, device=p.device)
                    self._init_state(p, state, group)
                state["step"] += 1
                self._update(p, p.grad, state, group, self._lr(group, p, state["step"]))
