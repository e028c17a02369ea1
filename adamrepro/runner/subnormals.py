"""Subnormal floats flushed to zero while a group trains in one CPU thread.

A float32 below 1.2e-38 (a float64 below 2.2e-308) is subnormal, and an x86 core computes
with one through a microcode assist, many times slower than with a normal float. Logistic
regression on MNIST makes many once it has learned: a softmax's probabilities of the wrong
classes, the loss's gradient made of them, which the backward matmul reads, and the
gradient of the weights of pixels that are rarely on, which the optimizer's update reads
(the first pass of the quick sweep's Adam group of 7 runs made 34,000 in its softmax's exp
and 41,000 in its weights' gradients). Measured on this project's 2-core Intel Xeon
(2026-12-06, torch 2.13, 1 thread, that pass): the matmul of the weights' gradient took 741
µs a step with them and 183 µs flushed; a pass of the sweep's five groups 6.5 s and 5.2 s.

A subnormal added to a normal number is below its rounding, but one multiplied or divided
can make a normal number (a subnormal first moment over Adam's ε is 1e-31, and 0 flushed),
so flushing can move a parameter that tiny, far below a normal weight's rounding. The
curves of every experiment were the same, bit for bit, with and without it (the quick
scale's groups, 1 to 3 passes each, measured 2026-12-06; a test trains groups both ways),
so it is an implementation choice that no run id or record names, like host_memory.py's.

It is a per-thread setting of the core (MXCSR's FTZ and DAZ bits): torch's
`set_flush_denormal` sets the calling thread's alone, and torch's other threads keep the
setting they started with. So a group flushes only where it trains in one thread (every
worker process, and the driver where it trains in a worker's stead), never in a process of
several threads (`run --workers 1`), where part of each op would flush and part not. The
setting is put back as it was once the group ends, so the bench's reference loop, a plain
training script, never flushes. `ADAMREPRO_FLUSH_SUBNORMALS=0` turns it off; on a GPU the
device's kernels decide, and nothing is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

OPT_OUT = "ADAMREPRO_FLUSH_SUBNORMALS"


def flushing() -> bool:
    """Whether this thread flushes subnormals now: a subnormal float32 made and multiplied
    here comes out as zero (torch keeps no record of the setting to read)."""
    return (torch.tensor(1e-39, dtype=torch.float32) * 1.0).item() == 0.0


@contextmanager
def subnormals_flushed(device: torch.device) -> Iterator[None]:
    """Inside, this thread flushes subnormals to zero where a group trains on a CPU in one
    thread (the module's docstring says why only there); as it was again on the way out."""
    if (device.type != "cpu" or torch.get_num_threads() != 1
            or os.environ.get(OPT_OUT) == "0" or flushing()
            or not torch.set_flush_denormal(True)):  # False: a CPU that cannot
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
