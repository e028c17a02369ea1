"""Every optimizer of the paper and beyond, as `torch.optim.Optimizer` subclasses.

`OPTIMIZERS` maps each built-in config name to its class. A config may also name any
`torch.optim.Optimizer` subclass by import path (`torch.optim.SGD`, `mypkg.module:MyOpt`),
or a name that an installed package registers under the entry-point group
`adamrepro.optimizers`; `resolve(name)` finds it, with its declared capabilities
(capabilities.py). `build(name, params, **hparams)` makes one.
"""

from __future__ import annotations

from adamrepro.optim.adadelta import Adadelta
from adamrepro.optim.adagrad import Adagrad
from adamrepro.optim.adam import Adam
from adamrepro.optim.adam_two_horizons import AdamTwoHorizons
from adamrepro.optim.adamax import Adamax
from adamrepro.optim.adamw import AdamW
from adamrepro.optim.amsgrad import AMSGrad
from adamrepro.optim.base import check_keywords
from adamrepro.optim.nadam import NAdam
from adamrepro.optim.resolve import resolve
from adamrepro.optim.rmsprop import RMSprop
from adamrepro.optim.sfo import SFO
from adamrepro.optim.sgd_nesterov import SGDNesterov

OPTIMIZERS: dict[str, type] = {
    "adam": Adam,
    "adagrad": Adagrad,
    "sgd_nesterov": SGDNesterov,
    "adamax": Adamax,
    "rmsprop": RMSprop,
    "adadelta": Adadelta,
    "amsgrad": AMSGrad,
    "adamw": AdamW,
    "nadam": NAdam,
    "adam_two_horizons": AdamTwoHorizons,
    "sfo": SFO,
}


def build(name: str, params, **hparams):
    """Make the optimizer called `name`; invalid names or values raise ValueError."""
    cls = resolve(name, OPTIMIZERS).cls
    check_keywords(cls, params, hparams, prefix=f"{name}: ")
    return cls(params, **hparams)
