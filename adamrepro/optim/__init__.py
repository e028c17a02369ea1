"""Every optimizer of the paper and beyond, as `torch.optim.Optimizer` subclasses.

`OPTIMIZERS` maps each config name to its class; `build(name, params, **hparams)` makes one.
"""

from __future__ import annotations

from adamrepro.optim.adagrad import Adagrad
from adamrepro.optim.adam import Adam
from adamrepro.optim.sgd_nesterov import SGDNesterov

OPTIMIZERS: dict[str, type] = {
    "adam": Adam,
    "adagrad": Adagrad,
    "sgd_nesterov": SGDNesterov,
}


def build(name: str, params, **hparams):
    """Make the optimizer called `name`; invalid names or values raise ValueError."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    if "betas" in hparams:
        hparams["betas"] = tuple(hparams["betas"])
    try:
        return OPTIMIZERS[name](params, **hparams)
    except TypeError as err:  # an unexpected keyword is a bad hyperparameter name
        raise ValueError(f"{name}: {err}") from None
