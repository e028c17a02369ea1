"""The variational autoencoder of Kingma & Welling (2013) on MNIST (Fig. 4 of the Adam paper).

    encoder   h = softplus(x·W1 + b1) (`hidden` units);   [μ, log σ²] = h·W2 + b2
    latent    z = μ + σ·ε,  ε ~ N(0, I) (`latent` dimensions; the reparameterization trick)
    decoder   h' = softplus(z·W3 + b3);   logits = h'·W4 + b4
    neg_elbo  = −log p(x|z) + KL(N(μ, σ²) ‖ N(0, I)),  per image, in nats

`likelihood` (ours, PAPER.md leaves it open): `bernoulli` (default) is the Bernoulli
cross-entropy Σ −[x·log p + (1 − x)·log(1 − p)] on the pixels as stored, grey levels in [0, 1]
(for grey levels it is the usual VAE training loss, not a normalised density); `binarized`
thresholds the pixels at 0.5 first, so it is an exact Bernoulli log-likelihood. A decoder that
says p = 0.5 everywhere scores 784·ln 2 = 543.4 nats on any image, either way.

One ε per image and step (a single-sample ELBO estimate, as Kingma & Welling with L = 1).
Training noise comes from `self.generator`, evaluation noise from the generator `evaluate` is
given; both are drawn once per distinct seed of the group and shared by the runs of that seed,
and `noise_identity` makes both generators depend on those seeds alone. So two groups that
hold the same seeds (Adam with and without bias correction, say) draw the same ε for the same
run, whatever their optimizer: only the update differs. Evaluation draws one ε per image for
all runs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor

from adamrepro.metrics import Metric, MetricSet
from adamrepro.models.base import BatchedModel, Init, StackedLinear, shared_input
from adamrepro.options import Frozen, options_model


class Options(Frozen):
    name: str = "vae"
    hidden: PositiveInt = 500
    latent: PositiveInt = 50
    likelihood: Literal["bernoulli", "binarized"] = "bernoulli"
    # Kingma & Welling initialise every weight from N(0, 0.01²); biases start at zero.
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)


def options(values: dict, where: str) -> Options:
    return options_model(Options, values, where)


class VAE(BatchedModel):
    METRICS = MetricSet((
        Metric("neg_elbo", label="negative ELBO (nats)"),
        Metric("recon", label="reconstruction −log p(x|z) (nats)"),
        Metric("kl", label="KL(q(z|x) ‖ p(z)) (nats)"),
    ), objective="neg_elbo")
    options = staticmethod(options)

    def __init__(self, opts: Options, feature_shape: tuple[int, ...], num_classes: int | None,
                 seeds: Sequence[int]) -> None:
        super().__init__()
        self.opts = opts
        pixels = math.prod(feature_shape)
        widths = ((pixels, opts.hidden), (opts.hidden, 2 * opts.latent),
                  (opts.latent, opts.hidden), (opts.hidden, pixels))
        self.enc_hidden, self.enc_out, self.dec_hidden, self.dec_out = (
            StackedLinear(seeds, fan_in, fan_out, opts.init, opts.init_scale, layer_index=i)
            for i, (fan_in, fan_out) in enumerate(widths))
        unique = sorted(set(seeds))
        self.seeds = tuple(unique)
        # run g draws the noise of its seed: row index_of_run[g] of a (distinct seeds, ...) draw
        self.register_buffer("index_of_run", torch.tensor([unique.index(s) for s in seeds]),
                             persistent=False)

    @staticmethod
    def unit_inputs(opts) -> bool:
        """The Bernoulli likelihood reads each grey level as a probability; binarised at 0.5
        first (`likelihood: binarized`), any input is a 0 or a 1."""
        return opts.likelihood != "binarized"

    @staticmethod
    def stochastic(opts) -> bool:
        """Its objective samples ε at every step: SFO refuses it, and `bench` does not expect
        the reference loop's curves to equal the batched ones."""
        return True

    def noise_identity(self, group_id: str) -> str:
        """The noise generators' seed: the group's distinct seeds, not its identity (base.py)."""
        return hashlib.sha1(repr(self.seeds).encode()).hexdigest()[:12]

    def pixels(self, x: Tensor) -> Tensor:
        x = self.cast(x.flatten(2))
        if self.opts.likelihood != "binarized":
            return x
        one = x[:1] if shared_input(x) else x  # binarise a shared input once, not G times
        return (one > 0.5).to(x.dtype).expand(x.shape)

    def terms(self, x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """−log p(x|z) and KL per run, mean over the images: (G,), (G,). `noise` broadcasts
        against the latent codes (G, B, latent)."""
        x = self.pixels(x)
        mu, log_var = self.enc_out(F.softplus(self.enc_hidden(x))).chunk(2, dim=-1)
        z = mu + (0.5 * log_var).exp() * noise
        logits = self.dec_out(F.softplus(self.dec_hidden(z)))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)
        return recon.mean(-1), kl.mean(-1)

    def draw(self, rows: int, images: int, generator: torch.Generator | None) -> Tensor:
        """ε for `rows` noise streams and `images` images: (rows, images, latent)."""
        weight = self.enc_out.weight
        return torch.randn((rows, images, self.opts.latent), generator=generator,
                           device=weight.device, dtype=weight.dtype)

    def objective(self, batch):
        x = batch["x"]
        G, B = x.shape[:2]
        noise = self.draw(len(self.seeds), B, self.generator)
        noise = noise.expand(G, -1, -1) if len(self.seeds) == 1 else noise[self.index_of_run]
        recon, kl = self.terms(x, noise)
        return recon + kl

    def evaluate(self, batch, generator):
        recon, kl = self.terms(batch["x"], self.draw(1, batch["x"].shape[1], generator))
        return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Bernoulli means of the decoder at z = μ(x): (G, B, pixels)."""
        mu, _ = self.enc_out(F.softplus(self.enc_hidden(self.pixels(x)))).chunk(2, dim=-1)
        return torch.sigmoid(self.dec_out(F.softplus(self.dec_hidden(mu))))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        """Bernoulli means of the decoder at n draws z ~ N(0, I): (G, n, pixels)."""
        z = self.draw(1, n, generator).expand(self.dec_hidden.weight.shape[0], -1, -1)
        return torch.sigmoid(self.dec_out(F.softplus(self.dec_hidden(z))))
