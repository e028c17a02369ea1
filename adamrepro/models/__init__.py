"""Models by config name: batched `BatchedModel` subclasses with an `options()` validator."""

from __future__ import annotations

from adamrepro.models.logreg import LogReg
from adamrepro.models.mlp import MLP

MODELS: dict[str, type] = {
    "logreg": LogReg,
    "mlp": MLP,
}
