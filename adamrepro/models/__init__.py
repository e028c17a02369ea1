"""Models by config name: batched `BatchedModel` subclasses (the workload protocol, see
base.py) with an `options()` validator and their declared `METRICS`."""

from __future__ import annotations

from typing import Any

from adamrepro.models.cnn import CNN
from adamrepro.models.linear_autoencoder import LinearAutoencoder
from adamrepro.models.logreg import LogReg
from adamrepro.models.mlp import MLP
from adamrepro.models.vae import VAE

MODELS: dict[str, type] = {
    "logreg": LogReg,
    "mlp": MLP,
    "linear_autoencoder": LinearAutoencoder,
    "cnn": CNN,
    "vae": VAE,
}


def what_it_computes(model: dict[str, Any]) -> dict[str, Any]:
    """A model's options without those that change how it computes, not what
    (`IMPLEMENTATION_OPTIONS`, logreg's sparse_input): what a run id, the check for
    identical methods and the report's words about the model hold. An unknown name has none."""
    how = getattr(MODELS.get(model.get("name")), "IMPLEMENTATION_OPTIONS", {})
    return {key: value for key, value in model.items() if key not in how}
