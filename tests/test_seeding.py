"""Every random stream is its own: no two purposes, seeds or groups share draws. Two streams
that collided would tie one run's initial weights to another seed's minibatch order, or a
VAE's evaluation noise to its training noise, and the seeds would no longer be independent
repetitions."""

from __future__ import annotations

import hashlib
import itertools

import torch

from adamrepro.seeding import (
    EVAL_NOISE,
    INIT_STREAM,
    ORDER_STREAM,
    REFERENCE_NOISE_STREAM,
    TRAIN_NOISE,
    group_generator,
    seeded_generator,
)

DRAWS = 8  # 8 int64 draws: two streams agreeing on all by chance is out of the question


def _draws(generator: torch.Generator) -> tuple[int, ...]:
    return tuple(torch.randint(0, 2**62, (DRAWS,), generator=generator).tolist())


def test_no_two_streams_of_any_seeds_draw_alike():
    """Seeds 0-9 (a sweep's seeds and more) times every stream a run draws from: the initial
    weights of up to 4 layers (INIT_STREAM + 100·layer), the minibatch order and the bench's
    reference noise."""
    streams = [INIT_STREAM + 100 * layer for layer in range(4)]
    streams += [ORDER_STREAM, REFERENCE_NOISE_STREAM]
    seen: dict[tuple[int, ...], tuple[int, int]] = {}
    for seed, stream in itertools.product(range(10), streams):
        draws = _draws(seeded_generator(seed, stream))
        assert draws not in seen, f"seed {seed} stream {stream} draws as {seen[draws]}"
        seen[draws] = (seed, stream)


def test_a_group_s_training_and_evaluation_noise_differ():
    """The dropout masks of training and a VAE's evaluation samples come from one group's two
    generators: alike, the evaluation would replay the training's noise."""
    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(20)]
    cpu = torch.device("cpu")
    seen: dict[tuple[int, ...], tuple[str, int]] = {}
    for group_id, purpose in itertools.product(ids, (TRAIN_NOISE, EVAL_NOISE)):
        draws = _draws(group_generator(group_id, cpu, purpose))
        assert draws not in seen, f"group {group_id} purpose {purpose} draws as {seen[draws]}"
        seen[draws] = (group_id, purpose)
