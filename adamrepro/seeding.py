"""Every random stream of adamrepro, and where its seed comes from.

A run's own streams (its initial weights, its minibatch order) come from its seed alone, on
the CPU, so a run is the same whatever group or device it trains in. Noise drawn inside a
training step (dropout masks) and during evaluation (a VAE's latent samples) comes from one
generator per group and purpose, on the device, seeded by the group's identity: a re-run of
the same group draws the same noise (groups are fixed by the config, see runner/plan.py).
That identity leaves `training.precision` out (`Group.noise_id`), so a run draws the same
noise at fp32, tf32 and bf16. A model may seed its noise otherwise (`noise_identity`): the
VAE seeds it from the group's seeds, so that groups holding the same seeds (Adam with and
without bias correction) draw the same noise.
"""

from __future__ import annotations

import torch

# Streams of one run's seed.
INIT_STREAM = 1  # initial weights: layer i draws from stream INIT_STREAM + 100·i
ORDER_STREAM = 2  # the minibatch order of every pass
REFERENCE_NOISE_STREAM = 3  # the noise of bench/reference.py's VAE (on the training device)

# Offsets of a group's device generators from its identity.
TRAIN_NOISE = 0  # dropout masks during training
EVAL_NOISE = 0x5EED  # noise a model draws while it is evaluated


def seeded_generator(seed: int, stream: int,
                     device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one purpose (`stream`) of one seed, independent of the others (on the
    CPU unless a device is named)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + stream)


def group_generator(group_id: str, device: torch.device, purpose: int) -> torch.Generator:
    """A device generator for one purpose of one group (`group_id` is a hex digest)."""
    return torch.Generator(device=device).manual_seed(int(group_id, 16) + purpose)


def subset_generator(seed: int = 0) -> torch.Generator:
    """The fixed random subset of a dataset used by the small scales (same for every run)."""
    return torch.Generator().manual_seed(seed)
