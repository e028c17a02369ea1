"""Models by config name: batched `BatchedModel` subclasses (the workload protocol, see
base.py) with an `options()` validator and their declared `METRICS`."""

from __future__ import annotations

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
